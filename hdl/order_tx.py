"""Order transmitter: turns each accepted order into an OUCH Enter Order frame on the tx beat stream.

docs/pipeline.md ("Order transmit", "Aborting an order frame", "Latency
probes") is the contract. A frame is 106 bytes (no FCS), 14 beats, made of
template registers, the order's fields, its slot's symbol, the TCP sequence
number and an order token whose last 8 characters are the token counter in
hex. One table below says where each field goes; the beats and both
checksums are derived from it, so that they cannot disagree.

The frame's first beat leaves one cycle after the order is accepted
(``ORDER_TX_LATENCY``), which leaves no time to sum the checksums once the
order is known, so they are split by what they depend on:

- everything that depends only on registers (the IPv4 header, and the TCP
  pseudo-header, header and payload fields of the template; each slot's
  symbol) is summed ahead, continuously, by pipelined adder trees;
- the per-order part (side, shares, price, sequence number, token digits,
  plus the two sums ahead) is summed from the cycle after the order is
  accepted, one level of two-input adds per cycle, and folded into the
  checksum in time for frame beat 6, the one that carries it.

Sums are kept unfolded (a few bits wider than 16) through each tree and folded
to 16 bits at its end, with both possible end-around carries computed side by
side, so no cycle holds more than one adder, of at most 21 bits.
"""

import enum as py_enum
import functools
import itertools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .moldudp64_rx import PacketEnd
from .order_types import PACKET_INDEX_WIDTH, STAMP_WIDTH, OrderRequest, Side
from .stream import BEAT_BYTES, Beat, rx_stream

__all__ = ["OrderTx", "OrderTxEvents", "TxState", "Confirmation", "FRAME_BYTES", "FRAME_BEATS",
           "ORDER_TX_LATENCY", "PROBE_DEPTH", "TCP_SEQ_STEP", "TEMPLATE_SETTLE_CYCLES", "CONFIRM_CYCLES"]

#: Bytes of an order frame (no FCS).
FRAME_BYTES = 106
#: Beats of an order frame; the last holds 2 bytes.
FRAME_BEATS = -(-FRAME_BYTES // BEAT_BYTES)
#: Cycles from an order valid at ``orders`` (transmitter idle) to its first beat valid at ``tx``.
ORDER_TX_LATENCY = 1
#: Orders whose latency probe pair is kept (indexed by token counter modulo this).
PROBE_DEPTH = 16
#: TCP payload bytes per frame (SoupBinTCP length, type, 49-byte Enter Order): the sequence step.
TCP_SEQ_STEP = 52
#: Cycles the template and symbol registers must hold still before an order is accepted (the
#: sums ahead need them to settle).
TEMPLATE_SETTLE_CYCLES = 8
#: Cycles after a fast order's acceptance (1 to this) in which the exact order must arrive at ``orders``
#: to confirm its frame.
CONFIRM_CYCLES = 16

_LAST_BEAT = FRAME_BEATS - 1
_ETHERNET_BYTES = 14
_IP_HEADER_BYTES = 20
_TCP_OFFSET = _ETHERNET_BYTES + _IP_HEADER_BYTES
_TCP_SEGMENT_BYTES = FRAME_BYTES - _TCP_OFFSET
_IPPROTO_TCP = 6
_TCP_CHECKSUM_BEAT = (_TCP_OFFSET + 16) // BEAT_BYTES
_HISTORY_DEPTH = 1 << PACKET_INDEX_WIDTH
#: The fields an exact order must share with a fast frame's order to confirm it (not the fair value:
#: it only feeds the risk gate's collar).
_CONFIRMED_FIELDS = ("slot", "side", "price", "shares", "stamp")


class _Source(py_enum.Enum):
    """Where a frame field's value comes from, which decides which checksum sum it goes into."""
    CONSTANT = py_enum.auto()
    TEMPLATE = py_enum.auto()   # template registers: summed ahead
    SYMBOL = py_enum.auto()     # the slot's symbol: summed ahead per slot
    ORDER = py_enum.auto()      # the order's side, shares, price
    SEQ = py_enum.auto()        # the frame's TCP sequence number
    TOKEN = py_enum.auto()      # the token counter's hex digits
    IP_CHECKSUM = py_enum.auto()
    TCP_CHECKSUM = py_enum.auto()


_PER_ORDER = (_Source.ORDER, _Source.SEQ, _Source.TOKEN)


class TxState(enum.Enum, shape=2):
    """What the transmitter is doing."""
    IDLE = 0          # no frame: the next order's first beat is loaded as soon as it is valid
    SEND = 1          # a frame beat is at tx
    HOLD_LAST = 2     # the last beat waits for the order's packet to end, and for a fast frame's
                      # confirmation or abort (tx has no beat)


class Confirmation(enum.Enum, shape=3):
    """Where the frame going out stands with the exact path: a frame's own state, beside ``TxState``."""
    EXACT = 0         # its order came from `orders`: nothing to confirm
    PENDING = 1       # a fast frame whose exact order has not been seen: its last beat is held
    COMPARED = 2      # the exact order, valid in the last cycle, was compared (registered field by field):
                      # the verdict is taken now, and the order consumed if it is the same
    CONFIRMED = 3     # a fast frame whose exact order was the same (and consumed)
    ABORT = 4         # a fast frame whose exact order differed or did not come in time: its last beat has err


class OrderTxEvents(data.Struct):
    """One strobe per counter of this stage, one cycle after the frame's last beat left."""
    orders_sent: 1      # no err (fast frames included)
    orders_aborted: 1   # err because the order's packet ended bad (not an unconfirmed fast frame)
    fast_confirmed: 1   # a fast frame the exact order confirmed (its packet may still have ended bad)
    fast_aborted: 1     # err because a fast frame was not confirmed


def _field_bytes(value, length):
    """The bytes of a big-endian field of ``length`` bytes, first on the wire first (ints stay ints)."""
    if isinstance(value, int):
        return [(value >> 8 * (length - 1 - i)) & 0xFF for i in range(length)]
    value = Value.cast(value)
    if len(value) > 8 * length:
        raise ValueError(f"a {len(value)}-bit value does not fit a {length}-byte field")
    value = Cat(value, Const(0, 8 * length - len(value)))
    return [value[8 * (length - 1 - i):8 * (length - i)] for i in range(length)]


def _checksum_terms(placed):
    """Values (16 bits, a constant last) whose sum has the ones'-complement sum of the bytes ``placed``.

    ``placed`` holds (offset, byte) pairs, offsets counted from an even
    position of the summed data: a byte at an even offset counts 256 times
    its value, one at an odd offset once (modulo 0xFFFF), whichever word it
    shares, so bytes of one parity can be paired with any of the other.
    Constant bytes (ints) are added up here.
    """
    constant, evens, odds = 0, [], []
    for offset, byte in placed:
        high = offset % 2 == 0
        if isinstance(byte, int):
            constant += byte << 8 if high else byte
        else:
            (evens if high else odds).append(byte)
    terms = [Cat(odd, even) for even, odd in itertools.zip_longest(evens, odds, fillvalue=Const(0, 8))]
    if constant % 0xFFFF:
        terms.append(Const(constant % 0xFFFF, 16))
    return terms


def _adder_tree(m, terms, name):
    """The plain sum of ``terms``, one level of two-input adds per cycle, each registered.

    Returns the sum and the cycles it lags its inputs. An unpaired term is
    carried to the next level as it is (it pairs with a registered sum
    there); the inputs of the per-order tree hold still for the whole frame,
    so no level needs to be aligned with another.
    """
    level, cycles = list(terms), 0
    while len(level) > 1:
        sums = []
        for i in range(0, len(level) - 1, 2):
            total = Signal(max(len(level[i]), len(level[i + 1])) + 1, name=f"{name}_level{cycles}_{i // 2}")
            m.d.sync += total.eq(level[i] + level[i + 1])
            sums.append(total)
        if len(level) % 2:
            sums.append(level[-1])
        level, cycles = sums, cycles + 1
    return level[0], cycles


def _register_fold(m, total, name):
    """Register the ones'-complement sum (16 bits) of the unfolded sum ``total`` (under 2**32): one cycle.

    ``total`` is congruent modulo 0xFFFF to ``low + high`` (its 16-bit halves);
    when that overflows 16 bits the end-around carry adds 1, so both
    ``low + high`` and ``low + high + 1`` are computed side by side and the
    carry chooses. A non-zero total folds to 1..0xFFFF, never to 0, as
    RFC 1071 sums do.
    """
    low, high = total[:16], total[16:]
    plain = low + high
    carried = low + (high + 1)
    folded = Signal(16, name=name)
    m.d.sync += folded.eq(Mux(plain[16], carried[:16], plain[:16]))
    return folded


def _hex_digit(nibble):
    """The upper-case ASCII hex digit of a 4-bit value: each bit a 16-entry truth table (one LUT4)."""
    digits = "0123456789ABCDEF"
    return Cat(*[Const(sum((ord(digit) >> bit & 1) << value for value, digit in enumerate(digits)), 16)
                 .bit_select(nibble, 1) for bit in range(8)])


def _host_counter(m, value, write, write_data, step, advance, frame_start, name):
    """Drive ``value``, a counter the host may overwrite; return its next value.

    The counter moves on by ``step`` when ``advance`` (its frame left whole
    and not aborted). A host write wins over an advance in the same cycle,
    and a write while a frame is going out counts as made after that frame
    (as the golden model sees it: the written value is the next frame's), so
    that frame's advance is dropped. A write in the cycle an order is
    accepted is that order's value.
    """
    written = Signal(name=f"{name}_written")  # written since the current frame's order was accepted
    # `value + step`, a cycle behind `value`: an advance comes only when `value` has not changed since
    # the frame's order was accepted, a whole frame earlier, so it is always up to date when used.
    stepped = Signal(32, name=f"{name}_stepped")
    m.d.sync += stepped.eq(value + step)
    next_value = Signal(32, name=f"{name}_next")
    m.d.comb += next_value.eq(Mux(write, write_data, Mux(advance & ~written, stepped, value)))
    m.d.sync += value.eq(next_value)
    with m.If(frame_start):
        m.d.sync += written.eq(0)
    with m.Elif(write):
        m.d.sync += written.eq(1)
    return next_value


class OrderTx(wiring.Component):
    """OUCH 4.2 Enter Order frames (SoupBinTCP, TCP/IPv4/Ethernet) from accepted orders.

    One frame at a time: an order is accepted when the transmitter is idle,
    or in the cycle the previous frame's last beat leaves, so frames follow
    each other without a gap while orders wait. The first beat is valid
    ``ORDER_TX_LATENCY`` (1) cycle after the order was valid at ``orders``
    (idle transmitter); the TCP checksum, in beat 6, is ready 6 cycles after
    acceptance, as beat 6 leaves 7 cycles after it at the earliest.

    The last beat is held until the order's packet (``stamp.packet``) has
    ended: packets are counted from reset by ``packet_end`` valids (8 bits,
    wrapping), and the packet of an order has ended once the count has moved
    past its index (an order's packet index is never ahead of the count: it
    is the count when its message was decoded); the bad bit of each of the
    last 256 packets is kept. A waiting last beat is valid 3 cycles after the
    ``packet_end`` that ends its packet (count and "ended" flag are registered);
    a packet that ended before its order was accepted never delays the frame.
    If the packet ended bad the last beat has
    ``err`` set (the MAC ends the frame with a bad FCS), ``orders_aborted``
    counts it and neither ``tcp_seq`` nor ``token_counter`` advances.

    Fast orders (docs/pipeline.md, "The fast path", point 2). The fast path
    offers an order it predicts at ``fast`` for one cycle. It is accepted
    (``fast_taken``) only when an order from ``orders`` could be accepted
    now, ``orders.valid`` is low (an exact order waiting always goes first)
    and no fast frame is unconfirmed (implied: an unconfirmed frame holds its
    last beat, so it is always in the way); otherwise it is dropped. An
    accepted fast order makes its frame exactly as an order from ``orders``
    would (contents, token, sequence number, probe, first beat one cycle
    later), but the frame is unconfirmed, and its last beat is held (as for
    the packet end, which still applies) until the exact path has spoken:

    - the first order valid at ``orders`` in the ``CONFIRM_CYCLES`` cycles
      after the fast order's acceptance is compared with it (``slot``,
      ``side``, ``price``, ``shares``, ``stamp``; not the fair value). The
      same: it is consumed and the frame is confirmed; it then ends like any
      other (``err`` only if its packet ended bad, counted by
      ``orders_aborted``), and ``fast_confirmed`` counts it. A different one:
      it is not consumed, the frame is aborted, and the exact order is
      accepted as the aborted frame's last beat leaves, as any waiting order;
    - no order in those cycles: the frame is aborted.

    An aborted fast frame's last beat has ``err``; ``fast_aborted`` counts it
    (and not ``orders_aborted``), and neither ``tcp_seq`` nor
    ``token_counter`` advances, so the next frame reuses its token and
    sequence number.

    The compare (113 bits) is registered field by field: the verdict on an
    exact order valid in cycle ``t`` is taken in cycle ``t + 1`` from those
    registers, and a matching order is consumed then (``orders.ready``; its
    valid and payload hold until then, as the stream rules ask). The last
    beat may be loaded from cycle ``t + 1``, so a held last beat is valid in
    cycle ``t + 2``; without an exact order, ``CONFIRM_CYCLES + 2`` cycles
    after acceptance. An exact order arriving 12 cycles after the fast one
    (the fast path's case) never delays the last beat; 13 cycles after (a
    replace) delays it by one cycle when ``tx`` takes every beat.

    Template and symbol registers are read as the beats are made, and summed
    ahead for the checksums: they must hold still for ``TEMPLATE_SETTLE_CYCLES``
    cycles before an order is accepted and while its frame goes out.

    Parameters
    ----------
    slots : int
        Tracked instruments, each with its symbol.

    Interface attributes
    --------------------
    orders : In(stream of OrderRequest)
        Accepted orders; ``slot`` must be below ``slots``.
    fast : In(stream of OrderRequest, no backpressure)
        Orders predicted by the fast path, each offered for one cycle;
        ``slot`` must be below ``slots``.
    fast_taken : Out(1)
        The order at ``fast`` is accepted in this cycle (combinational).
    tx : Out(stream of Beat)
        Order frames: frame byte ``8n + k`` in beat ``n`` lane ``k``; ``keep``
        all ones but on the last beat (0b11); ``err`` on the last beat of an
        aborted frame. Honours ``ready``; valid and payload hold until taken.
    packet_end : In(stream of PacketEnd)
        Packet ends from the receive path (no backpressure).
    dst_mac, src_mac, src_ip, dst_ip, src_port, dst_port, tcp_ack, tcp_window, ip_ttl,
    token_prefix, firm, display, capacity, customer_type : In
        The template registers, big-endian (the most significant byte is the
        field's first byte on the wire).
    symbols : In(ArrayLayout(64, slots))
        Each slot's symbol, 8 bytes big-endian.
    cycle : In(32)
        Free-running cycle counter (the probes' clock).
    tcp_seq, token_counter : Out(32)
        The next frame's sequence number and token counter.
    tcp_seq_write, tcp_seq_data, token_counter_write, token_counter_data : In
        Host writes (a strobe and the value).
    probe_select : In(4)
        Which order's probe to show (its token counter modulo ``PROBE_DEPTH``).
    probe_trigger_cycle, probe_tx_cycle : Out(32)
        That order's ``stamp.cycle`` and the cycle its first beat left,
        registered: they follow ``probe_select`` one cycle later.
    events : Out(OrderTxEvents)
    """

    def __init__(self, *, slots=2):
        if not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive integer, not {slots!r}")
        self.slots = slots
        super().__init__({
            "orders": In(stream.Signature(OrderRequest)),
            "fast": In(rx_stream(OrderRequest)),
            "fast_taken": Out(1),
            "tx": Out(stream.Signature(Beat)),
            "packet_end": In(rx_stream(PacketEnd)),
            "dst_mac": In(48),
            "src_mac": In(48),
            "src_ip": In(32),
            "dst_ip": In(32),
            "src_port": In(16),
            "dst_port": In(16),
            "tcp_ack": In(32),
            "tcp_window": In(16),
            "ip_ttl": In(8),
            "token_prefix": In(48),
            "firm": In(32),
            "display": In(8),
            "capacity": In(8),
            "customer_type": In(8),
            "symbols": In(data.ArrayLayout(64, slots)),
            "cycle": In(STAMP_WIDTH),
            "tcp_seq": Out(32),
            "tcp_seq_write": In(1),
            "tcp_seq_data": In(32),
            "token_counter": Out(32),
            "token_counter_write": In(1),
            "token_counter_data": In(32),
            "probe_select": In(range(PROBE_DEPTH)),
            "probe_trigger_cycle": Out(STAMP_WIDTH),
            "probe_tx_cycle": Out(STAMP_WIDTH),
            "events": Out(OrderTxEvents),
        })

    def elaborate(self, platform):
        m = Module()
        tx, out = self.tx, self.tx.p

        state = Signal(TxState)
        # The frame beat last loaded for tx, one-hot: it selects the next beat's content directly.
        beat = Signal(FRAME_BEATS, init=1 << _LAST_BEAT)
        # The last beat loaded for tx is a frame's last (at tx, or gone): no frame in the way of an order.
        frame_done = Signal(init=1)
        last_leaves = tx.valid & frame_done & tx.ready
        # An order can be accepted now: no frame in the way (its last beat gone, or leaving).
        can_accept = frame_done & (~tx.valid | tx.ready)
        offered = self.orders.valid | self.fast.valid
        m.d.comb += self.fast_taken.eq(self.fast.valid & can_accept & ~self.orders.valid)
        start = offered & can_accept  # a frame's order is accepted

        # The bits of `slot` that can be set (it is below `slots`): they alone select a symbol, which keeps
        # that mux short.
        slot_bits = max(1, (self.slots - 1).bit_length())

        def accepted(value_of):
            """``value_of`` the order accepted when one is (an exact one goes first): the source is chosen
            last, as `orders.valid` is late and drives many of these."""
            return Mux(self.orders.valid, value_of(self.orders.p), value_of(self.fast.p))

        confirmation = Signal(Confirmation)
        confirmed_now = Signal()  # `orders` confirms the fast frame: taken, without a frame of its own
        m.d.comb += self.orders.ready.eq(can_accept | confirmed_now)

        # The frame's own values, taken when its order is accepted.
        frame = Signal(OrderRequest)
        frame_symbol = Signal(64)
        # A good last beat (no err) is at tx: its leaving advances the counters. Kept as a register of its
        # own, so that only the late `tx.ready` stands between it and the counters.
        good_last = Signal()
        advance = good_last & tx.ready
        frame_seq = Signal(32)
        frame_token = Signal(32)
        seq_next = _host_counter(m, self.tcp_seq, self.tcp_seq_write, self.tcp_seq_data, TCP_SEQ_STEP,
                                 advance, start, "tcp_seq")
        token_next = _host_counter(m, self.token_counter, self.token_counter_write, self.token_counter_data, 1,
                                   advance, start, "token_counter")
        token_text = Signal(64)  # the counter's 8 hex digits, the most significant digit first on the wire
        m.d.comb += token_text.eq(Cat(*[_hex_digit(frame_token[4 * k:4 * k + 4]) for k in range(8)]))

        ip_checksum = Signal(16)
        tcp_checksum = Signal(16)
        side_char = Mux(frame.side == Side.ASK, ord("S"), ord("B"))
        fields = [  # (value, bytes, source), in wire order: docs/pipeline.md "Order transmit"
            (self.dst_mac, 6, _Source.TEMPLATE), (self.src_mac, 6, _Source.TEMPLATE),
            (0x0800, 2, _Source.CONSTANT),
            (0x45, 1, _Source.CONSTANT), (0, 1, _Source.CONSTANT),
            (_IP_HEADER_BYTES + _TCP_SEGMENT_BYTES, 2, _Source.CONSTANT),
            (0, 2, _Source.CONSTANT), (0x4000, 2, _Source.CONSTANT),
            (self.ip_ttl, 1, _Source.TEMPLATE), (_IPPROTO_TCP, 1, _Source.CONSTANT),
            (ip_checksum, 2, _Source.IP_CHECKSUM),
            (self.src_ip, 4, _Source.TEMPLATE), (self.dst_ip, 4, _Source.TEMPLATE),
            (self.src_port, 2, _Source.TEMPLATE), (self.dst_port, 2, _Source.TEMPLATE),
            (frame_seq, 4, _Source.SEQ), (self.tcp_ack, 4, _Source.TEMPLATE),
            (0x50, 1, _Source.CONSTANT), (0x18, 1, _Source.CONSTANT),
            (self.tcp_window, 2, _Source.TEMPLATE), (tcp_checksum, 2, _Source.TCP_CHECKSUM),
            (0, 2, _Source.CONSTANT),
            (TCP_SEQ_STEP - 2, 2, _Source.CONSTANT),  # SoupBinTCP length: type + message
            (ord("U"), 1, _Source.CONSTANT), (ord("O"), 1, _Source.CONSTANT),
            (self.token_prefix, 6, _Source.TEMPLATE), (token_text, 8, _Source.TOKEN),
            (side_char, 1, _Source.ORDER), (frame.shares, 4, _Source.ORDER),
            (frame_symbol, 8, _Source.SYMBOL), (frame.price, 4, _Source.ORDER),
            (0, 4, _Source.CONSTANT),  # time in force: immediate or cancel
            (self.firm, 4, _Source.TEMPLATE), (self.display, 1, _Source.TEMPLATE),
            (self.capacity, 1, _Source.TEMPLATE), (ord("N"), 1, _Source.CONSTANT),
            (0, 4, _Source.CONSTANT), (ord("N"), 1, _Source.CONSTANT),
            (self.customer_type, 1, _Source.TEMPLATE),
        ]
        frame_bytes = []  # (byte, source) by frame offset
        for value, length, source in fields:
            frame_bytes += [(byte, source) for byte in _field_bytes(value, length)]
        assert len(frame_bytes) == FRAME_BYTES

        # Checksums. IPv4: its header only, all of it ahead.
        ip_placed = [(offset - _ETHERNET_BYTES, byte)
                     for offset, (byte, source) in enumerate(frame_bytes[:_TCP_OFFSET])
                     if offset >= _ETHERNET_BYTES and source is not _Source.IP_CHECKSUM]
        ip_sum, _ = _adder_tree(m, _checksum_terms(ip_placed), "ip_sum")
        m.d.comb += ip_checksum.eq(~_register_fold(m, ip_sum, "ip_sum_folded"))

        # TCP: the pseudo-header, then the segment (offsets from the pseudo-header's start).
        pseudo_header = (_field_bytes(self.src_ip, 4) + _field_bytes(self.dst_ip, 4)
                         + [0, _IPPROTO_TCP] + _field_bytes(_TCP_SEGMENT_BYTES, 2))
        segment_start = len(pseudo_header)
        by_source = {source: [] for source in _Source}
        for offset, byte in enumerate(pseudo_header):
            by_source[_Source.TEMPLATE if isinstance(byte, Value) else _Source.CONSTANT].append((offset, byte))
        for offset, (byte, source) in enumerate(frame_bytes[_TCP_OFFSET:], start=segment_start):
            by_source[source].append((offset, byte))
        template_sum, template_cycles = _adder_tree(
            m, _checksum_terms(by_source[_Source.TEMPLATE] + by_source[_Source.CONSTANT]), "tcp_template_sum")
        template_sum = _register_fold(m, template_sum, "tcp_template_folded")
        symbol_offsets = [offset for offset, _ in by_source[_Source.SYMBOL]]
        symbol_sums = []
        for slot in range(self.slots):
            placed = list(zip(symbol_offsets, _field_bytes(self.symbols[slot], 8)))
            total, symbol_cycles = _adder_tree(m, _checksum_terms(placed), f"symbol{slot}_sum")
            symbol_sums.append(_register_fold(m, total, f"symbol{slot}_folded"))
        # Settled when folded (one cycle after the tree), the symbol's sum one cycle later in the frame.
        assert max(template_cycles + 1, symbol_cycles + 2) <= TEMPLATE_SETTLE_CYCLES
        frame_symbol_sum = Signal(16)

        per_order = [template_sum, frame_symbol_sum]
        for source in _PER_ORDER:
            per_order += _checksum_terms(by_source[source])
        tcp_sum, tcp_sum_cycles = _adder_tree(m, per_order, "tcp_sum")
        m.d.comb += tcp_checksum.eq(~_register_fold(m, tcp_sum, "tcp_sum_folded"))
        # Its inputs hold from the cycle after acceptance, the sum lags them by tcp_sum_cycles and its
        # checksum by one more; beat n is loaded at the end of the (n + 1)th cycle from acceptance.
        assert 1 + tcp_sum_cycles + 1 <= _TCP_CHECKSUM_BEAT

        with m.If(start):
            m.d.sync += [
                frame.eq(accepted(lambda order: order)),
                frame_symbol.eq(accepted(lambda order: self.symbols[order.slot[:slot_bits]])),
                frame_symbol_sum.eq(accepted(lambda order: Array(symbol_sums)[order.slot[:slot_bits]])),
                frame_seq.eq(seq_next),
                frame_token.eq(token_next),
            ]

        # Packet ends: the count, and each packet's bad bit by its index.
        packet_count = Signal(PACKET_INDEX_WIDTH)
        m.submodules.packet_history = packet_history = Memory(shape=1, depth=_HISTORY_DEPTH, init=[])
        history_write = packet_history.write_port()
        # Not transparent: a packet's bad bit, written as it ends, is read back in the next cycle,
        # in time for `last_free`, which shows the end two cycles after it.
        history_read = packet_history.read_port()
        with m.If(self.packet_end.valid):
            m.d.sync += packet_count.eq(packet_count + 1)
        m.d.comb += [
            history_write.addr.eq(packet_count),
            history_write.data.eq(self.packet_end.p.bad),
            history_write.en.eq(self.packet_end.valid),
            history_read.addr.eq(frame.stamp.packet),
        ]
        packet_bad = history_read.data

        # A fast frame's confirmation: the first order at `orders` after its acceptance is compared with
        # its own, field by field into registers (the compare is wide), and the verdict taken from them in
        # the next cycle, while that order still waits at `orders`.
        confirm_left = Signal(range(CONFIRM_CYCLES + 1))  # cycles left for the exact order, this one included
        same_fields = Signal(len(_CONFIRMED_FIELDS))
        m.d.sync += same_fields.eq(Cat(*[Value.cast(getattr(self.orders.p, name)) == Value.cast(getattr(frame, name))
                                         for name in _CONFIRMED_FIELDS]))
        pending = confirmation == Confirmation.PENDING
        compared = confirmation == Confirmation.COMPARED
        m.d.comb += confirmed_now.eq(compared & same_fields.all())
        # A pending frame goes on waiting: no order at `orders` yet, and time left.
        waits_on = pending & ~self.orders.valid & (confirm_left != 1)
        m.d.sync += confirm_left.eq(Mux(pending, confirm_left - 1, CONFIRM_CYCLES))
        with m.If(start):
            m.d.sync += confirmation.eq(Mux(self.fast_taken, Confirmation.PENDING, Confirmation.EXACT))
        with m.Elif(pending):
            with m.If(~waits_on):
                m.d.sync += confirmation.eq(Mux(self.orders.valid, Confirmation.COMPARED, Confirmation.ABORT))
        with m.Elif(compared):
            m.d.sync += confirmation.eq(Mux(confirmed_now, Confirmation.CONFIRMED, Confirmation.ABORT))
        fast_aborting = (confirmation == Confirmation.ABORT) | compared & ~confirmed_now
        # The last beat may be loaded: the frame's packet has ended (settled two cycles after acceptance)
        # and it is not a fast frame still without its verdict. One register, as it gates the load of
        # every beat register.
        last_free = Signal()
        m.d.sync += last_free.eq((packet_count != frame.stamp.packet) & ~Mux(start, self.fast_taken, waits_on))

        # The beats: load the next one into the output registers when tx takes the current one.
        beats = [Cat(*[Const(byte, 8) if isinstance(byte, int) else byte
                       for byte, _ in frame_bytes[BEAT_BYTES * n:BEAT_BYTES * (n + 1)]])
                 for n in range(FRAME_BEATS)]
        load = Signal()
        with m.Switch(state):
            with m.Case(TxState.IDLE):  # (an order can be accepted)
                m.d.comb += load.eq(offered)
                with m.If(offered):
                    m.d.sync += state.eq(TxState.SEND)
            with m.Case(TxState.SEND):
                with m.If(tx.ready):
                    with m.If(beat[_LAST_BEAT]):  # (leaving: an order can be accepted)
                        m.d.comb += load.eq(offered)
                        with m.If(~offered):
                            m.d.sync += state.eq(TxState.IDLE)
                    with m.Elif(beat[_LAST_BEAT - 1]):
                        m.d.comb += load.eq(last_free)
                        with m.If(~last_free):
                            m.d.sync += state.eq(TxState.HOLD_LAST)
                    with m.Else():
                        m.d.comb += load.eq(1)
            with m.Case(TxState.HOLD_LAST):
                m.d.comb += load.eq(last_free)
                with m.If(last_free):
                    m.d.sync += state.eq(TxState.SEND)

        with m.If(load):
            m.d.sync += tx.valid.eq(1)
            loading_last = beat[_LAST_BEAT - 1]
            m.d.sync += [
                beat.eq(beat.rotate_left(1)),
                frame_done.eq(loading_last),
                out.data.eq(functools.reduce(operator.or_, [
                    Mux(beat[current], beats[(current + 1) % FRAME_BEATS], 0) for current in range(FRAME_BEATS)])),
                out.keep.eq(Mux(loading_last, (1 << (FRAME_BYTES - BEAT_BYTES * _LAST_BEAT)) - 1,
                                (1 << BEAT_BYTES) - 1)),
                out.first.eq(beat[_LAST_BEAT]),
                out.last.eq(loading_last),
                out.err.eq(loading_last & (packet_bad | fast_aborting)),
                good_last.eq(loading_last & ~(packet_bad | fast_aborting)),
            ]
        with m.Elif(tx.ready):
            m.d.sync += [tx.valid.eq(0), good_last.eq(0)]

        m.d.sync += [
            self.events.orders_sent.eq(last_leaves & ~out.err),
            self.events.orders_aborted.eq(last_leaves & out.err & ~fast_aborting),
            self.events.fast_confirmed.eq(last_leaves & (confirmation == Confirmation.CONFIRMED)),
            self.events.fast_aborted.eq(last_leaves & fast_aborting),
        ]

        # Latency probes: (stamp.cycle, cycle the first beat left) by token counter modulo PROBE_DEPTH.
        m.submodules.probes = probes = Memory(shape=2 * STAMP_WIDTH, depth=PROBE_DEPTH, init=[])
        probe_write = probes.write_port()
        probe_read = probes.read_port()
        m.d.comb += [
            probe_write.addr.eq(frame_token[:len(self.probe_select)]),
            probe_write.data.eq(Cat(frame.stamp.cycle, self.cycle)),
            probe_write.en.eq((state == TxState.SEND) & beat[0] & tx.ready),
            probe_read.addr.eq(self.probe_select),
            self.probe_trigger_cycle.eq(probe_read.data[:STAMP_WIDTH]),
            self.probe_tx_cycle.eq(probe_read.data[STAMP_WIDTH:]),
        ]
        return m
