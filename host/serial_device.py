# amaranth: UnusedElaboratable=no
"""The pipeline on a board behind the device interface, over the serial link (docs/board-link.md).

``--device serial:/dev/ttyUSB1`` (or a simulated board's pseudo-terminal,
``tick2trade board simulate``) selects this backend wherever a simulator
can be named. It does what the simulator backends do, with the board's own
timing:

- configuration: the same register writes (``register_writes``), made
  through the link's WRITE requests;
- a known state first, as a board keeps its state between runs: the
  MoldUDP64 session forgotten (``resync``), every book cleared
  (``book_clear``), the trigger re-armed, outstanding orders released
  (``orders_done``); counters are not cleared by any register, so a run
  reports each counter's increase over its value before the run;
- every frame injected into ``rx`` (its beats on consecutive cycles; the
  board stamps its first beat), and the order frames that left ``tx``
  collected after each frame, with the cycle stamp of their first beat;
- at the end, the counters, the state registers and the latency probes.

The register map is the pipeline's for the strategy's book capacity and
levels: the board must have been built with them (``tick2trade boards``).
(The first line's linter option: a ``Pipeline`` is made here for its
register map, never elaborated.)
"""

from __future__ import annotations

import ipaddress

from ..hdl.csr import MAGIC
from ..hdl.stream import BEAT_BYTES
from .board_link import BoardLinkClient, BoardLinkError
from .device import DeviceError

__all__ = ["SERIAL_PREFIX", "serial_port", "open_serial", "BoardSession", "SerialPipelineDevice",
           "DEFAULT_BAUD", "DEFAULT_TIMEOUT"]

#: How a device string names a serial port: ``serial:PATH``.
SERIAL_PREFIX = "serial:"
#: The boards' link rate (hdl/board_top.py).
DEFAULT_BAUD = 1_000_000
#: Seconds without a byte of an awaited reply before it is taken as lost (a simulated board is slow).
DEFAULT_TIMEOUT = 10.0
#: How often pyserial's ``read`` returns when nothing comes, seconds.
_READ_TIMEOUT = 0.05


def serial_port(device: str) -> str | None:
    """The port of a ``serial:PATH`` device string, None for any other; DeviceError for ``serial:`` alone."""
    if not device.startswith(SERIAL_PREFIX):
        return None
    port = device[len(SERIAL_PREFIX):]
    if not port:
        raise DeviceError("serial: needs a port, e.g. serial:/dev/ttyUSB1")
    return port


def open_serial(port: str, *, baud: int = DEFAULT_BAUD):
    """``port`` opened with pyserial, raw, 8N1; DeviceError (one line) when it cannot be."""
    import serial
    try:
        return serial.Serial(port, baudrate=baud, timeout=_READ_TIMEOUT)
    except (serial.SerialException, ValueError) as error:
        raise DeviceError(f"cannot open serial port {port}: {error}") from None


class BoardSession:
    """A pipeline on a board, reached through ``transport``: registers by name, frames in, orders out.

    ``registers`` is the pipeline's register map (``Pipeline(...).registers``).
    Link errors become ``DeviceError``.
    """

    def __init__(self, transport, registers, *, timeout: float = DEFAULT_TIMEOUT):
        self.registers = registers
        self.link = BoardLinkClient(transport, timeout=timeout)
        magic = self._call(self.link.read_registers, 0, 1)[0]
        if magic != MAGIC:
            raise DeviceError(f"not a tick2trade board: register 0 reads 0x{magic:08x}, not 0x{MAGIC:08x}")

    @staticmethod
    def _call(method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except BoardLinkError as error:
            raise DeviceError(f"board link: {error}") from None

    def read(self, names) -> dict[str, int]:
        """The registers ``names``, each as one integer (wide ones from their words)."""
        values = {}
        for name in names:
            register = self.registers[name]
            words = self._call(self.link.read_registers, register.address, register.words)
            values[name] = sum(word << (32 * i) for i, word in enumerate(words))
        return values

    def write(self, writes) -> None:
        """(name, value) writes, in order; strobes are never sent twice (their effect adds up)."""
        from .pipeline_device import bus_writes
        for name, value in writes:
            register = self.registers[name]
            for address, word in bus_writes(self.registers, [(name, value)]):
                self._call(self.link.write_registers, address, [word], retry_lost=register.kind != "strobe")

    def inject(self, frame: bytes, err: bool = False) -> int:
        """``frame`` into ``rx``; the cycle of its first beat."""
        return self._call(self.link.inject, frame, err)

    def collect(self) -> list:
        """The captured ``tx`` frames waiting, oldest first, as TxFrame."""
        from .pipeline_device import TxFrame
        frames = []
        while (captured := self._call(self.link.read_tx)) is not None:
            frames.append(TxFrame(captured.frame, captured.err, captured.stamp))
        return frames

    def settle(self, slots: int) -> None:
        """Put the pipeline in a known state: session forgotten, books cleared, trigger re-armed, no outstanding orders."""
        outstanding = self.read(["outstanding"])["outstanding"]
        self.write([("resync", 1), ("book_clear", (1 << slots) - 1), ("rearm", 1)]
                   + ([("orders_done", outstanding)] if outstanding else []))
        self.collect()  # frames left from before are not this run's


class SerialPipelineDevice:
    """The pipeline device interface (``host/pipeline_device.py``) over a board's serial link."""

    def __init__(self, strategy, *, port=None, transport=None, dst_ip=None, dst_port=None,
                 timeout: float = DEFAULT_TIMEOUT, **_options):
        from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
        if (port is None) == (transport is None):
            raise ValueError("give a serial port or a transport")
        self._strategy = strategy
        self._port = port
        self._transport = transport
        self._timeout = timeout
        self._dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self._dst_port = DEFAULT_DST_PORT if dst_port is None else dst_port

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None, **_options):
        """Inject ``frames`` (RxFrame) one by one and return a PipelineResult with the board's cycle stamps.

        ``idle_probability`` and ``seed`` are for simulators: a board's
        frames enter ``rx`` at line rate, as the link injects them.
        """
        from ..hdl.pipeline import Pipeline
        from .pipeline_device import (FAST_PATH_COUNTERS, PROBE_DEPTH, STATE_REGISTERS, PipelineResult,
                                      register_writes)
        strategy = self._strategy
        pipeline = Pipeline(capacity=strategy.book_capacity, levels=strategy.book_levels)
        registers = pipeline.registers
        transport = self._transport if self._transport is not None else open_serial(self._port)
        try:
            board = BoardSession(transport, registers, timeout=self._timeout)
            board.settle(pipeline.slots)
            counted = [name for name, register in registers.items() if register.kind == "counter"]
            before = board.read(counted)
            board.write(register_writes(strategy, dst_ip=self._dst_ip, dst_port=self._dst_port))
            out, beat_cycles = [], []
            for number, frame in enumerate(frames):
                stamp = board.inject(frame.data, frame.err)
                beat_cycles.append([stamp + beat for beat in range(-(-len(frame.data) // BEAT_BYTES))])
                out += board.collect()
                if progress:
                    progress(number + 1, len(frames))
            out += board.collect()
            after = board.read(counted)
            counters = {name: (after[name] - before[name]) % (1 << registers[name].width) for name in counted}
            state = board.read(STATE_REGISTERS)
            probes = []
            for index in range(PROBE_DEPTH):
                board.write([("probe_select", index)])
                values = board.read(["probe_trigger_cycle", "probe_tx_cycle"])
                probes.append((values["probe_trigger_cycle"], values["probe_tx_cycle"]))
        finally:
            if self._transport is None:
                transport.close()
        return PipelineResult(
            frames=out,
            counters={name: value for name, value in counters.items() if name not in FAST_PATH_COUNTERS},
            state=state, fast_path={name: counters[name] for name in FAST_PATH_COUNTERS},
            probes=probes, beat_cycles=beat_cycles)
