"""Fixtures shared by test modules, and the ``--board`` option (``make test-board DEVICE=serial:PORT``)."""

import contextlib

import pytest

from tick2trade.sim.runner import available_simulators


def pytest_addoption(parser):
    parser.addoption("--board", metavar="serial:PORT",
                     help="run the board tests (-m board) on this board instead of on simulated boards; those "
                          "of another configuration than the board's skip")


def _configuration_of(device):
    """The configuration (host/boards.py) of the board at ``device``, found by its register map."""
    from tick2trade.host.serial_device import BoardSession, open_serial, serial_port
    with contextlib.closing(open_serial(serial_port(device))) as transport:
        return BoardSession(transport).configuration


@pytest.fixture
def board_device(request):
    """A function: the ``serial:`` device of a board running ``configuration`` (host/boards.py; the full
    pipeline by default).

    That is a simulated board (sim/simulated_board.py) behind a pseudo-terminal, one for each test, or
    with ``--board`` the board itself (a test of another configuration than the board's skips). The
    tests of simulated boards are in the pytest-xdist group "simulated_board" (`make test` runs with
    ``--dist loadgroup``), so that they run one after another and never run two simulators of the
    same build at once.
    """
    from tick2trade.host.boards import FULL
    with contextlib.ExitStack() as boards:
        def open_board(configuration=FULL):
            device = request.config.getoption("--board")
            if device:
                found = _configuration_of(device)
                if found.key != configuration.key:
                    pytest.skip(f"the board at {device} runs {found.name} ({found.core}), not this test's "
                                f"{configuration.name} ({configuration.core})")
                return device
            reason = available_simulators()["verilator"]
            if reason:
                pytest.skip(reason)
            from tick2trade.sim.simulated_board import SimulatedBoard
            return boards.enter_context(SimulatedBoard(configuration=configuration)).device
        yield open_board


@pytest.fixture
def board(board_device):
    """The ``serial:`` device of a board running the full pipeline (``board_device``)."""
    return board_device()
