"""The race's sniper behind one interface, and the host logic a board needs around it.

The gateware is the sniper (DESIGN.md, "The race"). The race engine talks to
it only through `Sniper`, so that the golden model (`ModelSniper`, here), a
simulator backend and later a board can stand in for one another:

- `feed(frame, at_ns)`: a feed frame (Ethernet/IPv4/UDP, no FCS) reaches
  `rx`, its first beat at race time `at_ns`;
- `advance(until_ns)`: the order frames whose first beat left `tx` at or
  before `until_ns`, in the order they left, each returned once, as
  `SniperOrder` (race time, Ethernet/IPv4/TCP frame without FCS);
- `write_registers(writes, at_ns)`: (register name, value) writes, with the
  names of `hdl/pipeline.py` (as `pipeline_device.register_writes` uses them);
- `counters()`: the device's counters by name;
- `close()`, if it has one: the race calls it once it has read the counters
  (a simulator session ends there, before anything else runs).

Calls come with non-decreasing times: a feed or a write at `at_ns` is not
before the last advance's `until_ns`, and an advance is not before the last
feed or write.

`ModelSniper` is `PipelineModel` behind that interface. The model has no
timing, so every order of a frame fed at t leaves at t + `latency_ns`, a
constant. The race's default, `MODEL_LATENCY_NS`, is the gateware's measured
fast-path latency of 4 cycles (docs/pipeline.md), 25.6 ns at the 10GbE
reference clock of 156.25 MHz, rounded up to the engine's whole nanoseconds:
26 ns. That figure is an actionable latency, counted from the trigger field's
last byte, so the constant leaves out the beats of the frame before it; a
simulator backend replaces the constant by the cycles each order really took
from the frame's first beat. The model's risk gate is given each frame's cycle
(`at_ns` at 156.25 MHz) so that its rate-limit bucket refills as in hardware.

`SniperHost` is what a host does for the board (issue 4: the sniper's risk
position and outstanding orders are updated from the exchange's responses
through the registers): it reads the exchange's SoupBinTCP bytes on the
sniper's order session, in any chunking, decodes the OUCH answers and returns
the register writes they call for:

- `position` after each execution: the new position in shares (buys add,
  sells subtract), written as the signed 32-bit register holds it, two's
  complement in 32 bits (`position % 2**32`, as `register_writes` writes it);
- `orders_done` once per chunk that finished orders: how many became final.
  The sniper's orders are immediate-or-cancel: one is final once its shares
  are all executed or cancelled (the exchange cancels an IOC's rest at once),
  or when it is rejected.

It keeps the position, the cash (price units of 1/10000 dollar times shares:
a sale adds, a purchase subtracts) and the fills, for the race's metrics.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .codec.ouch import Accepted, Canceled, Executed, Rejected, decode_outbound
from .codec.ouch import SystemEvent as OuchSystemEvent
from .codec.soupbintcp import SequencedData, split_packets
from .order_types import Side
from .pipeline_model import PipelineModel
from .strategy import StrategyFile

__all__ = ["sniper_factory", "SNIPER_BACKENDS", "CLOCK_HZ", "FAST_PATH_CYCLES", "MODEL_LATENCY_NS", "SniperOrder", "Sniper", "ModelSniper",
           "SniperFill", "SniperHost", "HostProtocolError", "position_register"]

#: The 10GbE reference clock the gateware runs at (6.4 ns per cycle).
CLOCK_HZ = 156_250_000
#: The gateware's measured fast-path latency in cycles (docs/pipeline.md, "Latency").
FAST_PATH_CYCLES = 4
#: `ModelSniper`'s default latency: 4 cycles x 6.4 ns = 25.6 ns, rounded up to whole nanoseconds.
MODEL_LATENCY_NS = -(-FAST_PATH_CYCLES * 10**9 // CLOCK_HZ)
_WORD = 1 << 32
_SIGN = 1 << 31
_OUCH_SIDES = {"B": Side.BID, "S": Side.ASK, "T": Side.ASK, "E": Side.ASK}


@dataclass(frozen=True)
class SniperOrder:
    """An order as it left the sniper's `tx`."""

    time_ns: int  # race time the order frame's first beat left tx
    frame: bytes  # the Ethernet/IPv4/TCP frame as it left tx (no FCS)


class Sniper(Protocol):
    """The race's view of the sniper (module docstring); times are race nanoseconds, non-decreasing."""

    def feed(self, frame: bytes, at_ns: int) -> None: ...

    def advance(self, until_ns: int) -> list[SniperOrder]: ...

    def write_registers(self, writes: list[tuple[str, int]], at_ns: int) -> None: ...

    def counters(self) -> dict[str, int]: ...


#: Where the race's sniper runs: the golden model, or the gateware in a simulator session.
SNIPER_BACKENDS = ("model", "verilator", "icarus")


def sniper_factory(backend: str, opened: list):
    """The race's sniper factory for `backend` (one of SNIPER_BACKENDS, or "serial:PORT").

    "model": None, the race's default (`ModelSniper`). A simulator: the
    gateware in a session (`sim/pipeline_session.py`, `SessionSniper`);
    "serial:PORT": a board (`host/serial_device.py`, `BoardSniper`); each
    configured from the scenario's strategy, and appended to `opened`, for
    the caller to close.
    """
    from .serial_device import serial_port
    port = serial_port(backend)
    if backend not in SNIPER_BACKENDS and port is None:
        raise ValueError(f"unknown sniper backend {backend!r}; choose one of {', '.join(SNIPER_BACKENDS)}, "
                         f"or serial:PORT")
    if backend == "model":
        return None

    def factory(scenario, directory):
        from .strategy import resolve_instruments
        strategy = copy.deepcopy(scenario.sniper)
        resolve_instruments(strategy, directory)
        if port is not None:
            from .serial_device import BoardSniper
            sniper = BoardSniper(strategy, port=port)
        else:
            from ..sim.pipeline_session import SessionSniper
            sniper = SessionSniper(strategy, simulator=backend)
        opened.append(sniper)
        return sniper
    return factory


def position_register(position: int) -> int:
    """The `position` register's value for a signed position: two's complement in 32 bits."""
    if not -_SIGN <= position < _SIGN:
        raise ValueError(f"position {position} does not fit the signed 32-bit register")
    return position % _WORD


class ModelSniper:
    """The golden model (`PipelineModel`) behind the `Sniper` interface, with a constant latency.

    `strategy` is a strategy file (copied: the model resolves its
    instruments in its own copy); `directory` maps symbol -> stock locate
    as the feed's Stock Directory gives it. Register writes: `position`
    (the 32-bit register value, `position_register`) and `orders_done`
    (a count); any other name raises ValueError, as the model keeps no
    other register the race writes.
    """

    def __init__(self, strategy: StrategyFile, directory: dict[str, int], *, latency_ns: int = MODEL_LATENCY_NS):
        if not isinstance(latency_ns, int) or isinstance(latency_ns, bool) or latency_ns < 0:
            raise ValueError(f"latency_ns must be an int of 0 or more, not {latency_ns!r}")
        self.latency_ns = latency_ns
        self.model = PipelineModel(copy.deepcopy(strategy), directory=directory)
        self._pending: deque[SniperOrder] = deque()
        self._now_ns = 0

    def feed(self, frame: bytes, at_ns: int) -> None:
        self._reach(at_ns, "feed")
        cycle = at_ns * CLOCK_HZ // 10**9
        for order in self.model.process(frame, cycle=cycle):
            self._pending.append(SniperOrder(at_ns + self.latency_ns, order.frame))

    def advance(self, until_ns: int) -> list[SniperOrder]:
        self._reach(until_ns, "advance")
        due = []
        while self._pending and self._pending[0].time_ns <= until_ns:
            due.append(self._pending.popleft())
        return due

    def write_registers(self, writes: list[tuple[str, int]], at_ns: int) -> None:
        self._reach(at_ns, "write_registers")
        risk = self.model.risk
        for name, value in writes:
            if not isinstance(value, int) or not 0 <= value < _WORD:
                raise ValueError(f"register {name}: {value!r} is not a 32-bit value")
            if name == "position":
                risk.set_position(value - _WORD if value & _SIGN else value)
            elif name == "orders_done":
                risk.orders_done(value)
            else:
                raise ValueError(f"register {name!r}: ModelSniper takes writes of position and orders_done only")

    def counters(self) -> dict[str, int]:
        return dict(self.model.counters())

    def _reach(self, time_ns: int, call: str) -> None:
        if not isinstance(time_ns, int) or isinstance(time_ns, bool) or time_ns < self._now_ns:
            raise ValueError(f"{call}: time {time_ns!r} ns is before the last call's {self._now_ns} ns")
        self._now_ns = time_ns


# --- the host ------------------------------------------------------------------------------------


class HostProtocolError(ValueError):
    """The exchange answered about an order the host never saw accepted, or sent something not OUCH 4.2."""


@dataclass(frozen=True, slots=True)
class SniperFill:
    """One execution of a sniper order; `time_ns` is the Executed timestamp (ns since midnight)."""

    time_ns: int
    token: str
    side: Side
    price: int
    shares: int
    match_number: int


class SniperHost:
    """The host beside the board: OUCH answers in, register writes out (module docstring).

    State: `position` (shares, signed), `cash` (price units x shares),
    `fills`, `orders_done` (orders that became final so far), and
    `open_orders` (token -> (side, open shares) of accepted orders not yet final).
    """

    def __init__(self):
        self.position = 0
        self.cash = 0
        self.fills: list[SniperFill] = []
        self.orders_done = 0
        self.open_orders: dict[str, tuple[Side, int]] = {}
        self._buffer = b""

    def receive(self, data: bytes) -> list[tuple[str, int]]:
        """A chunk of the order session's bytes from the exchange: the register writes it calls for, in order."""
        packets, self._buffer = split_packets(self._buffer + bytes(data))
        writes = []
        done = 0
        for packet in packets:
            if not isinstance(packet, SequencedData):
                continue  # heartbeats and session packets carry no OUCH
            message = decode_outbound(packet.message)
            match message:
                case OuchSystemEvent():
                    continue
                case Accepted():
                    side = _OUCH_SIDES.get(message.side)
                    if side is None:
                        raise HostProtocolError(f"Accepted {message.token!r}: side {message.side!r} is not B, S, T "
                                                "or E")
                    self.open_orders[message.token] = (side, message.shares)
                case Executed():
                    side = self._open(message.token, "Executed")[0]
                    shares, price = message.executed_shares, message.execution_price
                    bought = shares if side is Side.BID else -shares
                    self.position += bought
                    self.cash -= bought * price
                    self.fills.append(SniperFill(message.timestamp, message.token, side, price, shares,
                                                 message.match_number))
                    writes.append(("position", position_register(self.position)))
                    done += self._reduce(message.token, shares)
                case Canceled():
                    self._open(message.token, "Canceled")
                    done += self._reduce(message.token, message.decrement_shares)
                case Rejected():
                    done += 1  # never accepted: final at once
        if done:
            self.orders_done += done
            writes.append(("orders_done", done))
        return writes

    def _open(self, token: str, what: str) -> tuple[Side, int]:
        order = self.open_orders.get(token)
        if order is None:
            raise HostProtocolError(f"{what} for order {token!r}, which is not an open order of the sniper's")
        return order

    def _reduce(self, token: str, shares: int) -> int:
        """`shares` of the open order `token` are gone; 1 if that made it final, else 0."""
        side, open_shares = self.open_orders[token]
        if shares >= open_shares:
            del self.open_orders[token]
            return 1
        self.open_orders[token] = (side, open_shares - shares)
        return 0
