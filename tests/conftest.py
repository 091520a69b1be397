"""Fixtures shared by test modules."""

import pytest

from tick2trade.sim.runner import available_simulators


@pytest.fixture
def simulated_board():
    """A simulated board (sim/simulated_board.py) behind a pseudo-terminal, fresh from reset for each
    test (a board's order book is only empty then: host/serial_device.py)."""
    reason = available_simulators()["verilator"]
    if reason:
        pytest.skip(reason)
    from tick2trade.sim.simulated_board import SimulatedBoard
    with SimulatedBoard() as board:
        yield board
