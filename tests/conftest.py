"""Fixtures shared by test modules."""

import pytest

from tick2trade.sim.runner import available_simulators


@pytest.fixture
def simulated_board():
    """A simulated board (sim/simulated_board.py) behind a pseudo-terminal, one for each test."""
    reason = available_simulators()["verilator"]
    if reason:
        pytest.skip(reason)
    from tick2trade.sim.simulated_board import SimulatedBoard
    with SimulatedBoard() as board:
        yield board
