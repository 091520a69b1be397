"""A board in an HDL simulator behind a pseudo-terminal: the serial backend's stand-in for hardware.

``SimulatedBoard`` runs ``BoardCore`` (the pipeline and the host link, as a
board build has them) in Verilator or Icarus with
``sim/benches/board_bench.py``, which plays the board's USB serial bridge on
a pseudo-terminal. Its ``device`` (``serial:/dev/pts/N``) is then used
exactly as a board's port: ``tick2trade sim run --device``, the tests'
device contract, ``tick2trade board latency``. ``tick2trade board simulate``
keeps one running for a user.

The UART runs at ``CLOCKS_PER_BIT`` clocks per bit, far faster than a
board's 1 Mbaud in design cycles, so that the simulation spends its time in
the pipeline rather than in the serial line.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from ..host.device import DeviceError
from .runner import SimulationFailed, available_simulators, run

__all__ = ["SimulatedBoard", "CLOCKS_PER_BIT"]

BENCH = "tick2trade.sim.benches.board_bench"
#: Design clocks per UART bit in simulation (the link's minimum).
CLOCKS_PER_BIT = 4
#: Seconds to wait for the simulator to start (a first Verilator build takes minutes).
START_TIMEOUT_S = 1200.0


class SimulatedBoard:
    """``BoardCore`` around a board configuration's core in ``simulator``, until ``close``; a context manager.

    ``configuration`` is one of host/boards.py (default: the full pipeline,
    ``FULL``), so that a simulated board runs what that board's build runs:
    ``tick2trade board simulate --board icebreaker`` gives the iCEBreaker's
    receive path and its four counters. ``device`` is the ``serial:``
    device string of its pseudo-terminal. A simulator that fails or does not
    start raises ``DeviceError``.
    """

    def __init__(self, *, configuration=None, simulator="verilator"):
        from ..hdl.board_core import BoardCore
        from ..hdl.board_top import make_core
        from ..host.boards import FULL
        configuration = configuration or FULL
        unavailable = available_simulators().get(simulator, f"unknown simulator {simulator!r}")
        if unavailable:
            raise DeviceError(unavailable)
        self._scratch = tempfile.TemporaryDirectory(prefix="t2t-board-")
        scratch = Path(self._scratch.name)
        self._announce, self._stop = scratch / "pty", scratch / "stop"
        self._failure = None
        dut = BoardCore(make_core(configuration), clocks_per_bit=CLOCKS_PER_BIT)
        self._thread = threading.Thread(
            target=self._simulate, args=(dut, f"board_{configuration.key}", simulator),
            name="simulated-board", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._announce.exists():
            if not self._thread.is_alive():
                self._scratch.cleanup()
                raise DeviceError(f"the simulated board did not start: {self._failure}")
            if time.monotonic() > deadline:
                self.close()
                raise DeviceError(f"the simulated board did not start in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        #: The pseudo-terminal's path, and the device string that names it.
        self.port = self._announce.read_text()
        self.device = f"serial:{self.port}"

    def _simulate(self, dut, name, simulator):
        try:
            run(dut, name=name, test_module=BENCH, simulator=simulator,
                extra_env={"T2T_BOARD_PTY": str(self._announce), "T2T_BOARD_STOP": str(self._stop),
                           "T2T_CLOCKS_PER_BIT": str(CLOCKS_PER_BIT)})
        except SimulationFailed as error:
            self._failure = f"{error} (log: {error.log_path})"
        except Exception as error:  # the thread must report whatever stopped the simulator
            self._failure = f"{type(error).__name__}: {error}"

    @property
    def running(self) -> bool:
        """Whether the simulator is still running."""
        return self._thread.is_alive()

    @property
    def failure(self) -> str | None:
        """Why the simulator stopped, if it failed."""
        return self._failure

    def close(self):
        """Stop the simulator and wait for it."""
        self._stop.touch()
        self._thread.join(timeout=60)
        self._scratch.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
