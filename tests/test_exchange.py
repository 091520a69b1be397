"""The exchange simulator: matching worked by hand, the protocol byte paths, and the feed followed by the models.

Expected fills, messages and books are worked out by hand from the rules of
price-time priority and the module docstring, never taken from the code. The
feed is checked twice over: decoded with the codecs, and followed by the
project's golden receive path and book (host/rx_model.py, host/book_model.py)
through a seeded random session, whose best bid and offer must match the
exchange's after every frame.
"""

import random

import pytest

from tick2trade.host import feed
from tick2trade.host.book_model import BookModel
from tick2trade.host.codec import itch, moldudp64
from tick2trade.host.codec.net import parse_udp_frame
from tick2trade.host.codec.ouch import (TIME_IN_FORCE_DAY, TIME_IN_FORCE_IOC, Accepted, CancelOrder, Canceled,
                                        EnterOrder, Executed, Rejected, SystemEvent, decode_outbound)
from tick2trade.host.codec.soupbintcp import (ClientHeartbeat, LoginRequest, SequencedData, UnsequencedData,
                                              split_packets)
from tick2trade.host.exchange import (MAX_PRICE, MAX_SHARES, BookTop, CancelIgnored, CancelReason, Exchange, Fill,
                                      IgnoredCancelReason, Level, LiveOrder, Order, OrderAccepted, OrderBook,
                                      OrderCanceled, OrderRejected, OrderRested, ProtocolError, RejectReason)
from tick2trade.host.order_types import Quote, Side
from tick2trade.host.rx_model import RxModel

LEAD, TGT = 1, 2
INSTRUMENTS = [(LEAD, "LEAD"), (TGT, "TGT")]
PARTICIPANTS = ("mm", "sniper", "taker")
START = feed.FeedConfig().start_ns  # the session's start, ns since midnight
OPEN_MESSAGES = 7  # O, S, two R, two H, Q: the first order reference is 1, its Add Order sequence number 8


def enter(token, side, shares, price, *, stock="TGT", tif=TIME_IN_FORCE_DAY, firm="FIRM"):
    return EnterOrder(token, side, shares, stock, price, tif, firm, "Y", "P", "N", 0, "N", "R")


def ioc(token, side, shares, price, **kwargs):
    return enter(token, side, shares, price, tif=TIME_IN_FORCE_IOC, **kwargs)


def opened(**kwargs):
    exchange = Exchange(INSTRUMENTS, PARTICIPANTS, **kwargs)
    exchange.open(0)
    return exchange


def ouch(emission, participant):
    """The OUCH messages of `participant`'s responses, each from a Sequenced Data packet."""
    packets, rest = split_packets(emission.responses.get(participant, b""))
    assert rest == b""
    assert all(isinstance(packet, SequencedData) for packet in packets)
    return [decode_outbound(packet.message) for packet in packets]


def feed_messages(emission):
    """(MoldUDP64 sequence number, ITCH message) of every message of the emission's frames."""
    messages = []
    for frame in emission.feed_frames:
        _, _, _, payload = parse_udp_frame(frame)
        packet = moldudp64.decode_packet(payload)
        messages.extend((packet.sequence + i, itch.decode(raw)) for i, raw in enumerate(packet.messages))
    return messages


def fills(emission):
    return [(e.maker, e.maker_token, e.price, e.shares) for e in emission.events if isinstance(e, Fill)]


# --- the book alone ------------------------------------------------------------------------------


def order(ref, side, price, shares):
    return Order(ref, "mm", f"T{ref}", TGT, side, price, shares)


def test_book_levels_best_first_and_a_match_sweeping_them():
    book = OrderBook()
    for ref, price, shares in [(1, 1_010_000, 100), (2, 1_005_000, 100), (3, 1_008_000, 100), (4, 1_005_000, 50)]:
        book.add(order(ref, Side.ASK, price, shares))
    book.add(order(5, Side.BID, 990_000, 300))
    assert book.levels(Side.ASK) == [Level(1_005_000, 150, 2), Level(1_008_000, 100, 1), Level(1_010_000, 100, 1)]
    assert book.best(Side.BID) == Level(990_000, 300, 1)
    traded = book.match(Side.BID, 1_008_000, 220)
    assert [(resting.order_ref, shares) for resting, shares in traded] == [(2, 100), (4, 50), (3, 70)]
    assert book.levels(Side.ASK) == [Level(1_008_000, 30, 1), Level(1_010_000, 100, 1)]
    assert 2 not in book and 4 not in book and 3 in book


def test_book_match_stops_at_the_limit_and_reduce_removes_at_zero():
    book = OrderBook()
    book.add(order(1, Side.BID, 990_000, 100))
    book.add(order(2, Side.BID, 989_000, 100))
    assert [(r.order_ref, s) for r, s in book.match(Side.ASK, 990_000, 500)] == [(1, 100)]
    assert book.best(Side.BID) == Level(989_000, 100, 1)
    assert book.reduce(2, 60) == 40
    assert book.reduce(2, 80) == 0
    assert book.best(Side.BID) == Level(989_000, 60, 1)
    assert book.reduce(2, 0) == 60
    assert book.best(Side.BID) is None and book.levels(Side.BID) == [] and 2 not in book


def test_book_refuses_an_empty_or_known_order():
    book = OrderBook()
    book.add(order(1, Side.BID, 990_000, 100))
    with pytest.raises(ValueError):
        book.add(order(1, Side.BID, 990_000, 100))
    with pytest.raises(ValueError):
        book.add(order(2, Side.BID, 990_000, 0))


# --- matching through the exchange ---------------------------------------------------------------


def test_price_priority():
    exchange = opened()
    exchange.submit("mm", enter("A1", "S", 100, 1_010_000), 1)
    exchange.submit("mm", enter("A2", "S", 100, 1_005_000), 2)
    exchange.submit("mm", enter("A3", "S", 100, 1_008_000), 3)
    taken = exchange.submit("taker", ioc("T1", "B", 150, 1_010_000), 4)
    assert fills(taken) == [("mm", "A2", 1_005_000, 100), ("mm", "A3", 1_008_000, 50)]
    assert exchange.top(TGT) == BookTop(None, Level(1_008_000, 50, 1))
    assert [o.token for o in exchange.live_orders("mm")] == ["A1", "A3"]


def test_time_priority_at_a_price():
    exchange = opened()
    exchange.submit("mm", enter("A1", "S", 100, 1_000_000), 1)
    exchange.submit("sniper", enter("S1", "S", 200, 1_000_000), 2)
    exchange.submit("mm", enter("A2", "S", 100, 1_000_000), 3)
    taken = exchange.submit("taker", enter("T1", "B", 250, 1_000_000), 4)
    assert fills(taken) == [("mm", "A1", 1_000_000, 100), ("sniper", "S1", 1_000_000, 150)]
    assert exchange.top(TGT) == BookTop(None, Level(1_000_000, 150, 2))
    assert exchange.live_orders("sniper") == [LiveOrder("S1", TGT, 2, Side.ASK, 1_000_000, 50)]
    assert exchange.live_orders("taker") == []


def test_partial_fills_across_levels_then_the_limit_remainder_rests_through_the_book():
    exchange = opened()
    exchange.submit("mm", enter("B1", "B", 300, 990_000), 1)   # ref 1
    exchange.submit("mm", enter("B2", "B", 200, 989_000), 2)   # ref 2
    exchange.submit("mm", enter("B3", "B", 100, 988_000), 3)   # ref 3
    crossing = exchange.submit("taker", enter("T1", "S", 700, 989_000), 4)  # ref 4
    assert fills(crossing) == [("mm", "B1", 990_000, 300), ("mm", "B2", 989_000, 200)]
    assert exchange.top(TGT) == BookTop(Level(988_000, 100, 1), Level(989_000, 200, 1))
    ts = START + 4
    seq = OPEN_MESSAGES + 4
    assert [m for _, m in feed_messages(crossing)] == [
        itch.OrderExecuted(TGT, seq, ts, 1, 300, 1),
        itch.OrderExecuted(TGT, seq + 1, ts, 2, 200, 2),
        itch.AddOrder(TGT, seq + 2, ts, 4, "S", 200, "TGT", 989_000),
    ]
    assert crossing.events[-1] == OrderRested(4, "taker", "T1", TGT, 4, Side.ASK, 200, 989_000)
    assert ouch(crossing, "taker")[1:] == [
        Executed(ts, "T1", 300, 990_000, "R", 1),
        Executed(ts, "T1", 200, 989_000, "R", 2),
    ]
    assert ouch(crossing, "mm") == [Executed(ts, "B1", 300, 990_000, "A", 1), Executed(ts, "B2", 200, 989_000, "A", 2)]


def test_ioc_remainder_is_cancelled_and_never_published():
    exchange = opened()
    exchange.submit("mm", enter("A1", "S", 100, 1_000_000), 1)
    taken = exchange.submit("sniper", ioc("S1", "B", 300, 1_001_000), 2)
    assert fills(taken) == [("mm", "A1", 1_000_000, 100)]
    assert ouch(taken, "sniper")[1:] == [Executed(START + 2, "S1", 100, 1_000_000, "R", 1),
                                         Canceled(START + 2, "S1", 200, "I")]
    assert taken.events[-1] == OrderCanceled(2, "sniper", "S1", TGT, 2, 200, 0, CancelReason.IMMEDIATE_OR_CANCEL)
    assert [type(m) for _, m in feed_messages(taken)] == [itch.OrderExecuted]
    assert exchange.top(TGT) == BookTop(None, None)
    missed = exchange.submit("sniper", ioc("S2", "B", 100, 1_001_000), 3)
    assert missed.feed_frames == []
    assert [type(m) for m in ouch(missed, "sniper")] == [Accepted, Canceled]
    assert ouch(missed, "sniper")[1] == Canceled(START + 3, "S2", 100, "I")


def test_cancel_partial_then_full():
    exchange = opened()
    exchange.submit("mm", enter("Q1", "B", 500, 990_000), 1)  # ref 1
    reduced = exchange.cancel("mm", CancelOrder("Q1", 200), 2)
    assert ouch(reduced, "mm") == [Canceled(START + 2, "Q1", 300, "U")]
    assert [m for _, m in feed_messages(reduced)] == [itch.OrderCancel(TGT, OPEN_MESSAGES + 2, START + 2, 1, 300)]
    assert reduced.events == [OrderCanceled(2, "mm", "Q1", TGT, 1, 300, 200, CancelReason.USER)]
    assert exchange.live_orders("mm") == [LiveOrder("Q1", TGT, 1, Side.BID, 990_000, 200)]
    unchanged = exchange.cancel("mm", CancelOrder("Q1", 300), 3)  # at or above the open shares: nothing
    assert unchanged.responses == {} and unchanged.feed_frames == [] and unchanged.events == []
    deleted = exchange.cancel("mm", CancelOrder("Q1", 0), 4)
    assert ouch(deleted, "mm") == [Canceled(START + 4, "Q1", 200, "U")]
    assert [m for _, m in feed_messages(deleted)] == [itch.OrderDelete(TGT, OPEN_MESSAGES + 3, START + 4, 1)]
    assert exchange.live_orders("mm") == [] and exchange.top(TGT) == BookTop(None, None)
    again = exchange.cancel("mm", CancelOrder("Q1", 0), 5)
    assert again.responses == {} and exchange.late_cancels == 1


def test_a_cancel_after_the_fill_is_too_late():
    exchange = opened()
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 1)
    exchange.submit("sniper", ioc("S1", "B", 100, 1_000_000), 2)
    late = exchange.cancel("mm", CancelOrder("M1", 0), 3)
    assert late.responses == {} and late.feed_frames == []
    assert late.events == [CancelIgnored(3, "mm", "M1", IgnoredCancelReason.TOO_LATE)]
    assert (exchange.late_cancels, exchange.unknown_cancels) == (1, 0)


def test_a_cancel_before_the_snipe_wins_the_race():
    exchange = opened()
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 1)
    exchange.cancel("mm", CancelOrder("M1", 0), 2)
    missed = exchange.submit("sniper", ioc("S1", "B", 100, 1_000_000), 2)
    assert fills(missed) == [] and ouch(missed, "sniper")[1] == Canceled(START + 2, "S1", 100, "I")
    assert exchange.late_cancels == 0


# --- frequent batch auctions ------------------------------------------------------------------------


def test_in_a_batch_the_cancel_wins_over_a_snipe_that_arrived_first():
    exchange = opened(batch_interval_ns=100)
    assert exchange.next_batch_ns() == 100
    entered = exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 1)
    assert [type(m) for m in ouch(entered, "mm")] == [Accepted] and entered.feed_frames == []  # accepted at once
    rested = exchange.run_batch(100)
    assert [(m.type, m.order_ref) for _, m in feed_messages(rested)] == [("A", 1)]
    assert exchange.next_batch_ns() == 200
    snipe = exchange.submit("sniper", ioc("S1", "B", 100, 1_000_000), 150)  # first to arrive, as in the race
    cancel = exchange.cancel("mm", CancelOrder("M1", 0), 160)
    assert ouch(snipe, "sniper")[0].order_reference_number == 2 and snipe.feed_frames == []
    assert cancel.events == [] and cancel.responses == {}
    batch = exchange.run_batch(200)
    assert fills(batch) == []
    assert [(m.type, m.order_ref) for _, m in feed_messages(batch)] == [("D", 1)]
    assert ouch(batch, "mm") == [Canceled(START + 200, "M1", 100, "U")]
    assert ouch(batch, "sniper") == [Canceled(START + 200, "S1", 100, "I")]  # the snipe found nothing
    assert (exchange.late_cancels, exchange.top(TGT)) == (0, BookTop(None, None))


def test_a_batch_clears_at_one_uniform_price():
    """Hand-worked: bids 80 @ 100.04 (new), 20 @ 99.99 (new, IOC), 10 @ 99.99 (new), 30 @ 99.98 (resting); asks
    40 @ 99.97 (new, IOC), 50 @ 100.00 and 50 @ 100.02 (resting). Volume at 99.97..99.99: 40 (supply 40); at 100.00,
    100.02 and 100.04: 80 (demand 80); so [100.00, 100.04] and the price 100.02. The bid at 100.04 buys 80: 40 from
    the new ask at 99.97 (price first), then 40 of the resting 100.00."""
    exchange = opened(batch_interval_ns=100)
    for token, side, price in (("M1", "S", 1_000_000), ("M2", "S", 1_000_200), ("M3", "B", 999_800)):
        exchange.submit("mm", enter(token, side, 50 if side == "S" else 30, price), 1)
    exchange.run_batch(100)  # refs 1, 2, 3 rest: sequence numbers 8, 9, 10
    exchange.submit("sniper", enter("S1", "B", 80, 1_000_400), 110)  # ref 4
    exchange.submit("taker", ioc("T1", "S", 40, 999_700), 120)  # ref 5
    exchange.submit("taker", ioc("T2", "B", 20, 999_900), 130)  # ref 6
    exchange.submit("mm", enter("M4", "B", 10, 999_900), 140)  # ref 7
    batch = exchange.run_batch(200)
    assert [(e.match_number, e.price, e.shares, e.aggressor_side, e.taker, e.taker_order_ref, e.maker,
             e.maker_order_ref) for e in batch.events if isinstance(e, Fill)] == [
        (1, 1_000_200, 40, Side.ASK, "taker", 5, "sniper", 4),  # both new: the earlier order is the resting one
        (2, 1_000_200, 40, Side.BID, "sniper", 4, "mm", 1)]
    assert [message for _, message in feed_messages(batch)] == [
        itch.Trade(TGT, 11, START + 200, 0, "B", 40, "TGT", 1_000_200, 1),  # neither order was ever on the feed
        itch.OrderExecutedWithPrice(TGT, 12, START + 200, 1, 40, 2, "Y", 1_000_200),  # not at its own price
        itch.AddOrder(TGT, 13, START + 200, 7, "B", 10, "TGT", 999_900)]
    assert ouch(batch, "sniper") == [Executed(START + 200, "S1", 40, 1_000_200, "A", 1),
                                     Executed(START + 200, "S1", 40, 1_000_200, "R", 2)]
    assert ouch(batch, "taker") == [Executed(START + 200, "T1", 40, 1_000_200, "R", 1),
                                    Canceled(START + 200, "T2", 20, "I")]
    assert ouch(batch, "mm") == [Executed(START + 200, "M1", 40, 1_000_200, "A", 2)]
    assert exchange.levels(TGT, Side.BID) == [Level(999_900, 10, 1), Level(999_800, 30, 1)]
    assert exchange.levels(TGT, Side.ASK) == [Level(1_000_000, 10, 1), Level(1_000_200, 50, 1)]


def test_a_batch_at_the_resting_price_publishes_order_executed_and_keeps_time_priority():
    exchange = opened(batch_interval_ns=100)
    exchange.submit("mm", enter("M1", "S", 30, 1_000_000), 1)
    exchange.run_batch(100)
    exchange.submit("taker", enter("T1", "S", 30, 1_000_000), 101)  # same price, a later batch: behind M1
    exchange.submit("sniper", ioc("S1", "B", 40, 1_000_000), 102)
    exchange.cancel("taker", CancelOrder("T1", 20), 103)  # cuts an order of this interval: nothing on the feed
    batch = exchange.run_batch(200)
    assert fills(batch) == [("mm", "M1", 1_000_000, 30), ("taker", "T1", 1_000_000, 10)]
    assert [(m.type, getattr(m, "order_ref", None)) for _, m in feed_messages(batch)] == [("E", 1), ("P", 0), ("A", 2)]
    assert ouch(batch, "taker")[0] == Canceled(START + 200, "T1", 10, "U")
    assert exchange.top(TGT) == BookTop(None, Level(1_000_000, 10, 1))
    assert exchange.cancel("mm", CancelOrder("M1", 0), 201).events == [
        CancelIgnored(201, "mm", "M1", IgnoredCancelReason.TOO_LATE)]  # filled in the last batch: too late at once


def test_batches_are_run_on_time():
    with pytest.raises(ValueError, match="continuous"):
        opened().run_batch(0)
    assert opened().next_batch_ns() is None
    with pytest.raises(ValueError, match="batch_interval_ns"):
        Exchange(INSTRUMENTS, PARTICIPANTS, batch_interval_ns=0)
    exchange = opened(batch_interval_ns=100)
    with pytest.raises(ValueError, match="next batch ends at 100"):
        exchange.run_batch(50)
    with pytest.raises(ValueError, match="must be run before"):
        exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 101)
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 100)  # at the batch's own ns: still in it
    assert [type(e) for e in exchange.run_batch(100).events] == [OrderRested]


def test_a_cancel_of_a_token_never_accepted_is_ignored():
    exchange = opened()
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 1)
    ignored = exchange.cancel("sniper", CancelOrder("M1", 0), 2)  # tokens are per participant
    assert ignored.events == [CancelIgnored(2, "sniper", "M1", IgnoredCancelReason.UNKNOWN_TOKEN)]
    assert ignored.responses == {} and (exchange.late_cancels, exchange.unknown_cancels) == (0, 1)
    assert exchange.top(TGT) == BookTop(None, Level(1_000_000, 100, 1))


def test_duplicate_token_is_rejected_per_participant():
    exchange = opened()
    exchange.submit("mm", ioc("T1", "B", 100, 990_000), 1)  # done on arrival: the token stays taken
    again = exchange.submit("mm", enter("T1", "B", 100, 990_000), 2)
    assert ouch(again, "mm") == [Rejected(START + 2, "T1", "O")]
    assert again.events == [OrderRejected(2, "mm", "T1", RejectReason.DUPLICATE_TOKEN)]
    other = exchange.submit("sniper", enter("T1", "B", 100, 990_000), 3)
    assert [type(m) for m in ouch(other, "sniper")] == [Accepted]


@pytest.mark.parametrize("order, reason, code", [
    (enter("R1", "B", 100, 990_000, stock="NOPE"), RejectReason.UNKNOWN_STOCK, "S"),
    (enter("R1", "B", 0, 990_000), RejectReason.INVALID_SHARES, "Z"),
    (enter("R1", "B", MAX_SHARES + 1, 990_000), RejectReason.INVALID_SHARES, "Z"),
    (enter("R1", "B", 100, 0), RejectReason.INVALID_PRICE, "X"),
    (enter("R1", "B", 100, MAX_PRICE + 1), RejectReason.INVALID_PRICE, "X"),
    (enter("R1", "Q", 100, 990_000), RejectReason.INVALID_SIDE, "O"),
])
def test_rejected_orders(order, reason, code):
    exchange = opened()
    rejected = exchange.submit("taker", order, 5)
    assert ouch(rejected, "taker") == [Rejected(START + 5, "R1", code)]
    assert rejected.events == [OrderRejected(5, "taker", "R1", reason)] and rejected.feed_frames == []
    assert exchange.live_orders("taker") == []
    accepted = exchange.submit("taker", enter("R1", "B", 100, 990_000), 6)  # a rejected token is not taken
    assert [type(m) for m in ouch(accepted, "taker")] == [Accepted]


def test_orders_before_the_open_are_rejected():
    exchange = Exchange(INSTRUMENTS, PARTICIPANTS)
    rejected = exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 0)
    assert ouch(rejected, "mm") == [Rejected(START, "M1", "C")]
    exchange.open(1)
    with pytest.raises(ValueError):
        exchange.open(2)


def test_short_sales_sell_and_an_own_order_can_trade():
    exchange = opened()
    exchange.submit("mm", enter("M1", "T", 100, 1_000_000), 1)
    crossed = exchange.submit("mm", ioc("M2", "B", 100, 1_000_000), 2)
    assert ouch(crossed, "mm")[1:] == [Executed(START + 2, "M2", 100, 1_000_000, "R", 1),
                                       Executed(START + 2, "M1", 100, 1_000_000, "A", 1)]


def test_accepted_echoes_the_order_and_events_record_it():
    exchange = opened()
    entered = exchange.submit("sniper", ioc("S1", "E", 300, 1_000_000, stock="LEAD", firm="SNPR"), 9)
    assert ouch(entered, "sniper")[0] == Accepted(START + 9, "S1", "E", 300, "LEAD", 1_000_000, 0, "SNPR", "Y", 1,
                                                  "P", "N", 0, "N", "L", " ")
    assert entered.events[0] == OrderAccepted(9, "sniper", "S1", LEAD, 1, Side.ASK, 300, 1_000_000, True)


@pytest.mark.parametrize("instruments, participants, options", [
    ([], PARTICIPANTS, {}),
    ([(0, "LEAD")], PARTICIPANTS, {}),
    ([(1, "LEAD"), (1, "TGT")], PARTICIPANTS, {}),
    ([(1, "LEAD"), (2, "LEAD")], PARTICIPANTS, {}),
    ([(1, "TOOLONGSYM")], PARTICIPANTS, {}),
    ([(1, "A B")], PARTICIPANTS, {}),
    ([(1,)], PARTICIPANTS, {}),
    (INSTRUMENTS, (), {}),
    (INSTRUMENTS, ("mm", "mm"), {}),
    (INSTRUMENTS, ("mm", ""), {}),
    (INSTRUMENTS, "mm", {}),
    (INSTRUMENTS, PARTICIPANTS, {"max_udp_payload": 60}),
    (INSTRUMENTS, PARTICIPANTS, {"max_udp_payload": 65_508}),
    (INSTRUMENTS, PARTICIPANTS, {"feed": feed.FeedConfig(start_ns=86_400 * 10**9)}),
])
def test_bad_construction(instruments, participants, options):
    with pytest.raises(ValueError):
        Exchange(instruments, participants, **options)


def test_time_must_not_go_backwards_or_past_midnight():
    exchange = opened()
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 100)
    with pytest.raises(ValueError):
        exchange.submit("mm", enter("M2", "S", 100, 1_000_000), 99)
    with pytest.raises(ValueError):
        exchange.cancel("mm", CancelOrder("M1", 0), 86_400 * 10**9 - START)
    with pytest.raises(ValueError):
        exchange.receive("nobody", b"", 200)
    with pytest.raises(ValueError):
        exchange.top(3)


# --- bytes ------------------------------------------------------------------------------------------


def unsequenced(message):
    return UnsequencedData(message.encode()).encode()


SNIPE = (unsequenced(ioc("S1", "B", 400, 1_000_100, firm="SNPR")) + ClientHeartbeat().encode()
         + unsequenced(enter("S2", "B", 100, 999_000, firm="SNPR")))


def with_two_asks():
    exchange = opened()
    exchange.submit("mm", enter("M1", "S", 100, 1_000_000), 10)  # ref 1, sequence 8
    exchange.submit("mm", enter("M2", "S", 200, 1_000_100), 20)  # ref 2, sequence 9
    return exchange


def test_snipe_responses_and_feed_decode_to_the_expected_messages():
    emission = with_two_asks().receive("sniper", SNIPE, 100)
    ts = START + 100
    assert ouch(emission, "sniper") == [
        Accepted(ts, "S1", "B", 400, "TGT", 1_000_100, 0, "SNPR", "Y", 3, "P", "N", 0, "N", "L", " "),
        Executed(ts, "S1", 100, 1_000_000, "R", 1),
        Executed(ts, "S1", 200, 1_000_100, "R", 2),
        Canceled(ts, "S1", 100, "I"),
        Accepted(ts, "S2", "B", 100, "TGT", 999_000, TIME_IN_FORCE_DAY, "SNPR", "Y", 4, "P", "N", 0, "N", "L", " "),
    ]
    assert ouch(emission, "mm") == [Executed(ts, "M1", 100, 1_000_000, "A", 1),
                                    Executed(ts, "M2", 200, 1_000_100, "A", 2)]
    assert "taker" not in emission.responses
    assert len(emission.feed_frames) == 1
    assert feed_messages(emission) == [
        (10, itch.OrderExecuted(TGT, 10, ts, 1, 100, 1)),
        (11, itch.OrderExecuted(TGT, 11, ts, 2, 200, 2)),
        (12, itch.AddOrder(TGT, 12, ts, 4, "B", 100, "TGT", 999_000)),
    ]
    assert [type(e) for e in emission.events] == [OrderAccepted, Fill, Fill, OrderCanceled, OrderAccepted,
                                                  OrderRested]
    assert emission.events[2] == Fill(100, TGT, 2, 1_000_100, 200, Side.BID, "sniper", "S1", 3, "mm", "M2", 2)


def test_bytes_split_at_every_boundary_give_the_same_emission():
    whole = with_two_asks().receive("sniper", SNIPE, 100)
    for cut in range(len(SNIPE) + 1):
        exchange = with_two_asks()
        first = exchange.receive("sniper", SNIPE[:cut], 100)
        second = exchange.receive("sniper", SNIPE[cut:], 100)
        # a cut inside the second Enter Order spreads the messages over two packets: compare the messages
        assert feed_messages(first) + feed_messages(second) == feed_messages(whole), cut
        for participant in PARTICIPANTS:
            joined = first.responses.get(participant, b"") + second.responses.get(participant, b"")
            assert joined == whole.responses.get(participant, b""), (cut, participant)
        assert first.events + second.events == whole.events, cut


def test_the_byte_path_and_the_direct_path_agree():
    by_bytes = with_two_asks().receive("sniper", SNIPE, 100)
    direct = with_two_asks()
    parts = [direct.submit("sniper", ioc("S1", "B", 400, 1_000_100, firm="SNPR"), 100),
             direct.submit("sniper", enter("S2", "B", 100, 999_000, firm="SNPR"), 100)]
    assert [m for _, m in feed_messages(by_bytes)] == [m for part in parts for _, m in feed_messages(part)]
    assert by_bytes.responses["sniper"] == b"".join(part.responses["sniper"] for part in parts)
    assert by_bytes.events == [e for part in parts for e in part.events]


def test_a_cancel_order_in_bytes():
    exchange = with_two_asks()
    emission = exchange.receive("mm", unsequenced(CancelOrder("M2", 50)), 30)
    assert ouch(emission, "mm") == [Canceled(START + 30, "M2", 150, "U")]
    assert exchange.top(TGT) == BookTop(None, Level(1_000_000, 100, 1))


@pytest.mark.parametrize("stream", [
    LoginRequest("user", "pass").encode(),
    UnsequencedData(b"Z" + bytes(18)).encode(),   # not an OUCH inbound type
    UnsequencedData(enter("S1", "B", 1, 1).encode()[:-1]).encode(),  # an Enter Order one byte short
    b"\x00\x00",  # a zero length field: no packet type
])
def test_bytes_a_session_cannot_take(stream):
    exchange = with_two_asks()
    good = unsequenced(enter("S9", "B", 100, 999_000))
    with pytest.raises(ProtocolError):
        exchange.receive("sniper", good + stream, 100)
    assert exchange.live_orders("sniper") == []  # nothing of the chunk was acted on
    after = exchange.receive("sniper", good, 101)  # the bad bytes were dropped with the session's buffer
    assert [type(m) for m in ouch(after, "sniper")] == [Accepted]


def test_the_open_matches_the_feed_generators_preamble():
    opening = Exchange(INSTRUMENTS, PARTICIPANTS).open(0)
    generated = list(feed.generate_messages(feed.FeedConfig(instruments=("LEAD", "TGT"), messages=0)))
    expected = generated[:OPEN_MESSAGES]
    assert [m.type for m in expected] == list("SSRRHHS")
    published = feed_messages(opening)
    assert [seq for seq, _ in published] == list(range(1, OPEN_MESSAGES + 1))
    for (seq, message), model in zip(published, expected):
        assert message == type(model)(**{**_fields(model), "tracking": seq, "timestamp": START})
    assert ouch(opening, "sniper") == [SystemEvent(START, "S")]


def _fields(message):
    return {name: getattr(message, name) for name in ("locate", "tracking", "timestamp", *message._LAYOUT.names)}


def test_a_small_payload_spreads_one_call_over_consecutive_packets():
    exchange = opened(max_udp_payload=100)  # 20-byte header: two 33-byte executions, or one plus a 38-byte add
    for i in range(5):
        exchange.submit("mm", enter(f"M{i}", "S", 100, 1_000_000 + 100 * i), i + 1)
    sweep = exchange.submit("taker", enter("T1", "B", 600, 1_000_400), 10)
    packets = [moldudp64.decode_packet(parse_udp_frame(frame)[3]) for frame in sweep.feed_frames]
    assert [(p.sequence, len(p.messages)) for p in packets] == [(13, 2), (15, 2), (17, 2)]
    assert all(len(moldudp64.encode_packet(p)) <= 100 for p in packets)
    assert [m.type for _, m in feed_messages(sweep)] == list("EEEEEA")


# --- the feed, followed by the golden receive path and book ----------------------------------------


def quote(level):
    return Quote() if level is None else Quote(valid=True, unknown=False, price=level.price, shares=level.shares)


def random_session(seed, operations, batch_interval_ns=None):
    """A seeded session of orders and cancels from three participants, sent as SoupBinTCP bytes in random chunks.

    Yields each call's emission; prices are a few ticks around 100.00, so
    orders often cross, and cancels name any token the participant sent, so
    some are too late and some name rejected tokens.
    """
    rng = random.Random(seed)
    instruments = [(1, "LEAD"), (2, "TGT"), (7, "ALFA")]
    exchange = Exchange(instruments, PARTICIPANTS, batch_interval_ns=batch_interval_ns)
    yield exchange, exchange.open(0)
    pending = {name: b"" for name in PARTICIPANTS}
    tokens = {name: [] for name in PARTICIPANTS}
    now = 0
    for n in range(operations):
        participant = rng.choice(PARTICIPANTS)
        if tokens[participant] and rng.random() < 0.3:
            message = CancelOrder(rng.choice(tokens[participant]), rng.choice((0, 0, 100, 200)))
        else:
            token = f"{participant[0]}{n}"
            tokens[participant].append(token)
            side = rng.choice("BS")
            price = 1_000_000 + 100 * rng.randint(-8, 8)
            tif = TIME_IN_FORCE_IOC if rng.random() < 0.3 else TIME_IN_FORCE_DAY
            stock = rng.choice(instruments)[1] if rng.random() < 0.98 else "NOPE"
            message = enter(token, side, 100 * rng.randint(1, 5), price, stock=stock, tif=tif)
        pending[participant] += unsequenced(message)
        sender = rng.choice(PARTICIPANTS)
        cut = rng.randint(0, len(pending[sender]))
        chunk, pending[sender] = pending[sender][:cut], pending[sender][cut:]
        now += rng.randint(0, 2_000)
        while batch_interval_ns and exchange.next_batch_ns() < now:
            yield exchange, exchange.run_batch(exchange.next_batch_ns())
        yield exchange, exchange.receive(sender, chunk, now)
    for participant in PARTICIPANTS:
        yield exchange, exchange.receive(participant, pending[participant], now)
    if batch_interval_ns:
        yield exchange, exchange.run_batch(exchange.next_batch_ns())


@pytest.mark.parametrize("seed, batch_interval_ns", [(1, None), (2, None), (3, 5_000)])
def test_the_feed_describes_the_book(seed, batch_interval_ns):
    """The golden receive path and book follow the feed: after every frame in the continuous market, after every
    batch in batch mode (whose feed has Trade and Order Executed with Price too); a batch never leaves a crossed
    book."""
    locates = (1, 2, 7)
    receive = RxModel()
    book = BookModel(slots=len(locates), capacity=1 << 16, levels=64, locates=locates)
    counted = {"fills": 0, "late": 0, "ioc": 0, "rested": 0}
    frames = 0
    for exchange, emission in random_session(seed, 3_000, batch_interval_ns):
        if not batch_interval_ns:
            assert len(emission.feed_frames) <= 1  # a call of a few orders fits one packet: compare after each frame
        for frame in emission.feed_frames:
            trace = receive.trace(frame)
            for record in trace.records:
                book.apply(record)
            book.packet_end(trace.packet_bad)
            frames += 1
        if emission.feed_frames:
            tops = book.tops()
            for slot, locate in enumerate(locates):
                top = exchange.top(locate)
                assert (tops[slot].bid, tops[slot].ask) == (quote(top.bid), quote(top.ask)), (frames, locate)
                assert not tops[slot].unreliable
                assert top.bid is None or top.ask is None or top.bid.price < top.ask.price
        for event in emission.events:
            counted["fills"] += isinstance(event, Fill)
            counted["late"] += isinstance(event, CancelIgnored) and event.reason is IgnoredCancelReason.TOO_LATE
            counted["ioc"] += isinstance(event, OrderCanceled) and event.reason is CancelReason.IMMEDIATE_OR_CANCEL
            counted["rested"] += isinstance(event, OrderRested)
    counters = receive.counters
    assert counters["frames"] == counters["frames_ok"] == frames and counters["mold_gap"] == 0
    assert counters["packets_bad"] == 0
    assert exchange.unknown_cancels > 0
    assert not any(book.counters.values()), book.counters
    assert exchange.late_cancels == counted["late"]
    assert all(count > 50 for count in counted.values()), counted
