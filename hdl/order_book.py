"""The order book: an order table in block RAM and the best price levels of each tracked instrument.

docs/pipeline.md ("Tracked instruments", "Order book") is the contract;
``host/book_model.py`` is its golden model. Every decoded message goes
through a fixed pipeline, so that ``tops`` shows the messages in order, each
whole:

- cycle 0 (the message at ``messages``): the slot is found from the locate,
  the message type decoded, and the bucket of the order reference (XOR of
  its slices) goes straight to the table's read port.
- cycle 1: the block RAM delivers the bucket; it goes into a register with
  no logic in front (an ECP5 DP16KD without output register has a clock to
  output delay of about 6 ns, so nothing else fits after it). A replace reads
  the bucket of its new reference in this cycle. Writes of the last two
  cycles that the read missed are noted for forwarding.
- cycle 2: hit, collision or unknown reference; the table write of the
  message is decided (and made in cycle 3); the side concerned compares the
  price with its levels and decides the update (`SideLevels`).
- cycle 3: the levels are updated, and with them ``tops``, ``tops_stamp``,
  the unreliable flags and ``events`` (seen in cycle 4).

A replace removes its original in cycle 3 and adds the new order in cycle 4
(its new bucket read in cycle 1 is checked in cycle 3, and the new order's
place is found against the levels as the removal leaves them); ``tops`` is
held in cycle 3 so that it shows the replace whole, in cycle 5.

Book messages (tracked A F E C X D U) are at least two cycles apart at
``messages`` and a replace at least four before the next (docs/pipeline.md),
which this relies on: the table read of a message sees every earlier write
but those of the last two cycles, which are forwarded, and a side never has
two updates in flight, except the add of a replace right after its removal,
which `SideLevels` allows for. Other messages may come in any cycle; they
only update ``tops_stamp`` (and mark the book on a gap).

Inputs in the same cycle take effect in this order: ``clear``, then
``packet_end``, then the message (which belongs to the next packet). A
packet end or clear takes effect as a message of its cycle would
(``BOOK_LATENCY``); a clear in the cycle after a replace comes after it.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import ItchMessage
from .moldudp64_rx import PacketEnd
from .order_types import PRICE_WIDTH, SHARES_WIDTH, Quote, Side, Stamp, book_tops
from .stream import rx_stream

__all__ = ["OrderBook", "SideLevels", "BookEvents", "LevelRequest", "order_entry", "order_index",
           "BOOK_LATENCY", "REPLACE_LATENCY", "ORDERS_WIDTH", "BEYOND_WIDTH"]

#: Cycles from a message at ``messages`` to ``tops``, ``tops_stamp`` and ``events`` showing it
#: (also for ``packet_end`` and ``clear``).
BOOK_LATENCY = 4
#: The same for a replace (U) of a tracked instrument: its removal and its add take a cycle each.
REPLACE_LATENCY = BOOK_LATENCY + 1
#: Width of a level's ``orders`` (wraps).
ORDERS_WIDTH = 16
#: Width of a side's ``beyond`` (wraps).
BEYOND_WIDTH = 16
#: Bits of the order reference that go into the bucket index.
_HASHED_BITS = 32


class BookEvents(data.Struct):
    """One strobe per counter of the stage, high in the cycle ``tops`` shows the event's cause."""
    book_gap: 1
    book_bad_packet: 1
    book_collision: 1
    book_unknown_ref: 1
    book_level_mismatch: 1


class LevelRequest(data.Struct):
    """A change to one side's levels: add an order, or take shares (and maybe the order) off one.

    Interface attributes
    --------------------
    valid : 1 bit
        The change is for this side.
    add : 1 bit
        Add an order of ``price`` and ``shares_delta`` shares; else take
        ``-shares_delta`` shares off the level of ``price``.
    price : 32 bits
    shares_delta : 32 bits
        Added to the level's shares (wraps): the new order's shares, or minus the shares taken.
    leaves : 1 bit
        A take: the order leaves its level (its ``orders`` goes down by one).
    """
    valid: 1
    add: 1
    price: PRICE_WIDTH
    shares_delta: SHARES_WIDTH
    leaves: 1


class _BookOp(enum.Enum, shape=3):
    """What a message does to the book, from its type."""
    NONE = 0
    ADD = 1      # A, F
    DELETE = 2   # D
    EXECUTE = 3  # E, C, X: take some shares
    REPLACE = 4  # U


_TYPE_OPS = {"A": _BookOp.ADD, "F": _BookOp.ADD, "D": _BookOp.DELETE, "E": _BookOp.EXECUTE,
             "C": _BookOp.EXECUTE, "X": _BookOp.EXECUTE, "U": _BookOp.REPLACE}


def _check_parameters(slots, capacity, levels):
    if not isinstance(slots, int) or not 1 <= slots <= 16:
        raise ValueError(f"slots must be 1..16, not {slots!r}")
    if not isinstance(capacity, int) or capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= 2, not {capacity!r}")
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be >= 1, not {levels!r}")


def order_entry(slots):
    """The layout of a bucket of the order table."""
    return data.StructLayout({
        "used": 1,
        "order_ref": 64,
        "slot": range(slots),
        "side": Side,
        "price": PRICE_WIDTH,
        "shares": SHARES_WIDTH,  # remaining
    })


def order_index(order_ref, capacity):
    """The bucket of ``order_ref`` (a Value): XOR of the log2(capacity)-bit slices of its low 32 bits."""
    bits = capacity.bit_length() - 1
    low = order_ref[:_HASHED_BITS]
    return functools.reduce(operator.xor, [low[start:start + bits] for start in range(0, _HASHED_BITS, bits)])


def _any(bits):
    return functools.reduce(operator.or_, bits, Const(0))


class SideLevels(wiring.Component):
    """The known price levels of one side of one instrument, and its best level as a ``Quote``.

    Keeps ``levels`` levels (price, shares, orders) best first, ``count`` of
    them known, and ``beyond`` (orders worse than the last known level), by
    the rules of docs/pipeline.md "Price levels and the best bid and offer".

    Two cycles per change: in the cycle ``request`` is valid, the price is
    compared with every level at once and the change decided (where the
    order goes or which level loses it); in the next, the levels are
    updated (``shares`` and ``orders`` adders beside the shifts), and
    ``quote`` loads the best level of the new state unless ``show`` is low.
    A request normally comes at least two cycles after the one before; an add
    may come in the cycle after a take (the two halves of a replace), and is
    then placed against the levels as the take leaves them.

    Interface attributes
    --------------------
    request : In(LevelRequest)
    show : In(1)
        ``quote`` follows the levels (low: it keeps its value for this cycle).
    quote : Out(Quote)
        Registered: valid when a level is known (level 0's price and shares,
        else 0), unknown when none is but ``beyond`` is not 0.
    mismatch : Out(1)
        In the cycle of a take: its price is in no known level and
        ``beyond`` is 0 (the book disagrees with the order table).
    """

    def __init__(self, *, side, levels):
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be >= 1, not {levels!r}")
        self._side = Side(side)
        self._levels = levels
        super().__init__({
            "request": In(LevelRequest),
            "show": In(1),
            "quote": Out(Quote),
            "mismatch": Out(1),
        })

    def _better(self, price, than):
        return price > than if self._side is Side.BID else price < than

    def elaborate(self, platform):
        m = Module()
        n = self._levels
        request = self.request

        price = Signal(data.ArrayLayout(PRICE_WIDTH, n))
        shares = Signal(data.ArrayLayout(SHARES_WIDTH, n))
        orders = Signal(data.ArrayLayout(ORDERS_WIDTH, n))
        count = Signal(range(n + 1))
        beyond = Signal(BEYOND_WIDTH)

        # The update decided in the request's cycle, applied in the next (all zero: no change).
        # Per level: the new order goes here / the level above moves down here / the level below
        # moves up here / the level's shares and orders change by the deltas.
        update = Signal(data.StructLayout({
            "insert_here": n, "shift_down": n, "shift_up": n, "modify": n,
            "price": PRICE_WIDTH, "shares_delta": SHARES_WIDTH, "orders_delta": ORDERS_WIDTH,
            "count_up": 1, "count_down": 1, "push_out": 1, "beyond_delta": BEYOND_WIDTH,
            "from_beyond": 1,  # a take: an order counted in beyond leaves
        }))

        # --- request cycle: compare and decide ---
        known = [count > i for i in range(n)]
        equal = [known[i] & (price[i] == request.price) for i in range(n)]
        better = [known[i] & self._better(request.price, price[i]) for i in range(n)]
        beyond_zero = beyond == 0

        # An add right after a take sees the levels as the take (being applied now) leaves them.
        def after_take(flags):
            return [Mux(update.shift_up[i], flags[i + 1] if i + 1 < n else 0, flags[i]) for i in range(n)]

        add_known, add_equal, add_better = after_take(known), after_take(equal), after_take(better)
        add_full = (count == n) & ~update.count_down
        add_beyond_zero = beyond_zero | ((beyond == 1) & update.from_beyond)
        add_at_known = _any(add_equal)
        # Where the order may go: before a worse level, or after the last known one while
        # nothing is beyond; `placed_by[i]`: at level i or before (a thermometer code).
        fits = [add_better[i] | (~add_known[i] & add_beyond_zero) for i in range(n)]
        placed_by = [_any(fits[:i + 1]) for i in range(n)]
        placed = ~add_at_known & placed_by[-1]

        take_found = _any(equal)
        level_empties = [equal[i] & (orders[i] == request.leaves) for i in range(n)]
        removing = _any(level_empties)
        at_or_after = [_any(equal[:i + 1]) for i in range(n)]

        decided = Signal.like(update)
        with m.If(request.valid & request.add):
            m.d.comb += [
                decided.insert_here.eq(Cat(~add_at_known & placed_by[i] & (~placed_by[i - 1] if i else 1)
                                           for i in range(n))),
                decided.shift_down.eq(Cat(0, *[~add_at_known & placed_by[i - 1] for i in range(1, n)])),
                decided.modify.eq(Cat(add_equal)),
                decided.orders_delta.eq(1),
                decided.count_up.eq(placed & ~add_full),
                decided.push_out.eq(placed & add_full),
                decided.beyond_delta.eq(~add_at_known & ~placed_by[-1]),
            ]
        with m.Elif(request.valid):
            m.d.comb += [
                decided.shift_up.eq(Cat(removing & at_or_after[i] for i in range(n))),
                decided.modify.eq(Cat(equal[i] & ~removing for i in range(n))),
                decided.orders_delta.eq(-request.leaves),
                decided.count_down.eq(removing),
                decided.from_beyond.eq(~take_found & ~beyond_zero & request.leaves),
                decided.beyond_delta.eq(Mux(~take_found & ~beyond_zero & request.leaves, -1, 0)),
                self.mismatch.eq(~take_found & beyond_zero),
            ]
        m.d.comb += [decided.price.eq(request.price), decided.shares_delta.eq(request.shares_delta)]
        m.d.sync += update.eq(decided)

        # --- next cycle: apply ---
        def apply(target, source, new, changed):
            """Level i of the new state: the new order, a neighbour moved in, changed, or kept."""
            for i in range(n):
                with m.If(update.insert_here[i]):
                    m.d.comb += target[i].eq(new)
                with m.Elif(update.shift_down[i]):
                    m.d.comb += target[i].eq(source[i - 1])
                with m.Elif(update.shift_up[i]):
                    m.d.comb += target[i].eq(source[i + 1] if i + 1 < n else 0)
                with m.Elif(update.modify[i]):
                    m.d.comb += target[i].eq(changed(source[i]))
                with m.Else():
                    m.d.comb += target[i].eq(source[i])

        next_price = Signal.like(price)
        next_shares = Signal.like(shares)
        next_orders = Signal.like(orders)
        apply(next_price, price, update.price, lambda level: level)
        apply(next_shares, shares, update.shares_delta, lambda level: level + update.shares_delta)
        apply(next_orders, orders, 1, lambda level: level + update.orders_delta)
        next_count = Signal.like(count)
        next_beyond = Signal.like(beyond)
        m.d.comb += [
            next_count.eq(count + update.count_up - update.count_down),
            next_beyond.eq(beyond + Mux(update.push_out, orders[n - 1], update.beyond_delta)),
        ]
        m.d.sync += [price.eq(next_price), shares.eq(next_shares), orders.eq(next_orders),
                     count.eq(next_count), beyond.eq(next_beyond)]
        with m.If(self.show):
            m.d.sync += [
                self.quote.valid.eq(next_count != 0),
                self.quote.unknown.eq((next_count == 0) & (next_beyond != 0)),
                self.quote.price.eq(next_price[0]),
                self.quote.shares.eq(next_shares[0]),
            ]
        return m


class OrderBook(wiring.Component):
    """The order book stage: order table, price levels and unreliable flags of ``slots`` instruments.

    See the module docstring for what each cycle does. ``tops`` shows a
    message ``BOOK_LATENCY`` cycles after it was at ``messages``
    (``REPLACE_LATENCY`` for a replace of a tracked instrument), and never
    half of one.

    Interface attributes
    --------------------
    messages : In(stream of ItchMessage)
        Decoded messages, no backpressure.
    packet_end : In(stream of PacketEnd)
        The end of every packet, and whether it was bad.
    stamp : In(Stamp)
        The stamp of the message at ``messages`` in this cycle.
    locates : In(ArrayLayout(16, slots))
        The stock locate of each slot (0: unused).
    clear : In(slots)
        Strobe, a bit per slot: clear its unreliable flag.
    tops : Out(book_tops(slots))
        Registered: best bid and ask and the unreliable flag of each slot.
    tops_stamp : Out(Stamp)
        The stamp of the last message whose effect ``tops`` shows.
    events : Out(BookEvents)
        Counter strobes, in the cycle ``tops`` shows their cause.
    """

    def __init__(self, *, slots=2, capacity=4096, levels=4):
        _check_parameters(slots, capacity, levels)
        self._slots, self._capacity, self._levels = slots, capacity, levels
        super().__init__({
            "messages": In(rx_stream(ItchMessage)),
            "packet_end": In(rx_stream(PacketEnd)),
            "stamp": In(Stamp),
            "locates": In(data.ArrayLayout(16, slots)),
            "clear": In(slots),
            "tops": Out(book_tops(slots)),
            "tops_stamp": Out(Stamp),
            "events": Out(BookEvents),
        })

    def elaborate(self, platform):
        m = Module()
        slots, capacity = self._slots, self._capacity
        entry_layout = order_entry(slots)
        index_width = capacity.bit_length() - 1
        all_slots = (1 << slots) - 1

        m.submodules.table = table = memory.Memory(shape=entry_layout, depth=capacity, init=[])
        read = table.read_port()
        write = table.write_port()
        sides = [[SideLevels(side=side, levels=self._levels) for side in Side] for _ in range(slots)]
        for slot in range(slots):
            for side in Side:
                m.submodules[f"slot{slot}_{side.name.lower()}"] = sides[slot][side.value]

        # --- cycle 0: decode the message, read its bucket ---
        message = self.messages.p
        arriving = self.messages.valid
        slot_hits = [(self.locates[i] == message.locate) & (message.locate != 0) for i in range(slots)]
        slot = Signal(range(slots))
        for i in reversed(range(slots)):
            with m.If(slot_hits[i]):
                m.d.comb += slot.eq(i)
        book_op = Signal(_BookOp)
        with m.Switch(message.type):
            for type_, op in _TYPE_OPS.items():
                with m.Case(ord(type_)):
                    m.d.comb += book_op.eq(op)
        is_book = arriving & _any(slot_hits) & (book_op != _BookOp.NONE)

        command_layout = data.StructLayout({
            "op": _BookOp, "slot": range(slots), "side": Side, "order_ref": 64, "new_order_ref": 64,
            "price": PRICE_WIDTH, "shares": SHARES_WIDTH, "index": index_width, "new_index": index_width,
        })
        s1 = Signal(command_layout)  # the message in cycle 1 (op NONE unless a book message)
        s2 = Signal(command_layout)  # in cycle 2
        m.d.sync += [
            s1.op.eq(Mux(is_book, book_op, _BookOp.NONE)),
            s1.slot.eq(slot),
            s1.side.eq(Mux(message.side == ord("S"), Side.ASK, Side.BID)),
            s1.order_ref.eq(message.order_ref),
            s1.new_order_ref.eq(message.new_order_ref),
            s1.price.eq(message.price),
            s1.shares.eq(message.shares),
            s1.index.eq(order_index(message.order_ref, capacity)),
            s1.new_index.eq(order_index(message.new_order_ref, capacity)),
            s2.eq(s1),
        ]
        read_replaced = s1.op == _BookOp.REPLACE  # cycle 1 of a replace: read the new bucket
        m.d.comb += read.addr.eq(Mux(read_replaced, s1.new_index, order_index(message.order_ref, capacity)))

        # Packet tracking (cycle 0): the slots the current packet touched, whether it had a gap.
        touched = Signal(slots)
        gap_seen = Signal()
        ending = self.packet_end.valid
        m.d.sync += [
            touched.eq(Mux(ending, 0, touched) | Mux(is_book, Const(1, slots) << slot, 0)),
            gap_seen.eq((gap_seen & ~ending) | (arriving & message.gap)),
        ]
        effect_layout = data.StructLayout({
            "valid": 1, "stamp": Stamp, "gap": 1, "gap_count": 1, "replace": 1,
            "packet_marks": slots, "bad_packet": 1, "clear": slots,
        })
        effect = Signal(effect_layout)
        bad_end = ending & self.packet_end.p.bad
        m.d.comb += [
            effect.valid.eq(arriving),
            effect.stamp.eq(self.stamp),
            effect.gap.eq(arriving & message.gap),
            effect.gap_count.eq(arriving & message.gap & (ending | ~gap_seen)),
            effect.replace.eq(is_book & (book_op == _BookOp.REPLACE)),
            effect.packet_marks.eq(Mux(bad_end, touched, 0)),
            effect.bad_packet.eq(bad_end & touched.any()),
            effect.clear.eq(self.clear),
        ]
        # What reaches cycle 3 with the message (packet end and clear alike).
        delayed = effect
        for stage in range(BOOK_LATENCY - 1):
            registered = Signal(effect_layout, name=f"effect_{stage + 1}")
            m.d.sync += registered.eq(delayed)
            delayed = registered

        # --- cycle 1: the bucket into a register; forwarding of the writes the read missed ---
        fetched = Signal(entry_layout)
        m.d.sync += fetched.eq(read.data)
        write_layout = data.StructLayout({"en": 1, "addr": index_width, "data": entry_layout})
        table_write = Signal(write_layout)   # made in this cycle
        last_write = Signal(write_layout)    # made in the cycle before
        m.d.comb += [write.addr.eq(table_write.addr), write.data.eq(table_write.data),
                     write.en.eq(table_write.en)]
        m.d.sync += last_write.eq(table_write)
        read_addr = Signal(index_width)  # of the read whose data is in cycle 1
        m.d.sync += read_addr.eq(read.addr)
        forward = Signal(data.StructLayout({"valid": 1, "data": entry_layout}))
        write_now = table_write.en & (table_write.addr == read_addr)
        write_before = last_write.en & (last_write.addr == read_addr)
        m.d.sync += [forward.valid.eq(write_now | write_before),
                     forward.data.eq(Mux(write_now, table_write.data, last_write.data))]

        # --- cycle 2 (and cycle 3 of a replace): the table, and the level request ---
        entry = Signal(entry_layout)
        m.d.comb += entry.eq(Mux(forward.valid, forward.data, fetched))
        hit = entry.used & (entry.order_ref == s2.order_ref) & (entry.slot == s2.slot)
        # The add half of a replace whose original hit, due in cycle 3.
        replace_add = Signal(data.StructLayout({
            "valid": 1, "slot": range(slots), "side": Side, "order_ref": 64, "price": PRICE_WIDTH,
            "shares": SHARES_WIDTH, "index": index_width, "same_bucket": 1,
        }))
        request = Signal(LevelRequest)
        request_slot = Signal(range(slots))
        request_side = Signal(Side)
        next_write = Signal(write_layout)
        collision = Signal()
        unknown_ref = Signal()
        m.d.sync += replace_add.valid.eq(0)

        taken = Signal(SHARES_WIDTH)  # remaining shares, or the executed ones if fewer
        leaves = Signal()
        m.d.comb += leaves.eq((s2.op != _BookOp.EXECUTE) | (s2.shares >= entry.shares))
        m.d.comb += taken.eq(Mux(leaves, entry.shares, s2.shares))
        with m.If(replace_add.valid):
            # The new bucket (read in cycle 1) is free if it is the original's, freed now.
            new_free = ~entry.used | replace_add.same_bucket
            m.d.comb += [
                collision.eq(~new_free),
                request.valid.eq(new_free), request.add.eq(1), request.price.eq(replace_add.price),
                request.shares_delta.eq(replace_add.shares),
                request_slot.eq(replace_add.slot), request_side.eq(replace_add.side),
                next_write.en.eq(new_free), next_write.addr.eq(replace_add.index),
                next_write.data.used.eq(1), next_write.data.order_ref.eq(replace_add.order_ref),
                next_write.data.slot.eq(replace_add.slot), next_write.data.side.eq(replace_add.side),
                next_write.data.price.eq(replace_add.price), next_write.data.shares.eq(replace_add.shares),
            ]
        with m.Elif(s2.op == _BookOp.ADD):
            m.d.comb += [
                collision.eq(entry.used),
                request.valid.eq(~entry.used), request.add.eq(1), request.price.eq(s2.price),
                request.shares_delta.eq(s2.shares), request_slot.eq(s2.slot), request_side.eq(s2.side),
                next_write.en.eq(~entry.used), next_write.addr.eq(s2.index),
                next_write.data.used.eq(1), next_write.data.order_ref.eq(s2.order_ref),
                next_write.data.slot.eq(s2.slot), next_write.data.side.eq(s2.side),
                next_write.data.price.eq(s2.price), next_write.data.shares.eq(s2.shares),
            ]
        with m.Elif(s2.op != _BookOp.NONE):
            m.d.comb += [
                unknown_ref.eq(~hit),
                request.valid.eq(hit), request.add.eq(0), request.price.eq(entry.price),
                request.shares_delta.eq(-taken), request.leaves.eq(leaves),
                request_slot.eq(s2.slot), request_side.eq(entry.side),
                next_write.en.eq(hit), next_write.addr.eq(s2.index),
                next_write.data.eq(entry), next_write.data.used.eq(~leaves),
                next_write.data.shares.eq(entry.shares - s2.shares),
            ]
            with m.If(hit & (s2.op == _BookOp.REPLACE)):
                m.d.sync += [
                    replace_add.valid.eq(1), replace_add.slot.eq(s2.slot), replace_add.side.eq(entry.side),
                    replace_add.order_ref.eq(s2.new_order_ref), replace_add.price.eq(s2.price),
                    replace_add.shares.eq(s2.shares), replace_add.index.eq(s2.new_index),
                    replace_add.same_bucket.eq(s2.new_index == s2.index),
                ]
        m.d.sync += table_write.eq(next_write)

        for i in range(slots):
            for side in Side:
                levels = sides[i][side.value]
                m.d.comb += [
                    levels.request.eq(request),
                    levels.request.valid.eq(request.valid & (request_slot == i) & (request_side == side)),
                ]
        mismatch = _any(levels.mismatch for per_slot in sides for levels in per_slot)

        # The table's verdicts, to be counted with the message in cycle 3.
        verdict_layout = data.StructLayout({"collision": 1, "unknown_ref": 1, "level_mismatch": 1,
                                            "marks": slots})
        verdict = Signal(verdict_layout)
        m.d.sync += [
            verdict.collision.eq(collision),
            verdict.unknown_ref.eq(unknown_ref),
            verdict.level_mismatch.eq(mismatch),
            verdict.marks.eq(Mux(collision | unknown_ref | mismatch, Const(1, slots) << request_slot, 0)),
        ]

        # --- cycle 3: the levels update; tops, stamp, flags and events for cycle 4 ---
        # A replace is held here for a cycle, while its add is applied.
        held = Signal(data.StructLayout({"valid": 1, "stamp": Stamp, "gap": 1, "gap_count": 1,
                                         "verdict": verdict_layout}))
        holding = delayed.valid & delayed.replace
        shown = delayed.valid & ~holding
        m.d.sync += held.valid.eq(0)
        with m.If(holding):
            m.d.sync += [held.valid.eq(1), held.stamp.eq(delayed.stamp), held.gap.eq(delayed.gap),
                         held.gap_count.eq(delayed.gap_count), held.verdict.eq(verdict)]
        for i in range(slots):
            for side in Side:
                m.d.comb += sides[i][side.value].show.eq(~holding)

        unreliable = Signal(slots)
        replace_marks = Mux(held.valid, Mux(held.gap, all_slots, 0) | held.verdict.marks | verdict.marks, 0)
        message_marks = (Mux(shown & delayed.gap, all_slots, 0)
                         | Mux(~held.valid & ~holding, verdict.marks, 0))
        m.d.sync += unreliable.eq(((unreliable | replace_marks) & ~delayed.clear)
                                  | message_marks | delayed.packet_marks)

        book_verdict = Signal(verdict_layout)
        with m.If(held.valid):
            m.d.comb += book_verdict.eq(held.verdict.as_value() | verdict.as_value())
        with m.Elif(~holding):
            m.d.comb += book_verdict.eq(verdict)
        m.d.sync += [
            self.events.book_gap.eq((held.valid & held.gap_count) | (shown & delayed.gap_count)),
            self.events.book_bad_packet.eq(delayed.bad_packet),
            self.events.book_collision.eq(book_verdict.collision),
            self.events.book_unknown_ref.eq(book_verdict.unknown_ref),
            self.events.book_level_mismatch.eq(book_verdict.level_mismatch),
        ]
        with m.If(shown):
            m.d.sync += self.tops_stamp.eq(delayed.stamp)
        with m.Elif(held.valid):
            m.d.sync += self.tops_stamp.eq(held.stamp)

        for i in range(slots):
            m.d.comb += [
                self.tops[i].bid.eq(sides[i][Side.BID.value].quote),
                self.tops[i].ask.eq(sides[i][Side.ASK.value].quote),
                self.tops[i].unreliable.eq(unreliable[i]),
            ]
        return m
