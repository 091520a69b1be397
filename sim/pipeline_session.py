"""The whole pipeline in an HDL simulator as an interactive session: frames and register writes at
given cycles, order frames back as they leave.

``CocotbPipelineDevice`` runs a whole input at once. A host that reacts to
what the pipeline sends (the race: the exchange answers the sniper's orders,
the host writes the position and the finished orders back, as it would on a
board) needs the design to wait for it instead. A session keeps one
simulator running (``sim/benches/pipeline_session_bench.py``) and talks to
it over a local TCP connection, one JSON line per command; the simulator
stands still between commands, so the host's own time costs no cycles.

Cycles are the design's own, from reset; the pipeline is configured from the
strategy file before ``start_cycle``, the first cycle a caller may use.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import threading
import time

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
from ..host.device import DeviceError
from .runner import SimulationFailed, available_simulators, run

__all__ = ["PipelineSession", "SessionFrame"]

BENCH = "tick2trade.sim.benches.pipeline_session_bench"
#: Seconds to wait for the simulator to start (a first Verilator build takes minutes).
START_TIMEOUT_S = 1200.0


@dataclasses.dataclass(frozen=True)
class SessionFrame:
    """An order frame that left ``tx``: bytes, aborted or not, the cycles of its first and last beats."""
    data: bytes
    aborted: bool
    first_cycle: int
    last_cycle: int


class PipelineSession:
    """``Pipeline`` configured from ``strategy`` (resolved), running in ``simulator`` until ``close``.

    Use as a context manager. ``send_frame`` and ``write`` queue inputs from
    a cycle on; ``advance`` runs the design through a cycle and returns the
    order frames that ended since the last call; ``read`` reads registers.
    A failure in the simulator raises ``DeviceError`` naming its log.
    """

    def __init__(self, strategy, *, simulator="verilator", dst_ip=None, dst_port=None):
        from ..hdl.pipeline import Pipeline
        from ..host.pipeline_device import register_writes
        unavailable = available_simulators().get(simulator, f"unknown simulator {simulator!r}")
        if unavailable:
            raise DeviceError(unavailable)
        self._dut = Pipeline(capacity=strategy.book_capacity, levels=strategy.book_levels)
        self.registers = self._dut.registers
        self.cycle = 0
        self.idle = True
        self._failure = None
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(1.0)
        host, port = listener.getsockname()
        self._thread = threading.Thread(target=self._simulate, args=(strategy, simulator, f"{host}:{port}"),
                                        name="pipeline-session", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    connection, _ = listener.accept()
                    break
                except socket.timeout:
                    if not self._thread.is_alive():
                        raise DeviceError(f"the {simulator} session did not start: {self._failure}") from None
                    if time.monotonic() > deadline:
                        raise DeviceError(f"the {simulator} session did not start in {START_TIMEOUT_S:.0f} s") from None
        finally:
            listener.close()
        self._connection = connection
        self._stream = connection.makefile("rwb")
        dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self.write(register_writes(strategy, dst_ip=dst_ip, dst_port=DEFAULT_DST_PORT if dst_port is None else dst_port),
                   at_cycle=0)
        self.advance(0)
        while not self.idle:
            self.advance(self.cycle)
        #: The first cycle after the configuration.
        self.start_cycle = self.cycle

    def _simulate(self, strategy, simulator, address):
        try:
            run(self._dut, name=f"pipeline_c{strategy.book_capacity}_l{strategy.book_levels}", test_module=BENCH,
                simulator=simulator, extra_env={"T2T_SESSION": address})
        except SimulationFailed as error:
            self._failure = f"{error} (log: {error.log_path})"
        except Exception as error:  # the thread must report whatever stopped the simulator
            self._failure = f"{type(error).__name__}: {error}"

    def _command(self, command):
        try:
            self._stream.write(json.dumps(command).encode() + b"\n")
            self._stream.flush()
            line = self._stream.readline()
        except OSError as error:
            line, reason = b"", str(error)
        else:
            reason = "connection closed"
        if not line:
            self._thread.join(timeout=60)
            raise DeviceError(f"the pipeline session ended: {self._failure or reason}")
        return json.loads(line)

    def send_frame(self, data: bytes, at_cycle: int, *, err: bool = False) -> None:
        """Queue ``data`` for ``rx`` from ``at_cycle`` on (after the frames queued before it)."""
        self._command({"op": "frame", "at": at_cycle, "data": bytes(data).hex(), "err": err})
        self.idle = False

    def write(self, writes, at_cycle: int) -> None:
        """Queue register writes [(name, value)], one bus word per cycle, from ``at_cycle`` on."""
        from ..host.pipeline_device import bus_writes
        self._command({"op": "write", "at": at_cycle, "writes": bus_writes(self.registers, writes)})
        self.idle = False

    def advance(self, until_cycle: int) -> list[SessionFrame]:
        """Run through ``until_cycle``; the order frames whose last beat left ``tx`` since the last call."""
        answer = self._command({"op": "advance", "until": until_cycle})
        self.cycle, self.idle = answer["cycle"], answer["idle"]
        return [SessionFrame(bytes.fromhex(data), aborted, first, last)
                for data, aborted, first, last in answer["frames"]]

    def read(self, names) -> dict[str, int]:
        """The registers ``names``, once every queued input has gone in."""
        answer = self._command({"op": "read", "registers": {
            name: [self.registers[name].address, self.registers[name].words] for name in names}})
        self.cycle = answer["cycle"]
        return answer["registers"]

    def close(self) -> None:
        """End the simulation; raises ``DeviceError`` if it failed."""
        if self._stream is None:
            return
        try:
            self._stream.write(b'{"op": "close"}\n')
            self._stream.flush()
        except OSError:
            pass
        self._stream.close()
        self._connection.close()
        self._stream = None
        self._thread.join()
        if self._failure:
            raise DeviceError(f"the pipeline session failed: {self._failure}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
