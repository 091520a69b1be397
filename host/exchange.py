"""The race's exchange: price-time priority matching, OUCH in, ITCH out, with no clock of its own.

`OrderBook` is one instrument's limit order book; `Exchange` runs one book
per instrument behind the protocols the race's agents speak:

- order entry: each participant has a SoupBinTCP session, open from the
  start (no login phase); its byte stream goes to `Exchange.receive`, which
  buffers the bytes of an incomplete packet until the next call. Unsequenced
  Data packets carry OUCH 4.2 Enter Order and Cancel Order, client
  heartbeats are ignored, anything else raises `ProtocolError`. The answers
  (Accepted, Executed, Canceled, Rejected, and System Event at the open) go
  back one OUCH message per SoupBinTCP Sequenced Data packet, as bytes per
  participant. `submit` and `cancel` take the decoded Enter Order and Cancel
  Order, for agents that do not speak bytes; `receive` applies what it
  decodes by the same code, so the two paths cannot disagree.
- market data: every change of a book is published in ITCH 5.0 (Add Order
  'A' for an order that rests, Order Executed 'E' for each resting order an
  order trades with, Order Cancel 'X' for a partial cancel, Order Delete
  'D' for a full one), packed into MoldUDP64 packets with consecutive
  sequence numbers and sent in Ethernet/IPv4/UDP frames, with the addresses,
  session and first sequence number of a `feed.FeedConfig`. `open` publishes
  the start of the day as `feed.generate_messages` does: System Events 'O'
  and 'S', a Stock Directory 'R' and a Stock Trading Action 'H' (trading) per
  instrument, System Event 'Q'. An order that trades on arrival and never
  rests publishes only the 'E' of the orders it hit.
- for the race's metrics, every call also returns typed, hashable event
  records (accepted, rejected, rested, fill, canceled, cancel ignored), so
  that nothing downstream re-parses bytes.

Time: every call takes `now_ns`, integer nanoseconds since the start of the
session, supplied by the caller (the race's discrete-event engine), and
returns the `Emission` of that instant. ITCH and OUCH timestamps are
nanoseconds since midnight: the feed config's `start_ns` (the session's start
since midnight) plus `now_ns`. `now_ns` may not go backwards from one call to
the next.

Ties: the exchange handles calls in the order they are made, one whole call
at a time. Which of two arrivals with the same `now_ns` goes first is the
race engine's rule (documented, seeded), not the exchange's.

Readings of OUCH 4.2 made here:

- Every accepted order gets the next order reference number (increasing
  from 1), shown in Accepted and, if the order rests, in its Add Order; an
  immediate-or-cancel order therefore uses a number that never shows on the
  feed. Order state in Accepted is always 'L'; the BBO weight indicator is
  ' ' (not given).
- Time in force 0 is immediate-or-cancel: it trades what it can and the
  rest is cancelled (Canceled, reason 'I'). Any other value rests until
  cancelled: the exchange has no timeouts. Display, capacity, intermarket
  sweep, minimum quantity, cross type and customer type are echoed in
  Accepted and not acted on: every order is a displayed limit order of the
  continuous market. Sides 'T' and 'E' (short sales) sell as 'S' does.
- Rejected reasons (`RejectReason.code`): 'C' before the open, 'S' unknown
  stock, 'X' price 0 or above $199,999.99, 'Z' shares 0 or 1,000,000 and
  more, and 'O' (other) for a side that is not B, S, T or E and for an
  order token the participant has already had accepted (tokens are unique
  per participant, over the whole session; an OUCH 4.2 host ignores such
  an order silently, the race wants to see it).
- Cancel Order names the new intended open size: the order loses its open
  shares above that size (Canceled, reason 'U'); a size at or above the open
  shares changes nothing and sends nothing. A cancel naming a token whose
  order has no open shares left (filled, cancelled, or an immediate-or-cancel
  order, done on arrival) is too late: no message, `late_cancels` counts it
  and a `CancelIgnored` event records it. A token never accepted counts in
  `unknown_cancels` likewise. Both are ignored, as OUCH ignores them.
- Orders of one participant may trade with each other (no self-match
  prevention): both Executed messages then go to that participant.

Frequent batch auctions (`batch_interval_ns`, after Budish, Cramton and Shim
2015, "The High-Frequency Trading Arms Race"): the counterfactual of the
race. With an interval, the exchange is a discrete-time market:

- An Enter Order is checked on arrival as in the continuous market:
  Rejected, or Accepted at once with its order reference number (so that
  a Cancel Order of it later in the same interval finds it), but it does
  not trade or rest yet. A Cancel Order naming a token never accepted is
  ignored on arrival (`unknown_cancels`); any other waits too.
- The batch ends at each multiple of the interval after the open
  (`next_batch_ns`); the caller runs it with `run_batch(now_ns)` at exactly
  that time, and may make no other call at a later time before it has.
  Arrivals at the batch's own ns before `run_batch` belong to it; those
  after, to the next.
- At the end of a batch, first the interval's cancels, in arrival order:
  each cuts its order (resting, or entered in this interval) as a continuous
  cancel does; an order with no open shares left makes it too late. So a
  cancel that reaches the exchange in the same interval as an order aimed at
  its quote always wins: the point of the design.
- Then, per instrument, a uniform-price call auction over the book and the
  interval's orders. Demand at a price p is the open shares of the bids at p
  and above, supply those of the asks at p and below; the volume at p is
  the smaller. The prices of the greatest volume (if above 0) are a range
  [lo, hi] of the limit prices; the clearing price is its midpoint, (lo +
  hi) // 2 (rounded down to a price unit). Every trade of the batch is at
  that one price. Who trades at the margin: price first, then time, where
  time means orders resting from earlier batches (in their queue order)
  before the interval's orders (in arrival order). (BCS ration pro rata at
  the margin; the time rule is simpler and keeps resting orders' priority.)
  The buys and sells chosen are paired in that order into fills. In each
  fill the order accepted first (the lower order reference: a resting order,
  or the interval's earlier one) is the `Fill.maker` (liquidity 'A') and the
  other the aggressor (liquidity 'R').
- A fill whose resting-role order is on the book (its Add Order was
  published) publishes Order Executed 'E' when the clearing price is the
  order's price and Order Executed with Price 'C' (printable 'Y') otherwise
  (an 'E' carries no price); a fill between two of the interval's orders,
  neither ever on the feed, publishes a Trade 'P' (order reference 0, the
  resting-role order's side). Immediate-or-cancel remainders are cancelled
  (Canceled, reason 'I'); limit remainders rest, in arrival order, behind
  the book's orders at their price, each published as an Add Order. After
  a batch the book is never crossed.
- Every message of a batch is timestamped at the batch's end. With no
  interval (None, the default) the exchange is the continuous market above,
  unchanged.

The ITCH tracking number is the low 16 bits of the message's MoldUDP64
sequence number; System Events have stock locate 0.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .codec import itch
from .codec.moldudp64 import HEADER_LENGTH as MOLD_HEADER_LENGTH
from .codec.moldudp64 import MoldPacket, encode_packet
from .codec.net import CodecError
from .codec.ouch import (TIME_IN_FORCE_IOC, Accepted, CancelOrder, Canceled, EnterOrder, Executed, OuchMessage,
                         Rejected, decode_inbound)
from .codec.ouch import SystemEvent as OuchSystemEvent
from .codec.soupbintcp import ClientHeartbeat, SequencedData, SoupPacket, UnsequencedData, split_packets
from .feed import IPV4_UDP_HEADERS, MAX_UDP_PAYLOAD, FeedConfig, FrameBuilder, start_of_day
from .order_types import Side

__all__ = [
    "NS_PER_DAY",
    "MAX_PRICE",
    "MAX_SHARES",
    "Order",
    "Level",
    "OrderBook",
    "RejectReason",
    "CancelReason",
    "IgnoredCancelReason",
    "OrderAccepted",
    "OrderRejected",
    "OrderRested",
    "Fill",
    "OrderCanceled",
    "CancelIgnored",
    "Event",
    "Emission",
    "Instrument",
    "BookTop",
    "LiveOrder",
    "ProtocolError",
    "Exchange",
]

NS_PER_DAY = 86_400 * 10**9
#: The highest price OUCH 4.2 takes: $199,999.9900 in 1/10000 dollars.
MAX_PRICE = 1_999_999_900
#: OUCH 4.2 takes fewer than 1,000,000 shares per order.
MAX_SHARES = 999_999
#: The largest UDP payload of an IPv4 datagram.
_MAX_DATAGRAM_PAYLOAD = 0xFFFF - IPV4_UDP_HEADERS
#: The longest ITCH message the exchange publishes (Stock Directory) with its length field.
_LONGEST_BLOCK = 2 + itch.StockDirectory.LENGTH
_MAX_LOCATE = 0xFFFF
_SYMBOL_WIDTH = 8
_SIDES = {"B": Side.BID, "S": Side.ASK, "T": Side.ASK, "E": Side.ASK}
_ITCH_SIDE = {Side.BID: "B", Side.ASK: "S"}
_ORDER_STATE_LIVE = "L"
_BBO_WEIGHT_NOT_GIVEN = " "
_LIQUIDITY_ADDED = "A"
_LIQUIDITY_REMOVED = "R"
_OUCH_START_OF_DAY = "S"
_PRINTABLE = "Y"


# --- the book -----------------------------------------------------------------------------


@dataclass(eq=False)
class Order:
    """An accepted order: `shares` is what is still open (0 once filled, cancelled or done on arrival)."""

    order_ref: int
    owner: str
    token: str
    locate: int
    side: Side
    price: int
    shares: int


@dataclass(frozen=True, slots=True)
class Level:
    """A price level of one side: the price, its open shares and its number of orders."""

    price: int
    shares: int
    orders: int


class _Queue:
    """The orders resting at one price, oldest first, and their open shares."""

    __slots__ = ("orders", "shares")

    def __init__(self):
        self.orders: deque[Order] = deque()
        self.shares = 0


class OrderBook:
    """One instrument's limit order book with price-time priority.

    Each side keeps a dict from price to the queue of orders resting there
    (oldest first) and the sorted list of its prices (`bisect`), so the best
    price is an end of the list. An incoming order trades with the opposite
    side at the resting orders' prices, best price first and oldest first at
    a price, while the resting price is at least as good as its limit.
    """

    def __init__(self):
        self._queues: dict[Side, dict[int, _Queue]] = {Side.BID: {}, Side.ASK: {}}
        self._prices: dict[Side, list[int]] = {Side.BID: [], Side.ASK: []}  # ascending
        self._orders: dict[int, Order] = {}

    def add(self, order: Order) -> None:
        """Rest `order` behind the orders already at its price."""
        if order.shares <= 0:
            raise ValueError(f"an order rests with open shares, not {order.shares}")
        if order.order_ref in self._orders:
            raise ValueError(f"order reference {order.order_ref} is already in the book")
        queues = self._queues[order.side]
        queue = queues.get(order.price)
        if queue is None:
            queue = queues[order.price] = _Queue()
            bisect.insort(self._prices[order.side], order.price)
        queue.orders.append(order)
        queue.shares += order.shares
        self._orders[order.order_ref] = order

    def match(self, side: Side, limit: int, shares: int) -> list[tuple[Order, int]]:
        """Trade an incoming `side` order of `shares` at `limit` or better against the resting orders.

        Returns (resting order, shares traded) in the order they traded, at
        the resting order's price. The resting orders lose what they traded;
        those left with nothing leave the book. The incoming order is not
        added: what it did not trade is the caller's to rest or cancel.
        """
        resting_side = Side.ASK if side is Side.BID else Side.BID
        prices = self._prices[resting_side]
        queues = self._queues[resting_side]
        fills: list[tuple[Order, int]] = []
        while shares and prices:
            price = prices[0] if resting_side is Side.ASK else prices[-1]
            if (price > limit) if side is Side.BID else (price < limit):
                break
            queue = queues[price]
            while shares and queue.orders:
                resting = queue.orders[0]
                traded = min(shares, resting.shares)
                resting.shares -= traded
                queue.shares -= traded
                shares -= traded
                fills.append((resting, traded))
                if not resting.shares:
                    queue.orders.popleft()
                    del self._orders[resting.order_ref]
            if not queue.orders:
                self._remove_level(resting_side, price)
        return fills

    def reduce(self, order_ref: int, shares: int) -> int:
        """Cut the resting order `order_ref` to at most `shares` open; the shares it lost.

        At 0 the order leaves the book.
        """
        order = self._orders[order_ref]
        decrement = max(0, order.shares - shares)
        if decrement:
            queue = self._queues[order.side][order.price]
            order.shares -= decrement
            queue.shares -= decrement
            if not order.shares:
                queue.orders.remove(order)
                del self._orders[order_ref]
                if not queue.orders:
                    self._remove_level(order.side, order.price)
        return decrement

    def orders(self, side: Side) -> list[Order]:
        """The resting orders of `side` in priority order: best price first, oldest first at a price."""
        prices = self._prices[side]
        return [order for price in (reversed(prices) if side is Side.BID else prices)
                for order in self._queues[side][price].orders]

    def cross(self, incoming: Sequence[Order]) -> tuple[int | None, list[tuple[Order, Order, int]]]:
        """A uniform-price call auction of the book and the `incoming` orders (module docstring, batch auctions).

        `incoming` are orders not in the book, in arrival order. Returns the
        clearing price and the fills as (buy, sell, shares) in priority order,
        or (None, []) when nothing crosses. The resting orders lose what they
        traded (leaving the book at 0) and the incoming ones' `shares` too;
        what is left of the incoming orders is the caller's to rest or cancel.
        """
        sides = {}
        for side in (Side.BID, Side.ASK):
            sign = -1 if side is Side.BID else 1
            # sorted() is stable: at a price, the book's orders (in queue order), then the incoming in arrival order
            sides[side] = sorted([*self.orders(side), *(order for order in incoming if order.side is side)],
                                 key=lambda order: sign * order.price)
        bids, asks = sides[Side.BID], sides[Side.ASK]
        volume, low, high = 0, None, None
        for price in sorted({order.price for order in (*bids, *asks)}):
            at = min(sum(order.shares for order in bids if order.price >= price),
                     sum(order.shares for order in asks if order.price <= price))
            if at > volume:
                volume, low, high = at, price, price
            elif at == volume and at:
                high = price  # the volume is unimodal in the price: the greatest is one range
        if not volume:
            return None, []
        price = (low + high) // 2
        chosen = {side: [] for side in sides}
        for side, orders in sides.items():
            left = volume
            for order in orders:
                if not left:
                    break
                traded = min(left, order.shares)
                chosen[side].append([order, traded])
                left -= traded
        fills: list[tuple[Order, Order, int]] = []
        buys, sells = deque(list(pair) for pair in chosen[Side.BID]), deque(list(pair) for pair in chosen[Side.ASK])
        while buys:
            traded = min(buys[0][1], sells[0][1])
            fills.append((buys[0][0], sells[0][0], traded))
            for queue in (buys, sells):
                queue[0][1] -= traded
                if not queue[0][1]:
                    queue.popleft()
        for order, traded in (*chosen[Side.BID], *chosen[Side.ASK]):
            if order.order_ref in self._orders:
                self.reduce(order.order_ref, order.shares - traded)
            else:
                order.shares -= traded
        return price, fills

    def best(self, side: Side) -> Level | None:
        """The best level of `side`, or None when it is empty."""
        prices = self._prices[side]
        if not prices:
            return None
        return self._level(side, prices[-1] if side is Side.BID else prices[0])

    def levels(self, side: Side) -> list[Level]:
        """Every level of `side`, best first."""
        prices = self._prices[side]
        return [self._level(side, price) for price in (reversed(prices) if side is Side.BID else prices)]

    def __contains__(self, order_ref: int) -> bool:
        return order_ref in self._orders

    def _level(self, side: Side, price: int) -> Level:
        queue = self._queues[side][price]
        return Level(price, queue.shares, len(queue.orders))

    def _remove_level(self, side: Side, price: int) -> None:
        del self._queues[side][price]
        prices = self._prices[side]
        del prices[bisect.bisect_left(prices, price)]


# --- what a call returns ----------------------------------------------------------------------


class RejectReason(enum.Enum):
    """Why an Enter Order was rejected; `code` is the OUCH 4.2 reason sent in Rejected."""

    CLOSED = "closed"  # before the open
    UNKNOWN_STOCK = "unknown_stock"
    INVALID_PRICE = "invalid_price"  # 0, or above MAX_PRICE
    INVALID_SHARES = "invalid_shares"  # 0, or above MAX_SHARES
    INVALID_SIDE = "invalid_side"  # not B, S, T or E
    DUPLICATE_TOKEN = "duplicate_token"  # the participant already had an order accepted with this token

    @property
    def code(self) -> str:
        return _REJECT_CODES[self]


_REJECT_CODES = {
    RejectReason.CLOSED: "C",
    RejectReason.UNKNOWN_STOCK: "S",
    RejectReason.INVALID_PRICE: "X",
    RejectReason.INVALID_SHARES: "Z",
    RejectReason.INVALID_SIDE: "O",
    RejectReason.DUPLICATE_TOKEN: "O",
}


class CancelReason(enum.Enum):
    """Why open shares were cancelled; the value is the OUCH Canceled reason."""

    USER = "U"
    IMMEDIATE_OR_CANCEL = "I"


class IgnoredCancelReason(enum.Enum):
    """Why a Cancel Order did nothing."""

    TOO_LATE = "too_late"  # the order had no open shares left
    UNKNOWN_TOKEN = "unknown_token"  # no order of the participant was accepted with this token


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """An Enter Order was accepted (`shares` as entered)."""

    time_ns: int
    participant: str
    token: str
    locate: int
    order_ref: int
    side: Side
    shares: int
    price: int
    immediate_or_cancel: bool


@dataclass(frozen=True, slots=True)
class OrderRejected:
    time_ns: int
    participant: str
    token: str
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class OrderRested:
    """What an order did not trade on arrival went into the book (published as an Add Order)."""

    time_ns: int
    participant: str
    token: str
    locate: int
    order_ref: int
    side: Side
    shares: int
    price: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade: the incoming (aggressor) order against one resting order, at the resting order's price."""

    time_ns: int
    locate: int
    match_number: int
    price: int
    shares: int
    aggressor_side: Side
    taker: str
    taker_token: str
    taker_order_ref: int
    maker: str
    maker_token: str
    maker_order_ref: int


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    """An order lost `shares` open shares; `open_shares` is what it has left."""

    time_ns: int
    participant: str
    token: str
    locate: int
    order_ref: int
    shares: int
    open_shares: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class CancelIgnored:
    """A Cancel Order that did nothing: too late, or for a token never accepted."""

    time_ns: int
    participant: str
    token: str
    reason: IgnoredCancelReason


Event = OrderAccepted | OrderRejected | OrderRested | Fill | OrderCanceled | CancelIgnored


@dataclass
class Emission:
    """What the exchange sends at one instant.

    `feed_frames`: Ethernet/IPv4/UDP frames (without FCS) of MoldUDP64
    packets carrying the call's ITCH messages, in order. `responses`:
    SoupBinTCP bytes (Sequenced Data packets of OUCH messages) per
    participant, only for participants that get something. `events`: the
    call's records, in the order they happened.
    """

    feed_frames: list[bytes] = field(default_factory=list)
    responses: dict[str, bytes] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


# --- the exchange -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    locate: int
    symbol: str


@dataclass(frozen=True, slots=True)
class BookTop:
    """The best bid and offer of one instrument (None for an empty side)."""

    bid: Level | None
    ask: Level | None


@dataclass(frozen=True, slots=True)
class LiveOrder:
    """A participant's order with open shares, as it is now."""

    token: str
    locate: int
    order_ref: int
    side: Side
    price: int
    shares: int


class ProtocolError(ValueError):
    """Bytes a session cannot take: an undecodable packet or OUCH message, or a packet type not served."""


@dataclass(frozen=True)
class _Entered:
    """An order accepted in a batch's interval, waiting for the batch's end."""

    order: Order
    immediate_or_cancel: bool
    stock: str


@dataclass
class _Session:
    """A participant's SoupBinTCP session: unframed bytes and every order accepted, by token."""

    buffer: bytes = b""
    orders: dict[str, Order] = field(default_factory=dict)


class _Call:
    """What one call publishes and answers, gathered until the call ends."""

    def __init__(self, now_ns: int, timestamp: int):
        self.now_ns = now_ns
        self.timestamp = timestamp
        self.itch: list[bytes] = []
        self.responses: dict[str, list[bytes]] = {}
        self.events: list[Event] = []

    def answer(self, participant: str, message: OuchMessage) -> None:
        packet = SequencedData(message.encode()).encode()
        self.responses.setdefault(participant, []).append(packet)


class Exchange:
    """Instruments, participants, and the protocols between them (see the module docstring).

    `instruments` are (stock locate, symbol) pairs; `participants` are the
    names of the sessions. `feed` gives the feed's addresses, MoldUDP64
    session and first sequence number, and with `start_ns` the session's
    start in ITCH time; `max_udp_payload` bounds each MoldUDP64 packet.
    `batch_interval_ns` makes it a frequent batch auction (module
    docstring); None, the default, is the continuous market.
    """

    def __init__(self, instruments: Sequence[tuple[int, str]], participants: Sequence[str], *,
                 feed: FeedConfig = FeedConfig(), max_udp_payload: int = MAX_UDP_PAYLOAD,
                 batch_interval_ns: int | None = None):
        self.instruments = _check_instruments(instruments)
        _check_participants(participants)
        if not isinstance(max_udp_payload, int) or not \
                MOLD_HEADER_LENGTH + _LONGEST_BLOCK <= max_udp_payload <= _MAX_DATAGRAM_PAYLOAD:
            raise ValueError(f"max_udp_payload must be {MOLD_HEADER_LENGTH + _LONGEST_BLOCK}.."
                             f"{_MAX_DATAGRAM_PAYLOAD}, not {max_udp_payload!r}")
        if not 0 <= feed.start_ns < NS_PER_DAY:
            raise ValueError(f"the session must start within the day, not at {feed.start_ns} ns since midnight")
        if batch_interval_ns is not None and (not isinstance(batch_interval_ns, int)
                                              or isinstance(batch_interval_ns, bool) or batch_interval_ns < 1):
            raise ValueError(f"batch_interval_ns must be None (continuous) or an int of 1 ns or more, "
                             f"not {batch_interval_ns!r}")
        self.batch_interval_ns = batch_interval_ns
        self.feed = feed
        self._frames = FrameBuilder(feed)
        self.max_udp_payload = max_udp_payload
        self.late_cancels = 0
        self.unknown_cancels = 0
        self.is_open = False
        self._books = {instrument.locate: OrderBook() for instrument in self.instruments}
        self._locates = {instrument.symbol: instrument.locate for instrument in self.instruments}
        self._sessions = {name: _Session() for name in participants}
        self._next_order_ref = 1
        self._next_match = 1
        self._next_sequence = feed.first_sequence
        self._last_ns = 0
        self._next_batch_ns: int | None = None  # set at the open in batch mode
        self._batch_orders: list[_Entered] = []  # accepted in the interval, in arrival order
        self._batch_cancels: list[tuple[str, CancelOrder]] = []

    # --- entry points ------------------------------------------------------------------------

    def open(self, now_ns: int) -> Emission:
        """Start the day: the feed's start-of-day messages, and OUCH start of day to every participant."""
        if self.is_open:
            raise ValueError("the exchange is already open")
        call = self._begin(now_ns)
        self.is_open = True
        if self.batch_interval_ns is not None:
            self._next_batch_ns = now_ns + self.batch_interval_ns
        for message in start_of_day([(i.locate, i.symbol) for i in self.instruments],
                                    itertools.repeat(call.timestamp)):
            self._publish(call, message)
        for participant in self._sessions:
            call.answer(participant, OuchSystemEvent(call.timestamp, _OUCH_START_OF_DAY))
        return self._finish(call)

    def receive(self, participant: str, data: bytes, now_ns: int) -> Emission:
        """Take a chunk of `participant`'s TCP byte stream: the OUCH of its complete packets, in order.

        Raises `ProtocolError` (and drops the session's buffered bytes, as an
        exchange ends a session that breaks the protocol) before acting on
        anything in the chunk if a complete packet is not a client heartbeat
        or an Unsequenced Data packet carrying an Enter Order or Cancel Order.
        """
        session = self._session(participant)
        call = self._begin(now_ns)
        buffered = session.buffer + bytes(data)
        session.buffer = b""
        try:
            packets, rest = split_packets(buffered)
            messages = [decode_inbound(packet.message) for packet in packets if _carries_ouch(packet)]
        except CodecError as error:
            raise ProtocolError(f"{participant}: {error}") from error
        session.buffer = rest
        for message in messages:
            if isinstance(message, EnterOrder):
                self._enter(call, participant, message)
            else:
                self._cancel(call, participant, message)
        return self._finish(call)

    def submit(self, participant: str, order: EnterOrder, now_ns: int) -> Emission:
        """Enter `order` for `participant`, as an Enter Order received at `now_ns`."""
        self._session(participant)
        call = self._begin(now_ns)
        self._enter(call, participant, order)
        return self._finish(call)

    def cancel(self, participant: str, cancel: CancelOrder, now_ns: int) -> Emission:
        """Apply `cancel` for `participant`, as a Cancel Order received at `now_ns`."""
        self._session(participant)
        call = self._begin(now_ns)
        self._cancel(call, participant, cancel)
        return self._finish(call)

    def next_batch_ns(self) -> int | None:
        """When the current batch ends (batch mode, once open), for the caller to `run_batch` then; else None."""
        return self._next_batch_ns

    def run_batch(self, now_ns: int) -> Emission:
        """End the batch due at `now_ns` (`next_batch_ns`): its cancels, then an auction per instrument.

        See the module docstring (frequent batch auctions). Raises ValueError
        in continuous mode, before the open, or at any other time.
        """
        if self.batch_interval_ns is None:
            raise ValueError("run_batch: this exchange is continuous (no batch_interval_ns)")
        if self._next_batch_ns is None:
            raise ValueError("run_batch: the exchange is not open yet")
        if now_ns != self._next_batch_ns:
            raise ValueError(f"the next batch ends at {self._next_batch_ns} ns, not {now_ns!r}")
        call = self._begin(now_ns)
        self._next_batch_ns += self.batch_interval_ns
        cancels, self._batch_cancels = self._batch_cancels, []
        entered, self._batch_orders = self._batch_orders, []
        for participant, cancel in cancels:
            self._cancel(call, participant, cancel, batched=True)
        for instrument in self.instruments:
            self._auction(call, instrument, [item for item in entered
                                             if item.order.locate == instrument.locate and item.order.shares])
        return self._finish(call)

    # --- read-only views -----------------------------------------------------------------------

    def top(self, locate: int) -> BookTop:
        """The best bid and offer of the instrument `locate`."""
        book = self._book(locate)
        return BookTop(book.best(Side.BID), book.best(Side.ASK))

    def levels(self, locate: int, side: Side) -> list[Level]:
        """Every level of one side of the instrument `locate`, best first."""
        return self._book(locate).levels(side)

    def live_orders(self, participant: str) -> list[LiveOrder]:
        """`participant`'s orders with open shares, in the order they were accepted."""
        return [LiveOrder(order.token, order.locate, order.order_ref, order.side, order.price, order.shares)
                for order in self._session(participant).orders.values() if order.shares]

    # --- the rules -------------------------------------------------------------------------------

    def _enter(self, call: _Call, participant: str, entered: EnterOrder) -> None:
        session = self._sessions[participant]
        reason = self._reject_reason(session, entered)
        if reason is not None:
            call.answer(participant, Rejected(call.timestamp, entered.token, reason.code))
            call.events.append(OrderRejected(call.now_ns, participant, entered.token, reason))
            return
        locate = self._locates[entered.stock]
        side = _SIDES[entered.side]
        ioc = entered.time_in_force == TIME_IN_FORCE_IOC
        order = Order(self._next_order_ref, participant, entered.token, locate, side, entered.price, entered.shares)
        self._next_order_ref += 1
        session.orders[order.token] = order
        call.answer(participant, Accepted(
            call.timestamp, entered.token, entered.side, entered.shares, entered.stock, entered.price,
            entered.time_in_force, entered.firm, entered.display, order.order_ref, entered.capacity,
            entered.intermarket_sweep, entered.minimum_quantity, entered.cross_type, _ORDER_STATE_LIVE,
            _BBO_WEIGHT_NOT_GIVEN))
        call.events.append(OrderAccepted(call.now_ns, participant, order.token, locate, order.order_ref, side,
                                         order.shares, order.price, ioc))
        if self.batch_interval_ns is not None:
            self._batch_orders.append(_Entered(order, ioc, entered.stock))
            return
        book = self._books[locate]
        for resting, traded in book.match(side, order.price, order.shares):
            order.shares -= traded
            match = self._next_match
            self._next_match += 1
            self._publish(call, itch.OrderExecuted(locate, 0, 0, resting.order_ref, traded, match))
            call.answer(participant, Executed(call.timestamp, order.token, traded, resting.price,
                                              _LIQUIDITY_REMOVED, match))
            call.answer(resting.owner, Executed(call.timestamp, resting.token, traded, resting.price,
                                                _LIQUIDITY_ADDED, match))
            call.events.append(Fill(call.now_ns, locate, match, resting.price, traded, side, participant,
                                    order.token, order.order_ref, resting.owner, resting.token,
                                    resting.order_ref))
        if not order.shares:
            return
        if ioc:
            cancelled, order.shares = order.shares, 0
            call.answer(participant, Canceled(call.timestamp, order.token, cancelled,
                                              CancelReason.IMMEDIATE_OR_CANCEL.value))
            call.events.append(OrderCanceled(call.now_ns, participant, order.token, locate, order.order_ref,
                                             cancelled, 0, CancelReason.IMMEDIATE_OR_CANCEL))
            return
        book.add(order)
        self._publish(call, itch.AddOrder(locate, 0, 0, order.order_ref, _ITCH_SIDE[side], order.shares,
                                          entered.stock, order.price))
        call.events.append(OrderRested(call.now_ns, participant, order.token, locate, order.order_ref, side,
                                       order.shares, order.price))

    def _reject_reason(self, session: _Session, entered: EnterOrder) -> RejectReason | None:
        if not self.is_open:
            return RejectReason.CLOSED
        if entered.token in session.orders:
            return RejectReason.DUPLICATE_TOKEN
        if entered.stock not in self._locates:
            return RejectReason.UNKNOWN_STOCK
        if entered.side not in _SIDES:
            return RejectReason.INVALID_SIDE
        if not 0 < entered.shares <= MAX_SHARES:
            return RejectReason.INVALID_SHARES
        if not 0 < entered.price <= MAX_PRICE:
            return RejectReason.INVALID_PRICE
        return None

    def _cancel(self, call: _Call, participant: str, cancel: CancelOrder, *, batched: bool = False) -> None:
        """Apply `cancel`; in batch mode, on arrival, only an unknown token or a done order is settled at once."""
        order = self._sessions[participant].orders.get(cancel.token)
        if order is None or not order.shares:
            if order is None:
                self.unknown_cancels += 1
                reason = IgnoredCancelReason.UNKNOWN_TOKEN
            else:
                self.late_cancels += 1
                reason = IgnoredCancelReason.TOO_LATE
            call.events.append(CancelIgnored(call.now_ns, participant, cancel.token, reason))
            return
        if self.batch_interval_ns is not None and not batched:
            self._batch_cancels.append((participant, cancel))
            return
        book = self._books[order.locate]
        on_feed = order.order_ref in book  # else entered in this batch's interval: never published
        if on_feed:
            decrement = book.reduce(order.order_ref, cancel.shares)
        else:
            decrement = max(0, order.shares - cancel.shares)
            order.shares -= decrement
        if not decrement:
            return
        if on_feed and order.shares:
            self._publish(call, itch.OrderCancel(order.locate, 0, 0, order.order_ref, decrement))
        elif on_feed:
            self._publish(call, itch.OrderDelete(order.locate, 0, 0, order.order_ref))
        call.answer(participant, Canceled(call.timestamp, order.token, decrement, CancelReason.USER.value))
        call.events.append(OrderCanceled(call.now_ns, participant, order.token, order.locate, order.order_ref,
                                         decrement, order.shares, CancelReason.USER))

    def _auction(self, call: _Call, instrument: Instrument, entered: list[_Entered]) -> None:
        """One instrument's call auction at the end of a batch, its fills published, the remainders settled."""
        locate = instrument.locate
        book = self._books[locate]
        on_feed = {order.order_ref for side in (Side.BID, Side.ASK) for order in book.orders(side)}
        price, fills = book.cross([item.order for item in entered])
        for buy, sell, traded in fills:
            resting, aggressor = (buy, sell) if buy.order_ref < sell.order_ref else (sell, buy)
            match = self._next_match
            self._next_match += 1
            if resting.order_ref not in on_feed:
                self._publish(call, itch.Trade(locate, 0, 0, 0, _ITCH_SIDE[resting.side], traded, instrument.symbol,
                                               price, match))
            elif price == resting.price:
                self._publish(call, itch.OrderExecuted(locate, 0, 0, resting.order_ref, traded, match))
            else:
                self._publish(call, itch.OrderExecutedWithPrice(locate, 0, 0, resting.order_ref, traded, match,
                                                                _PRINTABLE, price))
            call.answer(aggressor.owner, Executed(call.timestamp, aggressor.token, traded, price, _LIQUIDITY_REMOVED,
                                                  match))
            call.answer(resting.owner, Executed(call.timestamp, resting.token, traded, price, _LIQUIDITY_ADDED,
                                                match))
            call.events.append(Fill(call.now_ns, locate, match, price, traded, aggressor.side, aggressor.owner,
                                    aggressor.token, aggressor.order_ref, resting.owner, resting.token,
                                    resting.order_ref))
        for item in entered:
            order = item.order
            if not order.shares:
                continue
            if item.immediate_or_cancel:
                cancelled, order.shares = order.shares, 0
                call.answer(order.owner, Canceled(call.timestamp, order.token, cancelled,
                                                  CancelReason.IMMEDIATE_OR_CANCEL.value))
                call.events.append(OrderCanceled(call.now_ns, order.owner, order.token, locate, order.order_ref,
                                                 cancelled, 0, CancelReason.IMMEDIATE_OR_CANCEL))
                continue
            book.add(order)
            self._publish(call, itch.AddOrder(locate, 0, 0, order.order_ref, _ITCH_SIDE[order.side], order.shares,
                                              item.stock, order.price))
            call.events.append(OrderRested(call.now_ns, order.owner, order.token, locate, order.order_ref,
                                           order.side, order.shares, order.price))

    # --- calls, feed and sessions ------------------------------------------------------------------

    def _begin(self, now_ns: int) -> _Call:
        if not isinstance(now_ns, int) or isinstance(now_ns, bool) or now_ns < self._last_ns:
            raise ValueError(f"now_ns must be an int not before the last call's {self._last_ns}, not {now_ns!r}")
        timestamp = self.feed.start_ns + now_ns
        if timestamp >= NS_PER_DAY:
            raise ValueError(f"now_ns {now_ns} is past midnight (the session starts {self.feed.start_ns} ns "
                             "after midnight)")
        if self._next_batch_ns is not None and now_ns > self._next_batch_ns:
            raise ValueError(f"the batch ending at {self._next_batch_ns} ns must be run before a call at {now_ns} ns")
        self._last_ns = now_ns
        return _Call(now_ns, timestamp)

    def _publish(self, call: _Call, message: itch.ItchMessage) -> None:
        """Add `message` to the call's feed, with the call's timestamp and its tracking number."""
        sequence = self._next_sequence + len(call.itch)
        call.itch.append(itch.encode(dataclasses.replace(message, tracking=sequence & 0xFFFF,
                                                         timestamp=call.timestamp)))

    def _finish(self, call: _Call) -> Emission:
        """The call's Emission: its ITCH in as few MoldUDP64 packets as fit, and its answers as bytes."""
        frames = []
        packet: list[bytes] = []
        size = MOLD_HEADER_LENGTH
        for raw in call.itch:
            if packet and size + 2 + len(raw) > self.max_udp_payload:
                frames.append(self._frame(packet))
                packet, size = [], MOLD_HEADER_LENGTH
            packet.append(raw)
            size += 2 + len(raw)
        if packet:
            frames.append(self._frame(packet))
        responses = {participant: b"".join(packets) for participant, packets in call.responses.items()}
        return Emission(frames, responses, call.events)

    def _frame(self, messages: list[bytes]) -> bytes:
        packet = MoldPacket(self.feed.session, self._next_sequence, tuple(messages))
        self._next_sequence += len(messages)
        return self._frames.frame(encode_packet(packet))

    def _session(self, participant: str) -> _Session:
        session = self._sessions.get(participant)
        if session is None:
            raise ValueError(f"unknown participant {participant!r}")
        return session

    def _book(self, locate: int) -> OrderBook:
        book = self._books.get(locate)
        if book is None:
            raise ValueError(f"no instrument has stock locate {locate!r}")
        return book


def _carries_ouch(packet: SoupPacket) -> bool:
    """Whether a client packet carries OUCH (Unsequenced Data), is ignored (heartbeat), or is not served."""
    if isinstance(packet, UnsequencedData):
        return True
    if isinstance(packet, ClientHeartbeat):
        return False
    raise ProtocolError(f"SoupBinTCP packet type {packet.TYPE!r} is not served (only 'U' and 'R')")


def _check_instruments(instruments: Sequence[tuple[int, str]]) -> tuple[Instrument, ...]:
    checked = []
    for pair in instruments:
        try:
            locate, symbol = pair
        except (TypeError, ValueError):
            raise ValueError(f"an instrument is a (locate, symbol) pair, not {pair!r}") from None
        if not isinstance(locate, int) or isinstance(locate, bool) or not 1 <= locate <= _MAX_LOCATE:
            raise ValueError(f"stock locate must be 1..{_MAX_LOCATE}, not {locate!r}")
        if not isinstance(symbol, str) or not 1 <= len(symbol) <= _SYMBOL_WIDTH or " " in symbol \
                or not symbol.isascii():
            raise ValueError(f"symbol must be 1..{_SYMBOL_WIDTH} ASCII characters without spaces, not {symbol!r}")
        checked.append(Instrument(locate, symbol))
    if not checked:
        raise ValueError("an exchange needs at least one instrument")
    if len({i.locate for i in checked}) != len(checked) or len({i.symbol for i in checked}) != len(checked):
        raise ValueError(f"stock locates and symbols must be unique: {instruments!r}")
    return tuple(checked)


def _check_participants(participants: Sequence[str]) -> None:
    if isinstance(participants, str) or not participants:
        raise ValueError(f"participants must be a non-empty sequence of names, not {participants!r}")
    for name in participants:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a participant is a non-empty name, not {name!r}")
    if len(set(participants)) != len(participants):
        raise ValueError(f"participant names must be unique: {participants!r}")
