"""The order book: an order table in block RAM and the best price levels of each tracked instrument.

docs/pipeline.md ("Tracked instruments", "Order book") is the contract;
``host/book_model.py`` is its golden model. Every decoded message goes
through a fixed pipeline, so that ``tops`` shows the messages in order, each
whole:

- cycle 0 (the message at ``messages``): the slot is found from the locate,
  the message type decoded, and the buckets of the order reference and of a
  replace's new reference (XOR of their slices) go straight to the table's
  two read ports (Yosys gives the second read port a copy of the block RAM,
  only as wide as what is used of it, the ``used`` bit: 32 DP16KD in all).
- cycle 1: the block RAM delivers both buckets, each into a register with
  nothing in front: the DP16KD's output register (``REGMODE`` ``OUTREG``)
  would do, but Yosys (``memory_libmap`` with ``brams_16kd.txt``) does not
  absorb it and always maps ``NOREG``, whose clock to output delay alone is
  5.8 ns on speed grade 6, so this register is in the fabric (measured: the
  worst path of the stage, about 10 ns). The table writes the reads missed
  (made in cycles 0 to 2) are picked for forwarding, from registers.
- cycle 2: hit, collision or unknown reference; the table writes of the
  message are decided (made in cycle 3, and for a replace's new order in
  cycle 4); the level request (an add, or a take off the order's level) is
  registered for its side (`SideLevels`): its price, from the table or a
  forwarded write, goes to every level compare of the side, a path too long
  for the same cycle.
- cycle 3: the side compares the request's price with the levels; the add
  of a replace is registered for the side.
- cycle 4: the side decides the update (where the order goes, which level
  loses it).
- cycle 5: the levels are updated, and with them ``tops``, ``tops_stamp``,
  the unreliable flags and ``events`` (seen in cycle 6: ``BOOK_LATENCY``).

A replace's add is decided in cycle 5 against the levels its take leaves,
and applied in cycle 6; ``tops`` is held in cycle 5 so that it shows the
replace whole, in cycle 7 (``REPLACE_LATENCY``).

Book messages (tracked A F E C X D U) are at least two cycles apart at
``messages`` (docs/pipeline.md), whatever their types, and this is all the
stage relies on: the table read of a message misses at most the writes of
the two messages before it, which are forwarded, a side takes a request in
every cycle (a replace's two halves, then the next message's request), and
the write port one write per cycle (a replace's two, then the next
message's). Other messages may come in any cycle; they only update
``tops_stamp`` (and mark the book on a gap).

Inputs in the same cycle take effect in this order: ``clear``, then
``packet_end``, then the message (which belongs to the next packet). A
packet end or clear takes effect as a message of its cycle would
(``BOOK_LATENCY``); a clear in the cycle after a replace comes after it.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import ItchMessage
from .moldudp64_rx import PacketEnd
from .order_types import PRICE_WIDTH, REFS_WIDTH, SHARES_WIDTH, Quote, Side, SideDepth, Stamp, book_depths, book_tops
from .stream import rx_stream

__all__ = ["OrderBook", "SideLevels", "BookEvents", "LevelRequest", "order_entry", "order_index",
           "BOOK_LATENCY", "REPLACE_LATENCY", "LEVELS_LATENCY", "ORDERS_WIDTH", "BEYOND_WIDTH"]

#: Cycles from a message at ``messages`` to ``tops``, ``tops_stamp`` and ``events`` showing it
#: (also for ``packet_end`` and ``clear``).
BOOK_LATENCY = 6
#: The same for a replace (U) of a tracked instrument: its add is decided after its take.
REPLACE_LATENCY = BOOK_LATENCY + 1
#: Cycles from a request at `SideLevels` to its ``quote`` showing it.
LEVELS_LATENCY = 3
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
        Add an order of ``price`` and ``shares`` shares; else take ``shares``
        shares off the level of ``price``.
    price : 32 bits
    shares : 32 bits
    leaves : 1 bit
        A take: the order leaves its level (its ``orders`` goes down by one).
    order_ref : 64 bits
        The order added, or taken off: it joins or leaves its level's ``refs``.
    """
    valid: 1
    add: 1
    price: PRICE_WIDTH
    shares: SHARES_WIDTH
    leaves: 1
    order_ref: 64


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


def _sum_equals(a, b, constant):
    """Whether ``a + b == constant`` (modulo 2**len(a)), without a carry chain.

    If the sum is ``constant``, the carry into each bit is known from the bits
    below: bit i of ``a ^ b ^ constant`` must equal the carry out of bit i - 1,
    ``a & b | (a ^ b) & ~constant`` (one LUT per bit, then an AND tree).
    """
    width = len(a)
    c = Const(constant & ((1 << width) - 1), width)
    carries = (a & b) | ((a ^ b) & ~c)
    return (a ^ b ^ c) == Cat(Const(0, 1), carries[:width - 1])


#: The values of a level's ``orders`` whose test step 1 registers: enough to know, after one
#: more change of at most one order, whether it is 0 or 1.
_ORDERS_TESTED = (-1, 0, 1, 2)
#: The same for ``beyond`` (a change of at most one order, or a level pushed out).
_BEYOND_TESTED = (-1, 0, 1)


class SideLevels(wiring.Component):
    """The known price levels of one side of one instrument, and its best level as a ``Quote``.

    Keeps ``levels`` levels (price, shares, orders, and ``refs``, the XOR of
    the low ``REFS_WIDTH`` bits of their orders' references) best first, ``count`` of them known, and
    ``beyond`` (orders worse than the last known level), by the rules of
    docs/pipeline.md "Price levels and the best bid and offer".

    Takes a request in every cycle, each in three steps (``LEVELS_LATENCY``):

    1. the cycle ``request`` is valid: its price is compared with every level
       of the state the update in flight leaves (the one of step 3 now), and
       with the price of the request in step 2 (which may insert a level);
       the tests of ``orders`` and ``beyond`` that step 2 needs are made on
       that state too, as constant compares of the registers the update
       selects (no adders). All registered: no carry chain in step 2.
    2. the comparisons are brought up to the state the update decided in
       step 2 of the cycle before leaves (shifted as its levels shift, the
       inserted level's from the comparison with its price), and the update
       is decided: where the order goes, or which level loses it.
    3. the levels are updated (``shares`` and ``orders`` adders beside the
       shifts), and ``quote`` loads the best level of the new state unless
       ``show`` is low.

    Interface attributes
    --------------------
    request : In(LevelRequest)
    show : In(1)
        ``quote`` follows the levels (low: it keeps its value for this cycle).
    quote : Out(Quote)
        Registered: valid when a level is known (level 0's price and shares,
        else 0), unknown when none is but ``beyond`` is not 0.
    depth : Out(SideDepth)
        Registered with ``quote``: levels 0 and 1's ``refs`` and whether each
        holds one order, and levels 1 and 2 as the quotes the side shows
        without the levels above them.
    mismatch : Out(1)
        In step 2 of a take: its price is in no known level and ``beyond``
        is 0 (the book disagrees with the order table).
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
            "depth": Out(SideDepth),
            "mismatch": Out(1),
        })

    def _better(self, price, than):
        return price > than if self._side is Side.BID else price < than

    def elaborate(self, platform):
        m = Module()
        n = self._levels

        price = Signal(data.ArrayLayout(PRICE_WIDTH, n))
        shares = Signal(data.ArrayLayout(SHARES_WIDTH, n))
        orders = Signal(data.ArrayLayout(ORDERS_WIDTH, n))
        refs = Signal(data.ArrayLayout(REFS_WIDTH, n))
        count = Signal(range(n + 1))
        beyond = Signal(BEYOND_WIDTH)

        # The update decided in step 2, applied in step 3 (all zero: no change). Per level: the
        # new order goes here / the level above moves down here / the level below moves up here /
        # the level's shares and orders change.
        update = Signal(data.StructLayout({
            "insert_here": n, "shift_down": n, "shift_up": n, "modify": n,
            "add": 1, "leaves": 1, "price": PRICE_WIDTH, "shares_delta": SHARES_WIDTH,
            "refs_delta": REFS_WIDTH,  # the order that joins or leaves its level (0 for a partial take)
            "count_up": 1, "count_down": 1,
            "push_out": 1,     # the last level is pushed out: its orders go to beyond
            "beyond_up": 1,    # an order goes to beyond
            "beyond_down": 1,  # an order counted in beyond leaves
        }))

        # --- step 3: apply the update; the state it leaves is next_* ---
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

        orders_mask = (1 << ORDERS_WIDTH) - 1
        orders_delta = Mux(update.add, 1, Mux(update.leaves, orders_mask, 0))
        next_price = Signal.like(price)
        next_shares = Signal.like(shares)
        next_orders = Signal.like(orders)
        next_refs = Signal.like(refs)
        apply(next_price, price, update.price, lambda level: level)
        apply(next_shares, shares, update.shares_delta, lambda level: level + update.shares_delta)
        apply(next_orders, orders, 1, lambda level: level + orders_delta)
        apply(next_refs, refs, update.refs_delta, lambda level: level ^ update.refs_delta)
        next_count = Signal.like(count)
        next_beyond = Signal.like(beyond)
        beyond_delta = Mux(update.beyond_up, 1, Mux(update.beyond_down, (1 << BEYOND_WIDTH) - 1, 0))
        m.d.comb += [
            next_count.eq(count + update.count_up - update.count_down),
            next_beyond.eq(beyond + Mux(update.push_out, orders[n - 1], beyond_delta)),
        ]
        m.d.sync += [price.eq(next_price), shares.eq(next_shares), orders.eq(next_orders), refs.eq(next_refs),
                     count.eq(next_count), beyond.eq(next_beyond)]
        # (levels past ``count`` are all zero: a level that empties is shifted over)
        with m.If(self.show):
            m.d.sync += [
                self.quote.valid.eq(next_count != 0),
                self.quote.unknown.eq((next_count == 0) & (next_beyond != 0)),
                self.quote.price.eq(next_price[0]),
                self.quote.shares.eq(next_shares[0]),
                self.depth.alone.eq(next_orders[0] == 1),
                self.depth.best_refs.eq(next_refs[0]),
            ]
            for index, quote in ((1, self.depth.next), (2, self.depth.third)):
                m.d.sync += [quote.valid.eq(next_count > index),
                             quote.unknown.eq((next_count <= index) & (next_beyond != 0))]
                if index < n:
                    m.d.sync += [quote.price.eq(next_price[index]), quote.shares.eq(next_shares[index])]
            if n >= 2:
                m.d.sync += [self.depth.next_alone.eq(next_orders[1] == 1), self.depth.next_refs.eq(next_refs[1])]

        # --- step 1: compare with the state after the update in flight ---
        # The prices are compared with next_price (a multiplexer, then the carry chain); orders
        # and beyond are tested as the registers the update selects, without its adders.
        staged = Signal(LevelRequest)  # the request in step 2
        seen = Signal(data.StructLayout({
            "equal": n, "better": n,              # the price against each level
            "equal_staged": 1, "better_staged": 1,  # against the price of the request in step 2
            "orders_is": data.ArrayLayout(n, len(_ORDERS_TESTED)),
            "beyond_is": len(_BEYOND_TESTED),
        }))
        price_in = self.request.price
        m.d.sync += [
            staged.eq(self.request),
            seen.equal.eq(Cat(next_price[i] == price_in for i in range(n))),
            seen.better.eq(Cat(self._better(price_in, next_price[i]) for i in range(n))),
            seen.equal_staged.eq(staged.price == price_in),
            seen.better_staged.eq(self._better(price_in, staged.price)),
        ]

        def orders_is(i, value):
            return orders[i] == (value & orders_mask) if 0 <= i < n else Const(value == 0)

        for j, value in enumerate(_ORDERS_TESTED):
            for i in range(n):
                modified = Mux(update.add, orders_is(i, value - 1),
                               Mux(update.leaves, orders_is(i, value + 1), orders_is(i, value)))
                m.d.sync += seen.orders_is[j][i].eq(
                    Mux(update.insert_here[i], value == 1,
                        Mux(update.shift_down[i], orders_is(i - 1, value),
                            Mux(update.shift_up[i], orders_is(i + 1, value),
                                Mux(update.modify[i], modified, orders_is(i, value))))))

        def beyond_is(value):
            return beyond == (value & (1 << BEYOND_WIDTH) - 1)

        for j, value in enumerate(_BEYOND_TESTED):
            m.d.sync += seen.beyond_is[j].eq(
                Mux(update.push_out, _sum_equals(beyond, orders[n - 1], value),
                    Mux(update.beyond_up, beyond_is(value - 1),
                        Mux(update.beyond_down, beyond_is(value + 1), beyond_is(value)))))

        # --- step 2: the comparisons as the update in flight leaves the levels; decide ---
        def after_update(flags, inserted):
            return [Mux(update.insert_here[i], inserted,
                        Mux(update.shift_down[i], flags[i - 1] if i else 0,
                            Mux(update.shift_up[i], flags[i + 1] if i + 1 < n else 0, flags[i])))
                    for i in range(n)]

        def orders_after(value):
            """Per level: its orders equal ``value`` (0 or 1) after the update in flight."""
            def tested(v):
                return seen.orders_is[_ORDERS_TESTED.index(v)]
            modified = Mux(update.add, tested(value - 1), Mux(update.leaves, tested(value + 1), tested(value)))
            flags = [Mux(update.modify[i], modified[i], tested(value)[i]) for i in range(n)]
            return after_update(flags, Const(value == 1))

        def beyond_was(value):
            return seen.beyond_is[_BEYOND_TESTED.index(value)]

        known = [next_count > i for i in range(n)]
        full = next_count == n
        equal = [known[i] & flag for i, flag in enumerate(after_update(seen.equal, seen.equal_staged))]
        better = [known[i] & flag for i, flag in enumerate(after_update(seen.better, seen.better_staged))]
        # (a level pushed out adds its orders to beyond: both are in the registers now)
        beyond_zero = Mux(update.push_out, _sum_equals(beyond, orders[n - 1], 0),
                          Mux(update.beyond_up, beyond_was(-1), Mux(update.beyond_down, beyond_was(1), beyond_was(0))))
        orders_one, orders_zero = orders_after(1), orders_after(0)

        at_known = _any(equal)
        # Where an added order may go: before a worse level, or after the last known one while
        # nothing is beyond; `placed_by[i]`: at level i or before (a thermometer code).
        fits = [better[i] | (~known[i] & beyond_zero) for i in range(n)]
        placed_by = [_any(fits[:i + 1]) for i in range(n)]
        placed = ~at_known & placed_by[-1]

        level_empties = [equal[i] & Mux(staged.leaves, orders_one[i], orders_zero[i]) for i in range(n)]
        removing = _any(level_empties)
        at_or_after = [_any(equal[:i + 1]) for i in range(n)]
        from_beyond = ~at_known & ~beyond_zero & staged.leaves

        decided = Signal.like(update)
        with m.If(staged.valid & staged.add):
            m.d.comb += [
                decided.insert_here.eq(Cat(~at_known & placed_by[i] & (~placed_by[i - 1] if i else 1)
                                           for i in range(n))),
                decided.shift_down.eq(Cat(0, *[~at_known & placed_by[i - 1] for i in range(1, n)])),
                decided.modify.eq(Cat(equal)),
                decided.count_up.eq(placed & ~full),
                decided.push_out.eq(placed & full),
                decided.beyond_up.eq(~at_known & ~placed_by[-1]),
            ]
        with m.Elif(staged.valid):
            m.d.comb += [
                decided.shift_up.eq(Cat(removing & at_or_after[i] for i in range(n))),
                decided.modify.eq(Cat(equal[i] & ~removing for i in range(n))),
                decided.count_down.eq(removing),
                decided.beyond_down.eq(from_beyond),
                self.mismatch.eq(~at_known & beyond_zero),
            ]
        m.d.comb += [
            decided.add.eq(staged.add), decided.leaves.eq(staged.leaves), decided.price.eq(staged.price),
            decided.shares_delta.eq(Mux(staged.add, staged.shares, -staged.shares)),
            decided.refs_delta.eq(Mux(staged.add | staged.leaves, staged.order_ref[:REFS_WIDTH], 0)),
        ]
        m.d.sync += update.eq(decided)
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
    empty : In(1)
        Strobe: empty the book (every order, level and unreliable flag), for a
        new run on a loaded board; the table is swept in ``capacity`` cycles.
    emptying : Out(1)
        The sweep is under way: messages are not applied (one of a tracked
        slot marks every slot unreliable), and ``tops`` shows empty books.
    tops : Out(book_tops(slots))
        Registered: best bid and ask and the unreliable flag of each slot.
    depths : Out(book_depths(slots))
        Registered with ``tops``: each side's ``SideDepth`` (for the fast path).
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
            "empty": In(1),
            "emptying": Out(1),
            "tops": Out(book_tops(slots)),
            "depths": Out(book_depths(slots)),
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
        read_original = table.read_port()  # the order reference's bucket
        read_new = table.read_port()       # a replace's new reference's bucket
        write = table.write_port()
        sides = [[SideLevels(side=side, levels=self._levels) for side in Side] for _ in range(slots)]
        # Emptying: every bucket written unused, one per cycle, the levels held at reset meanwhile.
        emptying = Signal()
        sweep_index = Signal(index_width)
        with m.If(self.empty):
            m.d.sync += [emptying.eq(1), sweep_index.eq(0)]
        with m.Elif(emptying):
            m.d.sync += [sweep_index.eq(sweep_index + 1), emptying.eq(sweep_index != capacity - 1)]
        m.d.comb += self.emptying.eq(emptying)
        for slot in range(slots):
            for side in Side:
                m.submodules[f"slot{slot}_{side.name.lower()}"] = ResetInserter(self.empty | emptying)(
                    sides[slot][side.value])

        # --- cycle 0: decode the message, read its buckets ---
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
        is_book = arriving & _any(slot_hits) & (book_op != _BookOp.NONE) & ~emptying

        command_layout = data.StructLayout({
            "op": _BookOp, "slot": range(slots), "side": Side, "order_ref": 64, "new_order_ref": 64,
            "price": PRICE_WIDTH, "shares": SHARES_WIDTH, "index": index_width, "new_index": index_width,
        })
        s1 = Signal(command_layout)  # the message in cycle 1 (op NONE unless a book message)
        s2 = Signal(command_layout)  # in cycle 2
        m.d.comb += [read_original.addr.eq(order_index(message.order_ref, capacity)),
                     read_new.addr.eq(order_index(message.new_order_ref, capacity))]
        m.d.sync += [
            s1.op.eq(Mux(is_book, book_op, _BookOp.NONE)),
            s1.slot.eq(slot),
            s1.side.eq(Mux(message.side == ord("S"), Side.ASK, Side.BID)),
            s1.order_ref.eq(message.order_ref),
            s1.new_order_ref.eq(message.new_order_ref),
            s1.price.eq(message.price),
            s1.shares.eq(message.shares),
            s1.index.eq(read_original.addr),
            s1.new_index.eq(read_new.addr),
            s2.eq(s1),
        ]

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
        # What reaches the last cycle with the message (packet end and clear alike).
        delayed = effect
        for stage in range(BOOK_LATENCY - 1):
            registered = Signal(effect_layout, name=f"effect_{stage + 1}")
            m.d.sync += registered.eq(delayed)
            delayed = registered

        # --- cycle 1: the buckets into registers; the writes the reads missed ---
        # Writes are made one cycle after they are decided: `table_write` now, `last_write` in
        # the cycle before, `pending_write` (a replace's new order) in the next. A read in cycle
        # 0 misses those of cycles 0 to 2: at most the two messages before, as the stage allows.
        write_layout = data.StructLayout({"en": 1, "addr": index_width, "data": entry_layout})
        table_write = Signal(write_layout)
        last_write = Signal(write_layout)
        pending_write = Signal(write_layout)
        m.d.comb += [write.addr.eq(Mux(emptying, sweep_index, table_write.addr)),
                     write.data.eq(Mux(emptying, 0, table_write.data.as_value())),
                     write.en.eq(emptying | table_write.en)]
        m.d.sync += last_write.eq(table_write)
        forward_layout = data.StructLayout({"valid": 1, "data": entry_layout})

        def fetch(read_port, index, name):
            """The bucket read in cycle 0, in cycle 2: from the table, or the newest write it missed."""
            fetched = Signal(entry_layout, name=f"{name}_fetched")
            m.d.sync += fetched.eq(read_port.data)  # nothing in between: the block RAM's output register
            forward = Signal(forward_layout, name=f"{name}_forward")
            with m.If(pending_write.en & (pending_write.addr == index)):
                m.d.sync += [forward.valid.eq(1), forward.data.eq(pending_write.data)]
            with m.Elif(table_write.en & (table_write.addr == index)):
                m.d.sync += [forward.valid.eq(1), forward.data.eq(table_write.data)]
            with m.Elif(last_write.en & (last_write.addr == index)):
                m.d.sync += [forward.valid.eq(1), forward.data.eq(last_write.data)]
            with m.Else():
                m.d.sync += forward.valid.eq(0)
            entry = Signal(entry_layout, name=name)
            m.d.comb += entry.eq(Mux(forward.valid, forward.data, fetched))
            return entry

        entry = fetch(read_original, s1.index, "entry")
        new_entry = fetch(read_new, s1.new_index, "new_entry")

        # --- cycle 2: hit, collision or unknown reference; the writes; the level request ---
        hit = entry.used & (entry.order_ref == s2.order_ref) & (entry.slot == s2.slot)
        leaves = Signal()  # the order leaves the book (all its remaining shares are taken)
        taken = Signal(SHARES_WIDTH)
        m.d.comb += [leaves.eq((s2.op != _BookOp.EXECUTE) | (s2.shares >= entry.shares)),
                     taken.eq(Mux(leaves, entry.shares, s2.shares))]
        request = Signal(LevelRequest)
        request_slot = Signal(range(slots))
        request_side = Signal(Side)
        next_write = Signal(write_layout)
        collision = Signal()
        unknown_ref = Signal()
        # The add half of a replace whose original hit and whose new bucket is free, for cycle 3.
        replace_add = Signal(data.StructLayout({"valid": 1, "slot": range(slots), "side": Side, "shares": SHARES_WIDTH,
                                                "order_ref": 64}))
        m.d.sync += [replace_add.eq(0), pending_write.eq(0)]
        # The price of the request goes to every comparator of every side: chosen between registers
        # by a register (the order's, or the message's price for an add: a replace's add comes in
        # the cycle after it, when no other book message is in cycle 1).
        take_price = Signal()
        add_price = Signal(PRICE_WIDTH)
        m.d.sync += [take_price.eq((s1.op != _BookOp.NONE) & (s1.op != _BookOp.ADD)),
                     add_price.eq(Mux(s1.op == _BookOp.ADD, s1.price, s2.price))]
        m.d.comb += request.price.eq(Mux(take_price, entry.price, add_price))

        def write_order(target, slot, side, order_ref, price, shares):
            return [target.data.used.eq(1), target.data.order_ref.eq(order_ref), target.data.slot.eq(slot),
                    target.data.side.eq(side), target.data.price.eq(price), target.data.shares.eq(shares)]

        with m.If(replace_add.valid):
            m.d.comb += [request.valid.eq(1), request.add.eq(1), request.shares.eq(replace_add.shares),
                         request.order_ref.eq(replace_add.order_ref),
                         request_slot.eq(replace_add.slot), request_side.eq(replace_add.side)]
        with m.If(pending_write.en):
            m.d.comb += next_write.eq(pending_write)
        with m.Elif(s2.op == _BookOp.ADD):
            m.d.comb += [
                collision.eq(entry.used),
                request.valid.eq(~entry.used), request.add.eq(1),
                request.shares.eq(s2.shares), request.order_ref.eq(s2.order_ref),
                request_slot.eq(s2.slot), request_side.eq(s2.side),
                next_write.en.eq(~entry.used), next_write.addr.eq(s2.index),
                *write_order(next_write, s2.slot, s2.side, s2.order_ref, s2.price, s2.shares),
            ]
        with m.Elif(s2.op != _BookOp.NONE):
            m.d.comb += [
                unknown_ref.eq(~hit),
                request.valid.eq(hit), request.add.eq(0),
                request.shares.eq(taken), request.leaves.eq(leaves), request.order_ref.eq(s2.order_ref),
                request_slot.eq(s2.slot), request_side.eq(entry.side),
                next_write.en.eq(hit), next_write.addr.eq(s2.index),
                next_write.data.eq(entry), next_write.data.used.eq(~leaves),
                next_write.data.shares.eq(entry.shares - s2.shares),
            ]
            with m.If(hit & (s2.op == _BookOp.REPLACE)):
                # The new bucket is free if it is the original's, freed by this replace.
                new_free = ~new_entry.used | (s2.new_index == s2.index)
                m.d.comb += collision.eq(~new_free)
                m.d.sync += [
                    replace_add.valid.eq(new_free), replace_add.shares.eq(s2.shares),
                    replace_add.order_ref.eq(s2.new_order_ref),
                    replace_add.slot.eq(s2.slot), replace_add.side.eq(entry.side),
                    pending_write.en.eq(new_free), pending_write.addr.eq(s2.new_index),
                    *write_order(pending_write, s2.slot, entry.side, s2.new_order_ref, s2.price, s2.shares),
                ]
        m.d.sync += table_write.eq(next_write)

        # The request goes to its side in the next cycle, from a register per side: its price
        # comes from the table or a forwarded write through two multiplexers, and goes to every
        # level compare of the side.
        for i in range(slots):
            for side in Side:
                levels = sides[i][side.value]
                m.d.sync += [
                    levels.request.eq(request),
                    levels.request.valid.eq(request.valid & (request_slot == i) & (request_side == side)),
                ]
        mismatch = _any(levels.mismatch for per_slot in sides for levels in per_slot)

        # The table's verdicts (decided in cycle 2) meet the level mismatch of the take (cycle 4) in
        # `verdict`, in cycle 5.
        verdict_layout = data.StructLayout({"collision": 1, "unknown_ref": 1, "level_mismatch": 1,
                                            "marks": slots})
        table_verdict_layout = data.StructLayout({"collision": 1, "unknown_ref": 1, "slot": range(slots)})
        decided_verdict = Signal(table_verdict_layout)  # cycle 3
        table_verdict = Signal(table_verdict_layout)
        verdict = Signal(verdict_layout)
        m.d.sync += [
            decided_verdict.collision.eq(collision),
            decided_verdict.unknown_ref.eq(unknown_ref),
            decided_verdict.slot.eq(s2.slot),
            table_verdict.eq(decided_verdict),
            verdict.collision.eq(table_verdict.collision),
            verdict.unknown_ref.eq(table_verdict.unknown_ref),
            verdict.level_mismatch.eq(mismatch),
            verdict.marks.eq(Mux(table_verdict.collision | table_verdict.unknown_ref | mismatch,
                                 Const(1, slots) << table_verdict.slot, 0)),
        ]

        # --- cycle 5: the levels update; tops, stamp, flags and events for cycle 6 ---
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

        # The verdict (non-zero only for a book message) of what tops shows next, in order: a held
        # replace, then the message of this cycle.
        book_verdict = Signal(verdict_layout)
        m.d.comb += book_verdict.eq(Mux(held.valid, held.verdict.as_value(), 0)
                                    | Mux(shown, verdict.as_value(), 0))
        unreliable = Signal(slots)
        held_marks = Mux(held.valid, Mux(held.gap, all_slots, 0) | held.verdict.marks, 0)
        message_marks = Mux(shown, Mux(delayed.gap, all_slots, 0) | verdict.marks, 0)
        # (a message of a tracked slot while emptying is lost: every slot is then unreliable)
        missed = Mux(arriving & _any(slot_hits) & emptying, all_slots, 0)
        with m.If(self.empty):
            m.d.sync += unreliable.eq(0)
        with m.Else():
            m.d.sync += unreliable.eq(((unreliable | held_marks) & ~delayed.clear)
                                      | message_marks | delayed.packet_marks | missed)
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
                self.depths[i].bid.eq(sides[i][Side.BID.value].depth),
                self.depths[i].ask.eq(sides[i][Side.ASK.value].depth),
            ]
        return m
