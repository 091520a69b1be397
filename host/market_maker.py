"""The software market maker: hummingbot-style pure market making whose whole code path is real, bytes in, bytes out.

It quotes the target instrument T around a fair value, the mid of a lead
instrument L, as an exchange's in-house market maker written in Python would
(DESIGN.md, "The race"). Its parameters are named as in hummingbot's pure
market making strategy. It is written so that its decision latency can be
measured, not assumed: `MarketMaker` takes the feed's and the order session's
bytes and returns order bytes, and times every call.

The core, `MarketMaker`, does no I/O:

- `on_feed_frame(frame)` takes an Ethernet/IPv4/UDP frame of the feed as the
  exchange publishes it; `on_mold_packet(payload)` takes its UDP payload (the
  MoldUDP64 packet, what a UDP socket delivers). Both return the SoupBinTCP
  bytes of the OUCH 4.2 orders the maker sends in response, or b"".
- `on_response(data)` takes the exchange's SoupBinTCP bytes on the maker's
  order session (any chunking: a packet cut in two is kept until the rest
  arrives) and returns orders likewise.

Feed handling reuses the golden receive model (host/rx_model.py): its frame
filter (the feed's destination address and port), its MoldUDP64 sequence
tracking (duplicates skipped, gaps flagged) and its ITCH framing; the maker
then decodes, with the ITCH codec, only the messages of the lead's and the
target's stock locates and the System Events. It keeps one book per
instrument, order by order, from Add Order (A, F), Order Executed (E, C),
Order Cancel (X), Order Delete (D) and Order Replace (U): the levels and the
best bid and offer are exact. The lead's book gives the fair value; the
target's book is what the market shows of the maker's own quotes (and of
anyone else's), kept for the race and the reports (`target_top`).

Decisions, once per MoldUDP64 packet (after all its messages, as a bot that
parses a datagram and then acts), and only when what they depend on changed:
market hours (System Event 'Q' opens them, 'M' closes them), the feed's
reliability, or the lead's best prices:

- Fair value: (lead best bid + lead best ask) / 2, exactly (half a price
  unit kept). Desired bid = fair x (1 - bid_spread) rounded down to
  `price_tick`, desired ask = fair x (1 + ask_spread) rounded up (so a
  quote is never tighter than its spread), both in integer arithmetic on the
  exact fractions: no float rounding decides a tick.
- Refresh (hummingbot's order_refresh_tolerance_pct): a live quote is stale
  when |desired price - its price| / its price is more than the tolerance
  (percent: 1 means 1 %, as in hummingbot's configuration). A stale quote is
  replaced by Cancel Order (to 0 shares) followed by a new Enter Order (day,
  limit): OUCH 4.2's Replace Order is neither in the codecs nor served by
  the exchange, and cancel-then-create is what hummingbot does. The cancels
  of a decision go first in its bytes: the cancel is what races the sniper.
  Unlike hummingbot, which then refreshes both sides, only the stale side
  is replaced (the other is still near its desired price), unless the new
  quote would trade with the maker's own quote kept on the other side
  (possible when the tolerance is wider than the spreads): that one is
  replaced too. Others' orders on the target are not looked at (no
  take_if_crossed check as hummingbot's): in DESIGN.md's race the maker
  is the one resting there, the sniper sends immediate-or-cancel orders.
  As in hummingbot, the tolerance looks at prices only: a quote whose
  desired size changed (inventory skew) keeps its size until its price is
  refreshed.
- No quotes (the live ones are cancelled) before the market hours, after
  them, while the lead lacks a side, and for the rest of the session after
  a MoldUDP64 gap (the books are no longer exact and the maker has no
  re-request or snapshot to repair them).

Order session: the maker counts an order from the moment it sends it
(`OrderState.PENDING`): one TCP stream keeps a cancel behind its enter, so it
never waits for Accepted. Accepted makes it `LIVE`; a sent cancel makes it
`CANCELING` (a fill may still come: the cancel may be too late). Executed
changes `inventory` (shares, negative when short) and `cash` (price units of
1/10000 dollar times shares: a sale adds, a purchase subtracts) and is kept
in `fills`, the race's P&L inputs. A quote filled completely is replaced at
once by a new quote of that side (hummingbot re-creates orders after a
fill; filled_order_delay 0); a partial fill leaves the rest of the quote
live with its time priority. A Canceled the maker did not ask for also
brings a new quote of that side. A Rejected drops the order and its side
is quoted again at the next decision on the feed, not at once (an order the
exchange refuses would otherwise be refused in a loop).

Inventory skew (`inventory_skew_sizes`): hummingbot scales the bid and ask
sizes by how far the base asset's value is from its target, linear inside a
range of order_amount x inventory_range_multiplier and bounded outside it:
bid ratio = 1 - clip((inventory - target) / range, -1, 1), ask ratio =
2 - bid ratio (its inventory_skew_calculator, whose two interpolations are
this one line). This maker has no base and quote balances, only a position
that starts at 0 and may go short, so the rule is applied in shares, with a
target position in shares (`inventory_target_shares`) instead of
hummingbot's inventory_target_base_pct of the portfolio. Sizes are rounded
down to whole shares; a side of size 0 is not quoted.

Tokens are `token_prefix` followed by a decimal counter from 1, zero-padded
to the OUCH token's 14 characters.

Latency: every call of the three entry points is timed with
`time.perf_counter_ns` and kept in `decision_times`, split by entry (feed or
order session) and by whether it sent orders. The `hdrhistogram` package is
not installed in the project's environment, so the distributions are plain
lists of nanoseconds.

Two runners put the same core behind real sockets, for measuring the socket
legs: `run_asyncio` (an asyncio DatagramProtocol on the feed, an asyncio
stream for the orders, as typical Python bots are written) and
`run_blocking` (a tight loop: blocking recv on the feed's UDP socket,
sendall on the order session). `measure_loopback` runs either in a child
process on 127.0.0.1 and measures, per packet, from the UDP send to the
arrival of the order bytes at a TCP server playing the exchange.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import ipaddress
import math
import multiprocessing
import socket
import traceback
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from time import perf_counter_ns

from .codec import itch
from .codec.ouch import (TIME_IN_FORCE_DAY, Accepted, CancelOrder, Canceled, EnterOrder, Executed, Rejected,
                         decode_outbound)
from .codec.ouch import SystemEvent as OuchSystemEvent
from .codec.soupbintcp import SequencedData, UnsequencedData, split_packets
from .exchange import MAX_PRICE, MAX_SHARES, BookTop, Level
from .feed import PRICE_TICK
from .order_types import Side, side_code
from .rx_model import DEFAULT_DST_IP, DEFAULT_DST_PORT, Counters, ItchSplitModel, MoldUdp64RxModel, UdpRxModel

__all__ = [
    "UNKNOWN_REF",
    "MarketMakerConfig",
    "OrderState",
    "MakerOrder",
    "MakerFill",
    "DecisionTimes",
    "MarketMaker",
    "inventory_skew_sizes",
    "Implementation",
    "LoopbackError",
    "LoopbackMeasurement",
    "run_blocking",
    "run_asyncio",
    "measure_loopback",
]

_MAX_LOCATE = 0xFFFF
_SYMBOL_WIDTH = 8
_TOKEN_WIDTH = 14
_MAX_TOKEN_PREFIX = 6  # leaves 8 digits: 99,999,999 orders per session
_FIRM_WIDTH = 4
_ITCH_SIDES = {"B": Side.BID, "S": Side.ASK}
_BOTH_SIDES = (Side.BID, Side.ASK)
_MARKET_HOURS_START = "Q"
_MARKET_HOURS_END = "M"
# The Enter Order fields the maker does not vary: displayed, principal, no intermarket sweep, no minimum
# quantity, no cross, not a retail order.
_DISPLAY = "Y"
_CAPACITY_PRINCIPAL = "P"
_NO_INTERMARKET_SWEEP = "N"
_NO_MINIMUM_QUANTITY = 0
_NO_CROSS = "N"
_NOT_RETAIL = "N"
_CANCEL_ALL = 0
#: The counter of book messages naming an order never added (host/book_model.py's name).
UNKNOWN_REF = "book_unknown_ref"


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketMakerConfig:
    """The market maker's parameters, named as in hummingbot's pure market making where it has them.

    `bid_spread` and `ask_spread` are fractions of the fair value (0.001 is
    0.1 %), as hummingbot's strategy takes them; `order_refresh_tolerance_pct`
    is a percent (1 is 1 %), as hummingbot's configuration writes it; both
    are kept as exact `Decimal`s (a float is read by its shortest repr, so
    0.001 is Decimal("0.001")). `order_amount` is in shares;
    `inventory_target_shares` and `inventory_range_multiplier` set the skew
    (module docstring). `price_tick` is in price units (100 = $0.01).
    `feed_ip` and `feed_port` are the feed's destination, which the frame
    filter of `on_feed_frame` keeps. Every field is checked: a bad one raises
    ValueError naming it.
    """

    lead_locate: int
    target_locate: int
    target_symbol: str
    bid_spread: Decimal = Decimal("0.001")
    ask_spread: Decimal = Decimal("0.001")
    order_amount: int = 100
    order_refresh_tolerance_pct: Decimal = Decimal("0")
    inventory_skew_enabled: bool = False
    inventory_target_shares: int = 0
    inventory_range_multiplier: Decimal = Decimal("1")
    token_prefix: str = "MM"
    firm: str = "MMKR"
    price_tick: int = PRICE_TICK
    feed_ip: str = DEFAULT_DST_IP
    feed_port: int = DEFAULT_DST_PORT

    def __post_init__(self):
        _check_int("lead_locate", self.lead_locate, 1, _MAX_LOCATE)
        _check_int("target_locate", self.target_locate, 1, _MAX_LOCATE)
        if self.target_locate == self.lead_locate:
            raise ValueError(f"target_locate: must differ from lead_locate, not {self.target_locate!r}")
        _check_text("target_symbol", self.target_symbol, _SYMBOL_WIDTH, "ASCII characters without spaces",
                    lambda c: c.isascii() and c.isprintable() and c != " ")
        for name in ("bid_spread", "ask_spread"):
            spread = self._set_decimal(name)
            if not 0 <= spread < 1:
                raise ValueError(f"{name}: must be a fraction from 0 up to 1 (excluded), not {spread}")
        if self.bid_spread == self.ask_spread == 0:
            raise ValueError("ask_spread: must be more than 0 when bid_spread is 0 (at a fair value on a tick "
                             "the bid would meet the ask and the maker trade with itself)")
        if not isinstance(self.inventory_skew_enabled, bool):
            raise ValueError(f"inventory_skew_enabled: must be a bool, not {self.inventory_skew_enabled!r}")
        max_amount = MAX_SHARES // 2 if self.inventory_skew_enabled else MAX_SHARES  # skew sizes reach 2x
        _check_int("order_amount", self.order_amount, 1, max_amount)
        if self._set_decimal("order_refresh_tolerance_pct") < 0:
            raise ValueError(f"order_refresh_tolerance_pct: must be 0 or more, not "
                             f"{self.order_refresh_tolerance_pct}")
        _check_int("inventory_target_shares", self.inventory_target_shares, -MAX_SHARES, MAX_SHARES)
        if self._set_decimal("inventory_range_multiplier") <= 0:
            raise ValueError(f"inventory_range_multiplier: must be more than 0, not "
                             f"{self.inventory_range_multiplier}")
        _check_text("token_prefix", self.token_prefix, _MAX_TOKEN_PREFIX, "ASCII letters and digits",
                    lambda c: c.isascii() and c.isalnum())
        _check_text("firm", self.firm, _FIRM_WIDTH, "ASCII letters and digits",
                    lambda c: c.isascii() and c.isalnum())
        _check_int("price_tick", self.price_tick, 1, MAX_PRICE)
        try:
            ipaddress.IPv4Address(self.feed_ip)
        except ValueError:
            raise ValueError(f"feed_ip: must be an IPv4 address, not {self.feed_ip!r}") from None
        _check_int("feed_port", self.feed_port, 1, 0xFFFF)

    def _set_decimal(self, name: str) -> Decimal:
        """Replace the field `name` by its exact, finite Decimal value and return it."""
        value = getattr(self, name)
        try:
            if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
                raise TypeError
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except (TypeError, InvalidOperation):
            raise ValueError(f"{name}: must be a number, not {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"{name}: must be finite, not {value!r}")
        object.__setattr__(self, name, number)
        return number


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name}: must be an int from {low} to {high}, not {value!r}")


def _check_text(name: str, value: object, width: int, what: str, allowed: Callable[[str], bool]) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= width or not all(map(allowed, value)):
        raise ValueError(f"{name}: must be 1 to {width} {what}, not {value!r}")


def inventory_skew_sizes(config: MarketMakerConfig, inventory: int) -> dict[Side, int]:
    """The bid and ask sizes at `inventory` (shares), by the inventory skew rule of the module docstring.

    Without skew both are `order_amount`.
    """
    amount = config.order_amount
    if not config.inventory_skew_enabled:
        return {Side.BID: amount, Side.ASK: amount}
    span = amount * Fraction(config.inventory_range_multiplier)
    excess = min(max(Fraction(inventory - config.inventory_target_shares) / span, Fraction(-1)), Fraction(1))
    return {Side.BID: math.floor(amount * (1 - excess)), Side.ASK: math.floor(amount * (1 + excess))}


# --- what the maker keeps -------------------------------------------------------------------


class OrderState(enum.Enum):
    """Where one of the maker's orders is, as the maker knows it."""

    PENDING = "pending"  # sent, not yet accepted
    LIVE = "live"  # accepted, and the maker's quote of its side
    CANCELING = "canceling"  # a cancel was sent; a fill may still come


@dataclass(frozen=True, slots=True)
class MakerOrder:
    """One of the maker's orders with open shares; `order_ref` is the exchange's, None until Accepted."""

    token: str
    side: Side
    price: int
    shares: int
    state: OrderState
    order_ref: int | None = None


@dataclass(frozen=True, slots=True)
class MakerFill:
    """One execution of a maker's order: `time_ns` is the Executed timestamp (ns since midnight)."""

    time_ns: int
    side: Side
    price: int
    shares: int
    token: str
    match_number: int


@dataclass
class DecisionTimes:
    """Wall-clock nanoseconds of each call of the core, by entry and by whether the call sent orders.

    `feed_*`: `on_feed_frame` and `on_mold_packet`; `response_*`: `on_response`.
    """

    feed_acting: list[int] = field(default_factory=list)
    feed_idle: list[int] = field(default_factory=list)
    response_acting: list[int] = field(default_factory=list)
    response_idle: list[int] = field(default_factory=list)


class _Book:
    """One instrument's book from ITCH, order by order: every order's side, price and open shares, and per
    side the levels (price to [shares, orders]) with their prices sorted ascending.

    A message naming an order the book never saw added (the maker joined the feed after it was) counts in
    `counters` under `UNKNOWN_REF` and changes nothing.
    """

    __slots__ = ("orders", "levels", "prices", "counters")

    def __init__(self, counters: Counters):
        self.orders: dict[int, tuple[Side, int, int]] = {}
        self.levels: dict[Side, dict[int, list[int]]] = {Side.BID: {}, Side.ASK: {}}
        self.prices: dict[Side, list[int]] = {Side.BID: [], Side.ASK: []}
        self.counters = counters

    def apply(self, message: itch.Message) -> None:
        match message:
            case itch.AddOrder():  # and AddOrderMpid
                self._add(message.order_ref, _ITCH_SIDES[message.side], message.price, message.shares)
            case itch.OrderExecuted():  # and OrderExecutedWithPrice
                self._take(message.order_ref, message.executed_shares)
            case itch.OrderCancel():
                self._take(message.order_ref, message.cancelled_shares)
            case itch.OrderDelete():
                self._delete(message.order_ref)
            case itch.OrderReplace():
                side = self._delete(message.original_order_ref)
                if side is not None:
                    self._add(message.new_order_ref, side, message.price, message.shares)

    def best_prices(self) -> tuple[int | None, int | None]:
        """The best bid and best ask prices, None for an empty side."""
        bids, asks = self.prices[Side.BID], self.prices[Side.ASK]
        return (bids[-1] if bids else None), (asks[0] if asks else None)

    def top(self) -> BookTop:
        bid, ask = self.best_prices()
        return BookTop(self._level(Side.BID, bid), self._level(Side.ASK, ask))

    def _level(self, side: Side, price: int | None) -> Level | None:
        if price is None:
            return None
        shares, orders = self.levels[side][price]
        return Level(price, shares, orders)

    def _add(self, order_ref: int, side: Side, price: int, shares: int) -> None:
        self.orders[order_ref] = (side, price, shares)
        level = self.levels[side].get(price)
        if level is None:
            self.levels[side][price] = [shares, 1]
            insort(self.prices[side], price)
        else:
            level[0] += shares
            level[1] += 1

    def _take(self, order_ref: int, shares: int) -> None:
        """`shares` leave the order; at none left, the order leaves the book."""
        order = self.orders.get(order_ref)
        if order is None:
            self.counters.add(UNKNOWN_REF)
            return
        side, price, open_shares = order
        shares = min(shares, open_shares)
        if shares == open_shares:
            self._delete(order_ref)
            return
        self.orders[order_ref] = (side, price, open_shares - shares)
        self.levels[side][price][0] -= shares

    def _delete(self, order_ref: int) -> Side | None:
        """Remove the order; its side, or None when the book does not know it."""
        order = self.orders.pop(order_ref, None)
        if order is None:
            self.counters.add(UNKNOWN_REF)
            return None
        side, price, shares = order
        level = self.levels[side][price]
        level[0] -= shares
        level[1] -= 1
        if not level[1]:
            del self.levels[side][price]
            prices = self.prices[side]
            del prices[bisect_left(prices, price)]
        return side


# --- the core -------------------------------------------------------------------------------


class MarketMaker:
    """The strategy core: feed and order-session bytes in, order bytes out, no I/O (module docstring).

    Public state, for the race's metrics: `inventory`, `cash`, `fills`,
    `decision_times`, `counters` (the receive path's, with rx_model's names,
    and `UNKNOWN_REF`, the book model's name for a message about an order
    the books never saw added),
    `reliable` (False after a feed gap); views: `lead_top`, `target_top`,
    `open_orders`.
    """

    def __init__(self, config: MarketMakerConfig):
        self.config = config
        self.inventory = 0
        self.cash = 0
        self.fills: list[MakerFill] = []
        self.decision_times = DecisionTimes()
        self.counters = Counters()
        self.counters[UNKNOWN_REF] = 0
        self.reliable = True
        self._frames = UdpRxModel(config.feed_ip, config.feed_port, self.counters)
        self._sequence = MoldUdp64RxModel(self.counters)
        self._split = ItchSplitModel(self.counters)
        self._lead = _Book(self.counters)
        self._target = _Book(self.counters)
        self._books = {config.lead_locate: self._lead, config.target_locate: self._target}
        self._market_hours = False
        self._decided_on: tuple = ()  # what the last decision on the feed depended on
        self._orders: dict[str, MakerOrder] = {}  # open orders by token
        self._quotes: dict[Side, str | None] = {Side.BID: None, Side.ASK: None}  # the live quote's token
        self._sizes = inventory_skew_sizes(config, 0)
        self._price_factors = {Side.BID: (1 - config.bid_spread).as_integer_ratio(),
                               Side.ASK: (1 + config.ask_spread).as_integer_ratio()}
        self._tolerance = config.order_refresh_tolerance_pct.as_integer_ratio()
        self._next_token = 1
        self._session_buffer = b""

    # --- entry points: bytes in, bytes out ---------------------------------------------------------

    def on_feed_frame(self, frame: bytes) -> bytes:
        """One Ethernet/IPv4/UDP frame of the feed (without FCS): the order bytes sent in response, or b""."""
        start = perf_counter_ns()
        received = self._frames.process(frame)
        orders = b"" if received.payload is None or received.bad else self._feed_packet(received.payload)
        self._timed(start, orders, self.decision_times.feed_acting, self.decision_times.feed_idle)
        return orders

    def on_mold_packet(self, payload: bytes) -> bytes:
        """One UDP payload of the feed (a MoldUDP64 packet): the order bytes sent in response, or b""."""
        start = perf_counter_ns()
        orders = self._feed_packet(payload)
        self._timed(start, orders, self.decision_times.feed_acting, self.decision_times.feed_idle)
        return orders

    def on_response(self, data: bytes) -> bytes:
        """A chunk of the order session's byte stream from the exchange: the order bytes sent in response, or b"".

        Raises `CodecError` for a packet that is not SoupBinTCP, or a Sequenced Data packet not OUCH 4.2.
        """
        start = perf_counter_ns()
        orders = self._order_session(data)
        self._timed(start, orders, self.decision_times.response_acting, self.decision_times.response_idle)
        return orders

    # --- views -------------------------------------------------------------------------------------

    def lead_top(self) -> BookTop:
        """The lead's best bid and offer, as the maker's book has it."""
        return self._lead.top()

    def target_top(self) -> BookTop:
        """The target's best bid and offer, as the maker's book has it."""
        return self._target.top()

    def open_orders(self) -> list[MakerOrder]:
        """The maker's orders with open shares, in the order they were sent."""
        return list(self._orders.values())

    # --- the feed ------------------------------------------------------------------------------------

    def _feed_packet(self, payload: bytes) -> bytes:
        decision = self._sequence.process(payload)
        if not decision.framed:
            return b""
        split = self._split.process(payload, decision)
        self._sequence.end(decision, split.complete)
        if decision.gap:
            self.reliable = False
        for message in split.messages:
            data = message.data
            book = self._books.get(data[1] << 8 | data[2])
            if book is not None:
                book.apply(itch.decode(data))
            elif message.type == itch.SystemEvent.TYPE:
                event = itch.decode(data).event_code
                if event == _MARKET_HOURS_START:
                    self._market_hours = True
                elif event == _MARKET_HOURS_END:
                    self._market_hours = False
        depends_on = (self._market_hours, self.reliable, self._lead.best_prices())
        if depends_on == self._decided_on:
            return b""
        self._decided_on = depends_on
        return self._refresh()

    # --- the order session ---------------------------------------------------------------------------

    def _order_session(self, data: bytes) -> bytes:
        packets, self._session_buffer = split_packets(self._session_buffer + data)
        refresh = False
        for packet in packets:
            if not isinstance(packet, SequencedData):
                continue  # heartbeats and session packets carry no OUCH
            message = decode_outbound(packet.message)
            if isinstance(message, OuchSystemEvent):
                continue
            order = self._orders.get(message.token)
            if order is None:
                continue  # no open order of the maker's: nothing left to update
            match message:
                case Accepted():
                    state = OrderState.LIVE if order.state is OrderState.PENDING else order.state
                    self._orders[order.token] = dataclasses.replace(
                        order, state=state, order_ref=message.order_reference_number)
                case Executed():
                    self._executed(order, message)
                    refresh |= self._take(order, message.executed_shares)
                case Canceled():
                    refresh |= self._take(order, message.decrement_shares)
                case Rejected():
                    del self._orders[order.token]
                    if self._quotes[order.side] == order.token:
                        self._quotes[order.side] = None
        return self._refresh() if refresh else b""

    def _executed(self, order: MakerOrder, executed: Executed) -> None:
        shares, price = executed.executed_shares, executed.execution_price
        bought = shares if order.side is Side.BID else -shares
        self.inventory += bought
        self.cash -= bought * price
        self.fills.append(MakerFill(executed.timestamp, order.side, price, shares, order.token,
                                    executed.match_number))
        self._sizes = inventory_skew_sizes(self.config, self.inventory)

    def _take(self, order: MakerOrder, shares: int) -> bool:
        """`shares` of `order` are gone; whether that left its side without a quote (to refresh)."""
        if shares < order.shares:
            self._orders[order.token] = dataclasses.replace(order, shares=order.shares - shares)
            return False
        del self._orders[order.token]
        if self._quotes[order.side] != order.token:
            return False
        self._quotes[order.side] = None
        return True

    # --- quoting ---------------------------------------------------------------------------------------

    def _refresh(self) -> bytes:
        """Bring both sides' quotes to the desired ones: the bytes of the cancels, then of the new orders."""
        desired = {side: self._desired(side) for side in _BOTH_SIDES}
        live = {side: None if token is None else self._orders[token] for side, token in self._quotes.items()}
        replaced = {side: live[side] is not None and (desired[side] is None
                                                      or self._stale(live[side].price, desired[side][0]))
                    for side in _BOTH_SIDES}
        for side, other in ((Side.BID, Side.ASK), (Side.ASK, Side.BID)):
            entered = desired[side] is not None and (live[side] is None or replaced[side])
            if entered and live[other] is not None and not replaced[other] \
                    and _crosses(side, desired[side][0], live[other].price):
                replaced[other] = True  # kept, it would trade with the maker's own new quote
        cancels = [self._cancel(live[side].token) for side in _BOTH_SIDES if replaced[side]]
        enters = [self._enter(side, *desired[side]) for side in _BOTH_SIDES
                  if desired[side] is not None and (live[side] is None or replaced[side])]
        return b"".join(cancels + enters)

    def _desired(self, side: Side) -> tuple[int, int] | None:
        """The (price, shares) to quote on `side`, or None when that side should have no quote."""
        shares = self._sizes[side]
        bid, ask = self._lead.best_prices()
        if not (self._market_hours and self.reliable and shares) or bid is None or ask is None:
            return None
        numerator, denominator = self._price_factors[side]
        tick = self.config.price_tick
        ticks, rest = divmod((bid + ask) * numerator, 2 * denominator * tick)  # fair x factor, in ticks
        if side is Side.ASK and rest:
            ticks += 1  # asks round up
        price = ticks * tick
        return (price, shares) if 0 < price <= MAX_PRICE else None

    def _stale(self, live: int, desired: int) -> bool:
        """Whether `desired` is more than the refresh tolerance (a percent) away from the `live` price."""
        numerator, denominator = self._tolerance
        return abs(desired - live) * denominator * 100 > live * numerator

    def _cancel(self, token: str) -> bytes:
        order = self._orders[token]
        self._orders[token] = dataclasses.replace(order, state=OrderState.CANCELING)
        self._quotes[order.side] = None
        return UnsequencedData(CancelOrder(token, _CANCEL_ALL).encode()).encode()

    def _enter(self, side: Side, price: int, shares: int) -> bytes:
        config = self.config
        token = f"{config.token_prefix}{self._next_token:0{_TOKEN_WIDTH - len(config.token_prefix)}d}"
        self._next_token += 1
        order = EnterOrder(token, side_code(side), shares, config.target_symbol, price, TIME_IN_FORCE_DAY,
                           config.firm, _DISPLAY, _CAPACITY_PRINCIPAL, _NO_INTERMARKET_SWEEP,
                           _NO_MINIMUM_QUANTITY, _NO_CROSS, _NOT_RETAIL)
        self._orders[token] = MakerOrder(token, side, price, shares, OrderState.PENDING)
        self._quotes[side] = token
        return UnsequencedData(order.encode()).encode()

    @staticmethod
    def _timed(start: int, orders: bytes, acting: list[int], idle: list[int]) -> None:
        (acting if orders else idle).append(perf_counter_ns() - start)


def _crosses(side: Side, price: int, opposite: int) -> bool:
    """Whether an order of `side` at `price` would trade with a resting order of the other side at `opposite`."""
    return price >= opposite if side is Side.BID else price <= opposite


# --- runners on real sockets -------------------------------------------------------------------

#: Larger than any UDP datagram, so a MoldUDP64 packet is never cut.
_MAX_DATAGRAM = 0x10000
_RECEIVE_SIZE = 0x10000
_LOOPBACK = "127.0.0.1"
#: The datagram that ends a runner: empty (a MoldUDP64 packet has at least its 20-byte header).
_STOP = b""


class Implementation(enum.Enum):
    """The runners around the core."""

    ASYNCIO = "asyncio"
    BLOCKING = "blocking"


def run_blocking(maker: MarketMaker, feed: socket.socket, orders: socket.socket, *,
                 packet_done: Callable[[], None] | None = None) -> None:
    """The tight loop: blocking recv of a datagram on `feed`, the core, sendall on `orders`, again.

    `feed` is a bound UDP socket, `orders` a connected TCP socket; both are
    made blocking without timeout. The exchange's responses are read after
    each datagram without waiting (the loop blocks only in the feed's recv,
    which is its point; MoldUDP64 heartbeats bound how long a response
    waits). `packet_done`, if given, is called after each datagram is
    handled. Returns on an empty datagram or when the exchange closes the
    session.
    """
    feed.settimeout(None)
    orders.settimeout(None)
    receive, send, handle = feed.recv, orders.sendall, maker.on_mold_packet
    while True:
        payload = receive(_MAX_DATAGRAM)
        if payload == _STOP:
            return
        sent = handle(payload)
        if sent:
            send(sent)
        if not _answer_waiting_responses(maker, orders):
            return
        if packet_done is not None:
            packet_done()


def _answer_waiting_responses(maker: MarketMaker, orders: socket.socket) -> bool:
    """Hand the bytes waiting on `orders` to the core and send its answers; False when the session closed."""
    while True:
        try:
            data = orders.recv(_RECEIVE_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        if not data:
            return False
        sent = maker.on_response(data)
        if sent:
            orders.sendall(sent)


async def run_asyncio(maker: MarketMaker, feed: socket.socket, orders: socket.socket, *,
                      packet_done: Callable[[], None] | None = None) -> None:
    """The asyncio runner: a DatagramProtocol on `feed`, an asyncio stream on `orders`, the same core.

    `feed` is a bound UDP socket, `orders` a connected TCP socket; asyncio
    takes them over (and closes them). Orders are written from the
    protocol's callback as soon as the core returns them (the transport
    sends at once when its buffer is empty). `packet_done`, if given, is
    called after each datagram is handled. Returns on an empty datagram or
    when the exchange closes the session; an error of the core ends it with
    that error.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    reader, writer = await asyncio.open_connection(sock=orders)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _FeedProtocol(maker, writer, finished, packet_done), sock=feed)
    responses = asyncio.create_task(_answer_responses(maker, reader, writer, finished))
    try:
        await finished
    finally:
        responses.cancel()
        transport.close()
        writer.close()
        await writer.wait_closed()


class _FeedProtocol(asyncio.DatagramProtocol):
    def __init__(self, maker: MarketMaker, writer: asyncio.StreamWriter, finished: asyncio.Future[None],
                 packet_done: Callable[[], None] | None):
        self.maker = maker
        self.writer = writer
        self.finished = finished
        self.packet_done = packet_done

    def datagram_received(self, data: bytes, addr) -> None:
        if data == _STOP:
            _finish(self.finished)
            return
        try:
            sent = self.maker.on_mold_packet(data)
            if sent:
                self.writer.write(sent)
            if self.packet_done is not None:
                self.packet_done()
        except Exception as error:  # asyncio would only log it
            _finish(self.finished, error)

    def error_received(self, exc: Exception) -> None:
        _finish(self.finished, exc)


async def _answer_responses(maker: MarketMaker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            finished: asyncio.Future[None]) -> None:
    try:
        while data := await reader.read(_RECEIVE_SIZE):
            sent = maker.on_response(data)
            if sent:
                writer.write(sent)
    except Exception as error:
        _finish(finished, error)
    else:
        _finish(finished)  # the exchange closed the session


def _finish(finished: asyncio.Future[None], error: BaseException | None = None) -> None:
    if finished.done():
        return
    if error is None:
        finished.set_result(None)
    else:
        finished.set_exception(error)


# --- loopback measurement ---------------------------------------------------------------------


class LoopbackError(RuntimeError):
    """The loopback measurement could not finish: a runner failed, exited, or did not answer in time."""


@dataclass(frozen=True)
class LoopbackMeasurement:
    """What `measure_loopback` measured.

    `orders`: per packet, the bytes the exchange side received after it.
    `round_trip_ns`: per packet that produced orders, in order, from just
    before the UDP send to the arrival of its last order byte at the TCP
    server. `decision`: the runner's core's own times (its `feed_acting`
    are the same packets as `round_trip_ns`, in the same order).
    """

    implementation: Implementation
    orders: tuple[bytes, ...]
    round_trip_ns: tuple[int, ...]
    decision: DecisionTimes

    @property
    def socket_ns(self) -> tuple[int, ...]:
        """Per order-producing packet, the round trip less the core's decision: the socket legs and the runner."""
        return tuple(total - decision for total, decision in zip(self.round_trip_ns, self.decision.feed_acting))


def measure_loopback(implementation: str, packets: Sequence[bytes], config: MarketMakerConfig, *,
                     timeout_s: float = 2.0) -> LoopbackMeasurement:
    """Run the `implementation` runner ("asyncio" or "blocking") on 127.0.0.1 and time each packet's orders.

    `packets` are MoldUDP64 packets (UDP payloads). The runner runs in a
    child process (its own interpreter and GIL, as a market maker process
    would) with a fresh `MarketMaker(config)`, a UDP socket and a TCP
    connection to a server here, on ephemeral ports. The packets are sent
    one by one: each waits for the orders that a core alone produces for it
    (if any) to arrive at the server, then for the runner to report the
    packet handled, so that every packet meets an idle runner. The server
    sends nothing back. Every wait is bounded by `timeout_s`; on any failure
    the child is stopped and `LoopbackError` raised.
    """
    kind = Implementation(implementation)
    reference = MarketMaker(config)
    expected = [reference.on_mold_packet(packet) for packet in packets]
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        server.bind((_LOOPBACK, 0))
        server.listen(1)
        server.settimeout(timeout_s)
        results, child_end = context.Pipe(duplex=False)
        stack.callback(results.close)
        runner = context.Process(target=_runner_process, args=(kind, config, server.getsockname()[1], child_end),
                                 name=f"market-maker-{kind.value}", daemon=True)
        runner.start()
        stack.callback(_stop_process, runner, timeout_s)
        child_end.close()
        (feed_port,) = _expect(results, "ready", timeout_s)
        session = stack.enter_context(_accept(server))
        session.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.settimeout(timeout_s)
        sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        feed_address = (_LOOPBACK, feed_port)
        received: list[bytes] = []
        round_trips: list[int] = []
        for index, (packet, want) in enumerate(zip(packets, expected)):
            got = bytearray()
            start = perf_counter_ns()
            sender.sendto(packet, feed_address)
            while len(got) < len(want):
                got += _receive(session, index, results, timeout_s)
            if want:
                round_trips.append(perf_counter_ns() - start)
            _expect(results, "handled", timeout_s)
            got += _drain(session, timeout_s)
            received.append(bytes(got))
        sender.sendto(_STOP, feed_address)
        (decision,) = _expect(results, "done", timeout_s)
    return LoopbackMeasurement(kind, tuple(received), tuple(round_trips), decision)


def _runner_process(kind: Implementation, config: MarketMakerConfig, server_port: int, results) -> None:
    """The child: a core, its sockets and a runner; reports ready, each packet handled, then its times."""
    try:
        maker = MarketMaker(config)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as feed, \
                socket.create_connection((_LOOPBACK, server_port)) as orders:
            orders.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            feed.bind((_LOOPBACK, 0))
            results.send(("ready", feed.getsockname()[1]))

            def handled() -> None:
                results.send(("handled",))

            if kind is Implementation.BLOCKING:
                run_blocking(maker, feed, orders, packet_done=handled)
            else:
                asyncio.run(run_asyncio(maker, feed, orders, packet_done=handled))
        results.send(("done", maker.decision_times))
    except BaseException:
        results.send(("error", traceback.format_exc()))
    finally:
        results.close()


def _expect(results, tag: str, timeout_s: float) -> tuple:
    """The next report of the runner, which must be `tag`: its values."""
    if not results.poll(timeout_s):
        raise LoopbackError(f"the runner did not report {tag!r} within {timeout_s} s")
    try:
        report = results.recv()
    except EOFError:
        raise LoopbackError(f"the runner exited before reporting {tag!r}") from None
    if report[0] == "error":
        raise LoopbackError(f"the runner failed:\n{report[1]}")
    if report[0] != tag:
        raise LoopbackError(f"the runner reported {report[0]!r}, expected {tag!r}")
    return report[1:]


def _accept(server: socket.socket) -> socket.socket:
    try:
        session, _ = server.accept()
    except TimeoutError:
        raise LoopbackError("the runner did not connect to the exchange side") from None
    return session


def _receive(session: socket.socket, index: int, results, timeout_s: float) -> bytes:
    """The next bytes of the order session; `LoopbackError` (with the runner's own error, if it reports one) when
    they do not come."""
    try:
        data = session.recv(_RECEIVE_SIZE)
    except TimeoutError:
        problem = f"the orders of packet {index} did not arrive"
    else:
        if data:
            return data
        problem = f"the runner closed the order session at packet {index}"
    try:
        report = results.recv() if results.poll(timeout_s) else ()
    except EOFError:
        report = ()
    if report and report[0] == "error":
        problem += f"; the runner failed:\n{report[1]}"
    raise LoopbackError(problem)


def _drain(session: socket.socket, timeout_s: float) -> bytes:
    """Whatever has already arrived on `session`, without waiting."""
    chunks = []
    session.settimeout(0)
    try:
        while chunk := session.recv(_RECEIVE_SIZE):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        session.settimeout(timeout_s)
    return b"".join(chunks)


def _stop_process(process, timeout_s: float) -> None:
    """Wait for the runner to exit; terminate it, then kill it, if it does not."""
    process.join(timeout_s)
    if process.is_alive():
        process.terminate()
        process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
