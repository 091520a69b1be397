# amaranth: UnusedElaboratable=no
"""The pipeline on a board behind the device interface, over the serial link (docs/board-link.md).

``--device serial:/dev/ttyUSB1`` (or a simulated board's pseudo-terminal,
``tick2trade board simulate``) selects this backend wherever a simulator
can be named. It does what the simulator backends do, with the board's own
timing:

- configuration: the same register writes (``register_writes``), made
  through the link's WRITE requests;
- a fresh start for every run: the ``restart`` strobe resets every stage
  and empties the order book (its table is swept in ``capacity`` cycles,
  ``book_emptying`` shows it), so a loaded board serves run after run;
  the counters are not reset, but reported as their increase over the run,
  so that link checks and earlier runs do not count;
- every frame injected into ``rx`` (its beats on consecutive cycles; the
  board stamps its first beat), and the order frames that left ``tx``
  collected after each frame, with the cycle stamp of their first beat;
- at the end, the counters, the state registers and the latency probes.

The register map is the pipeline's for the strategy's book capacity and
levels: the board must have been built with them (``tick2trade boards``).

Any board, the receive-path ones too (they send no orders and keep their
decoded messages), can be checked by its counters: ``check_counters``
(``tick2trade board check``) injects a feed and sets each receive-path
counter the board keeps against the golden model's.
(The first line's linter option: cores are made here for their register
maps, never elaborated.)
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress

from ..hdl.board_top import BAUD
from ..hdl.csr import MAGIC, layout_word
from ..hdl.stream import BEAT_BYTES
from .board_link import BoardLinkClient, BoardLinkError
from .device import DeviceError

#: Reads of ``book_emptying`` the backend makes before it gives up on a restart.
RESTART_POLLS = 100

__all__ = ["SERIAL_PREFIX", "serial_port", "open_serial", "BoardSession", "SerialPipelineDevice", "BoardSniper",
           "CounterCheck", "check_counters", "board_register_maps", "pipeline_registers", "DEFAULT_TIMEOUT"]

#: How a device string names a serial port: ``serial:PATH``.
SERIAL_PREFIX = "serial:"
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


def open_serial(port: str, *, baud: int = BAUD):
    """``port`` opened with pyserial, raw, 8N1; DeviceError (one line) when it cannot be."""
    import serial
    try:
        return serial.Serial(port, baudrate=baud, timeout=_READ_TIMEOUT)
    except (serial.SerialException, ValueError) as error:
        raise DeviceError(f"cannot open serial port {port}: {error}") from None


class BoardSession:
    """A board's core, reached through ``transport``.

    Opening checks that the board answers with the design's magic number and
    has the register map ``registers`` (the pipeline's: ``pipeline_registers``;
    its layout word, hdl/csr.py); without ``registers``, the map is found
    among those of the boards' configurations (``tick2trade boards``) by the
    board's layout word, and ``configuration`` names it.
    ``start`` makes a pipeline board ready for a run. Link errors become
    ``DeviceError``.
    """

    def __init__(self, transport, registers=None, *, timeout: float = DEFAULT_TIMEOUT):
        self.link = BoardLinkClient(transport, timeout=timeout)
        magic, layout = self._call(self.link.read_registers, 0, 2)
        if magic != MAGIC:
            raise DeviceError(f"not a tick2trade board: register 0 reads 0x{magic:08x}, not 0x{MAGIC:08x}")
        #: The configuration of host/boards.py the board was found to run (None when ``registers`` were given).
        self.configuration = None
        if registers is None:
            maps = board_register_maps()
            if layout not in maps:
                raise DeviceError(f"the board's register map (layout 0x{layout:08x}) is none of the boards' "
                                  f"configurations (tick2trade boards): was it built by another version?")
            self.configuration, registers = maps[layout]
        elif layout != layout_word(registers):
            raise DeviceError(f"the board's register map (layout 0x{layout:08x}) is not the one this run needs "
                              f"(0x{layout_word(registers):08x}): it was built with another configuration "
                              f"(tick2trade boards)")
        self.registers = registers
        self._counted = [name for name, register in registers.items() if register.kind == "counter"]
        self._before = None  # the counters as ``start`` or ``note_counters`` found them

    def start(self, strategy, *, dst_ip=None, dst_port=None) -> None:
        """Restart the pipeline (every stage reset, the order book emptied: see the module docstring),
        note every counter (a run reports increases) and configure it for ``strategy`` (resolved)."""
        from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
        from .pipeline_device import register_writes
        self.write([("restart", 1)])
        for _ in range(RESTART_POLLS):  # a read takes longer than the sweep of a 4,096-order table
            if not self.read(["book_emptying"])["book_emptying"]:
                break
        else:
            raise DeviceError(f"the board's order book is still emptying after {RESTART_POLLS} reads")
        self.collect()  # frames an earlier run left uncollected (one stopped early, a counter check)
        self.note_counters()
        dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self.write(register_writes(strategy, dst_ip=dst_ip, dst_port=DEFAULT_DST_PORT if dst_port is None else dst_port))

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
        try:
            return self._call(self.link.inject, frame, err)
        except ValueError as error:  # a frame the link cannot carry
            raise DeviceError(f"cannot inject a frame: {error}") from None

    def collect(self) -> list:
        """The captured ``tx`` frames waiting, oldest first, as TxFrame."""
        from .pipeline_device import TxFrame
        frames = []
        while (captured := self._call(self.link.read_tx)) is not None:
            frames.append(TxFrame(captured.frame, captured.err, captured.stamp))
        return frames

    def note_counters(self) -> None:
        """Take the counters' values now as the start of the increases ``counters`` reports."""
        self._before = self.read(self._counted)

    def counters(self) -> dict[str, int]:
        """Every counter's increase since ``start`` or ``note_counters``."""
        after = self.read(self._counted)
        return {name: (after[name] - self._before[name]) % (1 << self.registers[name].width)
                for name in self._counted}

    def probes(self) -> list[tuple[int, int]]:
        """The (trigger cycle, tx cycle) pairs of the latency probes, by probe index."""
        from .pipeline_device import PROBE_DEPTH
        pairs = []
        for index in range(PROBE_DEPTH):
            self.write([("probe_select", index)])
            values = self.read(["probe_trigger_cycle", "probe_tx_cycle"])
            pairs.append((values["probe_trigger_cycle"], values["probe_tx_cycle"]))
        return pairs


@dataclasses.dataclass(frozen=True)
class CounterCheck:
    """A board's receive-path counters over a feed, next to the golden model's (``check_counters``).

    ``rows``: (counter, the board's increase, the golden model's count), for
    every receive-path counter the board keeps, in register order.
    """
    configuration: str
    frames: int
    rows: tuple

    @property
    def differing(self) -> list:
        return [row for row in self.rows if row[1] != row[2]]


def check_counters(frames, *, port=None, transport=None, dst_ip=None, dst_port=None,
                   timeout: float = DEFAULT_TIMEOUT, progress=None) -> CounterCheck:
    """Inject ``frames`` (RxFrame) into any board's ``rx`` and compare its receive-path counters with the model's.

    Works on every configuration (``tick2trade boards``): the receive-path
    boards, whose decoded messages stay on the board, as well as the
    pipeline's. The board's MoldUDP64 session is forgotten first (``resync``),
    as the golden model starts, and its counters are taken as increases.
    """
    from ..hdl.rx_path import COUNTERS, DEFAULT_DST_IP, DEFAULT_DST_PORT
    from .device import ModelRxDevice
    dst_ip = dst_ip or DEFAULT_DST_IP
    dst_port = DEFAULT_DST_PORT if dst_port is None else dst_port
    transport, owned = _transport(port, transport)
    try:
        board = BoardSession(transport, timeout=timeout)
        board.write([("dst_ip", int(ipaddress.IPv4Address(dst_ip))), ("dst_port", dst_port), ("resync", 1)])
        board.note_counters()
        for number, frame in enumerate(frames):
            board.inject(frame.data, frame.err)
            if progress:
                progress(number + 1, len(frames))
        counters = board.counters()
    finally:
        if owned:
            transport.close()
    model = ModelRxDevice(dst_ip=dst_ip, dst_port=dst_port).run(frames).counters
    rows = tuple((name, counters[name], model.get(name, 0)) for name in COUNTERS if name in counters)
    return CounterCheck(configuration=f"{board.configuration.name} ({board.configuration.core})",
                        frames=len(frames), rows=rows)


def board_register_maps():
    """{layout word: (configuration, register map)} of every configuration a board of host/boards.py gets."""
    from ..hdl.board_top import make_core
    from .boards import BOARDS
    maps = {}
    for board in BOARDS.values():
        registers = make_core(board.configuration).registers
        maps.setdefault(layout_word(registers), (board.configuration, registers))
    return maps


def pipeline_registers(strategy):
    """The register map of the pipeline built for ``strategy``'s book capacity and levels."""
    from ..hdl.pipeline import Pipeline
    return Pipeline(capacity=strategy.book_capacity, levels=strategy.book_levels).registers


def _transport(port, transport):
    if (port is None) == (transport is None):
        raise ValueError("give a serial port or a transport")
    return (transport, False) if transport is not None else (open_serial(port), True)


class SerialPipelineDevice:
    """The pipeline device interface (``host/pipeline_device.py``) over a board's serial link."""

    def __init__(self, strategy, *, port=None, transport=None, dst_ip=None, dst_port=None,
                 timeout: float = DEFAULT_TIMEOUT, **_options):
        if (port is None) == (transport is None):
            raise ValueError("give a serial port or a transport")
        self._strategy = strategy
        self._port, self._transport = port, transport
        self._dst_ip, self._dst_port, self._timeout = dst_ip, dst_port, timeout

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None, **_options):
        """Inject ``frames`` (RxFrame) one by one and return a PipelineResult with the board's cycle stamps.

        ``idle_probability`` and ``seed`` are for simulators: a board's
        frames enter ``rx`` at line rate, as the link injects them.
        """
        from .pipeline_device import FAST_PATH_COUNTERS, STATE_REGISTERS, PipelineResult
        transport, owned = _transport(self._port, self._transport)
        try:
            board = BoardSession(transport, pipeline_registers(self._strategy), timeout=self._timeout)
            board.start(self._strategy, dst_ip=self._dst_ip, dst_port=self._dst_port)
            out, beat_cycles = [], []
            for number, frame in enumerate(frames):
                stamp = board.inject(frame.data, frame.err)
                beat_cycles.append([stamp + beat for beat in range(-(-len(frame.data) // BEAT_BYTES))])
                out += board.collect()
                if progress:
                    progress(number + 1, len(frames))
            out += board.collect()
            counters = board.counters()
            state = board.read(STATE_REGISTERS)
            probes = board.probes()
        finally:
            if owned:
                transport.close()
        return PipelineResult(
            frames=out,
            counters={name: value for name, value in counters.items() if name not in FAST_PATH_COUNTERS},
            state=state, fast_path={name: counters[name] for name in FAST_PATH_COUNTERS},
            probes=probes, beat_cycles=beat_cycles)


class BoardSniper:
    """A board behind the race's ``Sniper`` interface (``host/sniper.py``): the gateware on hardware as sniper.

    A board's clock cannot be held between the race's events as a
    simulator's can: each feed frame goes into ``rx`` as it is injected and
    the board runs on in between. An order's race time is therefore taken
    from the board's own stamps: the race time of the latest frame fed
    before it left, plus the cycles from that frame's first beat at ``rx``
    to the order's first beat at ``tx``, at the 10GbE reference clock
    (``CLOCK_HZ``, as the simulator sessions count them; a board running its
    own slower clock takes the same cycles), rounded up to whole ns. Host
    writes (position, finished orders) go through the link as they come.
    """

    def __init__(self, strategy, *, port=None, transport=None, timeout: float = DEFAULT_TIMEOUT):
        self._transport, self._owned = _transport(port, transport)
        self.board = BoardSession(self._transport, pipeline_registers(strategy), timeout=timeout)
        self.board.start(strategy)
        self._anchors = []   # (stamp, race ns) of each frame fed, in order
        self._pending = []   # SniperOrder not yet returned, in the order they left

    def feed(self, frame: bytes, at_ns: int) -> None:
        from .sniper import CLOCK_HZ, SniperOrder
        self._anchors.append((self.board.inject(frame), at_ns))
        for sent in self.board.collect():
            if sent.aborted:
                continue
            index = bisect.bisect_right(self._anchors, sent.cycle, key=lambda anchor: anchor[0]) - 1
            if index < 0:
                raise DeviceError(f"the board sent an order at cycle {sent.cycle}, before any frame was fed")
            stamp, time_ns = self._anchors[index]
            self._pending.append(SniperOrder(time_ns + -(-(sent.cycle - stamp) * 10**9 // CLOCK_HZ), sent.data))

    def advance(self, until_ns: int) -> list:
        """The orders due by ``until_ns``, by race time (orders of a later frame can be due before
        a slower order of an earlier one)."""
        due = sorted((order for order in self._pending if order.time_ns <= until_ns), key=lambda o: o.time_ns)
        self._pending = [order for order in self._pending if order.time_ns > until_ns]
        return due

    def write_registers(self, writes, at_ns: int) -> None:
        self.board.write(writes)

    def counters(self) -> dict[str, int]:
        return self.board.counters()

    def close(self) -> None:
        if self._owned:
            self._transport.close()
