"""The order book: BookModel against hand-worked cases of docs/pipeline.md, and OrderBook against BookModel.

The model tests work each rule of the doc's tables through by hand (the
expected levels, flags and counters are written out, not computed). The
gateware tests drive ItchMessage values straight into OrderBook in the
Amaranth simulator, cycle by cycle, with packet ends, host clears and
stamps, and compare every cycle's ``tops``, ``depths``, ``tops_stamp`` and
``events`` with the model: an input of cycle ``t`` shows in cycle ``t + BOOK_LATENCY``
(``REPLACE_LATENCY`` for a replace of a tracked instrument); inputs are
given to the model in input order (per cycle: clear, packet end, message),
and the gateware must show, in every cycle, the model's state after the
inputs that have shown by then, and one event strobe per counter increment
of exactly those inputs.

Streams: seeded random but consistent order flow on tracked and untracked
locates (prices bunched around a few levels, so that levels fill, shift,
overflow into ``beyond`` and come back; a replace is often followed by a
message on its new order, its gone original or its bucket), small builds
where collisions are common, the default build on a few thousand messages,
the generator's snipe scenario, and directed sequences for each rule. Book
messages are spaced only as the doc promises: two cycles apart, whatever
their types (so a replace is often followed two cycles later by the next).
"""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator
from stage_harness import layout_fields, pack_fields

from tick2trade.hdl.itch_decode import ItchMessage
from tick2trade.hdl.order_book import (BOOK_LATENCY, LEVELS_LATENCY, REPLACE_LATENCY, BookEvents, LevelRequest,
                                        OrderBook, SideLevels)
from tick2trade.hdl.order_types import InstrumentDepth as InstrumentDepthLayout
from tick2trade.hdl.order_types import InstrumentTop as InstrumentTopLayout
from tick2trade.hdl.order_types import Quote as QuoteLayout
from tick2trade.hdl.order_types import SideDepth as SideDepthLayout
from tick2trade.hdl.order_types import Stamp
from tick2trade.host.book_model import BOOK_COUNTERS, BookModel, order_index
from tick2trade.host.feed import FeedConfig, generate_feed
from tick2trade.host.order_types import InstrumentDepth, InstrumentTop, Quote, Side, SideDepth
from tick2trade.host.rx_model import RxModel

# --- records ------------------------------------------------------------------------

LEAD, TARGET, OTHER = 11, 22, 33   # tracked locates; OTHER is tracked only in 3-slot builds
UNTRACKED = 44


def add(ref, side, shares, price, locate=LEAD, type_="A", gap=False):
    return {"type": type_, "locate": locate, "gap": gap, "order_ref": ref, "side": side, "shares": shares,
            "stock": "TEST", "price": price}


def execute(ref, shares, locate=LEAD, gap=False):
    return {"type": "E", "locate": locate, "gap": gap, "order_ref": ref, "executed_shares": shares,
            "match_number": 1}


def execute_at(ref, shares, price, locate=LEAD, gap=False):
    return {"type": "C", "locate": locate, "gap": gap, "order_ref": ref, "executed_shares": shares,
            "match_number": 1, "printable": "Y", "execution_price": price}


def cancel(ref, shares, locate=LEAD, gap=False):
    return {"type": "X", "locate": locate, "gap": gap, "order_ref": ref, "cancelled_shares": shares}


def delete(ref, locate=LEAD, gap=False):
    return {"type": "D", "locate": locate, "gap": gap, "order_ref": ref}


def replace(ref, new_ref, shares, price, locate=LEAD, gap=False):
    return {"type": "U", "locate": locate, "gap": gap, "original_order_ref": ref, "new_order_ref": new_ref,
            "shares": shares, "price": price}


def other(type_, locate=LEAD, gap=False):
    """A message that is not a book message (P trade, system event, directory, unknown type)."""
    record = {"type": type_, "locate": locate, "gap": gap}
    if type_ == "P":
        record.update(order_ref=0, side="B", shares=100, stock="TEST", price=1000, match_number=2)
    return record


def message_fields(record) -> dict:
    """The ItchMessage fields the receive path would deliver for ``record`` (ItchMessage docstring)."""
    fields = {"type": ord(record["type"]), "locate": record["locate"], "gap": int(record["gap"])}
    fields["order_ref"] = record.get("order_ref", record.get("original_order_ref", 0))
    fields["new_order_ref"] = record.get("new_order_ref", 0)
    fields["side"] = ord(record["side"]) if "side" in record else 0
    fields["shares"] = record.get("shares", record.get("executed_shares", record.get("cancelled_shares", 0)))
    fields["price"] = record.get("price", record.get("execution_price", 0))
    return fields


def quote(price, shares):
    return Quote(valid=True, unknown=False, price=price, shares=shares)


UNKNOWN = Quote(valid=False, unknown=True)
EMPTY = Quote()

# --- BookModel alone, hand-worked ---------------------------------------------------


def model(**kwargs):
    kwargs.setdefault("locates", (LEAD, TARGET))
    return BookModel(**kwargs)


def run(book, *records):
    for record in records:
        book.apply(record)
    return book


def counts(book, **expected):
    return {name: value for name, value in book.counters.items()} == {name: expected.get(name, 0)
                                                                      for name in BOOK_COUNTERS}


def test_order_index_slices():
    # 4096: r[11:0] ^ r[23:12] ^ r[31:24]; the upper 32 bits do not matter
    ref = 0xDEAD_BEEF_1234_5678
    assert order_index(ref, 4096) == 0x678 ^ 0x345 ^ 0x12
    # 16: eight 4-bit slices; 2: the parity of the low 32 bits; 1024: 10,10,10,2 bits
    assert order_index(0x8000_0001, 16) == 0x8 ^ 0x1
    assert order_index(0xFFFF_FFFF_0000_0007, 2) == 1
    assert order_index((3 << 30) | (5 << 20) | (9 << 10) | 17, 1024) == 3 ^ 5 ^ 9 ^ 17


@pytest.mark.parametrize("kwargs", [dict(capacity=3), dict(capacity=1), dict(capacity=0), dict(levels=0),
                                    dict(slots=0), dict(slots=17), dict(slots=1, locates=(1, 2))])
def test_parameter_checks(kwargs):
    with pytest.raises(ValueError):
        BookModel(**kwargs)
    if "locates" not in kwargs:
        with pytest.raises(ValueError):
            OrderBook(**kwargs)


def test_levels_aggregate_sort_and_quote():
    book = run(model(), add(1, "B", 100, 1000), add(2, "B", 50, 1000), add(3, "B", 10, 1010),
               add(4, "S", 70, 1020), add(5, "S", 30, 1015), add(6, "S", 5, 1030))
    assert book.side_levels(0, Side.BID) == ([(1010, 10, 1), (1000, 150, 2)], 0)
    assert book.side_levels(0, Side.ASK) == ([(1015, 30, 1), (1020, 70, 1), (1030, 5, 1)], 0)
    assert book.tops() == [InstrumentTop(bid=quote(1010, 10), ask=quote(1015, 30)), InstrumentTop()]
    assert counts(book)


def test_side_byte_other_than_s_is_bid():
    book = run(model(), add(1, "X", 100, 1000), add(2, "S", 10, 1200))
    assert book.tops()[0] == InstrumentTop(bid=quote(1000, 100), ask=quote(1200, 10))


def test_insert_pushes_a_level_beyond_and_it_recovers():
    book = run(model(levels=2), add(1, "B", 10, 100), add(2, "B", 20, 99), add(3, "B", 30, 98),
               add(4, "B", 40, 98))
    # 98 is worse than both known levels with count == levels: beyond
    assert book.side_levels(0, Side.BID) == ([(100, 10, 1), (99, 20, 1)], 2)
    run(book, add(5, "B", 5, 101))   # pushes (99, 20, 1) out: beyond += 1
    assert book.side_levels(0, Side.BID) == ([(101, 5, 1), (100, 10, 1)], 3)
    run(book, delete(5), delete(1))  # count 0, beyond 3: unknown top
    assert book.side_levels(0, Side.BID) == ([], 3)
    assert book.tops()[0].bid == UNKNOWN
    # a worse order is not appended while beyond > 0: its place is unknown
    run(book, add(6, "B", 1, 90))
    assert book.side_levels(0, Side.BID) == ([], 4)
    run(book, delete(2), delete(3), delete(4))  # all three beyond: beyond -= 1 each
    assert book.side_levels(0, Side.BID) == ([], 1)
    run(book, delete(6))
    assert book.side_levels(0, Side.BID) == ([], 0) and book.tops()[0].bid == EMPTY
    run(book, add(7, "B", 3, 50))    # recovered: appended again
    assert book.side_levels(0, Side.BID) == ([(50, 3, 1)], 0)
    run(book, add(8, "B", 4, 60))    # better: inserted
    assert book.side_levels(0, Side.BID) == ([(60, 4, 1), (50, 3, 1)], 0)
    assert counts(book)


def test_ask_side_order_and_push():
    book = run(model(levels=2), add(1, "S", 1, 105), add(2, "S", 2, 103), add(3, "S", 3, 104))
    assert book.side_levels(0, Side.ASK) == ([(103, 2, 1), (104, 3, 1)], 1)
    assert book.tops()[0].ask == quote(103, 2)


def test_level_removal_shifts_up():
    book = run(model(), add(1, "S", 10, 100), add(2, "S", 20, 101), add(3, "S", 30, 102),
               add(4, "S", 40, 101), delete(2))
    assert book.side_levels(0, Side.ASK) == ([(100, 10, 1), (101, 40, 1), (102, 30, 1)], 0)
    run(book, delete(4))
    assert book.side_levels(0, Side.ASK) == ([(100, 10, 1), (102, 30, 1)], 0)
    run(book, delete(1))
    assert book.tops()[0].ask == quote(102, 30)


def test_partial_and_full_executions():
    book = run(model(), add(1, "B", 100, 500), add(2, "B", 50, 500))
    run(book, execute(1, 30))                      # partial: remaining 70
    assert book.side_levels(0, Side.BID) == ([(500, 120, 2)], 0)
    run(book, execute_at(1, 20, 999))              # C: the order's price, not the execution price
    assert book.side_levels(0, Side.BID) == ([(500, 100, 2)], 0)
    run(book, cancel(1, 500))                      # more than remaining: m = 50, the order leaves
    assert book.side_levels(0, Side.BID) == ([(500, 50, 1)], 0)
    run(book, execute(1, 1))                       # it is gone
    assert counts(book, book_unknown_ref=1) and book.unreliable == [True, False]
    run(book, execute(2, 50))                      # exactly remaining: leaves, the level goes
    assert book.side_levels(0, Side.BID) == ([], 0) and book.tops()[0].bid == EMPTY
    assert order_index(2, 4096) not in book.table


def test_zero_share_execution_of_a_resting_order_changes_nothing():
    book = run(model(), add(1, "B", 100, 500), execute(1, 0))
    assert book.side_levels(0, Side.BID) == ([(500, 100, 1)], 0) and counts(book)


def test_collision_and_unknown_references():
    capacity = 16
    a, b = 0x1, 0x1_0000_0001   # same low 32 bits: same bucket
    c = 0x10                    # 0x1 ^ 0x0 = 1 too: another reference, same bucket
    assert order_index(a, capacity) == order_index(b, capacity) == order_index(c, capacity)
    book = run(model(capacity=capacity), add(a, "B", 10, 100), add(b, "S", 10, 200, locate=TARGET))
    assert counts(book, book_collision=1) and book.unreliable == [False, True]
    assert book.tops()[1] == InstrumentTop(unreliable=True)  # nothing else changed
    run(book, add(c, "B", 5, 100))
    assert counts(book, book_collision=2) and book.unreliable == [True, True]
    assert book.side_levels(0, Side.BID) == ([(100, 10, 1)], 0)
    book.clear(0b11)
    # the same reference of another slot, another reference in the bucket, an empty bucket
    for record in (delete(a, locate=TARGET), execute(c, 1), cancel(b, 1), replace(0x2, 0x3, 1, 1)):
        before = book.side_levels(0, Side.BID)
        run(book, record)
        assert book.side_levels(0, Side.BID) == before
    assert counts(book, book_collision=2, book_unknown_ref=4) and book.unreliable == [True, True]
    assert book.table[order_index(a, capacity)].shares == 10


def test_untracked_and_other_messages_leave_the_book_alone():
    book = run(model(), add(1, "B", 10, 100, locate=UNTRACKED), add(1, "B", 10, 100, locate=0),
               other("P"), other("S", locate=0), other("R"), other("Z"), delete(7, locate=UNTRACKED))
    assert book.tops() == [InstrumentTop(), InstrumentTop()] and counts(book) and not book.table


def test_lowest_matching_slot_wins():
    book = run(BookModel(slots=3, locates=(0, LEAD, LEAD)), add(1, "B", 10, 100))
    assert book.tops()[1].bid == quote(100, 10) and book.tops()[2] == InstrumentTop()


def test_replace_moves_the_order():
    book = run(model(), add(1, "S", 100, 200), add(2, "S", 50, 201), replace(1, 9, 70, 202))
    assert book.side_levels(0, Side.ASK) == ([(201, 50, 1), (202, 70, 1)], 0)
    assert book.table[order_index(9, 4096)].side is Side.ASK
    assert order_index(1, 4096) not in book.table
    run(book, replace(1, 10, 1, 1))
    assert counts(book, book_unknown_ref=1)
    assert book.side_levels(0, Side.ASK) == ([(201, 50, 1), (202, 70, 1)], 0)


def test_replace_onto_its_own_bucket():
    capacity = 16
    old, new = 0x21, 0x12  # 2 ^ 1 == 1 ^ 2
    assert order_index(old, capacity) == order_index(new, capacity)
    book = run(model(capacity=capacity), add(old, "B", 10, 100), replace(old, new, 20, 101))
    assert counts(book) and book.side_levels(0, Side.BID) == ([(101, 20, 1)], 0)
    assert book.table[order_index(new, capacity)].order_ref == new


def test_replace_whose_new_reference_collides():
    capacity = 16
    book = run(model(capacity=capacity), add(1, "B", 10, 100), add(2, "B", 20, 99), replace(1, 0x20, 5, 98))
    assert order_index(0x20, capacity) == order_index(2, capacity)
    # the original is removed, the new order is not stored
    assert counts(book, book_collision=1) and book.unreliable == [True, False]
    assert book.side_levels(0, Side.BID) == ([(99, 20, 1)], 0)
    assert order_index(1, capacity) not in book.table


def test_level_mismatch():
    capacity = 16
    book = model(capacity=capacity)
    run(book, add(1, "B", 10, 100))
    book.books[0][Side.BID].levels.clear()   # the levels disagree with the table
    run(book, delete(1))
    assert counts(book, book_level_mismatch=1) and book.unreliable == [True, False]
    assert not book.table   # the table change is made


def test_gap_marks_every_slot_once_per_packet():
    book = run(model(), other("S", locate=0, gap=True))
    assert book.unreliable == [True, True] and counts(book, book_gap=1)
    run(book, other("R", gap=True))          # the same packet
    assert counts(book, book_gap=1)
    book.packet_end(False)
    book.clear(0b01)
    assert book.unreliable == [False, True]
    run(book, add(1, "B", 1, 1, locate=UNTRACKED, gap=True))
    assert counts(book, book_gap=2) and book.unreliable == [True, True]


def test_bad_packet_marks_only_touched_slots():
    book = run(model(), add(1, "B", 1, 1, locate=TARGET), add(2, "B", 1, 1, locate=UNTRACKED), other("P"))
    book.packet_end(True)
    assert book.unreliable == [False, True] and counts(book, book_bad_packet=1)
    run(book, other("P"), add(3, "B", 1, 1, locate=UNTRACKED))
    book.packet_end(True)                    # nothing tracked touched
    assert counts(book, book_bad_packet=1)
    run(book, execute(99, 1))                # an unknown reference counts as touching
    book.packet_end(False)
    book.clear(0b11)
    run(book, delete(99))
    book.packet_end(True)
    assert book.unreliable == [True, False] and counts(book, book_bad_packet=2, book_unknown_ref=2)


def test_clear_changes_nothing_else():
    book = run(model(), add(1, "B", 10, 100), delete(5))
    tops = book.tops()
    book.clear(0b10)
    assert book.tops() == tops
    book.clear(0b01)
    assert book.tops()[0] == InstrumentTop(bid=quote(100, 10))


def test_wrapping_widths():
    book = run(model(), add(1, "B", 0xFFFF_FFFF, 100), add(2, "B", 2, 100))
    assert book.side_levels(0, Side.BID) == ([(100, 1, 2)], 0)


# --- the gateware against the model -------------------------------------------------


@dataclass
class Cycle:
    """The inputs of one cycle."""
    record: dict | None = None
    stamp: tuple[int, int] = (0, 0)
    packet_end: bool | None = None   # None: no packet end; else its bad flag
    clear: int = 0
    empty: bool = False


@dataclass
class Stimulus:
    locates: tuple
    cycles: list = field(default_factory=list)


def is_book(record, locates):
    return record["type"] in "AFECXDU" and record["locate"] != 0 and record["locate"] in locates


def schedule(records_by_packet, locates, rng, *, bad=0.1, clears=0.02, packet_end_lag=(1, 3)):
    """Lay packets of records out over cycles, keeping the spacing docs/pipeline.md promises."""
    stimulus = Stimulus(tuple(locates))
    cycles = stimulus.cycles
    last_book = -10
    last_replace = -10
    packet_index = 0
    for records in records_by_packet:
        for record in records:
            if cycles and cycles[-1].record is None and rng.random() < 0.3:
                t = len(cycles) - 1   # in the cycle of the packet end before
            else:
                t = len(cycles) + (0 if rng.random() < 0.5 else rng.randrange(1, 4))
            if is_book(record, locates):
                t = max(t, last_book + 2)   # the only spacing the doc promises, also after a replace
                last_book = t
                if record["type"] == "U":
                    last_replace = t
            while len(cycles) <= t:
                cycles.append(Cycle())
            cycles[t].record = record
            cycles[t].stamp = (rng.getrandbits(32), packet_index)
        end = len(cycles) - 1 + rng.randint(*packet_end_lag)
        if end == last_replace + 1:
            end += 1   # a packet end right after a replace with the next packet's message: see OrderBook
        while len(cycles) <= end:
            cycles.append(Cycle())
        cycles[end].packet_end = rng.random() < bad
        packet_index = (packet_index + 1) & 0xFF
    for cycle in cycles:
        if rng.random() < clears:
            cycle.clear = rng.randrange(1 << len(locates))
    return stimulus


def expected_per_cycle(stimulus, slots, capacity, levels, total_cycles):
    """Per cycle: the model's tops and depths, the stamp, and the event counts that show then."""
    book = BookModel(slots=slots, capacity=capacity, levels=levels, locates=stimulus.locates)
    shows = {}   # cycle -> list of inputs showing then, in input order
    for t, cycle in enumerate(stimulus.cycles):
        if cycle.empty:  # (in an idle stretch: the levels and flags are reset in the next cycle)
            shows.setdefault(t + 1, []).append(("empty", None))
        if cycle.clear:
            shows.setdefault(t + BOOK_LATENCY, []).append(("clear", cycle.clear))
        if cycle.packet_end is not None:
            shows.setdefault(t + BOOK_LATENCY, []).append(("packet_end", cycle.packet_end))
        if cycle.record is not None:
            latency = REPLACE_LATENCY if (cycle.record["type"] == "U" and is_book(cycle.record, stimulus.locates)) \
                else BOOK_LATENCY
            shows.setdefault(t + latency, []).append(("message", cycle))
    expected = []
    stamp = (0, 0)
    book.reached = {"beyond": 0, "unknown": 0, "full": 0}   # cycles in which a side was so
    for c in range(total_cycles):
        before = dict(book.counters)
        for kind, what in shows.get(c, []):
            if kind == "empty":
                book.empty()
            elif kind == "clear":
                book.clear(what)
            elif kind == "packet_end":
                book.packet_end(what)
            else:
                book.apply(what.record)
                stamp = what.stamp
        events = {name: book.counters[name] - before[name] for name in BOOK_COUNTERS}
        assert all(v <= 1 for v in events.values()), f"stimulus makes two events of a kind in cycle {c}"
        expected.append(((book.tops(), book.depths()), stamp, events))
        for slot in range(slots):
            for side in Side:
                known, beyond = book.side_levels(slot, side)
                book.reached["beyond"] += beyond > 0
                book.reached["unknown"] += not known and beyond > 0
                book.reached["full"] += len(known) == levels
    assert not [c for c in shows if c >= total_cycles]
    return expected, book


def gateware_quote(value):
    fields = layout_fields(QuoteLayout, value)
    return Quote(valid=bool(fields["valid"]), unknown=bool(fields["unknown"]), price=fields["price"],
                 shares=fields["shares"])


def gateware_tops(value, slots):
    """The InstrumentTop dataclasses of a ``book_tops(slots)`` value."""
    size = data.Layout.cast(InstrumentTopLayout).size
    tops = []
    for slot in range(slots):
        top = layout_fields(InstrumentTopLayout, value >> (slot * size))
        tops.append(InstrumentTop(bid=gateware_quote(top["bid"]), ask=gateware_quote(top["ask"]),
                                  unreliable=bool(top["unreliable"])))
    return tops


def gateware_depths(value, slots):
    """The InstrumentDepth dataclasses of a ``book_depths(slots)`` value."""
    size = data.Layout.cast(InstrumentDepthLayout).size

    def side_depth(side_value):
        fields = layout_fields(SideDepthLayout, side_value)
        return SideDepth(alone=bool(fields["alone"]), best_refs=fields["best_refs"],
                         next=gateware_quote(fields["next"]), next_alone=bool(fields["next_alone"]),
                         next_refs=fields["next_refs"], third=gateware_quote(fields["third"]))

    depths = []
    for slot in range(slots):
        depth = layout_fields(InstrumentDepthLayout, value >> (slot * size))
        depths.append(InstrumentDepth(bid=side_depth(depth["bid"]), ask=side_depth(depth["ask"])))
    return depths


def simulate(stimulus, *, slots, capacity, levels, drain=8):
    """Run OrderBook over ``stimulus``; per cycle its tops and depths, tops_stamp and events."""
    dut = OrderBook(slots=slots, capacity=capacity, levels=levels)
    tops, depths = Value.cast(dut.tops), Value.cast(dut.depths)
    stamp, events = Value.cast(dut.tops_stamp), Value.cast(dut.events)
    message = Value.cast(dut.messages.p)
    stamp_layout = data.Layout.cast(Stamp)
    samples = []

    async def bench(ctx):
        for i, locate in enumerate(stimulus.locates):
            ctx.set(dut.locates[i], locate)
        for cycle in stimulus.cycles + [Cycle()] * drain:
            ctx.set(dut.messages.valid, cycle.record is not None)
            if cycle.record is not None:
                ctx.set(message, pack_fields(ItchMessage, **message_fields(cycle.record)))
                ctx.set(Value.cast(dut.stamp), pack_fields(Stamp, cycle=cycle.stamp[0], packet=cycle.stamp[1]))
            ctx.set(dut.packet_end.valid, cycle.packet_end is not None)
            ctx.set(dut.packet_end.p.bad, bool(cycle.packet_end))
            ctx.set(dut.clear, cycle.clear)
            ctx.set(dut.empty, cycle.empty)
            stamp_fields = layout_fields(stamp_layout, ctx.get(stamp))
            samples.append(((ctx.get(tops), ctx.get(depths)), (stamp_fields["cycle"], stamp_fields["packet"]),
                            ctx.get(events)))
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return samples


def check(stimulus, *, slots=2, capacity=4096, levels=4):
    samples = simulate(stimulus, slots=slots, capacity=capacity, levels=levels)
    expected, book = expected_per_cycle(stimulus, slots, capacity, levels, len(samples))
    problems = []
    for c, (((tops_value, depths_value), stamp, events_value), ((tops, depths), want_stamp, want_events)) \
            in enumerate(zip(samples, expected)):
        got_tops = gateware_tops(tops_value, slots)
        got_depths = gateware_depths(depths_value, slots)
        got_events = layout_fields(BookEvents, events_value)
        if got_tops != tops:
            problems.append(f"cycle {c}: tops {got_tops} != model {tops}")
        if got_depths != depths:
            problems.append(f"cycle {c}: depths {got_depths} != model {depths}")
        if stamp != want_stamp:
            problems.append(f"cycle {c}: tops_stamp {stamp} != {want_stamp}")
        if got_events != want_events:
            problems.append(f"cycle {c}: events {got_events} != model {want_events}")
        if len(problems) >= 6:
            break
    assert not problems, "\n".join(problems)
    return book


# --- random order flow ---------------------------------------------------------------


class OrderFlow:
    """A consistent feed of order messages over some locates (what the exchange's book does)."""

    def __init__(self, rng, locates, *, ref_bits=32, tick=100):
        self.rng = rng
        self.locates = list(locates)
        self.live = {locate: {} for locate in locates}   # ref -> [side, price, shares]
        self.next_ref = rng.randrange(1, 1 << 20)
        self.ref_bits = ref_bits
        self.base = {locate: 10_000 + 1000 * i for i, locate in enumerate(locates)}
        self.tick = tick
        self.replaced = None   # (original, new ref, locate) of the last replace, until followed up

    def new_ref(self):
        self.next_ref += self.rng.randrange(1, 1 << 12)
        return self.next_ref | (self.rng.getrandbits(self.ref_bits) << 32)

    def price(self, locate, side):
        # bunched around a few levels each side of the mid, sometimes far away
        distance = min(int(self.rng.expovariate(0.6)), 12) + 1
        price = self.base[locate] + (distance if side == "S" else -distance) * self.tick
        if self.rng.random() < 0.03:
            price = self.rng.choice([0, 0xFFFF_FFFF, self.rng.getrandbits(32)])
        return price

    def message(self):
        rng = self.rng
        if self.replaced and rng.random() < 0.6:
            return self.after_replace()
        locate = rng.choice(self.locates)
        live = self.live[locate]
        roll = rng.random()
        if roll < 0.08:
            return other(rng.choice("PSRHZ"), locate=rng.choice([locate, 0]))
        if roll < 0.12:   # a reference nobody knows
            kind = rng.choice("DEXCU")
            ref = self.new_ref()
            return {"D": delete(ref, locate), "E": execute(ref, 10, locate), "X": cancel(ref, 10, locate),
                    "C": execute_at(ref, 10, 1, locate), "U": replace(ref, self.new_ref(), 1, 1, locate)}[kind]
        if roll < 0.45 or not live:
            ref, side = self.new_ref(), rng.choice("BS")
            price, shares = self.price(locate, side), rng.choice([rng.randrange(1, 1000), 0, 1 << 31])
            live[ref] = [side, price, shares]
            return add(ref, side, shares, price, locate, type_=rng.choice("AF"))
        ref = rng.choice(list(live))
        if rng.random() < 0.6:   # work on the best order of a side, so that the known levels drain
            side = live[ref][0]
            ref = (max if side == "B" else min)((r for r in live if live[r][0] == side), key=lambda r: live[r][1])
        return self.work_on(locate, ref)

    def work_on(self, locate, ref):
        """A delete, execution, cancel or replace of the live order ``ref``."""
        rng = self.rng
        live = self.live[locate]
        side, price, shares = live[ref]
        kind = rng.random()
        if kind < 0.3:
            del live[ref]
            return delete(ref, locate)
        if kind < 0.65:
            n = rng.choice([rng.randrange(1, max(2, shares + 1)), shares, shares + rng.randrange(1, 50), 0])
            if n >= shares:
                del live[ref]
            else:
                live[ref][2] -= n
            make = rng.choice([execute, cancel, lambda r, s, l: execute_at(r, s, rng.getrandbits(32), l)])
            return make(ref, n, locate)
        del live[ref]
        new = self.new_ref()
        new_price = self.price(locate, side)
        new_shares = rng.randrange(1, 1000)
        live[new] = [side, new_price, new_shares]
        self.replaced = (ref, new, locate)
        return replace(ref, new, new_shares, new_price, locate)

    def after_replace(self):
        """A message on what the last replace touched: its new order, its gone original, or its bucket."""
        rng = self.rng
        original, new, locate = self.replaced
        self.replaced = None
        kind = rng.random()
        if kind < 0.5 and new in self.live[locate]:
            return self.work_on(locate, new)
        if kind < 0.75:   # the original is gone: an unknown reference
            return rng.choice([delete(original, locate), execute(original, 1, locate),
                               replace(original, self.new_ref(), 5, self.price(locate, "B"), locate)])
        # another order in the new order's bucket (same low 32 bits): a collision
        ref, side = new ^ (rng.randrange(1, 1 << 32) << 32), rng.choice("BS")
        price, shares = self.price(locate, side), rng.randrange(1, 1000)
        self.live[locate][ref] = [side, price, shares]
        return add(ref, side, shares, price, locate)


def random_stimulus(seed, messages, locates, *, tracked, gap=0.05, bad=0.1, **flow):
    rng = random.Random(f"order_book/{seed}")
    feed = OrderFlow(rng, locates, **flow)
    packets = []
    remaining = messages
    while remaining > 0:
        size = min(remaining, rng.randint(1, 6))
        with_gap = rng.random() < gap
        packet = []
        for _ in range(size):
            record = feed.message()
            record["gap"] = with_gap
            packet.append(record)
        packets.append(packet)
        remaining -= size
    return schedule(packets, tracked, rng, bad=bad)


@pytest.mark.parametrize("seed, capacity, levels, corners", [
    (1, 16, 2, True), (2, 64, 3, True), (3, 32, 4, False), (4, 64, 1, True), (5, 2, 2, False)])
def test_small_builds_random_flow(seed, capacity, levels, corners):
    """Small tables (collisions all the time) and few levels; ``corners``: the build is big enough
    for the flow to fill the levels, push orders beyond and drain the known levels with some beyond."""
    stimulus = random_stimulus(seed, 1000, [LEAD, TARGET, UNTRACKED], tracked=(LEAD, TARGET))
    book = check(stimulus, capacity=capacity, levels=levels)
    assert book.counters["book_collision"] > 0 and book.counters["book_unknown_ref"] > 0
    assert all(book.reached.values()) or not corners, book.reached


def test_empty_then_a_new_run_is_a_fresh_book():
    """After ``empty`` and its sweep, a second flow gives what a fresh model gives it; a message that
    comes during the sweep is lost and marks every slot unreliable."""
    capacity = 64
    first = random_stimulus(8, 300, [LEAD, TARGET, UNTRACKED], tracked=(LEAD, TARGET))
    second = random_stimulus(9, 300, [LEAD, TARGET, UNTRACKED], tracked=(LEAD, TARGET))
    idle = [Cycle(empty=True)] + [Cycle() for _ in range(capacity + 2)]
    stimulus = Stimulus(first.locates, first.cycles + [Cycle() for _ in range(8)] + idle + second.cycles)
    book = check(stimulus, capacity=capacity, levels=3)
    fresh = BookModel(slots=2, capacity=capacity, levels=3, locates=second.locates)
    for cycle in second.cycles:  # (the packet ends and clears too, in their order)
        if cycle.clear:
            fresh.clear(cycle.clear)
        if cycle.packet_end is not None:
            fresh.packet_end(cycle.packet_end)
        if cycle.record is not None:
            fresh.apply(cycle.record)
    assert book.tops() == fresh.tops() and book.table.keys() == fresh.table.keys()

    during = Stimulus(first.locates, first.cycles + [Cycle(empty=True)]
                      + [Cycle(record=add(1, "B", 10, 100)), *[Cycle() for _ in range(capacity + 8)]])
    samples = simulate(during, slots=2, capacity=capacity, levels=3)
    assert gateware_tops(samples[-1][0][0], 2) == [InstrumentTop(unreliable=True)] * 2


def test_three_slots_one_unused():
    stimulus = random_stimulus(6, 300, [LEAD, TARGET, OTHER, UNTRACKED], tracked=(LEAD, 0, OTHER))
    check(stimulus, slots=3, capacity=64, levels=3)


def test_default_build_random_flow():
    stimulus = random_stimulus(7, 3000, [LEAD, TARGET, UNTRACKED], tracked=(LEAD, TARGET), gap=0.02, bad=0.05)
    book = check(stimulus)
    assert all(book.reached.values()), book.reached
    assert all(book.counters[name] for name in ("book_gap", "book_bad_packet", "book_unknown_ref")), book.counters


# --- directed sequences through the gateware ---------------------------------------------


def directed(records, *, spacing=2, locates=(LEAD, TARGET), packet_ends=(), clears=()):
    """Records ``spacing`` cycles apart, packet ends and clears at given cycles."""
    stimulus = Stimulus(tuple(locates))
    t = 0
    for record in records:
        while len(stimulus.cycles) <= t:
            stimulus.cycles.append(Cycle())
        stimulus.cycles[t].record = record
        stimulus.cycles[t].stamp = (1000 + t, t & 0xFF)
        t += spacing
    for at, bad in packet_ends:
        while len(stimulus.cycles) <= at:
            stimulus.cycles.append(Cycle())
        stimulus.cycles[at].packet_end = bad
    for at, mask in clears:
        while len(stimulus.cycles) <= at:
            stimulus.cycles.append(Cycle())
        stimulus.cycles[at].clear = mask
    return stimulus


def test_directed_levels():
    records = [add(1, "B", 10, 100), add(2, "B", 20, 99), add(3, "B", 30, 98), add(4, "B", 40, 98),
               add(5, "B", 5, 101), delete(5), delete(1), add(6, "B", 1, 90), delete(2), delete(3), delete(4),
               delete(6), add(7, "B", 3, 50), add(8, "B", 4, 60),
               add(11, "S", 10, 100), add(12, "S", 20, 101), add(13, "S", 30, 102), add(14, "S", 40, 101),
               delete(12), delete(14), delete(11)]
    check(directed(records), levels=2)
    check(directed(records), levels=4)


def test_directed_executions_and_replaces():
    records = [add(1, "B", 100, 500), add(2, "B", 50, 500), execute(1, 30), execute_at(1, 20, 999),
               cancel(1, 500), execute(1, 1), execute(2, 50), add(3, "B", 100, 500), execute(3, 0),
               add(21, "S", 100, 200), add(22, "S", 50, 201), replace(21, 29, 70, 202), replace(21, 30, 1, 1),
               add(0x21, "B", 10, 100), replace(0x21, 0x12, 20, 101),             # onto its own bucket (16)
               add(0x41, "B", 10, 100), add(0x42, "B", 20, 99), replace(0x41, 0x60, 5, 98),  # new ref collides
               replace(0x42, 0x43, 5, 99), delete(0x43)]
    check(directed(records), capacity=16, levels=3)
    check(directed(records), capacity=4096, levels=1)


def test_directed_collisions_and_unknown_references():
    a, b, c = 0x1, 0x1_0000_0001, 0x10
    records = [add(a, "B", 10, 100), add(b, "S", 10, 200, locate=TARGET), add(c, "B", 5, 100),
               delete(a, locate=TARGET), execute(c, 1), cancel(b, 1), replace(0x2, 0x3, 1, 1),
               execute_at(0x5, 1, 1), delete(a)]
    check(directed(records, clears=[(9, 0b11)]), capacity=16)


def test_directed_gap_bad_packet_and_clear():
    records = [other("S", locate=0, gap=True), other("R", gap=True), add(1, "B", 1, 1, locate=TARGET),
               add(2, "B", 1, 1, locate=UNTRACKED), other("P"), execute(99, 1), delete(98, locate=TARGET),
               add(3, "B", 1, 1, locate=UNTRACKED, gap=True)]
    # packet ends: after the gap packet (good), after the TARGET add (bad), after untracked only (bad),
    # after the unknown references (bad); clears in between, one in the same cycle as a packet end
    stimulus = directed(records, packet_ends=[(3, False), (5, True), (10, True), (14, True)],
                        clears=[(4, 0b01), (12, 0b11), (14, 0b10)])
    check(stimulus)


def test_directed_same_cycle_and_replace_window():
    """Inputs in one cycle (clear, packet end, message), and around a replace's extra cycle."""
    records = [add(1, "B", 10, 100), replace(1, 2, 20, 101, gap=True)]
    stimulus = directed(records, spacing=2)
    # a non-book message with gap in each cycle after the replace; a packet end with the replace;
    # clears in the replace's cycle and the one after
    for t in (3, 4, 5):
        stimulus.cycles.append(Cycle())
    for t in (3, 4, 5):
        stimulus.cycles[t].record = other("P", gap=True)
        stimulus.cycles[t].stamp = (t, 0)
    stimulus.cycles[2].packet_end = True
    stimulus.cycles[2].clear = 0b11
    stimulus.cycles[3].clear = 0b01
    check(stimulus)
    # a replace whose original is unknown, then a clear in the cycle after it
    stimulus = directed([replace(7, 8, 1, 1), add(9, "S", 1, 1)], clears=[(1, 0b01)])
    check(stimulus)


def test_side_levels_mismatch_strobe():
    """A take at a price in no known level with nothing beyond is a mismatch, in the cycle after the request.

    (A consistent order table never makes one, so OrderBook's stream tests cannot; the model's own
    test above covers the rule.) The requests come in consecutive cycles, so that each is decided
    against the update of the one before."""
    levels = SideLevels(side=Side.ASK, levels=2)
    request = Value.cast(levels.request)
    seen = []

    def take(price, shares):
        return pack_fields(LevelRequest, valid=1, add=0, price=price, shares=shares, leaves=1)

    def put(price, shares):
        return pack_fields(LevelRequest, valid=1, add=1, price=price, shares=shares)

    async def bench(ctx):
        ctx.set(levels.show, 1)
        for step in (take(100, 5), put(100, 5), take(101, 5), take(100, 5), take(100, 5), 0, 0, 0, 0):
            ctx.set(request, step)
            seen.append((ctx.get(levels.mismatch), layout_fields(QuoteLayout, ctx.get(Value.cast(levels.quote)))))
            await ctx.tick()

    simulator = Simulator(levels)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert [mismatch for mismatch, _ in seen] == [0, 1, 0, 1, 0, 1, 0, 0, 0]
    # the add shows LEVELS_LATENCY cycles after it; the first take of 100 right after it empties the level
    assert seen[1 + LEVELS_LATENCY][1] == {"valid": 1, "unknown": 0, "price": 100, "shares": 5}
    assert seen[3 + LEVELS_LATENCY][1] == {"valid": 0, "unknown": 0, "price": 0, "shares": 0}


def test_directed_replace_then_two_cycles_later():
    """A replace followed two cycles later (the least the doc allows) by a message on its new
    reference, on its original reference, in its new bucket, on its level, and on the other slot."""
    records = [
        add(1, "B", 10, 100), add(2, "B", 20, 99), add(3, "S", 30, 105),
        replace(1, 0x31, 15, 101), delete(0x31),                       # the new order deleted
        replace(2, 0x32, 25, 100), replace(0x32, 0x33, 5, 102),        # the new order replaced ...
        replace(0x33, 0x34, 6, 97), execute(0x34, 2), cancel(0x34, 4),  # ... executed, cancelled
        replace(3, 0x35, 10, 104), delete(3),                          # the original: unknown
        add(4, "S", 1, 106), replace(4, 0x36, 2, 104), replace(4, 0x37, 1, 1),
        add(5, "B", 3, 90), replace(5, 0x38, 4, 91), add(5, "B", 6, 91),   # the original's ref again; same level
        add(6, "B", 3, 92), replace(6, 0x39, 4, 93), add(0x1_0000_0039, "B", 1, 93),  # the new bucket: collision
        add(7, "S", 1, 110), replace(7, 0x70, 2, 111), delete(0x70),   # new bucket = original's at capacity 16
        add(8, "S", 1, 111, locate=TARGET), replace(8, 0x80, 2, 112, locate=TARGET),
        add(9, "B", 5, 95), replace(9, 0x90, 5, 96), add(0x91, "B", 1, 96, locate=TARGET),  # the other slot
        replace(0x90, 0x92, 1, 80), add(0x93, "B", 7, 96), replace(0x93, 0x94, 2, 80), delete(0x92),
        delete(0x94), delete(0x38), delete(5), delete(0x39), delete(0x35), delete(0x36),
    ]
    for capacity, levels in ((16, 1), (16, 3), (4096, 2), (4096, 4)):
        book = check(directed(records), capacity=capacity, levels=levels)
        if capacity == 4096:   # the originals 3 and 4 replaced away, 0x1_0000_0039 in 0x39's bucket
            assert counts(book, book_unknown_ref=2, book_collision=1), book.counters


def test_directed_push_out_then_take():
    """An add pushes the last level out into ``beyond`` and the next message (two cycles later; after
    a replace's add, in the very next cycle at the side) takes an order that is now beyond."""
    records = [add(1, "B", 10, 100), add(5, "B", 3, 99), add(2, "B", 5, 90),
               replace(2, 4, 5, 101),   # takes order 2 from beyond, then pushes the last level out
               delete(5), delete(1), replace(4, 6, 1, 102), delete(6), add(7, "B", 1, 98), delete(7),
               add(11, "S", 1, 200), add(13, "S", 1, 201), add(12, "S", 1, 199),   # pushes 200 or 201 out
               delete(13), add(14, "S", 1, 198), delete(11), delete(12), delete(14)]
    for levels in (1, 2):
        book = check(directed(records), levels=levels)
        assert counts(book), book.counters


def feed_stimulus(*, realistic):
    """The generator's snipe scenario (market makers replacing quotes, each replace often followed at
    once by a delete) through the receive path's model. ``realistic``: each message as many cycles
    after the one before as its bytes take at 8 a cycle (a book message at least 2), a packet's headers
    between packets; else packed as tightly as the doc's rule allows (`schedule`)."""
    config = FeedConfig(seed=5, messages=2000, instruments=("LEAD", "TGT", "ALFA"), scenario="snipe",
                        end_of_session=False)
    receive = RxModel()
    packets = [receive.process(record.data) for record in generate_feed(config)]
    directory = {record["stock"]: record["locate"] for packet in packets for record in packet if record["type"] == "R"}
    locates = (directory["LEAD"], directory["TGT"])
    if not realistic:
        return schedule(packets, locates, random.Random("order_book/feed"), bad=0, clears=0)
    stimulus = Stimulus(locates)
    t, last_book = 0, -10
    for index, packet in enumerate(packets):
        t += 8   # Ethernet, IP, UDP and MoldUDP64 headers
        for record in packet:
            t += max(1, (record["length"] + 2) // 8)
            if is_book(record, locates):
                t = max(t, last_book + 2)
                last_book = t
            stimulus.cycles.extend(Cycle() for _ in range(t + 1 - len(stimulus.cycles)))
            stimulus.cycles[t].record = record
            stimulus.cycles[t].stamp = (t, index & 0xFF)
        stimulus.cycles.extend(Cycle() for _ in range(2))
        stimulus.cycles[-1].packet_end = False
        t = len(stimulus.cycles)
    return stimulus


@pytest.mark.parametrize("realistic", [True, False])
def test_snipe_feed(realistic):
    stimulus = feed_stimulus(realistic=realistic)
    tracked = [cycle.record for cycle in stimulus.cycles if cycle.record and is_book(cycle.record, stimulus.locates)]
    # the case of the pipeline: a replace followed two cycles later by another book message
    book_cycles = [t for t, cycle in enumerate(stimulus.cycles) if cycle.record and is_book(cycle.record, stimulus.locates)]
    replace_then = sum(1 for t in book_cycles if stimulus.cycles[t].record["type"] == "U" and t + 2 in book_cycles)
    assert len(tracked) > 1000 and replace_then > 20, (len(tracked), replace_then)
    book = check(stimulus)
    assert book.counters["book_unknown_ref"] == 0 and book.counters["book_level_mismatch"] == 0, book.counters
