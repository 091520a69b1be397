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

import ipaddress
import json
import socket
import threading
import time

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
from ..host.device import DeviceError
from ..host.pipeline_device import TxFrame, bus_writes, register_writes
from ..host.sniper import CLOCK_HZ, SniperOrder
from .runner import SimulationFailed, available_simulators, run

__all__ = ["PipelineSession", "SessionSniper"]

BENCH = "tick2trade.sim.benches.pipeline_session_bench"
#: Cycles of a quiet stretch a ``SessionSniper`` lets the design run (the rest is cut).
QUIET_CYCLES_KEPT = 64
#: Seconds to wait for the simulator to start (a first Verilator build takes minutes).
START_TIMEOUT_S = 1200.0


class PipelineSession:
    """``Pipeline`` configured from ``strategy`` (resolved), running in ``simulator`` until ``close``.

    Use as a context manager. ``send_frame`` and ``write`` queue inputs from
    a cycle on; ``advance`` runs the design through a cycle and returns the
    order frames that ended since the last call; ``read`` reads registers.
    A failure in the simulator raises ``DeviceError`` naming its log.
    """

    def __init__(self, strategy, *, simulator="verilator", dst_ip=None, dst_port=None):
        from ..hdl.pipeline import Pipeline
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
        self._command({"op": "write", "at": at_cycle, "writes": bus_writes(self.registers, writes)})
        self.idle = False

    def advance(self, until_cycle: int, *, complete: bool = False) -> list[TxFrame]:
        """Run through ``until_cycle``; the order frames whose last beat left ``tx`` since the last call.

        With ``complete``, the design runs on (inputs queued for those
        cycles go in) until no order frame is half sent, so that every frame
        whose first beat left by ``until_cycle`` is returned; ``cycle`` then
        says how far it ran.
        """
        answer = self._command({"op": "advance", "until": until_cycle, "complete": complete})
        self.cycle, self.idle = answer["cycle"], answer["idle"]
        return [TxFrame(bytes.fromhex(data), aborted, first, last)
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


class SessionSniper:
    """A ``PipelineSession`` behind the race's ``Sniper`` interface (``host/sniper.py``): the gateware as sniper.

    Race time 0 is the session's ``start_cycle``; a time becomes the first
    cycle at or after it at the 156.25 MHz clock, and an order's time is
    when its first beat left ``tx`` (rounded up to whole ns). An advance
    runs the design on until no order frame is half sent, so that every
    order whose first beat left by then is returned whole; an input for a
    cycle the design has already run (at most a frame's beats later) goes
    in at the next cycle, and ``late_inputs`` counts those.

    A race is mostly silence (milliseconds between frames, microseconds of
    activity), and a simulator runs some 10**5 cycles a second, so a quiet
    stretch (nothing queued, nothing in flight for the bench's quiet cycles)
    is cut to ``QUIET_CYCLES_KEPT`` more cycles, however many advances it
    spans, and the race's clock moves on without the design:
    ``skipped_cycles`` counts what was cut. In such a stretch only
    the design's cycle counter and the risk gate's refill timer would have
    moved: the token bucket refills by the cycles the design ran, not by
    race time (the race's default bucket never runs dry; a scenario whose
    rate limit binds should use the golden model, which refills by race
    time).
    """

    def __init__(self, strategy, *, simulator="verilator", dst_ip=None, dst_port=None):
        self.session = PipelineSession(strategy, simulator=simulator, dst_ip=dst_ip, dst_port=dst_port)
        self.late_inputs = 0
        self.skipped_cycles = 0
        self._quiet_run = 0  # cycles run in the current quiet stretch

    def _cycle(self, time_ns: int) -> int:
        return self.session.start_cycle + -(-time_ns * CLOCK_HZ // 10**9) - self.skipped_cycles

    def _input_cycle(self, time_ns: int) -> int:
        cycle = self._cycle(time_ns)
        if cycle < self.session.cycle:
            self.late_inputs += 1
        return cycle

    def _time_ns(self, cycle: int) -> int:
        return -(-(cycle - self.session.start_cycle + self.skipped_cycles) * 10**9 // CLOCK_HZ)

    def feed(self, frame: bytes, at_ns: int) -> None:
        self.session.send_frame(frame, self._input_cycle(at_ns))

    def advance(self, until_ns: int) -> list[SniperOrder]:
        last_cycle = self._cycle(until_ns) - 1  # the cycles before until_ns: an input at until_ns is not late
        if self.session.idle:
            wanted = max(0, last_cycle + 1 - self.session.cycle)
            run = min(wanted, max(0, QUIET_CYCLES_KEPT - self._quiet_run))
            self._quiet_run += run
            self.skipped_cycles += wanted - run
            last_cycle -= wanted - run
        else:
            self._quiet_run = 0
        frames = self.session.advance(last_cycle, complete=True)
        return [SniperOrder(self._time_ns(frame.cycle), frame.data) for frame in frames if not frame.aborted]

    def write_registers(self, writes, at_ns: int) -> None:
        self.session.write(writes, self._input_cycle(at_ns))

    def counters(self) -> dict[str, int]:
        names = [name for name, register in self.session.registers.items() if register.kind == "counter"]
        return {**self.session.read(names), "late_inputs": self.late_inputs, "skipped_cycles": self.skipped_cycles}

    def close(self) -> None:
        self.session.close()
