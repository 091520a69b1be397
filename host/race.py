"""The race: a scenario, the agents around the exchange, a discrete-event engine, and what it measures.

DESIGN.md ("The race") tells the story: a lead instrument L discovers the
price, the target T is the same asset on this exchange, a software market
maker quotes T around L's mid, and the sniper (the gateware) takes the maker's
quotes that a move of L left stale, before the maker can cancel them.

Agents, all on one `Exchange` (host/exchange.py):

- `lead_desk` quotes L: a bid and an ask `lead.spread_ticks` apart, of
  `lead.size` shares each. Its mid follows a random walk in ticks: moves come
  as a Poisson process of `lead.move_rate_per_s`, each one tick up or down
  (even odds), or `lead.jump_ticks` with probability `lead.jump_probability`;
  the bid never goes below one tick. `lead.moves` can script the moves
  instead ((time, ticks) pairs; the walk is then off). At each move the desk
  cancels both quotes and enters the new ones in one chunk of its order
  session, so the feed shows the move in one MoldUDP64 packet.
- `taker`: uninformed takers on T, arriving as a Poisson process of
  `takers.rate_per_s`; each buys or sells (even odds) an immediate-or-cancel
  order of `takers.min_shares`..`takers.max_shares` shares (uniform) at the
  best quote it takes, as the exchange's book shows it at that instant; with
  that side empty it sends nothing (`taker_skipped`).
- `maker`: the software market maker (host/market_maker.py), real bytes in and
  out.
- `sniper`: the gateware behind the `Sniper` interface (host/sniper.py), with
  the host logic (`SniperHost`) that writes its risk registers from the
  exchange's answers; by default the golden model (`ModelSniper`).

The lead desk and the takers act at the exchange directly (they are the
market's weather, not racers). The maker and the sniper each have latency
legs, in integer ns: feed (exchange to agent), decision, order entry (agent to
exchange), response (exchange to agent, the order session's answers).

Default legs, and where they come from (assumptions, named):

- sniper, colocated on a 10G cross-connect: 10 m of fibre (assumed) at
  4.9 ns/m is 49 ns; the FPGA's 10GBASE-R MAC and PCS take, by the published
  figures of a low-latency 10G Ethernet IP core (HiTech Global's "Low
  Latency 10G Ethernet IP Solution" product page, 32-bit mode), 70.4 +
  121.3 ns on receive and 50.0 + 77.1 ns on transmit. Feed and response
  legs 49 + 191.7, about 241 ns; order entry 49 + 127.1, about 176 ns. Its
  decision leg is its device's: `ModelSniper`'s constant
  (`legs.sniper.model_latency_ns`, 26 ns: the gateware's measured 4-cycle
  fast path), or the cycles a simulator backend counts.
- maker, on a cloud VM: 50 us one way on every leg, an assumption of half a
  ~100 us round trip between two VMs in one availability zone, kernel
  network stacks included. Its decision leg is `measured` by default: each
  call's own wall-clock as the core timed it (`MarketMaker.decision_times`),
  on the machine the race runs on; or a constant (`legs.maker.decision`, in
  ns), as the latency sweep sets it.

The maker is a single-threaded bot. Input (a feed frame, a chunk of its order
session) that reaches it while it is idle starts a decision at once, on that
input alone; input that arrives while a decision is in progress waits, and
when the decision ends the next one takes all that waited, in arrival order.
The core is called on each piece at the decision's start, and everything the
calls return leaves together when the decision ends, its decision time later
(the sum of the calls' own times when measured, the constant otherwise). A
constant of 1 s is thus a bot that refreshes once a second on whatever piled
up.

The engine: events in integer ns on a heap. Events at the same ns are
handled in the order of a key drawn for each event, when it is scheduled,
from the race's tie-break RNG (`random.Random` seeded from the race's seed
and "ties"; the lead walk and the takers each have their own seeded RNG, so
the lead's moves and the takers' times, sides and sizes do not depend on how
ties fell), then in scheduling order. What travels on one link (the feed to
one agent, one direction of one order session) arrives in the order it was
sent whatever the keys: an event of a link delivers the oldest item on it.
Causality is checked: scheduling an event before the last event handled
raises `CausalityError`, as do a link whose oldest item is not due at its
event's time and a sniper order whose consequences would reach the sniper
before the time it was already advanced to.

The sniper is advanced before each event: `sniper.advance(t)` before the
event at t, and its orders are scheduled to reach the exchange at their time
plus the entry leg. The engine may only advance it so far that nothing it
then sends can come back to it in its past: its lookahead is entry +
min(feed, response) legs. For `legs.sniper.answer_window_ns` after each of
its inputs (a frame fed, a register write) it is advanced in steps of at most
the lookahead; after that it is taken to be quiet and is advanced straight to
the next event. A device that answers later than the window breaks this, and
the engine raises `CausalityError` rather than bend time.

An order's trigger: the maker's is the feed frame of the core call that
returned it (a reaction to its order session has none and gives no
tick-to-trade sample); the sniper's is the last frame it was fed at or before
the order left (the interface gives times only). That is exact while the
device answers a frame before the next one reaches it, as it does when feed
frames are farther apart than its latency (tens of ns against microseconds
here); which quote an order is aimed at (below) does not depend on it.

Metrics (`RaceResult`):

- Latency per agent (min, p50, p99, p99.9, max by nearest rank, and the raw
  values): decision (maker: per decision that sent orders; sniper: per
  order, from its trigger frame's arrival to its first beat leaving), and
  tick-to-trade: from the exchange's publishing of the trigger frame to the
  order's arrival at the exchange (maker: per core call that sent orders).
  Advantage: p50_ratio and p99_ratio, maker over sniper tick-to-trade.
- Races (after Aquilina, Budish and O'Neill): a race is on one maker quote Q
  (a resting order of the maker's on T) between the maker's Cancel Order of
  Q and the sniper's first Enter Order aimed at Q, when both reach the
  exchange. A sniper order is aimed at Q when it is on the other side at Q's
  price and Q rested on the book as the exchange published a frame the
  sniper was fed in the answer window before the order left (the newest such
  frame; in it, the oldest such quote). The winner is whichever reached the
  exchange first (at the same ns, the one the engine handled first); in a
  batch auction, whichever the exchange acted on first: a later batch loses,
  and in one batch the cancel wins. The race's duration is the time between
  the two messages' arrivals at the exchange. A sniper order aimed at a quote the maker never cancels
  is `uncontested`, not a race. Stale quotes taken: maker quotes the sniper
  traded with. Late cancels: the maker's Cancel Orders that came after its
  order had no open shares left (the exchange's too-late cancels).
- P&L, for the maker (`mm_pnl`) and the sniper the same way, in integers of
  1/10000 dollar-shares (price units times shares). Fair value is L's mid on
  the exchange (always whole price units: L's quotes are on ticks). With
  side = +1 for the agent's buy, -1 for its sell: spread_capture = sum over
  fills of side x (fair at fill - price) x shares; markouts at 1 ms, 10 ms,
  100 ms and 1 s = sum of side x (fair at t+h - fair at fill) x shares, the
  horizon clipped at the race's end; adverse_selection is the 1 s markout;
  total = cash + position x final fair; inventory = total - spread_capture -
  adverse_selection (what holding the position after the longest horizon
  made). A quote taken after the fair value moved past it shows in spread
  capture (the fair value at the fill is already the new one), so spread
  capture is also given by counterparty: the maker's with the takers is what
  it earns, with the sniper what being sniped costs it. The P&L uses the
  exchange's fills (the agents learn of theirs a response leg later).
  Cumulative P&L (cash + position x fair) at 201 evenly spaced times, for
  plots.

Everything is deterministic for a seed except the maker's measured decision
times (and with them whatever they decide: its tick-to-trade, the races, the
P&L); `RaceResult.measured` names the measured fields, empty when the maker's
decision leg is a constant.

The exchange's design (`exchange.batch_interval_ms`): continuous by default;
with an interval, a frequent batch auction (host/exchange.py), whose batch
ends are events of the engine (at each multiple of the interval, up to the
race's end; an arrival at a batch's own ns belongs to it or to the next by
the tie rule). `race_and_sweep` also runs the counterfactual, the same
scenario and seed in the other design (`counterfactual_scenario`: a
continuous race's is the batch auction at
`exchange.counterfactual_batch_interval_ms`, 100 ms by default as Budish,
Cramton and Shim suggest; a batch race's is the continuous market), with the
golden-model sniper at the race's sniper's decision p50 (as the sweep), and
measures the maker's two runners (asyncio and the blocking loop,
host/market_maker.py's `measure_loopback`) on 127.0.0.1 with the race's
first `RUNNER_PACKETS` feed packets: round trip (UDP send to the last order
byte at a TCP server), socket legs (round trip less the core's decision),
and the core's decision, each checked to send what the core alone sends.
These are measured too (`agents.maker.implementations`), and they are
reported, not used by the race: its maker's legs stay as configured.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import heapq
import math
import os
import platform
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from .codec.net import parse_tcp_frame, parse_udp_frame
from .codec.ouch import TIME_IN_FORCE_DAY, TIME_IN_FORCE_IOC, CancelOrder, EnterOrder, decode_inbound
from .codec.soupbintcp import UnsequencedData, split_packets
from .files import read_toml
from .exchange import (MAX_PRICE, MAX_SHARES, CancelIgnored, Emission, Exchange, Fill, IgnoredCancelReason,
                       OrderAccepted, OrderCanceled, OrderRejected, OrderRested)
from .feed import PRICE_TICK
from .market_maker import Implementation, LoopbackError, MarketMaker, MarketMakerConfig, measure_loopback
from .order_types import Side
from .sniper import MODEL_LATENCY_NS, ModelSniper, Sniper, SniperHost, SniperOrder
from .strategy import StrategyError, StrategyFile, load_strategy, parse_strategy

__all__ = [
    "LEAD_DESK", "MAKER", "SNIPER", "TAKER", "LEAD_LOCATE", "TARGET_LOCATE", "MARKOUT_HORIZONS_NS", "PNL_SAMPLES",
    "RESULT_SCHEMA",
    "RaceScenarioError", "Legs", "LeadProcess", "Takers", "RaceScenario", "DEFAULT_SCENARIO_DATA", "parse_scenario",
    "load_scenario", "CausalityError", "EventQueue", "LatencyStats", "PnL", "AgentResult", "RaceStats",
    "RaceResult", "Counterfactual", "RunnerResult", "SniperFactory", "run_race", "SweepPoint", "sweep_latencies",
    "latency_sweep", "COUNTERFACTUAL_BATCH_INTERVAL_NS", "RUNNER_PACKETS", "measure_runners",
    "counterfactual_scenario", "race_and_sweep",
]

#: The exchange's participants (SoupBinTCP sessions).
LEAD_DESK, MAKER, SNIPER, TAKER = "lead_desk", "maker", "sniper", "taker"
#: Stock locates of the lead and the target on the race's exchange.
LEAD_LOCATE, TARGET_LOCATE = 1, 2
#: Markout horizons, by the name the results use; the longest is the adverse selection.
MARKOUT_HORIZONS_NS = {"1ms": 10**6, "10ms": 10**7, "100ms": 10**8, "1s": 10**9}
#: Intervals of the cumulative P&L series (it has one more point).
PNL_SAMPLES = 200
#: The version of `RaceResult.to_dict`'s layout.
RESULT_SCHEMA = "tick2trade.race/1"
#: The frequent batch auction's interval in the counterfactual race, by default (BCS 2015 suggest 100 ms or less).
COUNTERFACTUAL_BATCH_INTERVAL_NS = 100 * 10**6
#: How many of the race's feed packets the maker's two runners are measured on, at most.
RUNNER_PACKETS = 300
_MAX_DURATION_S = 3600
_MAX_BATCH_INTERVAL_MS = 60_000
_NS_PER_MS = 10**6
_MAX_LEG_NS = 10 * 10**9
_MAX_RATE_PER_S = 10**6
_NS_PER_S = 10**9
_PRICE_SCALE = 10_000


# --- the scenario ------------------------------------------------------------------------------


class RaceScenarioError(ValueError):
    """A scenario file or table is missing, not TOML, or has a bad field; the message names the field."""


@dataclass(frozen=True)
class Legs:
    """One agent's network legs in ns: feed (exchange to agent), order entry (agent to exchange), response."""

    feed_ns: int
    entry_ns: int
    response_ns: int


@dataclass(frozen=True)
class LeadProcess:
    """The lead's mid as a random walk in ticks (or scripted moves), and the lead desk's quotes around it."""

    move_rate_per_s: float
    jump_probability: float
    jump_ticks: int
    spread_ticks: int
    size: int
    moves: tuple[tuple[int, int], ...] = ()  # scripted (time_ns, ticks); the walk is off when there are any


@dataclass(frozen=True)
class Takers:
    """Uninformed takers on the target: Poisson arrivals, uniform sizes."""

    rate_per_s: float
    min_shares: int
    max_shares: int


@dataclass(frozen=True)
class RaceScenario:
    """Everything one race is made of (module docstring; examples/race.toml documents every field).

    Prices are in price units of 1/10000 dollar; `maker_decision_ns` is None
    when the maker's decision leg is measured.
    """

    name: str
    source: str
    duration_ns: int
    seed: int
    lead_symbol: str
    target_symbol: str
    start_price: int
    lead: LeadProcess
    takers: Takers
    maker: MarketMakerConfig
    sniper: StrategyFile
    maker_legs: Legs
    maker_decision_ns: int | None
    sniper_legs: Legs
    sniper_model_latency_ns: int
    sniper_answer_window_ns: int
    batch_interval_ns: int | None = None  # None: the continuous market
    counterfactual_batch_interval_ns: int | None = COUNTERFACTUAL_BATCH_INTERVAL_NS  # None: no counterfactual

    def to_dict(self) -> dict:
        """The scenario as JSON-ready data (the sniper's strategy by its registers' values)."""
        strategy = self.sniper
        return {
            "name": self.name, "source": self.source, "duration_ns": self.duration_ns, "seed": self.seed,
            "lead_symbol": self.lead_symbol, "target_symbol": self.target_symbol,
            "start_price": self.start_price,
            "lead": {**dataclasses.asdict(self.lead), "moves": [list(move) for move in self.lead.moves]},
            "takers": dataclasses.asdict(self.takers),
            "maker": {name: str(value) if isinstance(value, Decimal) else value
                      for name, value in dataclasses.asdict(self.maker).items()},
            "sniper": {"source": strategy.source, "kind": strategy.strategy.strategy.name.lower(),
                       "edge": strategy.strategy.edge, "order_size": strategy.strategy.order_size,
                       "risk": {name: int(value) for name, value in dataclasses.asdict(strategy.risk).items()}},
            "legs": {
                "maker": {**dataclasses.asdict(self.maker_legs),
                          "decision": "measured" if self.maker_decision_ns is None else self.maker_decision_ns},
                "sniper": {**dataclasses.asdict(self.sniper_legs),
                           "model_latency_ns": self.sniper_model_latency_ns,
                           "answer_window_ns": self.sniper_answer_window_ns},
            },
            "exchange": {"batch_interval_ns": self.batch_interval_ns,
                         "counterfactual_batch_interval_ns": self.counterfactual_batch_interval_ns},
        }


#: The built-in "default" scenario as TOML data; a scenario file's fields override it, field by field.
DEFAULT_SCENARIO_DATA: dict[str, Any] = {
    "name": "default",
    "duration_s": 10,
    "seed": 1,
    "instruments": {"lead": "LEAD", "target": "TGT", "start_price": "100.00"},
    "lead": {"move_rate_per_s": 50, "jump_probability": 0.1, "jump_ticks": 10, "spread_ticks": 2,
             "size": 1000, "moves": []},
    "takers": {"rate_per_s": 10, "min_shares": 10, "max_shares": 100},
    "maker": {"bid_spread": "0.0005", "ask_spread": "0.0005", "order_amount": 100,
              "order_refresh_tolerance_pct": "0", "inventory_skew_enabled": True, "inventory_target_shares": 0,
              "inventory_range_multiplier": "1"},
    "sniper": {
        "strategy": {"kind": "snipe", "edge": "0.01", "order_size": 100},
        "risk": {"kill": False, "max_qty": 1000, "max_notional": "100000", "collar": "0.50", "position": 0,
                 "max_long": 10000, "max_short": 10000, "max_outstanding": 8, "rate_burst": 100,
                 "rate_period": 15625},
    },
    "legs": {
        "maker": {"feed_ns": 50_000, "entry_ns": 50_000, "response_ns": 50_000, "decision": "measured"},
        "sniper": {"feed_ns": 241, "entry_ns": 176, "response_ns": 241, "model_latency_ns": MODEL_LATENCY_NS,
                   "answer_window_ns": 10_000},
    },
    "exchange": {"batch_interval_ms": 0, "counterfactual_batch_interval_ms": 100},
}

_BUILT_IN = {"default": DEFAULT_SCENARIO_DATA}


class _Table:
    """One table of a scenario being read: typed getters that name the field on error, unknown fields found."""

    def __init__(self, data: object, path: str):
        if not isinstance(data, dict):
            raise RaceScenarioError(f"{path or 'scenario'}: must be a table")
        self.data, self.path, self.used = data, path, set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str):
        raise RaceScenarioError(f"{self.name(key)}: {problem}")

    def get(self, key: str) -> object:
        self.used.add(key)
        if key not in self.data:
            self.fail(key, "is required")
        return self.data[key]

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.fail(key, f"must be a number from {low} to {high}, not {value!r}")
        return float(value)

    def text(self, key: str, width: int) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not 1 <= len(value) <= width or not value.isascii() \
                or not value.isprintable() or " " in value:
            self.fail(key, f"must be 1 to {width} printable ASCII characters without spaces, not {value!r}")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.get(key), self.name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], "unknown field")


def _merged(default: dict, override: dict) -> dict:
    """`default` with `override`'s fields in its place, table by table (lists and values are replaced whole)."""
    merged = dict(default)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(default.get(key), dict):
            merged[key] = _merged(default[key], value)
        else:
            merged[key] = value
    return merged


def _duration_ns(table: _Table) -> int:
    value = table.get("duration_s")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= _MAX_DURATION_S:
        table.fail("duration_s", f"must be a number of seconds above 0 and at most {_MAX_DURATION_S}, not {value!r}")
    return int(Decimal(repr(value)) * _NS_PER_S)


def _start_price(table: _Table) -> int:
    value = table.get("start_price")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        table.fail("start_price", f"must be a dollar price such as \"100.00\", not {value!r}")
    try:
        units = Decimal(str(value)) * _PRICE_SCALE
    except InvalidOperation:
        table.fail("start_price", f"must be a dollar price such as \"100.00\", not {value!r}")
    if not units.is_finite() or units % PRICE_TICK or not 0 < units <= MAX_PRICE // 2:
        table.fail("start_price", f"must be a whole number of cents above 0 and at most "
                                  f"{Decimal(MAX_PRICE // 2) / _PRICE_SCALE}, not {value!r}")
    return int(units)


def _lead_process(table: _Table, duration_ns: int) -> LeadProcess:
    moves_value = table.get("moves")
    if not isinstance(moves_value, list):
        table.fail("moves", f"must be a list of [time_ns, ticks] pairs, not {moves_value!r}")
    moves = []
    for index, move in enumerate(moves_value):
        if not (isinstance(move, list) and len(move) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in move)):
            table.fail("moves", f"move {index} must be a [time_ns, ticks] pair of integers, not {move!r}")
        time_ns, ticks = move
        if not 0 < time_ns <= duration_ns or ticks == 0:
            table.fail("moves", f"move {index} must come after 0 and by the race's end ({duration_ns} ns), "
                                f"and move by a non-zero number of ticks, not {move!r}")
        if moves and time_ns < moves[-1][0]:
            table.fail("moves", f"move {index} comes before move {index - 1}: the moves must be in time order")
        moves.append((time_ns, ticks))
    process = LeadProcess(
        move_rate_per_s=table.number("move_rate_per_s", 0, _MAX_RATE_PER_S),
        jump_probability=table.number("jump_probability", 0, 1),
        jump_ticks=table.integer("jump_ticks", 1, 10**6),
        spread_ticks=table.integer("spread_ticks", 1, 10**6),
        size=table.integer("size", 1, MAX_SHARES),
        moves=tuple(moves),
    )
    table.finish()
    return process


def _takers(table: _Table) -> Takers:
    takers = Takers(rate_per_s=table.number("rate_per_s", 0, _MAX_RATE_PER_S),
                    min_shares=table.integer("min_shares", 1, MAX_SHARES),
                    max_shares=table.integer("max_shares", 1, MAX_SHARES))
    if takers.max_shares < takers.min_shares:
        table.fail("max_shares", f"must be at least min_shares ({takers.min_shares}), not {takers.max_shares}")
    table.finish()
    return takers


_MAKER_FIELDS = ("bid_spread", "ask_spread", "order_amount", "order_refresh_tolerance_pct", "inventory_skew_enabled",
                 "inventory_target_shares", "inventory_range_multiplier")


def _maker(table: _Table, target_symbol: str) -> MarketMakerConfig:
    settings = {name: table.get(name) for name in _MAKER_FIELDS}
    table.finish()
    try:
        return MarketMakerConfig(lead_locate=LEAD_LOCATE, target_locate=TARGET_LOCATE, target_symbol=target_symbol,
                                 token_prefix="MM", firm="MMKR", price_tick=PRICE_TICK, **settings)
    except ValueError as error:
        raise RaceScenarioError(f"maker.{error}") from None


def _sniper(value: object, lead: str, target: str, base: Path | None) -> StrategyFile:
    """The sniper's strategy: a strategy-file table, or the path of a strategy file (relative to the scenario's)."""
    if isinstance(value, str):
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        where = "sniper: "  # load_strategy's messages name the file, then the field
        try:
            strategy = load_strategy(path)
        except StrategyError as error:
            raise RaceScenarioError(f"{where}{error}") from None
    elif isinstance(value, dict):
        where = "sniper."
        instruments = value.get("instruments", {})
        if isinstance(instruments, dict):
            value = {**value, "instruments": {"lead": lead, "target": target, **instruments}}
        try:
            strategy = parse_strategy(value, "scenario [sniper]")
        except StrategyError as error:
            raise RaceScenarioError(f"{where}{error}") from None
    else:
        raise RaceScenarioError(f"sniper: must be a strategy-file table or the path of a strategy file, not {value!r}")
    for role, symbol in (("lead", lead), ("target", target)):
        if strategy.instruments[role].symbol != symbol:
            raise RaceScenarioError(f"{where}instruments.{role}: must be the scenario's {role} symbol {symbol!r}, "
                                    f"not {strategy.instruments[role]}")
    return strategy


def _interval_ns(table: _Table, key: str) -> int | None:
    """A batch interval in ms (a number, 0 for none) as ns, or None."""
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_BATCH_INTERVAL_MS:
        table.fail(key, f"must be a number of ms from 0 (none) to {_MAX_BATCH_INTERVAL_MS}, not {value!r}")
    ns = int(Decimal(repr(value)) * _NS_PER_MS)
    if value and not ns:
        table.fail(key, f"must be 0 or at least 1 ns (0.000001 ms), not {value!r}")
    return ns or None


def _legs(table: _Table) -> Legs:
    return Legs(*(table.integer(name, 0, _MAX_LEG_NS) for name in ("feed_ns", "entry_ns", "response_ns")))


def parse_scenario(data: dict, *, source: str = "<data>", base: Path | None = None) -> RaceScenario:
    """A RaceScenario from TOML `data` over the built-in default; raises RaceScenarioError naming a bad field.

    `base` is the folder a sniper strategy path is relative to.
    """
    top = _Table(_merged(DEFAULT_SCENARIO_DATA, _Table(data, "").data), "")
    scenario_name = top.text("name", 64)
    duration_ns = _duration_ns(top)
    seed = top.integer("seed", 0, 2**63 - 1)
    instruments = top.table("instruments")
    lead_symbol = instruments.text("lead", 8)
    target_symbol = instruments.text("target", 8)
    if lead_symbol == target_symbol:
        instruments.fail("target", f"must differ from the lead's symbol, not {target_symbol!r}")
    start_price = _start_price(instruments)
    instruments.finish()
    lead = _lead_process(top.table("lead"), duration_ns)
    if start_price - (lead.spread_ticks // 2) * PRICE_TICK < PRICE_TICK:
        raise RaceScenarioError(f"instruments.start_price: {Decimal(start_price) / _PRICE_SCALE} is too low for a "
                                f"lead spread of {lead.spread_ticks} ticks (the bid must be at least one tick)")
    takers = _takers(top.table("takers"))
    maker = _maker(top.table("maker"), target_symbol)
    sniper = _sniper(top.get("sniper"), lead_symbol, target_symbol, base)
    legs = top.table("legs")
    maker_table, sniper_table = legs.table("maker"), legs.table("sniper")
    legs.finish()
    maker_legs = _legs(maker_table)
    decision = maker_table.get("decision")
    if decision != "measured" and (isinstance(decision, bool) or not isinstance(decision, int)
                                   or not 0 <= decision <= _MAX_LEG_NS):
        maker_table.fail("decision", f"must be \"measured\" or an integer of ns from 0 to {_MAX_LEG_NS}, "
                                     f"not {decision!r}")
    maker_table.finish()
    sniper_legs = _legs(sniper_table)
    if sniper_legs.entry_ns + min(sniper_legs.feed_ns, sniper_legs.response_ns) < 1:
        sniper_table.fail("entry_ns", "plus the smaller of feed_ns and response_ns must be at least 1 ns (the time "
                                      "before anything the sniper sends can come back to it)")
    model_latency_ns = sniper_table.integer("model_latency_ns", 0, _MAX_LEG_NS)
    window_ns = sniper_table.integer("answer_window_ns", 1, _MAX_LEG_NS)
    if window_ns < model_latency_ns:
        sniper_table.fail("answer_window_ns", f"must be at least model_latency_ns ({model_latency_ns}), "
                                              f"not {window_ns}")
    sniper_table.finish()
    exchange = top.table("exchange")
    batch_interval_ns = _interval_ns(exchange, "batch_interval_ms")
    counterfactual_ns = _interval_ns(exchange, "counterfactual_batch_interval_ms")
    exchange.finish()
    top.finish()
    return RaceScenario(
        name=scenario_name, source=source, duration_ns=duration_ns, seed=seed, lead_symbol=lead_symbol,
        target_symbol=target_symbol, start_price=start_price, lead=lead, takers=takers, maker=maker, sniper=sniper,
        maker_legs=maker_legs, maker_decision_ns=None if decision == "measured" else decision,
        sniper_legs=sniper_legs, sniper_model_latency_ns=model_latency_ns, sniper_answer_window_ns=window_ns,
        batch_interval_ns=batch_interval_ns, counterfactual_batch_interval_ns=counterfactual_ns)


def load_scenario(name_or_path: str | os.PathLike) -> RaceScenario:
    """A built-in scenario by name ("default"), or a scenario TOML file (examples/race.toml documents one)."""
    if isinstance(name_or_path, str) and name_or_path in _BUILT_IN:
        return parse_scenario(_BUILT_IN[name_or_path], source="<built-in>")
    path = Path(name_or_path)
    data = read_toml(path, RaceScenarioError, missing=f" (and not a built-in scenario: {', '.join(_BUILT_IN)})")
    try:
        return parse_scenario(data, source=str(path), base=path.parent)
    except RaceScenarioError as error:
        raise RaceScenarioError(f"{path}: {error}") from None


# --- the engine --------------------------------------------------------------------------------


class CausalityError(RuntimeError):
    """The engine was asked to handle or schedule something before a time it has already handled."""


class EventQueue:
    """Events in integer ns on a heap; ties by a key drawn from `rng` per event when scheduled, then by order.

    `now` is the time of the last event popped (0 before any). Scheduling
    an event before `now` raises `CausalityError`.
    """

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._heap: list[tuple[int, float, int, object]] = []
        self._scheduled = 0
        self.now = 0

    def schedule(self, time_ns: int, event: object) -> None:
        if not isinstance(time_ns, int) or isinstance(time_ns, bool):
            raise TypeError(f"event times are integer ns, not {time_ns!r}")
        if time_ns < self.now:
            raise CausalityError(f"event {event!r} scheduled at {time_ns} ns, before {self.now} ns, already handled")
        heapq.heappush(self._heap, (time_ns, self._rng.random(), self._scheduled, event))
        self._scheduled += 1

    def next_time(self) -> int | None:
        """The time of the next event, or None when there is none."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[int, object]:
        """The next event and its time; the queue's `now` moves to it."""
        time_ns, _key, _order, event = heapq.heappop(self._heap)
        if time_ns < self.now:
            raise CausalityError(f"event {event!r} at {time_ns} ns comes after {self.now} ns was handled")
        self.now = time_ns
        return time_ns, event


class _Kind(enum.Enum):
    LEAD_MOVE = "lead_move"
    TAKER_ARRIVAL = "taker_arrival"
    FEED_TO_MAKER = "feed_to_maker"
    FEED_TO_SNIPER = "feed_to_sniper"
    RESPONSE_TO_MAKER = "response_to_maker"
    RESPONSE_TO_SNIPER = "response_to_sniper"
    MAKER_DECISION_END = "maker_decision_end"
    MAKER_ORDER = "maker_order"  # the maker's order bytes reach the exchange
    SNIPER_ORDER = "sniper_order"
    BATCH_END = "batch_end"  # a frequent batch auction's batch ends


#: The kinds of event that carry something along a link: each link delivers in the order it was sent.
_LINKS = (_Kind.FEED_TO_MAKER, _Kind.FEED_TO_SNIPER, _Kind.RESPONSE_TO_MAKER, _Kind.RESPONSE_TO_SNIPER,
          _Kind.MAKER_ORDER, _Kind.SNIPER_ORDER)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """A latency distribution in ns: nearest-rank percentiles and the raw values (in the order taken)."""

    count: int
    min: int | None
    p50: int | None
    p99: int | None
    p99_9: int | None
    max: int | None
    values: tuple[int, ...]

    @classmethod
    def of(cls, values: Sequence[int]) -> LatencyStats:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None, None, None, None, ())

        def rank(percent: Decimal) -> int:
            return ordered[max(0, math.ceil(percent * len(ordered) / 100) - 1)]

        return cls(len(ordered), ordered[0], rank(Decimal(50)), rank(Decimal(99)), rank(Decimal("99.9")),
                   ordered[-1], tuple(values))

    def to_dict(self) -> dict:
        return {"count": self.count, "min": self.min, "p50": self.p50, "p99": self.p99, "p99.9": self.p99_9,
                "max": self.max, "values": list(self.values)}


@dataclass(frozen=True)
class PnL:
    """An agent's profit in 1/10000 dollar-shares (module docstring); the four parts add up exactly."""

    spread_capture: int
    adverse_selection: int
    inventory: int
    total: int
    markouts: dict[str, int]
    spread_capture_by_counterparty: dict[str, int]
    cash: int
    position: int
    final_fair: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AgentResult:
    """What one racer did: latencies, counts, P&L and its cumulative series ((time_ns, P&L) pairs)."""

    decision: str  # "measured", "constant" or "device"
    legs: Legs
    decision_latency: LatencyStats
    tick_to_trade_latency: LatencyStats
    counts: dict[str, int]
    pnl: PnL
    pnl_over_time: tuple[tuple[int, int], ...]
    counters: dict[str, int]

    def to_dict(self) -> dict:
        return {"decision": self.decision, "legs_ns": dataclasses.asdict(self.legs),
                "decision_latency_ns": self.decision_latency.to_dict(),
                "tick_to_trade_latency_ns": self.tick_to_trade_latency.to_dict(), "counts": dict(self.counts),
                "pnl": self.pnl.to_dict(), "pnl_over_time": [list(point) for point in self.pnl_over_time],
                "counters": dict(self.counters)}


@dataclass(frozen=True)
class RaceStats:
    """Races (module docstring): count and winners, sniper takes nobody raced, and the races' durations."""

    count: int
    sniper_wins: int
    maker_wins: int
    uncontested: int
    duration: LatencyStats

    def to_dict(self) -> dict:
        return {"count": self.count, "sniper_wins": self.sniper_wins, "maker_wins": self.maker_wins,
                "uncontested": self.uncontested, "duration_ns": self.duration.to_dict()}


@dataclass(frozen=True)
class RaceResult:
    """Everything one race measured; `to_dict` is JSON-ready.

    `measured`: the fields that were measured on this machine (wall-clock),
    empty when the run is deterministic. `market`: the lead's moves and
    jumps (moves of more than a tick), the takers' orders and arrivals that
    found no quote, feed frames published, exchange calls. `fair_value`: (time_ns, fair) at
    each change. `maker_fills`: (time_ns, side +1 buy / -1 sell, price,
    shares, fair at the fill) of each of the maker's fills.
    """

    scenario: RaceScenario
    seed: int
    measured: tuple[str, ...]
    machine: dict[str, Any]
    maker: AgentResult
    sniper: AgentResult
    races: RaceStats
    stale_quotes_taken: int
    late_cancels: int
    market: dict[str, int]
    fair_value: tuple[tuple[int, int], ...]
    maker_fills: tuple[tuple[int, int, int, int, int], ...]
    feed_packets: tuple[bytes, ...] = ()  # the first RUNNER_PACKETS MoldUDP64 packets, not in to_dict
    counterfactual: Counterfactual | None = None
    implementations: dict[str, RunnerResult] | None = None

    @property
    def advantage(self) -> dict[str, float | None]:
        """Maker over sniper tick-to-trade, at p50 and p99 (None without samples on either side)."""
        maker, sniper = self.maker.tick_to_trade_latency, self.sniper.tick_to_trade_latency
        return {"p50_ratio": _ratio(maker.p50, sniper.p50), "p99_ratio": _ratio(maker.p99, sniper.p99)}

    def to_dict(self) -> dict:
        return {
            "schema": RESULT_SCHEMA,
            "scenario": self.scenario.to_dict(),
            "seed": self.seed,
            "measured": list(self.measured),
            "machine": dict(self.machine),
            "agents": {MAKER: {**self.maker.to_dict(), **({} if self.implementations is None else {
                "implementations": {name: runner.to_dict() for name, runner in self.implementations.items()}})},
                       SNIPER: self.sniper.to_dict()},
            "advantage": self.advantage,
            "races": self.races.to_dict(),
            "stale_quotes_taken": self.stale_quotes_taken,
            "late_cancels": self.late_cancels,
            "mm_pnl": self.maker.pnl.to_dict(),
            "market": dict(self.market),
            "fair_value": [list(point) for point in self.fair_value],
            "maker_fills": [list(fill) for fill in self.maker_fills],
            **({} if self.counterfactual is None else {"counterfactual": self.counterfactual.to_dict()}),
        }


@dataclass(frozen=True)
class Counterfactual:
    """The race again in the other market design (`race_and_sweep`): what it changed, for the report.

    `batch_interval_ns` is the counterfactual's (None: continuous); `sniper`
    says how its sniper ran.
    """

    batch_interval_ns: int | None
    sniper: str
    result: RaceResult

    def to_dict(self) -> dict:
        result = self.result
        return {"batch_interval_ns": self.batch_interval_ns, "sniper": self.sniper, "seed": result.seed,
                "measured": list(result.measured), "races": result.races.to_dict(),
                "stale_quotes_taken": result.stale_quotes_taken, "late_cancels": result.late_cancels,
                "mm_pnl": result.maker.pnl.to_dict(), "sniper_pnl": result.sniper.pnl.to_dict(),
                "counts": {MAKER: dict(result.maker.counts), SNIPER: dict(result.sniper.counts)},
                "market": dict(result.market)}


@dataclass(frozen=True)
class RunnerResult:
    """One of the maker's runners measured on loopback (`measure_runners`), on the race's own feed packets.

    round trip: from just before the UDP send of a packet to the arrival of
    its last order byte at the TCP server playing the exchange, per packet
    that produced orders; socket: the round trip less the core's own
    decision time (the socket legs and the runner); decision: the core's.
    `orders_match_core`: the runner sent exactly what the core alone sends.
    `error`: why it could not be measured (the rest is then empty).
    """

    packets: int
    orders_match_core: bool
    round_trip_latency: LatencyStats
    socket_latency: LatencyStats
    decision_latency: LatencyStats
    error: str | None = None

    def to_dict(self) -> dict:
        return {"packets": self.packets, "orders_match_core": self.orders_match_core,
                "round_trip_latency_ns": self.round_trip_latency.to_dict(),
                "socket_latency_ns": self.socket_latency.to_dict(),
                "decision_latency_ns": self.decision_latency.to_dict(), "error": self.error}


def _ratio(numerator: int | None, denominator: int | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _machine() -> dict[str, Any]:
    """What the measured latencies were measured on."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": model,
            "cpus": os.cpu_count(), "python": platform.python_version()}


# --- the race ----------------------------------------------------------------------------------

#: Makes the sniper for a race: (scenario, directory of symbol -> stock locate) -> a `Sniper`.
SniperFactory = Callable[[RaceScenario, dict[str, int]], Sniper]


def _model_sniper(scenario: RaceScenario, directory: dict[str, int]) -> Sniper:
    return ModelSniper(scenario.sniper, directory, latency_ns=scenario.sniper_model_latency_ns)


@dataclass(slots=True)
class _Trade:
    """One fill of an agent's: side +1 for its buy, -1 for its sell; the fair value at the fill; who it was with."""

    time_ns: int
    side: int
    price: int
    shares: int
    fair: int
    counterparty: str


def _stream(*messages) -> bytes:
    return b"".join(UnsequencedData(message.encode()).encode() for message in messages)


def _inbound(data: bytes) -> list:
    """The OUCH messages of a client's chunk of Unsequenced Data packets."""
    packets, _rest = split_packets(data)
    return [decode_inbound(packet.message) for packet in packets if isinstance(packet, UnsequencedData)]


class _Race:
    """One run of a scenario: the exchange, the agents, the event queue and the records for the metrics."""

    def __init__(self, scenario: RaceScenario, sniper_factory: SniperFactory, seed: int,
                 progress: Callable[[int, int], None] | None):
        self.scenario = scenario
        self.seed = seed
        self.progress = progress
        self.lead_rng = random.Random(f"tick2trade-race/{seed}/lead")
        self.taker_rng = random.Random(f"tick2trade-race/{seed}/takers")
        self.queue = EventQueue(random.Random(f"tick2trade-race/{seed}/ties"))
        self.exchange = Exchange([(LEAD_LOCATE, scenario.lead_symbol), (TARGET_LOCATE, scenario.target_symbol)],
                                 (LEAD_DESK, MAKER, SNIPER, TAKER), batch_interval_ns=scenario.batch_interval_ns)
        self.maker = MarketMaker(scenario.maker)
        self.sniper = sniper_factory(scenario, {scenario.lead_symbol: LEAD_LOCATE,
                                                scenario.target_symbol: TARGET_LOCATE})
        self.host = SniperHost()
        legs = scenario.sniper_legs
        self.lookahead = legs.entry_ns + min(legs.feed_ns, legs.response_ns)
        self.handlers = {
            _Kind.LEAD_MOVE: self._lead_move, _Kind.TAKER_ARRIVAL: self._taker_arrival,
            _Kind.FEED_TO_MAKER: self._feed_to_maker, _Kind.FEED_TO_SNIPER: self._feed_to_sniper,
            _Kind.RESPONSE_TO_MAKER: self._response_to_maker, _Kind.RESPONSE_TO_SNIPER: self._response_to_sniper,
            _Kind.MAKER_DECISION_END: self._maker_decision_end, _Kind.MAKER_ORDER: self._order_at_exchange,
            _Kind.SNIPER_ORDER: self._order_at_exchange, _Kind.BATCH_END: self._batch_end,
        }
        self.links: dict[_Kind, deque[tuple[int, object]]] = {kind: deque() for kind in _LINKS}
        # the lead desk
        self.lead_bid = (2 * scenario.start_price - scenario.lead.spread_ticks * PRICE_TICK) // (2 * PRICE_TICK)
        self.lead_tokens: tuple[str, ...] = ()
        self.scripted = list(scenario.lead.moves)
        # feed frames as published: time, bytes, and the maker's resting quotes on the target just after
        self.published: list[int] = []
        self.frames: list[bytes] = []
        self.quotes_seen: list[tuple[tuple[str, Side, int], ...]] = []
        self.maker_resting: dict[str, tuple[Side, int, int]] = {}  # token -> side, price, open shares
        # fair value
        self.fair: int | None = None
        self.fair_times: list[int] = []
        self.fair_values: list[int] = []
        # the maker's bot
        self.maker_inbox: list[tuple[_Kind, object]] = []
        self.maker_busy = False
        # the sniper's clock
        self.sniper_until = 0
        self.sniper_answer_deadline = 0
        self.sniper_fed_times: list[int] = []
        self.sniper_fed_frames: list[int] = []
        # records
        self.arrivals = 0  # orders and cancels handled at the exchange, to rank same-ns arrivals
        # token -> (when handled, 0 cancel / 1 order, arrival ns, arrival rank): in batch mode a message is
        # handled at its batch's end, cancels first; in the continuous market as it arrives
        self.maker_cancel_at: dict[str, tuple[int, int, int, int]] = {}
        self.sniper_take_at: dict[str, tuple[int, int, int, int]] = {}
        self.trades: dict[str, list[_Trade]] = {MAKER: [], SNIPER: []}
        self.stale_taken: set[str] = set()
        self.sniper_shares: dict[str, int] = {}  # token -> shares entered, for orders that traded nothing
        self.decision: dict[str, list[int]] = {MAKER: [], SNIPER: []}
        self.tick_to_trade: dict[str, list[int]] = {MAKER: [], SNIPER: []}
        self.counts = {agent: dict.fromkeys(("orders", "cancels", "accepted", "rejected", "fills", "shares_traded"),
                                            0) for agent in (MAKER, SNIPER)}
        self.counts[SNIPER]["missed"] = 0
        self.late_cancels = 0
        self.market = dict.fromkeys(("lead_moves", "lead_jumps", "taker_orders", "taker_skipped", "feed_frames",
                                     "exchange_calls"), 0)

    # --- running ----------------------------------------------------------------------------------

    def run(self) -> RaceResult:
        scenario = self.scenario
        self._publish(self.exchange.open(0), 0)
        self._requote(0, 0)
        self._schedule_batch_end()
        if self.scripted:
            for time_ns, ticks in self.scripted:
                self.queue.schedule(time_ns, (_Kind.LEAD_MOVE, ticks))
        else:
            self._schedule_poisson(0, scenario.lead.move_rate_per_s, self.lead_rng, _Kind.LEAD_MOVE)
        self._schedule_poisson(0, scenario.takers.rate_per_s, self.taker_rng, _Kind.TAKER_ARRIVAL)
        end = scenario.duration_ns
        step = max(1, end // 100)
        reported = 0
        while True:
            next_time = self.queue.next_time()
            over = next_time is None or next_time > end
            if self._bring_sniper_to(end if over else next_time):
                continue  # the sniper sent orders: one may reach the exchange before next_time
            if over:
                break
            time_ns, (kind, payload) = self.queue.pop()
            if kind in self.links:
                payload = self._receive(kind, time_ns)
            self.handlers[kind](time_ns, payload)
            if self.progress is not None and time_ns // step > reported:
                reported = time_ns // step
                self.progress(time_ns, end)
        if self.progress is not None:
            self.progress(end, end)
        return self._result()

    def _send(self, link: _Kind, arrival_ns: int, item: object) -> None:
        """Put `item` on `link`, to arrive at `arrival_ns`."""
        self.links[link].append((arrival_ns, item))
        self.queue.schedule(arrival_ns, (link, None))

    def _receive(self, link: _Kind, now: int) -> object:
        """The next item on `link`, whose event is being handled at `now`: the oldest one sent."""
        arrival_ns, item = self.links[link].popleft()
        if arrival_ns != now:
            raise CausalityError(f"{link.value}: the oldest item arrives at {arrival_ns} ns, its event came at {now}")
        return item

    def _schedule_poisson(self, now: int, rate_per_s: float, rng: random.Random, kind: _Kind) -> None:
        if rate_per_s > 0:
            gap = max(1, round(rng.expovariate(rate_per_s) * _NS_PER_S))
            self.queue.schedule(now + gap, (kind, None))

    def _schedule_batch_end(self) -> None:
        end = self.exchange.next_batch_ns()
        if end is not None and end <= self.scenario.duration_ns:
            self.queue.schedule(end, (_Kind.BATCH_END, None))

    def _batch_end(self, now: int, _payload) -> None:
        self._publish(self.exchange.run_batch(now), now)
        self._schedule_batch_end()

    # --- the exchange -------------------------------------------------------------------------------

    def _publish(self, emission: Emission, now: int) -> None:
        """Record what one exchange call did, and send its frames and answers on their legs."""
        self.market["exchange_calls"] += 1
        for event in emission.events:
            self._record(event)
        top = self.exchange.top(LEAD_LOCATE)
        if top.bid is not None and top.ask is not None:
            doubled = top.bid.price + top.ask.price
            if doubled % 2:
                raise AssertionError(f"the lead's mid {doubled}/2 is not whole price units")
            if doubled // 2 != self.fair:
                self.fair = doubled // 2
                self.fair_times.append(now)
                self.fair_values.append(self.fair)
        maker_legs, sniper_legs = self.scenario.maker_legs, self.scenario.sniper_legs
        for frame in emission.feed_frames:
            index = len(self.frames)
            self.published.append(now)
            self.frames.append(frame)
            self.quotes_seen.append(tuple((token, side, price)
                                          for token, (side, price, _shares) in self.maker_resting.items()))
            self._send(_Kind.FEED_TO_MAKER, now + maker_legs.feed_ns, index)
            self._send(_Kind.FEED_TO_SNIPER, now + sniper_legs.feed_ns, index)
        self.market["feed_frames"] += len(emission.feed_frames)
        if MAKER in emission.responses:
            self._send(_Kind.RESPONSE_TO_MAKER, now + maker_legs.response_ns, emission.responses[MAKER])
        if SNIPER in emission.responses:
            self._send(_Kind.RESPONSE_TO_SNIPER, now + sniper_legs.response_ns, emission.responses[SNIPER])

    def _record(self, event) -> None:
        match event:
            case OrderAccepted(participant=participant) if participant in self.counts:
                self.counts[participant]["accepted"] += 1
                if participant == SNIPER:
                    self.sniper_shares[event.token] = event.shares
            case OrderRejected(participant=participant) if participant in self.counts:
                self.counts[participant]["rejected"] += 1
            case OrderRested(participant=participant) if participant == MAKER:
                self.maker_resting[event.token] = (event.side, event.price, event.shares)
            case Fill():
                self._fill(event)
            case OrderCanceled(participant=participant):
                if participant == MAKER and event.token in self.maker_resting:
                    self._maker_reduced(event.token, event.shares)
                elif participant == SNIPER and event.shares == self.sniper_shares.get(event.token):
                    self.counts[SNIPER]["missed"] += 1
            case CancelIgnored(participant=participant, reason=IgnoredCancelReason.TOO_LATE) if participant == MAKER:
                self.late_cancels += 1

    def _fill(self, fill: Fill) -> None:
        resting_side = -1 if fill.aggressor_side is Side.BID else 1  # the resting order bought when a seller hit it
        for participant, side, counterparty in ((fill.maker, resting_side, fill.taker),
                                                (fill.taker, -resting_side, fill.maker)):
            if participant in self.trades:
                self.trades[participant].append(_Trade(fill.time_ns, side, fill.price, fill.shares, self.fair,
                                                       counterparty))
                self.counts[participant]["fills"] += 1
                self.counts[participant]["shares_traded"] += fill.shares
        if fill.maker == MAKER and fill.maker_token in self.maker_resting:  # in a batch, maybe one of its interval
            self._maker_reduced(fill.maker_token, fill.shares)
            if fill.taker == SNIPER:
                self.stale_taken.add(fill.maker_token)

    def _maker_reduced(self, token: str, shares: int) -> None:
        side, price, open_shares = self.maker_resting[token]
        if shares >= open_shares:
            del self.maker_resting[token]
        else:
            self.maker_resting[token] = (side, price, open_shares - shares)

    def _order_at_exchange(self, now: int, payload) -> None:
        participant, data, triggers, aimed = payload
        for trigger in triggers:
            self.tick_to_trade[participant].append(now - self.published[trigger])
        batch_end = self.exchange.next_batch_ns()
        for message in _inbound(data):
            self.arrivals += 1
            if batch_end is None:
                arrival = (now, 0, now, self.arrivals)  # handled as it arrives
            else:  # handled at its batch's end, cancels first
                arrival = (batch_end, int(not isinstance(message, CancelOrder)), now, self.arrivals)
            if isinstance(message, CancelOrder):
                self.counts[participant]["cancels"] += 1
                if participant == MAKER:
                    self.maker_cancel_at.setdefault(message.token, arrival)
                continue
            self.counts[participant]["orders"] += 1
            if aimed is not None:
                self.sniper_take_at.setdefault(aimed, arrival)
        self._publish(self.exchange.receive(participant, data, now), now)

    def _aimed_at(self, order: EnterOrder, left_ns: int, fed: int) -> str | None:
        """The maker quote a sniper order that left at `left_ns` is aimed at (module docstring), or None.

        `fed` is how many frames the sniper had been fed when it left; the
        frames fed within the answer window before it are looked at, newest first.
        """
        side = Side.ASK if order.side == "B" else Side.BID
        oldest = left_ns - self.scenario.sniper_answer_window_ns
        for position in range(fed - 1, -1, -1):
            if self.sniper_fed_times[position] < oldest:
                break
            for token, quote_side, price in self.quotes_seen[self.sniper_fed_frames[position]]:
                if quote_side is side and price == order.price:
                    return token
        return None

    # --- the market's weather -------------------------------------------------------------------------

    def _lead_move(self, now: int, scripted_ticks: int | None) -> None:
        process = self.scenario.lead
        if scripted_ticks is None:
            size = process.jump_ticks if self.lead_rng.random() < process.jump_probability else 1
            ticks = size if self.lead_rng.random() < 0.5 else -size
            self._schedule_poisson(now, process.move_rate_per_s, self.lead_rng, _Kind.LEAD_MOVE)
        else:
            ticks = scripted_ticks
        self.market["lead_moves"] += 1
        self.market["lead_jumps"] += abs(ticks) > 1
        self._requote(now, ticks)

    def _requote(self, now: int, ticks: int) -> None:
        """The lead desk moves its quotes by `ticks`: cancels both and enters the new pair, in one chunk."""
        process = self.scenario.lead
        self.lead_bid = max(1, self.lead_bid + ticks)
        count = self.market["lead_moves"]
        tokens = (f"LDB{count:011d}", f"LDS{count:011d}")
        prices = (self.lead_bid * PRICE_TICK, (self.lead_bid + process.spread_ticks) * PRICE_TICK)
        messages = [CancelOrder(token, 0) for token in self.lead_tokens]
        messages += [EnterOrder(token, side, process.size, self.scenario.lead_symbol, price, TIME_IN_FORCE_DAY,
                                "LDSK", "Y", "P", "N", 0, "N", "N")
                     for token, side, price in zip(tokens, "BS", prices)]
        self.lead_tokens = tokens
        self._publish(self.exchange.receive(LEAD_DESK, _stream(*messages), now), now)

    def _taker_arrival(self, now: int, _payload) -> None:
        takers = self.scenario.takers
        buys = self.taker_rng.random() < 0.5
        shares = self.taker_rng.randint(takers.min_shares, takers.max_shares)
        self._schedule_poisson(now, takers.rate_per_s, self.taker_rng, _Kind.TAKER_ARRIVAL)
        top = self.exchange.top(TARGET_LOCATE)
        quote = top.ask if buys else top.bid
        if quote is None:
            self.market["taker_skipped"] += 1
            return
        self.market["taker_orders"] += 1
        token = f"TK{self.market['taker_orders']:012d}"
        order = EnterOrder(token, "B" if buys else "S", shares, self.scenario.target_symbol, quote.price,
                           TIME_IN_FORCE_IOC, "TAKR", "Y", "A", "N", 0, "N", "N")
        self._publish(self.exchange.submit(TAKER, order, now), now)

    # --- the maker ------------------------------------------------------------------------------------

    def _feed_to_maker(self, now: int, index: int) -> None:
        self._maker_input(now, (_Kind.FEED_TO_MAKER, index))

    def _response_to_maker(self, now: int, data: bytes) -> None:
        self._maker_input(now, (_Kind.RESPONSE_TO_MAKER, data))

    def _maker_input(self, now: int, item: tuple[_Kind, object]) -> None:
        self.maker_inbox.append(item)
        if not self.maker_busy:
            self._maker_decide(now)

    def _maker_decide(self, now: int) -> None:
        """One decision: the core on everything waiting; its orders leave when the decision ends."""
        inbox, self.maker_inbox = self.maker_inbox, []
        maker, times = self.maker, self.maker.decision_times
        sent, triggers, elapsed = [], [], 0
        for kind, item in inbox:
            if kind is _Kind.FEED_TO_MAKER:
                orders = maker.on_feed_frame(self.frames[item])
                elapsed += (times.feed_acting if orders else times.feed_idle)[-1]
                if orders:
                    triggers.append(item)
            else:
                orders = maker.on_response(item)
                elapsed += (times.response_acting if orders else times.response_idle)[-1]
            if orders:
                sent.append(orders)
        decision = elapsed if self.scenario.maker_decision_ns is None else self.scenario.maker_decision_ns
        self.maker_busy = True
        self.queue.schedule(now + decision, (_Kind.MAKER_DECISION_END, (b"".join(sent), tuple(triggers), decision)))

    def _maker_decision_end(self, now: int, payload) -> None:
        data, triggers, decision = payload
        if data:
            self.decision[MAKER].append(decision)
            self._send(_Kind.MAKER_ORDER, now + self.scenario.maker_legs.entry_ns, (MAKER, data, triggers, None))
        self.maker_busy = False
        if self.maker_inbox:
            self._maker_decide(now)

    # --- the sniper -----------------------------------------------------------------------------------

    def _bring_sniper_to(self, time_ns: int) -> bool:
        """Advance the sniper to `time_ns` (in lookahead steps inside its answer window); True if it sent orders.

        The sniper may already be past `time_ns`: an order it sent can reach
        the exchange before the time it was advanced to (nothing of that can
        reach the sniper before that time, by the lookahead).
        """
        if time_ns < self.sniper_until:
            return False
        while True:
            until = time_ns
            if self.sniper_until < self.sniper_answer_deadline:
                until = min(time_ns, self.sniper_until + self.lookahead)
            orders = self.sniper.advance(until)
            for order in orders:
                self._sniper_order(order, until)
            self.sniper_until = until
            if orders:
                return True
            if until == time_ns:
                return False

    def _sniper_order(self, order: SniperOrder, until: int) -> None:
        if not isinstance(order.time_ns, int) or order.time_ns > until or order.time_ns < self.queue.now:
            raise CausalityError(f"the sniper's advance({until}) returned an order that left at {order.time_ns!r} ns,"
                                 f" not between the last event ({self.queue.now} ns) and {until} ns")
        if order.time_ns + self.lookahead < until:
            raise CausalityError(f"the sniper sent an order at {order.time_ns} ns, seen only when advanced to {until}"
                                 f" ns: it answered later than answer_window_ns "
                                 f"({self.scenario.sniper_answer_window_ns} ns) after its input")
        fed = bisect.bisect_right(self.sniper_fed_times, order.time_ns)
        if not fed:
            raise CausalityError(f"the sniper sent an order at {order.time_ns} ns before it was fed any frame")
        trigger = self.sniper_fed_frames[fed - 1]
        self.decision[SNIPER].append(order.time_ns - self.sniper_fed_times[fed - 1])
        _eth, _ip, _tcp, payload = parse_tcp_frame(order.frame)
        aimed = None
        for message in _inbound(payload):
            if isinstance(message, EnterOrder):
                aimed = self._aimed_at(message, order.time_ns, fed)
        arrival = order.time_ns + self.scenario.sniper_legs.entry_ns
        self._send(_Kind.SNIPER_ORDER, arrival, (SNIPER, payload, (trigger,), aimed))

    def _feed_to_sniper(self, now: int, index: int) -> None:
        self.sniper.feed(self.frames[index], now)
        self.sniper_fed_times.append(now)
        self.sniper_fed_frames.append(index)
        self.sniper_answer_deadline = now + self.scenario.sniper_answer_window_ns

    def _response_to_sniper(self, now: int, data: bytes) -> None:
        writes = self.host.receive(data)
        if writes:
            self.sniper.write_registers(writes, now)
            self.sniper_answer_deadline = max(self.sniper_answer_deadline,
                                              now + self.scenario.sniper_answer_window_ns)

    # --- the results ----------------------------------------------------------------------------------

    def _fair_at(self, time_ns: int) -> int:
        return self.fair_values[bisect.bisect_right(self.fair_times, time_ns) - 1]

    def _pnl(self, trades: list[_Trade]) -> PnL:
        end = self.scenario.duration_ns
        final = self._fair_at(end)
        by_counterparty: dict[str, int] = {}
        for t in trades:
            captured = t.side * (t.fair - t.price) * t.shares
            by_counterparty[t.counterparty] = by_counterparty.get(t.counterparty, 0) + captured
        spread = sum(by_counterparty.values())
        markouts = {name: sum(t.side * (self._fair_at(min(t.time_ns + horizon, end)) - t.fair) * t.shares
                              for t in trades)
                    for name, horizon in MARKOUT_HORIZONS_NS.items()}
        adverse = markouts[max(MARKOUT_HORIZONS_NS, key=MARKOUT_HORIZONS_NS.get)]
        cash = -sum(t.side * t.price * t.shares for t in trades)
        position = sum(t.side * t.shares for t in trades)
        total = cash + position * final
        return PnL(spread, adverse, total - spread - adverse, total, markouts, dict(sorted(by_counterparty.items())),
                   cash, position, final)

    def _pnl_over_time(self, trades: list[_Trade]) -> tuple[tuple[int, int], ...]:
        end = self.scenario.duration_ns
        points, cash, position, index = [], 0, 0, 0
        for sample in range(PNL_SAMPLES + 1):
            at = end * sample // PNL_SAMPLES
            while index < len(trades) and trades[index].time_ns <= at:
                trade = trades[index]
                cash -= trade.side * trade.price * trade.shares
                position += trade.side * trade.shares
                index += 1
            points.append((at, cash + position * self._fair_at(at)))
        return tuple(points)

    def _agent(self, agent: str, decision: str, legs: Legs, counters: dict[str, int]) -> AgentResult:
        trades = self.trades[agent]
        return AgentResult(decision, legs, LatencyStats.of(self.decision[agent]),
                           LatencyStats.of(self.tick_to_trade[agent]), dict(self.counts[agent]), self._pnl(trades),
                           self._pnl_over_time(trades), counters)

    def _result(self) -> RaceResult:
        scenario = self.scenario
        measured = scenario.maker_decision_ns is None
        durations, sniper_wins = [], 0
        for token, take in self.sniper_take_at.items():
            cancel = self.maker_cancel_at.get(token)
            if cancel is not None:
                durations.append(abs(cancel[2] - take[2]))
                sniper_wins += take < cancel
        races = RaceStats(len(durations), sniper_wins, len(durations) - sniper_wins,
                          len(self.sniper_take_at) - len(durations), LatencyStats.of(durations))
        maker = self._agent(MAKER, "measured" if measured else "constant", scenario.maker_legs,
                            {"late_cancels": self.late_cancels, **self.maker.counters})
        sniper = self._agent(SNIPER, "device", scenario.sniper_legs, self.sniper.counters())
        close = getattr(self.sniper, "close", None)
        if close is not None:  # a device the race is done with (a simulator session) stops here
            close()
        return RaceResult(
            scenario=scenario, seed=self.seed,
            measured=("agents.maker.decision_latency_ns", "agents.maker.tick_to_trade_latency_ns") if measured else (),
            machine=_machine(), maker=maker, sniper=sniper, races=races, stale_quotes_taken=len(self.stale_taken),
            late_cancels=self.late_cancels, market=dict(self.market),
            fair_value=tuple(zip(self.fair_times, self.fair_values)),
            maker_fills=tuple((t.time_ns, t.side, t.price, t.shares, t.fair) for t in self.trades[MAKER]),
            feed_packets=tuple(parse_udp_frame(frame)[3] for frame in self.frames[:RUNNER_PACKETS]))


def run_race(scenario: RaceScenario, *, sniper_factory: SniperFactory | None = None, seed: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> RaceResult:
    """Run `scenario` once and measure it (module docstring).

    `sniper_factory(scenario, directory)` makes the sniper (default: the
    golden model, `ModelSniper`, at `legs.sniper.model_latency_ns`);
    `seed` replaces the scenario's; `progress(race_ns, duration_ns)` is
    called as race time goes by (every 1 % of it) and at the end.
    """
    if seed is None:
        seed = scenario.seed
    return _Race(scenario, sniper_factory or _model_sniper, seed, progress).run()


class SweepPoint(NamedTuple):
    """One race of the latency sweep: the maker's constant decision latency and how it did."""

    latency_ns: int
    maker_total_pnl: int
    races: int
    sniper_wins: int


def sweep_latencies(sniper_latency_ns: int) -> list[int]:
    """The sweep's maker decision latencies: every power of ten from 1 s down to the sniper's latency, and it."""
    latencies = [10**power for power in range(9, -1, -1) if 10**power > sniper_latency_ns]
    return latencies + [sniper_latency_ns]


def latency_sweep(scenario: RaceScenario, latencies_ns: Sequence[int], *,
                  sniper_factory: SniperFactory | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[SweepPoint]:
    """The maker's profit against its constant decision latency: one race per latency, the same seed.

    `progress(races done, races)` after each race.
    """
    points = []
    for latency_ns in latencies_ns:
        if not isinstance(latency_ns, int) or isinstance(latency_ns, bool) or not 0 <= latency_ns <= _MAX_LEG_NS:
            raise ValueError(f"a sweep latency must be an integer of ns from 0 to {_MAX_LEG_NS}, not {latency_ns!r}")
        result = run_race(dataclasses.replace(scenario, maker_decision_ns=latency_ns), sniper_factory=sniper_factory)
        points.append(SweepPoint(latency_ns, result.maker.pnl.total, result.races.count, result.races.sniper_wins))
        if progress:
            progress(len(points), len(latencies_ns))
    return points


def _with_model_sniper(scenario: RaceScenario, sniper_ns: int) -> RaceScenario:
    """`scenario` with the golden-model sniper's latency at `sniper_ns` (and an answer window that allows it)."""
    return dataclasses.replace(scenario, sniper_model_latency_ns=sniper_ns,
                               sniper_answer_window_ns=max(scenario.sniper_answer_window_ns, sniper_ns))


def measure_runners(config: MarketMakerConfig, packets: Sequence[bytes], *,
                    timeout_s: float = 10.0) -> dict[str, RunnerResult]:
    """Both of the maker's runners (asyncio, blocking) on loopback with `packets`, by `measure_loopback`.

    A runner that cannot be measured (`LoopbackError`) is reported with its
    error rather than stopping the race's report.
    """
    reference = MarketMaker(config)
    expected = tuple(reference.on_mold_packet(packet) for packet in packets)
    measured = {}
    for implementation in Implementation:
        try:
            loopback = measure_loopback(implementation.value, packets, config, timeout_s=timeout_s)
        except LoopbackError as error:
            empty = LatencyStats.of(())
            measured[implementation.value] = RunnerResult(len(packets), False, empty, empty, empty,
                                                          str(error).splitlines()[0])
            continue
        measured[implementation.value] = RunnerResult(
            len(packets), loopback.orders == expected, LatencyStats.of(loopback.round_trip_ns),
            LatencyStats.of(loopback.socket_ns), LatencyStats.of(loopback.decision.feed_acting))
    return measured


def counterfactual_scenario(scenario: RaceScenario, sniper_ns: int) -> RaceScenario | None:
    """`scenario` in the other market design, with the golden-model sniper at `sniper_ns`; None if there is none.

    A continuous race's counterfactual is the frequent batch auction at
    `counterfactual_batch_interval_ns`; a batch race's is the continuous market.
    """
    if scenario.batch_interval_ns is None and scenario.counterfactual_batch_interval_ns is None:
        return None
    interval = scenario.counterfactual_batch_interval_ns if scenario.batch_interval_ns is None else None
    return dataclasses.replace(_with_model_sniper(scenario, sniper_ns), batch_interval_ns=interval)


def race_and_sweep(scenario: RaceScenario, *, sniper_factory: SniperFactory | None = None, sweep: bool = True,
                   counterfactual: bool = True, runners: bool = True,
                   progress: Callable[[str, int, int], None] | None = None
                   ) -> tuple[RaceResult, list[SweepPoint] | None]:
    """The race of `scenario` with `sniper_factory`'s sniper, its counterfactual, its runners, then the sweep.

    With `counterfactual`, the same scenario and seed run again in the other
    market design (`counterfactual_scenario`; the result's `counterfactual`).
    With `runners`, the maker's two runners are measured on loopback on the
    race's first `RUNNER_PACKETS` feed packets (`measure_runners`; the
    result's `implementations`). With `sweep`, the maker-latency sweep. The
    counterfactual and the sweep run the golden-model sniper at the decision
    latency the race's sniper just showed (its p50), so that after a
    simulator race they stand for the gateware. `progress(what, done,
    total)` follows the races.
    """
    result = run_race(scenario, sniper_factory=sniper_factory,
                      progress=progress and (lambda done, total: progress("race, ns", done, total)))
    sniper_ns = result.sniper.decision_latency.p50 or scenario.sniper_model_latency_ns
    other = counterfactual_scenario(scenario, sniper_ns) if counterfactual else None
    if other is not None:
        what = "counterfactual race, ns"
        again = run_race(other, progress=progress and (lambda done, total: progress(what, done, total)))
        result = dataclasses.replace(result, counterfactual=Counterfactual(
            other.batch_interval_ns, f"golden model at {sniper_ns} ns", again))
    if runners:
        implementations = measure_runners(scenario.maker, result.feed_packets)
        result = dataclasses.replace(result, implementations=implementations,
                                     measured=(*result.measured, "agents.maker.implementations"))
    if not sweep:
        return result, None
    return result, latency_sweep(_with_model_sniper(scenario, sniper_ns), sweep_latencies(sniper_ns),
                                 progress=progress and (lambda done, total: progress("latency sweep, races",
                                                                                     done, total)))

