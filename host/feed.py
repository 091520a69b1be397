"""Seeded ITCH feed generator: a simulated market as MoldUDP64 in UDP frames.

`generate_messages` simulates a trading day over a few instruments: system
events ('O', 'S'), a Stock Directory 'R' (locates 1..N) and a Trading Action
'H' per instrument, start of market hours 'Q', then order flow with the
real-day mix (about A 44 %, D 43 %, U 8 %, E 2 %, X 1 %, plus some F, C, P,
H and the framed-only L and I) against a consistent book per instrument
(deletes, executions, cancels and replaces always name a live order,
replaces take a new reference, prices move around a random-walk mid,
timestamps strictly increase), then 'M', 'E', 'C'.

`generate_packets` packs the messages into MoldUDP64 packets (1..N messages,
never more than fits one 1500-byte MTU, messages close in time share a
packet) with heartbeats when the feed is idle and an optional end of
session. `generate_feed` puts them into Ethernet/IPv4/UDP frames (without
FCS, as `PcapRecord`s for `write_pcap`) and injects the configured faults:
dropped packets (gaps), resent packets (duplicates), swapped neighbours
(reordering) and corrupted frames from the `CorruptKind` catalogue.

`corrupt(frame, kind, rng)` makes one bad frame of a kind from a good one; the
receive-path tests use the same catalogue. Everything is deterministic for
a given seed: all randomness comes from one `random.Random` per call.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import ipaddress
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
from .codec import itch
from .codec.moldudp64 import HEADER_LENGTH as MOLD_HEADER_LENGTH
from .codec.moldudp64 import MoldPacket, encode_packet
from .codec.net import IPV4_MORE_FRAGMENTS, EthernetHeader, Ipv4Header, UdpHeader, internet_checksum, parse_udp_frame, udp_frame
from .codec.pcap import PcapRecord

__all__ = [
    "FeedConfig",
    "CorruptKind",
    "DEFAULT_INSTRUMENTS",
    "MAX_UDP_PAYLOAD",
    "SCENARIOS",
    "generate_messages",
    "generate_packets",
    "generate_feed",
    "start_of_day",
    "FrameBuilder",
    "corrupt",
]

#: IPv4 multicast maps to Ethernet 01:00:5e plus the address's low 23 bits (RFC 1112).
_MULTICAST_MAC_PREFIX = bytes.fromhex("01005e")
DEFAULT_INSTRUMENTS = ("LEAD", "TGT", "ALFA", "BRVO", "CHRL", "DLTA", "ECHO", "FXTR")
MTU = 1500
IPV4_UDP_HEADERS = 20 + 8
MAX_UDP_PAYLOAD = MTU - IPV4_UDP_HEADERS  # 1472
ETH_HEADER = EthernetHeader.SIZE
UDP_PAYLOAD_OFFSET = ETH_HEADER + IPV4_UDP_HEADERS  # 42
PRICE_TICK = 100  # $0.01 in ITCH price units (4 implied decimals)

#: Order-flow event weights (percent of messages after 'Q'). D/E/X/U/C fall
#: back to an Add Order when the instrument has no live order.
ORDER_FLOW_MIX = {
    "A": 43.5, "D": 42.0, "U": 8.0, "E": 2.0, "X": 1.5,
    "F": 1.5, "C": 0.4, "P": 0.6, "H": 0.1, "L": 0.2, "I": 0.2,
}


@dataclass(frozen=True)
class FeedConfig:
    """Everything that shapes a generated feed; two equal configs give equal feeds."""

    seed: int = 0
    messages: int = 10_000  # order-flow messages (between 'Q' and 'M')
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS
    start_ns: int = 34_199_000_000_000  # 09:29:59 ITCH time (ns since midnight)
    day_start_ns: int = 1_704_153_600_000_000_000  # epoch ns of midnight, for pcap timestamps
    mean_gap_ns: int = 20_000  # mean time between order-flow messages outside bursts
    burst_probability: float = 0.3  # chance that the next message follows within 1..200 ns
    max_messages_per_packet: int = 20
    coalesce_ns: int = 1_000  # messages this close to a packet's first one may share it
    heartbeat_interval_ns: int = 1_000_000_000
    end_of_session: bool = True
    session: str = "TICK2TRADE"
    first_sequence: int = 1
    src_mac: bytes = bytes.fromhex("020000000001")
    dst_mac: bytes = _MULTICAST_MAC_PREFIX + (int(ipaddress.IPv4Address(DEFAULT_DST_IP)) & 0x7FFFFF).to_bytes(3, "big")
    src_ip: bytes = ipaddress.IPv4Address("10.0.0.1").packed
    dst_ip: bytes = ipaddress.IPv4Address(DEFAULT_DST_IP).packed
    src_port: int = 26400
    dst_port: int = DEFAULT_DST_PORT
    # fault injection, per packet (probabilities), all off by default
    gap_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    corrupt_probability: float = 0.0
    corrupt_kinds: tuple[CorruptKind, ...] | None = None  # None: the whole catalogue
    # "market": order flow over every instrument; "snipe": the first instrument leads, the
    # second is quoted by a slow market maker whose quotes go stale when the lead moves
    scenario: str = "market"


# --- the market ---------------------------------------------------------------


def start_of_day(instruments: Iterable[tuple[int, str]], timestamps: Iterator[int]) -> Iterator[itch.Message]:
    """The messages that open a day, tracking number 0: System Events 'O' and 'S', a Stock Directory
    and a Stock Trading Action (trading) per (locate, symbol), System Event 'Q'; each message takes
    the next of `timestamps`."""
    instruments = list(instruments)
    yield itch.SystemEvent(0, 0, next(timestamps), "O")
    yield itch.SystemEvent(0, 0, next(timestamps), "S")
    for locate, stock in instruments:
        yield itch.StockDirectory(locate, 0, next(timestamps), stock, "Q", "N", 100, "N", "C", "", "P", "N", "N",
                                  "1", "N", 0, "N")
    for locate, stock in instruments:
        yield itch.StockTradingAction(locate, 0, next(timestamps), stock, "T", " ", "")
    yield itch.SystemEvent(0, 0, next(timestamps), "Q")


class _Book:
    """Live orders of one instrument, with O(1) random pick and removal."""

    def __init__(self, locate: int, stock: str, mid: int):
        self.locate = locate
        self.stock = stock
        self.mid = mid
        self.orders: dict[int, list] = {}  # ref -> [side, price, shares]
        self.refs: list[int] = []
        self.index: dict[int, int] = {}

    def add(self, ref: int, side: str, price: int, shares: int) -> None:
        self.orders[ref] = [side, price, shares]
        self.index[ref] = len(self.refs)
        self.refs.append(ref)

    def remove(self, ref: int) -> list:
        position = self.index.pop(ref)
        last = self.refs.pop()
        if last != ref:
            self.refs[position] = last
            self.index[last] = position
        return self.orders.pop(ref)

    def pick(self, rng: random.Random) -> int:
        return self.refs[int(rng.random() * len(self.refs))]


class _Market:
    """Order flow generator over several books; holds the only random state."""

    def __init__(self, config: FeedConfig, rng: random.Random):
        self.config = config
        self.rng = rng
        self.books = [_Book(locate, stock, PRICE_TICK * rng.randrange(2_000, 50_000))
                      for locate, stock in enumerate(config.instruments, start=1)]
        self.timestamp = config.start_ns
        self.next_ref = 1
        self.next_match = 1
        self.kinds = list(ORDER_FLOW_MIX)
        total = sum(ORDER_FLOW_MIX.values())
        self.cumulative = []
        running = 0.0
        for weight in ORDER_FLOW_MIX.values():
            running += weight / total
            self.cumulative.append(running)
        self.makers = {
            "A": self._add, "F": self._add, "D": self._delete, "U": self._replace, "E": self._execute,
            "C": self._execute, "X": self._cancel, "P": self._trade, "H": self._trading_action,
            "L": self._participant_position, "I": self._imbalance,
        }

    def tick(self) -> int:
        rng = self.rng
        if rng.random() < self.config.burst_probability:
            self.timestamp += rng.randint(1, 200)
        else:
            self.timestamp += 1 + int(rng.expovariate(1.0 / self.config.mean_gap_ns))
        return self.timestamp

    def system_event(self, code: str) -> itch.SystemEvent:
        return itch.SystemEvent(0, 0, self.tick(), code)

    def preamble(self) -> Iterator[itch.Message]:
        return start_of_day([(book.locate, book.stock) for book in self.books], iter(self.tick, None))

    def event(self) -> itch.Message:
        rng = self.rng
        book = self.books[int(rng.random() * len(self.books))]
        if rng.random() < 0.05:
            self._drift(book, PRICE_TICK * rng.choice((-1, 1)))
        kind = self.kinds[bisect.bisect_left(self.cumulative, rng.random())]
        return self.makers[kind](book, kind)

    def _drift(self, book: _Book, step: int) -> None:
        """The random walk of an instrument's mid."""
        book.mid = max(PRICE_TICK, book.mid + step)

    def _price(self, book: _Book, side: str) -> int:
        distance = PRICE_TICK * (1 + int(self.rng.expovariate(0.4)))
        return max(PRICE_TICK, book.mid - distance if side == "B" else book.mid + distance)

    def _shares(self) -> int:
        return 100 * self.rng.choice((1, 1, 1, 2, 2, 3, 5, 10))

    def _new_ref(self) -> int:
        self.next_ref += 1
        return self.next_ref - 1

    def _new_match(self) -> int:
        self.next_match += 1
        return self.next_match - 1

    def _add(self, book: _Book, kind: str) -> itch.AddOrder:
        side = self.rng.choice("BS")
        price, shares, ref = self._price(book, side), self._shares(), self._new_ref()
        book.add(ref, side, price, shares)
        if kind == "F":
            return itch.AddOrderMpid(book.locate, 0, self.tick(), ref, side, shares, book.stock, price, "TTMM")
        return itch.AddOrder(book.locate, 0, self.tick(), ref, side, shares, book.stock, price)

    def _delete(self, book: _Book, kind: str) -> itch.Message:
        if not book.refs:
            return self._add(book, "A")
        return self._delete_ref(book, book.pick(self.rng))

    def _replace(self, book: _Book, kind: str) -> itch.Message:
        if not book.refs:
            return self._add(book, "A")
        old = book.pick(self.rng)
        side = book.remove(old)[0]
        price, shares, ref = self._price(book, side), self._shares(), self._new_ref()
        book.add(ref, side, price, shares)
        return itch.OrderReplace(book.locate, 0, self.tick(), old, ref, shares, price)

    def _execute(self, book: _Book, kind: str) -> itch.Message:
        if not book.refs:
            return self._add(book, "A")
        ref = book.pick(self.rng)
        order = book.orders[ref]
        executed = min(order[2], 100 * self.rng.randint(1, 3))
        order[2] -= executed
        if not order[2]:
            book.remove(ref)
        if kind == "C":
            return itch.OrderExecutedWithPrice(book.locate, 0, self.tick(), ref, executed, self._new_match(), "Y",
                                               order[1] + PRICE_TICK * self.rng.choice((-1, 1)))
        return itch.OrderExecuted(book.locate, 0, self.tick(), ref, executed, self._new_match())

    def _cancel(self, book: _Book, kind: str) -> itch.Message:
        if not book.refs:
            return self._add(book, "A")
        ref = book.pick(self.rng)
        order = book.orders[ref]
        if order[2] <= 100:  # a cancel of everything is sent as a delete
            return self._delete_ref(book, ref)
        cancelled = 100 * self.rng.randint(1, order[2] // 100 - 1)
        order[2] -= cancelled
        return itch.OrderCancel(book.locate, 0, self.tick(), ref, cancelled)

    def _delete_ref(self, book: _Book, ref: int) -> itch.OrderDelete:
        book.remove(ref)
        return itch.OrderDelete(book.locate, 0, self.tick(), ref)

    def _trade(self, book: _Book, kind: str) -> itch.Trade:
        side = self.rng.choice("BS")
        return itch.Trade(book.locate, 0, self.tick(), 0, side, self._shares(), book.stock, book.mid,
                          self._new_match())

    def _trading_action(self, book: _Book, kind: str) -> itch.StockTradingAction:
        return itch.StockTradingAction(book.locate, 0, self.tick(), book.stock, "T", " ", "")

    def _participant_position(self, book: _Book, kind: str) -> itch.FramedMessage:
        # MPID, stock, primary market maker, market maker mode, participant state
        body = b"TTMM" + book.stock.encode().ljust(8) + b"YNA"
        return itch.FramedMessage("L", book.locate, 0, self.tick(), body)

    def _imbalance(self, book: _Book, kind: str) -> itch.FramedMessage:
        # paired shares, imbalance shares, direction, stock, far, near, current reference price,
        # cross type, price variation indicator
        body = ((1000).to_bytes(8, "big") + (200).to_bytes(8, "big") + b"B" + book.stock.encode().ljust(8)
                + (3 * book.mid.to_bytes(4, "big")) + b"O" + b"L")
        return itch.FramedMessage("I", book.locate, 0, self.tick(), body)


class _SnipeMarket(_Market):
    """The race's market: a lead instrument whose price moves, and a target quoted late.

    Instrument 1 (the lead) has a fast market maker that keeps the best bid
    and offer one tick either side of the lead's mid, which moves only by
    jumps. Instrument 2 (the target, the same asset) has a slow market maker
    quoting one tick either side of the lead's mid as it last saw it: until
    it catches up, a lead move leaves its quotes stale, which is what the
    stale-quote snipe hits. Background order flow (the ordinary mix) rests
    two to ``BAND`` ticks from the mid in both books, and is cancelled when a
    move leaves it outside that band, as liquidity providers do; so each side
    of these books holds a few price levels, which a book with a few tracked
    levels follows exactly. Other instruments, if any, trade as usual.
    """

    LEAD_MOVE = 0.08  # chance per event that the lead's mid jumps
    TARGET_CATCH_UP = 0.12  # chance per event that the target's maker re-quotes
    BAND = 3  # background orders rest 2..BAND ticks from the mid

    def __init__(self, config: FeedConfig, rng: random.Random):
        if len(config.instruments) < 2:
            raise ValueError("the snipe scenario needs at least two instruments (lead and target)")
        super().__init__(config, rng)
        self.lead, self.target = self.books[0], self.books[1]
        self.target.mid = self.lead.mid
        self.pending: list[itch.Message] = []
        self.quotes: dict[int, dict[str, int]] = {self.lead.locate: {}, self.target.locate: {}}

    def _requote(self, book: _Book, mid: int) -> None:
        """Move ``book`` to ``mid``: the maker's quotes a tick either side, background outside the band gone."""
        book.mid = mid
        quotes = self.quotes[book.locate]
        for side, price in (("B", mid - PRICE_TICK), ("S", mid + PRICE_TICK)):
            old = quotes.get(side)
            shares, ref = self._shares(), self._new_ref()
            if old in book.orders:
                book.remove(old)
                self.pending.append(itch.OrderReplace(book.locate, 0, self.tick(), old, ref, shares, price))
            else:
                self.pending.append(itch.AddOrder(book.locate, 0, self.tick(), ref, side, shares, book.stock,
                                                  price))
            book.add(ref, side, price, shares)
            quotes[side] = ref
        low, high = mid - self.BAND * PRICE_TICK, mid + self.BAND * PRICE_TICK
        for ref in [ref for ref in book.refs if ref not in quotes.values()]:
            side, price, _shares = book.orders[ref]
            if not (low <= price < mid if side == "B" else mid < price <= high):
                self.pending.append(self._delete_ref(book, ref))

    def event(self) -> itch.Message:
        rng = self.rng
        if not self.pending:
            if rng.random() < self.LEAD_MOVE:
                jump = rng.choice((1, 1, 1, 2, 3, 5))
                self._requote(self.lead, max(10 * PRICE_TICK, self.lead.mid + PRICE_TICK * jump * rng.choice((-1, 1))))
            elif rng.random() < self.TARGET_CATCH_UP and self.target.mid != self.lead.mid:
                self._requote(self.target, self.lead.mid)
            elif not self.quotes[self.lead.locate]:
                self._requote(self.lead, self.lead.mid)
                self._requote(self.target, self.target.mid)
        if self.pending:
            return self.pending.pop(0)
        return super().event()

    def _drift(self, book: _Book, step: int) -> None:
        if book not in (self.lead, self.target):  # the pair's mids move only as above
            super()._drift(book, step)

    def _price(self, book: _Book, side: str) -> int:
        distance = PRICE_TICK * self.rng.randint(2, self.BAND)
        return max(PRICE_TICK, book.mid - distance if side == "B" else book.mid + distance)


#: Feed scenarios by name.
SCENARIOS = {"market": _Market, "snipe": _SnipeMarket}


def generate_messages(config: FeedConfig) -> Iterator[itch.Message]:
    """The day's messages in order: preamble, `config.messages` of order flow, closing events."""
    if config.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {config.scenario!r}; choose one of {', '.join(SCENARIOS)}")
    market = SCENARIOS[config.scenario](config, random.Random(config.seed))
    yield from market.preamble()
    for _ in range(config.messages):
        yield market.event()
    for code in "MEC":
        yield market.system_event(code)


# --- packets and frames ---------------------------------------------------------


def generate_packets(config: FeedConfig, messages: Iterable[itch.Message] | None = None
                     ) -> Iterator[tuple[int, MoldPacket]]:
    """(send time in ITCH ns, packet) for the feed, before any fault injection.

    A packet is sent at the timestamp of its last message. Consecutive
    messages share a packet while they are within `coalesce_ns` of its first
    message, the count stays within `max_messages_per_packet` and the payload
    within one MTU. A heartbeat goes out every `heartbeat_interval_ns` of
    silence; an end-of-session packet closes the feed if configured.
    """
    if not 1 <= config.max_messages_per_packet < 0xFFFF:
        raise ValueError("max_messages_per_packet must be 1..65534")
    sequence = config.first_sequence
    last_sent = config.start_ns
    pending: list[bytes] = []
    pending_size = MOLD_HEADER_LENGTH
    first_ts = last_ts = 0

    def flush() -> Iterator[tuple[int, MoldPacket]]:
        nonlocal sequence, pending, pending_size, last_sent
        yield last_ts, MoldPacket(config.session, sequence, tuple(pending))
        sequence += len(pending)
        last_sent = last_ts
        pending, pending_size = [], MOLD_HEADER_LENGTH

    for message in (generate_messages(config) if messages is None else messages):
        raw = itch.encode(message)
        ts = message.timestamp
        if pending and (ts - first_ts > config.coalesce_ns
                        or len(pending) == config.max_messages_per_packet
                        or pending_size + 2 + len(raw) > MAX_UDP_PAYLOAD):
            yield from flush()
        while ts - last_sent >= config.heartbeat_interval_ns and not pending:
            last_sent += config.heartbeat_interval_ns
            yield last_sent, MoldPacket(config.session, sequence)
        if not pending:
            first_ts = ts
        pending.append(raw)
        pending_size += 2 + len(raw)
        last_ts = ts
    if pending:
        yield from flush()
    if config.end_of_session:
        yield last_sent + 1, MoldPacket(config.session, sequence, end_of_session=True)


class FrameBuilder:
    """Frames of the feed's addresses; `udp_frame` headers memoised by payload length.

    With the UDP checksum off (as NASDAQ sends it) the 42 header bytes
    depend only on the payload length, and building them is most of the
    cost of a frame.
    """

    def __init__(self, config: FeedConfig):
        self.config = config
        self.headers: dict[int, bytes] = {}

    def frame(self, payload: bytes) -> bytes:
        header = self.headers.get(len(payload))
        if header is None:
            c = self.config
            header = udp_frame(bytes(len(payload)), src_mac=c.src_mac, dst_mac=c.dst_mac, src_ip=c.src_ip,
                               dst_ip=c.dst_ip, src_port=c.src_port, dst_port=c.dst_port,
                               udp_checksum=False)[:UDP_PAYLOAD_OFFSET]
            self.headers[len(payload)] = header
        return header + payload


def generate_feed(config: FeedConfig) -> list[PcapRecord]:
    """The feed as frames without FCS, with the configured faults injected.

    Per packet, in this order: dropped with `gap_probability`; else replaced
    by a corrupted frame with `corrupt_probability`; sent; then swapped with
    the frame before it with `reorder_probability` (timestamps stay in
    order; the frames trade places) and followed by a resend of one of the
    last 8 good frames with `duplicate_probability`.
    """
    rng = random.Random(f"faults/{config.seed}")
    kinds = tuple(CorruptKind) if config.corrupt_kinds is None else config.corrupt_kinds
    builder = FrameBuilder(config)
    records: list[PcapRecord] = []
    recent_good: list[bytes] = []
    for send_ns, packet in generate_packets(config):
        ts = config.day_start_ns + send_ns
        if rng.random() < config.gap_probability:
            continue
        frame = builder.frame(encode_packet(packet))
        if packet.messages and rng.random() < config.corrupt_probability:
            frame = corrupt(frame, rng.choice(kinds), rng)
        else:
            recent_good = [*recent_good[-7:], frame]
        records.append(PcapRecord(ts, frame))
        if len(records) >= 2 and rng.random() < config.reorder_probability:
            records[-2:] = [PcapRecord(records[-2].ts_ns, records[-1].data), PcapRecord(ts, records[-2].data)]
        if recent_good and rng.random() < config.duplicate_probability:
            records.append(PcapRecord(ts + 1, rng.choice(recent_good)))
    return records


# --- the bad-input catalogue -------------------------------------------------------


class CorruptKind(enum.Enum):
    """Ways a frame goes bad; each trips one check of docs/receive-path.md."""

    RUNT = "runt"  # shorter than Ethernet + IPv4 + UDP headers
    VLAN_TAG = "vlan_tag"  # 802.1Q tag in front of the EtherType
    WRONG_ETHERTYPE = "wrong_ethertype"
    IP_OPTIONS = "ip_options"  # IHL 6
    IP_LENGTH_SHORT = "ip_length_short"  # IPv4 total length below 28
    FRAGMENT = "fragment"  # MF set or a fragment offset
    WRONG_PROTOCOL = "wrong_protocol"  # TCP instead of UDP
    BAD_IP_CHECKSUM = "bad_ip_checksum"
    WRONG_DST_IP = "wrong_dst_ip"
    WRONG_PORT = "wrong_port"
    BAD_UDP_LENGTH = "bad_udp_length"
    TRUNCATED = "truncated"  # frame ends before the IPv4 total length
    MOLD_SHORT = "mold_short"  # UDP payload shorter than the MoldUDP64 header
    SESSION_MISMATCH = "session_mismatch"
    MOLD_COUNT_HIGH = "mold_count_high"  # header count above the blocks present
    MOLD_COUNT_LOW = "mold_count_low"  # header count one below the blocks present
    MESSAGE_PAST_END = "message_past_end"  # last block's length runs past the payload
    ZERO_LENGTH_MESSAGE = "zero_length_message"  # a length field of 0 (framing stops)
    BAD_MESSAGE_LENGTH = "bad_message_length"  # a known type one byte too long
    UNKNOWN_ITCH_TYPE = "unknown_itch_type"


UNKNOWN_TYPES = b"GMTZabcz"
assert not set(UNKNOWN_TYPES.decode()) & set(itch.MESSAGE_LENGTHS)


def _ip_header(frame: bytes) -> Ipv4Header:
    return Ipv4Header.decode(frame[ETH_HEADER:])


def _with_ip(frame: bytes, **changes) -> bytes:
    """`frame` with IPv4 header fields changed and the header checksum made correct again."""
    header = dataclasses.replace(_ip_header(frame), **changes).with_checksum()
    return frame[:ETH_HEADER] + header.encode() + frame[ETH_HEADER + header.MIN_SIZE:]


def _rebuild(frame: bytes, payload: bytes, **changes) -> bytes:
    """A well-formed frame with `frame`'s addresses (and `changes`) carrying `payload`."""
    eth, ip, udp, _ = parse_udp_frame(frame, verify_checksums=False)
    fields = dict(src_mac=eth.src, dst_mac=eth.dst, src_ip=ip.src, dst_ip=ip.dst, src_port=udp.src_port,
                  dst_port=udp.dst_port, ttl=ip.ttl, identification=ip.identification,
                  udp_checksum=bool(udp.checksum))
    return udp_frame(payload, **{**fields, **changes})


def _block_offsets(payload: bytes) -> list[int]:
    """Offsets in `payload` of the length fields of its complete message blocks."""
    offsets, position = [], MOLD_HEADER_LENGTH
    while position + 2 <= len(payload):
        end = position + 2 + int.from_bytes(payload[position:position + 2], "big")
        if end > len(payload):
            break
        offsets.append(position)
        position = end
    return offsets


def corrupt(frame: bytes, kind: CorruptKind, rng: random.Random) -> bytes:
    """A bad frame of `kind` made from `frame`, everything else left well-formed.

    `frame` must be a good feed frame (untagged Ethernet, IPv4 without
    options, UDP, a MoldUDP64 packet with at least one message). Checksums
    and lengths that the kind does not target are recomputed, so exactly the
    intended check fails.
    """
    payload = frame[UDP_PAYLOAD_OFFSET:]
    blocks = _block_offsets(payload)
    if not blocks:
        raise ValueError("corrupt() needs a frame whose packet carries at least one message")
    match kind:
        case CorruptKind.RUNT:
            return frame[:rng.randrange(ETH_HEADER, UDP_PAYLOAD_OFFSET)]
        case CorruptKind.VLAN_TAG:
            return frame[:12] + b"\x81\x00" + rng.randrange(1, 4095).to_bytes(2, "big") + frame[12:]
        case CorruptKind.WRONG_ETHERTYPE:
            return frame[:12] + rng.choice((0x86DD, 0x0806, 0x88CC, 0x0801)).to_bytes(2, "big") + frame[14:]
        case CorruptKind.IP_OPTIONS:
            ip = bytearray(frame[ETH_HEADER:ETH_HEADER + 20] + b"\x01\x01\x01\x00")  # NOP NOP NOP EOL
            ip[0] = 0x46
            ip[2:4] = (int.from_bytes(ip[2:4], "big") + 4).to_bytes(2, "big")
            ip[10:12] = b"\x00\x00"
            ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
            return frame[:ETH_HEADER] + bytes(ip) + frame[ETH_HEADER + 20:]
        case CorruptKind.IP_LENGTH_SHORT:
            return _with_ip(frame, total_length=rng.randrange(20, 28))
        case CorruptKind.FRAGMENT:
            if rng.random() < 0.5:
                return _with_ip(frame, flags=IPV4_MORE_FRAGMENTS, fragment_offset=0)  # first fragment: MF
            return _with_ip(frame, flags=0, fragment_offset=rng.randrange(1, 1 << 13))  # last fragment
        case CorruptKind.WRONG_PROTOCOL:
            return _with_ip(frame, protocol=6)
        case CorruptKind.BAD_IP_CHECKSUM:
            bad = bytearray(frame)
            bad[ETH_HEADER + 10] ^= rng.randrange(1, 256)
            return bytes(bad)
        case CorruptKind.WRONG_DST_IP:
            dst = bytearray(_ip_header(frame).dst)
            dst[3] ^= rng.randrange(1, 256)
            return _with_ip(frame, dst=bytes(dst))
        case CorruptKind.WRONG_PORT:
            port = UdpHeader.decode(frame[ETH_HEADER + 20:]).dst_port
            return _rebuild(frame, payload, dst_port=port ^ rng.randrange(1, 1 << 16))
        case CorruptKind.BAD_UDP_LENGTH:
            bad = bytearray(frame)
            length = int.from_bytes(bad[38:40], "big")
            bad[38:40] = ((length + rng.choice((-1, 1)) * rng.randrange(1, 8)) & 0xFFFF).to_bytes(2, "big")
            return bytes(bad)
        case CorruptKind.TRUNCATED:
            return frame[:rng.randrange(UDP_PAYLOAD_OFFSET, len(frame))]
        case CorruptKind.MOLD_SHORT:
            return _rebuild(frame, payload[:rng.randrange(0, MOLD_HEADER_LENGTH)])
        case CorruptKind.SESSION_MISMATCH:
            session = bytearray(payload[:10])
            session[rng.randrange(10)] ^= 0x20 | rng.randrange(1, 32)
            return _rebuild(frame, bytes(session) + payload[10:])
        case CorruptKind.MOLD_COUNT_HIGH | CorruptKind.MOLD_COUNT_LOW:
            count = int.from_bytes(payload[18:20], "big")
            count += rng.randrange(1, 6) if kind is CorruptKind.MOLD_COUNT_HIGH else -1
            return _rebuild(frame, payload[:18] + count.to_bytes(2, "big") + payload[20:])
        case CorruptKind.MESSAGE_PAST_END:
            last = blocks[-1]
            length = int.from_bytes(payload[last:last + 2], "big") + rng.randrange(1, 40)
            return _rebuild(frame, payload[:last] + length.to_bytes(2, "big") + payload[last + 2:])
        case CorruptKind.ZERO_LENGTH_MESSAGE:
            block = rng.choice(blocks)
            return _rebuild(frame, payload[:block] + b"\x00\x00" + payload[block + 2:])
        case CorruptKind.BAD_MESSAGE_LENGTH:
            block = rng.choice(blocks)
            length = int.from_bytes(payload[block:block + 2], "big")
            end = block + 2 + length
            longer = payload[:block] + (length + 1).to_bytes(2, "big") + payload[block + 2:end] + b"\x00"
            return _rebuild(frame, longer + payload[end:])
        case CorruptKind.UNKNOWN_ITCH_TYPE:
            block = rng.choice(blocks)
            bad_type = bytes([rng.choice(UNKNOWN_TYPES)])
            return _rebuild(frame, payload[:block + 2] + bad_type + payload[block + 3:])
    raise ValueError(f"unknown corruption kind {kind!r}")

