"""The software market maker: quotes, refreshes, fills and skew worked out by hand, through the exchange's bytes.

The maker is fed the frames an `Exchange` publishes and its orders go into
the exchange's `receive`, so every case runs the real byte paths both ways.
Expected prices, sizes, inventory and cash are computed by hand in the
comments (prices in 1/10000 dollar), never taken from the code. The loopback
runners are checked against the core alone on the same packets.
"""

import asyncio
import itertools
import random
import socket
import threading
import typing

import pytest

from tick2trade.host import feed
from tick2trade.host.codec import itch
from tick2trade.host.codec import moldudp64
from tick2trade.host.codec.moldudp64 import MoldPacket, encode_packet
from tick2trade.host.codec.net import parse_udp_frame
from tick2trade.host.codec.ouch import (TIME_IN_FORCE_DAY, TIME_IN_FORCE_IOC, Accepted, CancelOrder, EnterOrder,
                                        Executed, decode_inbound)
from tick2trade.host.codec.soupbintcp import SequencedData, ServerHeartbeat, UnsequencedData, split_packets
from tick2trade.host.exchange import MAX_SHARES, BookTop, Exchange, Level
from tick2trade.host.market_maker import (UNKNOWN_REF, MakerFill, MarketMaker, MarketMakerConfig, OrderState,
                                          inventory_skew_sizes, measure_loopback, run_asyncio, run_blocking)
from tick2trade.host.order_types import Side

LEAD, TGT = 1, 2
INSTRUMENTS = [(LEAD, "LEAD"), (TGT, "TGT")]
START = feed.FeedConfig().start_ns  # the session's start, ns since midnight
SETTINGS = dict(lead_locate=LEAD, target_locate=TGT, target_symbol="TGT", bid_spread="0.001", ask_spread="0.002",
                order_amount=100, order_refresh_tolerance_pct="0.05", token_prefix="MM", firm="MMKR")
CONFIG = MarketMakerConfig(**SETTINGS)
SKEWED = MarketMakerConfig(**SETTINGS, inventory_skew_enabled=True, inventory_range_multiplier=2)


def token(n):
    return f"MM{n:012d}"


def quote(n, side, shares, price):
    """The maker's `n`th Enter Order, as the module docstring fixes its constant fields."""
    return EnterOrder(token(n), side, shares, "TGT", price, TIME_IN_FORCE_DAY, "MMKR", "Y", "P", "N", 0, "N", "N")


def pull(n):
    return CancelOrder(token(n), 0)


def lead(name, side, price, shares=100):
    return EnterOrder(name, side, shares, "LEAD", price, TIME_IN_FORCE_DAY, "LTRD", "Y", "A", "N", 0, "N", "N")


def take(name, side, shares, price):
    return EnterOrder(name, side, shares, "TGT", price, TIME_IN_FORCE_IOC, "TAKR", "Y", "A", "N", 0, "N", "N")


def stream(*messages):
    return b"".join(UnsequencedData(message.encode()).encode() for message in messages)


def decode_orders(data):
    packets, rest = split_packets(data)
    assert rest == b"" and all(isinstance(packet, UnsequencedData) for packet in packets)
    return [decode_inbound(packet.message) for packet in packets]


class Market:
    """An exchange with the maker, a lead trader and a taker; the maker sees every frame and its responses."""

    def __init__(self, config=CONFIG):
        self.exchange = Exchange(INSTRUMENTS, ("mm", "lead_trader", "taker"))
        self.maker = MarketMaker(config)
        self.now = 0
        self.deliver(self.exchange.open(self.now))

    def send(self, participant, *messages):
        """`participant`'s messages in one chunk of its stream (one call, one feed packet); what the maker sent."""
        self.now += 1
        return self.deliver(self.exchange.receive(participant, stream(*messages), self.now))

    def deliver(self, emission):
        """The emission's frames, then the maker's responses, to the maker; its orders to the exchange; until quiet."""
        sent, pending = [], [emission]
        while pending:
            emission = pending.pop(0)
            chunks = [self.maker.on_feed_frame(frame) for frame in emission.feed_frames]
            chunks.append(self.maker.on_response(emission.responses.get("mm", b"")))
            for chunk in filter(None, chunks):
                sent += decode_orders(chunk)
                self.now += 1
                pending.append(self.exchange.receive("mm", chunk, self.now))
        return sent

    def quotes(self):
        """The maker's orders resting in the exchange: (token, side, price, shares)."""
        return [(o.token, o.side, o.price, o.shares) for o in self.exchange.live_orders("mm")]


def quoted(config=CONFIG):
    """The lead at bid 100.00 / ask 100.10 and the maker's first two quotes in the exchange."""
    market = Market(config)
    assert market.send("lead_trader", lead("L1", "B", 1_000_000)) == []  # one side: no fair value yet
    assert market.send("lead_trader", lead("L2", "S", 1_001_000)) == [quote(1, "B", 100, 999_400),
                                                                      quote(2, "S", 100, 1_002_600)]
    return market


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("lead_locate", 0), ("lead_locate", True), ("target_locate", 0x10000), ("target_locate", LEAD),
    ("target_symbol", ""), ("target_symbol", "NINECHARS"), ("target_symbol", "T G"), ("target_symbol", 2),
    ("bid_spread", -0.001), ("bid_spread", 1), ("bid_spread", None), ("ask_spread", "x"),
    ("ask_spread", float("nan")), ("order_amount", 0), ("order_amount", MAX_SHARES + 1), ("order_amount", 1.0),
    ("order_refresh_tolerance_pct", -1), ("order_refresh_tolerance_pct", "inf"), ("inventory_skew_enabled", 1),
    ("inventory_target_shares", 0.5), ("inventory_range_multiplier", 0), ("token_prefix", ""),
    ("token_prefix", "SEVENCH"), ("token_prefix", "M-"), ("firm", "FIVES"), ("firm", ""), ("price_tick", 0),
    ("feed_ip", "233.54.12"), ("feed_port", 0),
])
def test_config_names_the_bad_field(name, value):
    with pytest.raises(ValueError, match=f"^{name}: "):
        MarketMakerConfig(**{**SETTINGS, name: value})


def test_config_keeps_exact_decimals_and_bounds_skewed_sizes():
    config = MarketMakerConfig(**{**SETTINGS, "bid_spread": 0.001, "ask_spread": 2 / 1000})
    assert (str(config.bid_spread), str(config.ask_spread)) == ("0.001", "0.002")
    with pytest.raises(ValueError, match="^ask_spread: "):  # both 0: the maker could trade with itself
        MarketMakerConfig(**{**SETTINGS, "bid_spread": 0, "ask_spread": 0})
    # a skewed size reaches twice order_amount, which must stay below OUCH's 1,000,000 shares
    MarketMakerConfig(**{**SETTINGS, "order_amount": 499_999}, inventory_skew_enabled=True)
    with pytest.raises(ValueError, match="^order_amount: "):
        MarketMakerConfig(**{**SETTINGS, "order_amount": 500_000}, inventory_skew_enabled=True)


# --- quoting ------------------------------------------------------------------------------------


def test_quotes_around_the_leads_mid_and_the_exchange_rests_them():
    # mid (100.00 + 100.10) / 2 = 100.05; bid 100.05 x 0.999 = 99.94995, down to 99.94;
    # ask 100.05 x 1.002 = 100.2501, up to 100.26 (quoted() checks the orders themselves)
    market = quoted()
    assert market.quotes() == [(token(1), Side.BID, 999_400, 100), (token(2), Side.ASK, 1_002_600, 100)]
    assert market.exchange.top(TGT) == BookTop(Level(999_400, 100, 1), Level(1_002_600, 100, 1))
    maker = market.maker
    assert maker.lead_top() == market.exchange.top(LEAD) == BookTop(Level(1_000_000, 100, 1),
                                                                    Level(1_001_000, 100, 1))
    assert maker.target_top() == market.exchange.top(TGT)
    # the lead trader's orders took references 1 and 2, the quotes 3 and 4
    assert [(o.token, o.state, o.order_ref) for o in maker.open_orders()] == [
        (token(1), OrderState.LIVE, 3), (token(2), OrderState.LIVE, 4)]
    assert (maker.inventory, maker.cash, maker.fills) == (0, 0, [])
    times = maker.decision_times
    assert len(times.feed_acting) == 1 and len(times.response_acting) == 0
    # idle: the open, L1, the quotes' own Add Orders on the feed; and every chunk of answers (the open's,
    # empty ones for L1 and L2, the two Accepted)
    assert len(times.feed_idle) == 3 and len(times.response_idle) == 4
    assert all(ns > 0 for ns in times.feed_acting + times.feed_idle + times.response_idle)


def test_a_move_within_the_tolerance_sends_nothing_and_a_larger_one_replaces_both_quotes():
    market = quoted()
    # a lead bid at 100.02: mid 100.06, bid 99.95994 -> 99.95, ask 100.26012 -> 100.27: each 0.01 from the
    # live quote, 0.010 % of 99.94 and 0.0100 % of 100.26, not more than 0.05 %
    assert market.send("lead_trader", lead("L3", "B", 1_000_200)) == []
    # one packet: an ask at 100.30, the 100.10 ask deleted, a bid at 100.20: mid 100.25,
    # bid 100.25 x 0.999 = 100.14975 -> 100.14, ask 100.25 x 1.002 = 100.4505 -> 100.46: 0.2 % away
    sent = market.send("lead_trader", lead("L4", "S", 1_003_000), CancelOrder("L2", 0), lead("L5", "B", 1_002_000))
    assert sent == [pull(1), pull(2), quote(3, "B", 100, 1_001_400), quote(4, "S", 100, 1_004_600)]
    assert market.quotes() == [(token(3), Side.BID, 1_001_400, 100), (token(4), Side.ASK, 1_004_600, 100)]
    assert market.maker.target_top() == market.exchange.top(TGT)
    assert [o.token for o in market.maker.open_orders()] == [token(3), token(4)]


def test_only_the_stale_side_is_replaced():
    # tolerance 0.1 %: a lead bid at 100.08 gives mid 100.09, bid 99.98991 -> 99.98 (0.04 from 99.94, 0.04 %),
    # ask 100.29018 -> 100.30 (0.04 from 100.26, 0.0399 %): nothing; a lead ask up to 100.30 (the 100.10 one
    # deleted) gives mid 100.19, bid 100.08981 -> 100.08 (0.14, 0.14 %), ask 100.39038 -> 100.40 (0.14 %): both.
    # From there a lead bid at 100.12: mid 100.21, bid 100.10979 -> 100.10 (0.02 %), ask 100.41042 -> 100.42
    # (0.02 %): nothing.
    market = quoted(MarketMakerConfig(**{**SETTINGS, "order_refresh_tolerance_pct": "0.1"}))
    assert market.send("lead_trader", lead("L3", "B", 1_000_800)) == []
    assert market.send("lead_trader", lead("L4", "S", 1_003_000), CancelOrder("L2", 0)) == [
        pull(1), pull(2), quote(3, "B", 100, 1_000_800), quote(4, "S", 100, 1_004_000)]
    assert market.send("lead_trader", lead("L5", "B", 1_001_200)) == []
    # a lead bid at 100.26 (under the 100.30 ask): mid 100.28, bid 100.17972 -> 100.17 (0.09 from 100.08,
    # 0.0899 %): kept; ask 100.48056 -> 100.49 (0.09 from 100.40, 0.0896 %): kept. Then 100.29:
    # mid 100.295, bid 100.194705 -> 100.19 (0.11, 0.1099 %): replaced; ask 100.495590 -> 100.50
    # (0.10 from 100.40, 0.0996 %): kept.
    assert market.send("lead_trader", lead("L6", "B", 1_002_600)) == []
    assert market.send("lead_trader", lead("L7", "B", 1_002_900)) == [pull(3), quote(5, "B", 100, 1_001_900)]
    assert market.quotes() == [(token(4), Side.ASK, 1_004_000, 100), (token(5), Side.BID, 1_001_900, 100)]


def test_with_no_tolerance_any_change_of_a_desired_price_refreshes_and_no_change_does_not():
    market = quoted(MarketMakerConfig(**{**SETTINGS, "order_refresh_tolerance_pct": 0}))
    # a lead bid at 100.0001: mid 100.05005, bid 99.94999995 -> 99.94, ask 100.25015 -> 100.26: the same prices
    assert market.send("lead_trader", lead("L3", "B", 1_000_001)) == []
    # a lead bid at 100.01: mid 100.055, bid 99.954945 -> 99.95 (changed), ask 100.25511 -> 100.26 (the same)
    assert market.send("lead_trader", lead("L4", "B", 1_000_100)) == [pull(1), quote(3, "B", 100, 999_500)]


def test_a_kept_quote_the_new_opposite_quote_would_trade_with_is_replaced_too():
    # spreads 0.1 % each, tolerance 1 %: quotes 99.94 / 100.16 (100.05 x 1.001 = 100.15005 -> 100.16).
    # Lead to 101.00 / 101.10, mid 101.05: bid 100.94895 -> 100.94, 1.00 from 99.94 (1.0006 %): stale;
    # ask 101.15105 -> 101.16, 1.00 from 100.16 (0.998 %): within the tolerance, but the new bid at 100.94 would
    # buy the maker's own ask at 100.16, so the ask is replaced too
    config = MarketMakerConfig(**{**SETTINGS, "ask_spread": "0.001", "order_refresh_tolerance_pct": 1})
    market = Market(config)
    market.send("lead_trader", lead("L1", "B", 1_000_000))
    assert market.send("lead_trader", lead("L2", "S", 1_001_000)) == [quote(1, "B", 100, 999_400),
                                                                      quote(2, "S", 100, 1_001_600)]
    sent = market.send("lead_trader", lead("L3", "S", 1_011_000), CancelOrder("L2", 0), lead("L4", "B", 1_010_000))
    assert sent == [pull(1), pull(2), quote(3, "B", 100, 1_009_400), quote(4, "S", 100, 1_011_600)]
    assert market.maker.fills == [] and market.quotes() == [(token(3), Side.BID, 1_009_400, 100),
                                                            (token(4), Side.ASK, 1_011_600, 100)]


def test_quotes_are_pulled_while_the_lead_has_one_side_and_come_back_with_it():
    market = quoted()
    assert market.send("lead_trader", CancelOrder("L2", 0)) == [pull(1), pull(2)]
    assert market.exchange.top(TGT) == BookTop(None, None) and market.maker.open_orders() == []
    assert market.send("lead_trader", lead("L3", "S", 1_001_000)) == [quote(3, "B", 100, 999_400),
                                                                      quote(4, "S", 100, 1_002_600)]


def test_lead_book_from_every_order_message_and_market_hours():
    """F, U, C, X, E, D as well as A (the exchange publishes only A E X D); quotes only in market hours."""
    maker = MarketMaker(CONFIG)
    sequence = 1

    def packet(*messages):
        nonlocal sequence
        payload = encode_packet(MoldPacket("TICK2TRADE", sequence, tuple(map(itch.encode, messages))))
        sequence += len(messages)
        return maker.on_mold_packet(payload)

    def top(bid, ask):
        return BookTop(bid and Level(*bid), ask and Level(*ask))

    assert packet(itch.AddOrder(LEAD, 0, 0, 1, "B", 100, "LEAD", 1_000_000),
                  itch.AddOrder(LEAD, 0, 0, 2, "S", 100, "LEAD", 1_001_000),
                  itch.AddOrder(3, 0, 0, 9, "B", 100, "ALFA", 1_005_000)) == b""  # before market hours
    assert maker.lead_top() == top((1_000_000, 100, 1), (1_001_000, 100, 1))
    assert decode_orders(packet(itch.SystemEvent(0, 0, 0, "Q"))) == [quote(1, "B", 100, 999_400),
                                                                     quote(2, "S", 100, 1_002_600)]
    assert packet(itch.AddOrderMpid(LEAD, 0, 0, 3, "B", 50, "LEAD", 1_000_000, "ABCD")) == b""
    assert maker.lead_top() == top((1_000_000, 150, 2), (1_001_000, 100, 1))
    # order 3 replaced by order 4, 70 at 100.02: mid 100.06 is within the tolerance (as in the test above)
    assert packet(itch.OrderReplace(LEAD, 0, 0, 3, 4, 70, 1_000_200)) == b""
    assert maker.lead_top() == top((1_000_200, 70, 1), (1_001_000, 100, 1))
    assert packet(itch.OrderExecutedWithPrice(LEAD, 0, 0, 2, 40, 1, "Y", 1_000_900),
                  itch.OrderCancel(LEAD, 0, 0, 1, 30)) == b""
    assert maker.lead_top() == top((1_000_200, 70, 1), (1_001_000, 60, 1))
    assert decode_orders(packet(itch.OrderExecuted(LEAD, 0, 0, 2, 60, 2))) == [pull(1), pull(2)]
    assert maker.lead_top() == top((1_000_200, 70, 1), None)
    assert packet(itch.OrderDelete(LEAD, 0, 0, 4)) == b""
    assert maker.lead_top() == top((1_000_000, 70, 1), None)
    assert decode_orders(packet(itch.AddOrder(LEAD, 0, 0, 5, "S", 100, "LEAD", 1_001_000))) == [
        quote(3, "B", 100, 999_400), quote(4, "S", 100, 1_002_600)]
    assert decode_orders(packet(itch.SystemEvent(0, 0, 0, "M"))) == [pull(3), pull(4)]
    assert packet(itch.OrderDelete(LEAD, 0, 0, 5), itch.AddOrder(LEAD, 0, 0, 6, "S", 10, "LEAD", 1_000_900)) == b""
    assert maker.lead_top() == top((1_000_000, 70, 1), (1_000_900, 10, 1))
    # orders the book never saw added (added before the maker joined) change nothing and are counted
    assert packet(itch.OrderDelete(LEAD, 0, 0, 99), itch.OrderCancel(LEAD, 0, 0, 98, 10),
                  itch.OrderReplace(LEAD, 0, 0, 97, 96, 10, 1_000_950)) == b""
    assert maker.lead_top() == top((1_000_000, 70, 1), (1_000_900, 10, 1))
    assert maker.counters[UNKNOWN_REF] == 3


def test_a_feed_gap_pulls_the_quotes_for_good():
    market = quoted()
    market.now += 1
    unseen = market.exchange.receive("lead_trader", stream(lead("L3", "B", 1_000_200)), market.now)
    assert len(unseen.feed_frames) == 1  # never delivered: the next packet starts after a gap
    assert market.send("lead_trader", lead("L4", "B", 1_000_100)) == [pull(1), pull(2)]
    assert not market.maker.reliable and market.maker.counters["mold_gap"] == 1
    assert market.send("lead_trader", lead("L5", "S", 1_003_000), CancelOrder("L2", 0),
                       lead("L6", "B", 1_002_000)) == []
    assert market.quotes() == []


# --- fills ----------------------------------------------------------------------------------------


def test_fills_change_inventory_and_cash_and_a_filled_quote_is_replaced():
    market = quoted()
    maker = market.maker
    taken_at = market.now + 1
    # a taker buys the whole ask: -100 shares, +100 x 100.26 = 10,026.00 dollars (100,260,000 units)
    assert market.send("taker", take("T1", "B", 100, 1_002_600)) == [quote(3, "S", 100, 1_002_600)]
    assert (maker.inventory, maker.cash) == (-100, 100_260_000)
    assert maker.fills == [MakerFill(START + taken_at, Side.ASK, 1_002_600, 100, token(2), 1)]
    assert market.quotes() == [(token(1), Side.BID, 999_400, 100), (token(3), Side.ASK, 1_002_600, 100)]
    # a partial fill leaves the rest of the quote in place: -130 shares, cash +30 x 1,002,600
    assert market.send("taker", take("T2", "B", 30, 1_002_600)) == []
    assert (maker.inventory, maker.cash) == (-130, 100_260_000 + 30_078_000)
    assert market.quotes() == [(token(1), Side.BID, 999_400, 100), (token(3), Side.ASK, 1_002_600, 70)]
    assert [o.shares for o in maker.open_orders()] == [100, 70]
    # a taker sells into the bid: +100 shares, -100 x 99.94 = -9,994.00 dollars
    assert market.send("taker", take("T3", "S", 100, 999_400)) == [quote(4, "B", 100, 999_400)]
    assert (maker.inventory, maker.cash) == (-30, 130_338_000 - 99_940_000)
    assert [(f.side, f.price, f.shares, f.token) for f in maker.fills] == [
        (Side.ASK, 1_002_600, 100, token(2)), (Side.ASK, 1_002_600, 30, token(3)), (Side.BID, 999_400, 100, token(1))]
    assert market.maker.target_top() == market.exchange.top(TGT)


def test_a_fill_on_a_quote_being_cancelled_counts_and_brings_no_new_quote():
    market = quoted()
    maker = market.maker
    # the lead moves up (as in the refresh test) but the taker's order reaches the exchange before the
    # maker's cancel: deliver the lead's frames to the maker by hand, then the taker, then the maker's orders
    market.now += 1
    moved = market.exchange.receive("lead_trader", stream(lead("L4", "S", 1_003_000), CancelOrder("L2", 0),
                                                          lead("L5", "B", 1_002_000)), market.now)
    (orders,) = [maker.on_feed_frame(frame) for frame in moved.feed_frames]
    assert decode_orders(orders) == [pull(1), pull(2), quote(3, "B", 100, 1_001_400), quote(4, "S", 100, 1_004_600)]
    assert [o.state for o in maker.open_orders()] == [OrderState.CANCELING] * 2 + [OrderState.PENDING] * 2
    market.now += 1
    # the stale ask at 100.26 is taken, then the cancel arrives too late for it
    assert market.deliver(market.exchange.receive("taker", stream(take("T1", "B", 100, 1_002_600)),
                                                  market.now)) == []
    market.now += 1
    assert market.deliver(market.exchange.receive("mm", orders, market.now)) == []
    assert market.exchange.late_cancels == 1
    assert (maker.inventory, maker.cash) == (-100, 100_260_000)
    assert market.quotes() == [(token(3), Side.BID, 1_001_400, 100), (token(4), Side.ASK, 1_004_600, 100)]
    assert [(o.token, o.state) for o in maker.open_orders()] == [(token(3), OrderState.LIVE),
                                                                  (token(4), OrderState.LIVE)]


def test_responses_may_come_in_any_chunks_and_heartbeats_are_ignored():
    market = quoted()
    market.now += 1
    taken = market.exchange.receive("taker", stream(take("T1", "B", 100, 1_002_600)), market.now)
    data = ServerHeartbeat().encode() + taken.responses["mm"]
    sent = [market.maker.on_response(data[i:i + 1]) for i in range(len(data))]
    assert all(chunk == b"" for chunk in sent[:-1])  # the re-quote comes with the Executed's last byte
    assert decode_orders(sent[-1]) == [quote(3, "S", 100, 1_002_600)]
    assert market.maker.inventory == -100


def test_frames_for_another_destination_are_dropped_and_counted():
    maker = MarketMaker(CONFIG)
    exchange = Exchange(INSTRUMENTS, ("lead_trader",), feed=feed.FeedConfig(dst_port=CONFIG.feed_port + 1))
    (frame,) = exchange.open(0).feed_frames
    assert maker.on_feed_frame(frame) == b"" and maker.counters["drop_dst_port"] == 1
    assert maker.counters["mold_packets"] == 0


# --- inventory skew ---------------------------------------------------------------------------------


def test_inventory_skew_sizes_by_hand():
    # range 100 x 3 = 300 shares around the target; bid = floor(100 x (1 - d)), ask = floor(100 x (1 + d)),
    # d = (inventory - target) / 300 clipped to -1..1
    config = MarketMakerConfig(**SETTINGS, inventory_skew_enabled=True, inventory_range_multiplier=3)
    sizes = {inventory: tuple(inventory_skew_sizes(config, inventory).values())
             for inventory in (0, -100, 100, -300, -1000, 450)}
    assert sizes == {0: (100, 100), -100: (133, 66), 100: (66, 133), -300: (200, 0), -1000: (200, 0),
                     450: (0, 200)}
    targeted = MarketMakerConfig(**SETTINGS, inventory_skew_enabled=True, inventory_range_multiplier=3,
                                 inventory_target_shares=100)
    assert inventory_skew_sizes(targeted, 0) == {Side.BID: 133, Side.ASK: 66}  # 100 short of the target
    assert inventory_skew_sizes(CONFIG, -1000) == {Side.BID: 100, Side.ASK: 100}  # skew disabled


def test_skewed_sizes_after_a_fill():
    # range 100 x 2 = 200; after selling 100, d = -0.5: bid 150, ask 50
    market = quoted(SKEWED)
    assert market.send("taker", take("T1", "B", 100, 1_002_600)) == [quote(3, "S", 50, 1_002_600)]
    # the bid keeps its 100 shares until its price is refreshed (the tolerance looks at prices only)
    assert market.quotes() == [(token(1), Side.BID, 999_400, 100), (token(3), Side.ASK, 1_002_600, 50)]
    sent = market.send("lead_trader", lead("L4", "S", 1_003_000), CancelOrder("L2", 0), lead("L5", "B", 1_002_000))
    assert sent == [pull(1), pull(3), quote(4, "B", 150, 1_001_400), quote(5, "S", 50, 1_004_600)]
    # the whole ask taken: -150 shares, d = -0.75: bid 175, ask 25
    assert market.send("taker", take("T2", "B", 50, 1_004_600)) == [quote(6, "S", 25, 1_004_600)]


def test_a_side_sized_zero_is_not_quoted():
    # range 100 x 1; after selling 100 (d = -1) the ask is 0 shares: no new ask, the bid 200 at its next refresh
    market = quoted(MarketMakerConfig(**SETTINGS, inventory_skew_enabled=True))
    assert market.send("taker", take("T1", "B", 100, 1_002_600)) == []
    sent = market.send("lead_trader", lead("L4", "S", 1_003_000), CancelOrder("L2", 0), lead("L5", "B", 1_002_000))
    assert sent == [pull(1), quote(3, "B", 200, 1_001_400)]


# --- bytes only -------------------------------------------------------------------------------------


def test_the_core_takes_bytes_and_nothing_decoded():
    entries = {name for name in dir(MarketMaker) if name.startswith("on_")}
    assert entries == {"on_feed_frame", "on_mold_packet", "on_response"}
    for name in entries:
        hints = typing.get_type_hints(getattr(MarketMaker, name))
        assert set(hints.values()) == {bytes}, name  # bytes in, bytes out
    views = [name for name in dir(MarketMaker) if not name.startswith("_") and name not in entries]
    for name in views:  # everything else reads state and takes nothing
        assert list(typing.get_type_hints(getattr(MarketMaker, name))) == ["return"], name
    maker = MarketMaker(CONFIG)
    for entry, decoded in [(maker.on_feed_frame, itch.SystemEvent(0, 0, 0, "Q")),
                           (maker.on_mold_packet, MoldPacket("TICK2TRADE", 1)),
                           (maker.on_response, Accepted(0, token(1), "B", 100, "TGT", 999_400, TIME_IN_FORCE_DAY,
                                                        "MMKR", "Y", 3, "P", "N", 0, "N", "L", " "))]:
        with pytest.raises(TypeError):
            entry(decoded)


# --- loopback runners -------------------------------------------------------------------------------


def lead_session(moves=120, seed=7):
    """MoldUDP64 packets of an exchange session: the open, then the lead trader's two quotes moved at random."""
    rng = random.Random(seed)
    exchange = Exchange(INSTRUMENTS, ("lead_trader",))
    frames = list(exchange.open(0).feed_frames)
    names = (f"L{n}" for n in itertools.count(1))
    mid, live = 1_000_000, []
    for now in range(1, moves + 1):
        mid += rng.choice((-100, 100)) * rng.randrange(0, 30)  # up to 29 cents
        new = [lead(next(names), "B", mid - 500), lead(next(names), "S", mid + 500)]
        frames += exchange.receive("lead_trader", stream(*[CancelOrder(n, 0) for n in live], *new), now).feed_frames
        live = [order.token for order in new]
    return [parse_udp_frame(frame)[3] for frame in frames]


@pytest.mark.parametrize("implementation", ["asyncio", "blocking"])
def test_loopback_runner_sends_what_the_core_sends_and_is_timed(implementation):
    packets = lead_session()
    core = MarketMaker(CONFIG)
    expected = tuple(core.on_mold_packet(packet) for packet in packets)
    acting = sum(map(bool, expected))
    assert 10 < acting < len(packets) - 10  # packets of both kinds
    measured = measure_loopback(implementation, packets, CONFIG)
    assert measured.orders == expected
    assert len(measured.round_trip_ns) == len(measured.decision.feed_acting) == acting
    assert len(measured.decision.feed_idle) == len(packets) - acting
    assert all(ns > 0 for ns in measured.round_trip_ns + tuple(measured.decision.feed_acting))


def receive_orders(session, count):
    """The next `count` OUCH messages the runner sends on the order session."""
    data = b""
    while len(split_packets(data)[0]) < count:
        data += session.recv(4096)
    return decode_orders(data)


@pytest.mark.parametrize("implementation", ["asyncio", "blocking"])
def test_runners_answer_the_exchanges_responses(implementation):
    """A fill sent back on the order session brings the re-quote through either runner (the blocking loop reads
    responses after each datagram: heartbeats come until it answers)."""
    exchange = Exchange(INSTRUMENTS, ("lead_trader",))
    frames = exchange.open(0).feed_frames + exchange.receive(
        "lead_trader", stream(lead("L1", "B", 1_000_000), lead("L2", "S", 1_001_000)), 1).feed_frames
    packets = [parse_udp_frame(frame)[3] for frame in frames]
    heartbeat = encode_packet(MoldPacket("TICK2TRADE", moldudp64.decode_packet(packets[-1]).next_sequence))
    maker = MarketMaker(CONFIG)
    with socket.socket() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as feed_socket, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        feed_socket.bind(("127.0.0.1", 0))
        with socket.create_connection(server.getsockname()) as orders, server.accept()[0] as session:
            session.settimeout(5)
            if implementation == "blocking":
                runner = threading.Thread(target=run_blocking, args=(maker, feed_socket, orders), daemon=True)
            else:
                runner = threading.Thread(target=asyncio.run, args=(run_asyncio(maker, feed_socket, orders),),
                                          daemon=True)
            runner.start()
            for packet in packets:
                sender.sendto(packet, feed_socket.getsockname())
            assert receive_orders(session, 2) == [quote(1, "B", 100, 999_400), quote(2, "S", 100, 1_002_600)]
            session.sendall(SequencedData(Executed(START + 2, token(2), 100, 1_002_600, "A", 1).encode()).encode())
            session.settimeout(0.05)
            requote = b""
            for _ in range(100):
                sender.sendto(heartbeat, feed_socket.getsockname())
                try:
                    requote = session.recv(4096)
                    break
                except TimeoutError:
                    continue
            assert decode_orders(requote) == [quote(3, "S", 100, 1_002_600)]
            sender.sendto(b"", feed_socket.getsockname())
            runner.join(5)
    assert not runner.is_alive() and maker.inventory == -100


def test_loopback_names_the_implementations():
    with pytest.raises(ValueError, match="threads"):
        measure_loopback("threads", [], CONFIG)
