"""Fixtures shared by test modules."""

import pytest

from tick2trade.sim.runner import available_simulators


@pytest.fixture
def simulated_board():
    """A simulated board (sim/simulated_board.py) behind a pseudo-terminal, one for each test.

    The tests that run simulated boards are in the pytest-xdist group "simulated_board" (`make test`
    runs with ``--dist loadgroup``), so that they run one after another and never run two simulators
    of the same build at once.
    """
    reason = available_simulators()["verilator"]
    if reason:
        pytest.skip(reason)
    from tick2trade.sim.simulated_board import SimulatedBoard
    with SimulatedBoard() as board:
        yield board
