"""The sniper interface's golden-model backend and the host logic around the board, against hand-worked cases.

`ModelSniper` is checked against `PipelineModel.process` run directly on the
same exchange frames (same order frames, times = feed time + latency, each
order returned once and only when due) and through its register writes.
`SniperHost` is given hand-made OUCH answers, whole and cut into chunks, and
real answers of the exchange; the position and orders_done writes expected
are worked out by hand in the comments.
"""

import pytest

from tick2trade.host.codec.net import parse_tcp_frame
from tick2trade.host.codec.ouch import (TIME_IN_FORCE_DAY, TIME_IN_FORCE_IOC, Accepted, CancelOrder, Canceled,
                                        EnterOrder, Executed, Rejected, SystemEvent, decode_inbound)
from tick2trade.host.codec.soupbintcp import SequencedData, ServerHeartbeat, UnsequencedData, split_packets
from tick2trade.host.exchange import Exchange
from tick2trade.host.order_types import Side
from tick2trade.host.pipeline_model import PipelineModel
from tick2trade.host.sniper import (MODEL_LATENCY_NS, HostProtocolError, ModelSniper, SniperFill, SniperHost,
                                    SniperOrder, position_register)
from tick2trade.host.strategy import parse_strategy

DIRECTORY = {"LEAD": 1, "TGT": 2}


def strategy(**risk):
    limits = {"max_qty": 1000, "max_notional": "1000000", "collar": "1.00", "max_long": 10000, "max_short": 10000,
              "max_outstanding": 100, "rate_burst": 100, **risk}
    return parse_strategy({"instruments": {"lead": "LEAD", "target": "TGT"},
                           "strategy": {"kind": "snipe", "edge": "0.01", "order_size": 100}, "risk": limits})


def day(token, side, shares, stock, price):
    return EnterOrder(token, side, shares, stock, price, TIME_IN_FORCE_DAY, "FIRM", "Y", "P", "N", 0, "N", "N")


def chunk(*messages):
    return b"".join(UnsequencedData(message.encode()).encode() for message in messages)


def market_frames():
    """An exchange's feed: the lead at 99.99/100.01 (fair 100.00), a maker at 99.95/100.05 on the target, then
    the lead jumps to 100.09/100.11 (fair 100.10: the maker's ask 100.05 + 0.01 < 100.10, a buy) and then to
    99.89/99.91 (fair 99.90: the maker's bid 99.95 > 99.90 + 0.01, a sell)."""
    exchange = Exchange([(1, "LEAD"), (2, "TGT")], ("desk", "mm"))
    calls = [exchange.open(0),
             exchange.receive("desk", chunk(day("D1", "B", 1000, "LEAD", 999_900),
                                            day("D2", "S", 1000, "LEAD", 1_000_100)), 1),
             exchange.receive("mm", chunk(day("M1", "B", 100, "TGT", 999_500),
                                          day("M2", "S", 100, "TGT", 1_000_500)), 2)]
    calls.append(exchange.receive("desk", chunk(CancelOrder("D1", 0), CancelOrder("D2", 0),
                                                day("D3", "B", 1000, "LEAD", 1_000_900),
                                                day("D4", "S", 1000, "LEAD", 1_001_100)), 3))
    calls.append(exchange.receive("desk", chunk(CancelOrder("D3", 0), CancelOrder("D4", 0),
                                                day("D5", "B", 1000, "LEAD", 998_900),
                                                day("D6", "S", 1000, "LEAD", 999_100)), 4))
    return [frame for call in calls for frame in call.feed_frames]


def entered(frame):
    _eth, _ip, _tcp, payload = parse_tcp_frame(frame)
    (packet,), rest = split_packets(payload)
    assert rest == b""
    return decode_inbound(packet.message)


# --- ModelSniper --------------------------------------------------------------------------------


def test_model_latency_is_four_cycles_rounded_up():
    assert MODEL_LATENCY_NS == 26  # 4 x 6.4 ns = 25.6 ns


def test_model_sniper_sends_the_pipeline_models_frames_at_feed_time_plus_latency():
    frames = market_frames()
    direct = PipelineModel(strategy(), directory=DIRECTORY)
    want = [[order.frame for order in direct.process(frame)] for frame in frames]
    sniper = ModelSniper(strategy(), DIRECTORY, latency_ns=100)
    got = []
    for index, frame in enumerate(frames):
        at = 1000 * (index + 1)
        sniper.feed(frame, at)
        got.append(sniper.advance(at + 200))
    assert [[order.frame for order in orders] for orders in got] == want
    timed = [(index, order.time_ns) for index, orders in enumerate(got) for order in orders]
    assert timed == [(3, 4100), (4, 5100)]  # frames 3 and 4 are the jumps, fed at 4000 and 5000
    buy, sell = (entered(order.frame) for orders in got for order in orders)
    assert (buy.side, buy.shares, buy.stock, buy.price, buy.time_in_force) == \
        ("B", 100, "TGT", 1_000_500, TIME_IN_FORCE_IOC)
    assert (sell.side, sell.shares, sell.price) == ("S", 100, 999_500)


def test_advance_returns_each_order_once_and_only_when_due():
    frames = market_frames()
    sniper = ModelSniper(strategy(), DIRECTORY)
    for frame in frames[:3]:
        sniper.feed(frame, 10)
    sniper.feed(frames[3], 1000)
    assert sniper.advance(1000 + MODEL_LATENCY_NS - 1) == []
    (order,) = sniper.advance(1000 + MODEL_LATENCY_NS)
    assert order.time_ns == 1026 and isinstance(order, SniperOrder)
    assert sniper.advance(1000 + MODEL_LATENCY_NS) == []
    assert sniper.advance(10**9) == []


def test_calls_may_not_go_back_in_time():
    sniper = ModelSniper(strategy(), DIRECTORY)
    sniper.advance(500)
    with pytest.raises(ValueError, match="before the last call"):
        sniper.feed(market_frames()[0], 499)
    with pytest.raises(ValueError, match="before the last call"):
        sniper.write_registers([("orders_done", 1)], 10)
    with pytest.raises(ValueError, match="latency_ns"):
        ModelSniper(strategy(), DIRECTORY, latency_ns=-1)


def test_register_writes_reach_the_risk_gate():
    frames = market_frames()
    sniper = ModelSniper(strategy(max_long=150, max_outstanding=1), DIRECTORY)
    risk = sniper.model.risk
    sniper.write_registers([("position", position_register(-7))], 0)
    assert risk.limits.position == -7  # two's complement read back as signed
    for frame in frames[:4]:
        sniper.feed(frame, 1)
    assert len(sniper.advance(100)) == 1 and risk.outstanding == 1  # the buy: -7 + 100 <= 150
    sniper.write_registers([("position", 93), ("orders_done", 1)], 100)
    assert (risk.limits.position, risk.outstanding) == (93, 0)
    with pytest.raises(ValueError, match="position and orders_done only"):
        sniper.write_registers([("kill", 1)], 100)
    with pytest.raises(ValueError, match="32-bit"):
        sniper.write_registers([("position", -1)], 100)


def test_position_limit_written_by_the_host_rejects_the_next_order():
    frames = market_frames()
    sniper = ModelSniper(strategy(max_short=50), DIRECTORY)
    sniper.write_registers([("position", position_register(20))], 0)
    for frame in frames:
        sniper.feed(frame, 1)
    (buy,) = sniper.advance(100)  # the sell of 100 at position 20 would go to -80 < -50: rejected
    assert entered(buy.frame).side == "B"
    assert sniper.counters()["reject_position"] == 1


# --- SniperHost ---------------------------------------------------------------------------------


def answers(*messages):
    return b"".join(SequencedData(message.encode()).encode() for message in messages)


def accepted(token, side, shares, price):
    return Accepted(1, token, side, shares, "TGT", price, TIME_IN_FORCE_IOC, "T2TF", "Y", 7, "P", "N", 0, "N", "L",
                    " ")


SESSION = [
    SystemEvent(0, "S"),
    # A: buy 100 at 100.05, filled 60 then 40 -> position 60, 100; final
    accepted("A", "B", 100, 1_000_500), Executed(2, "A", 60, 1_000_500, "R", 1),
    Executed(3, "A", 40, 1_000_500, "R", 2),
    # B: sell 100 at 99.95, filled 30, rest cancelled (IOC) -> position 70; final
    accepted("B", "S", 100, 999_500), Executed(4, "B", 30, 999_500, "R", 3), Canceled(4, "B", 70, "I"),
    # C: sell 200 at 99.90, filled 200 -> position -130; final
    accepted("C", "S", 200, 999_000), Executed(5, "C", 200, 999_000, "R", 4),
    # D: rejected -> final, no position
    Rejected(6, "D", "X"),
    # E: buy 100 at 100.00, nothing traded -> final, no position
    accepted("E", "B", 100, 1_000_000), Canceled(7, "E", 100, "I"),
]
SESSION_WRITES = [("position", 60), ("position", 100), ("position", 70), ("position", 2**32 - 130),
                  ("orders_done", 5)]


def test_host_writes_position_after_each_execution_and_orders_done_once_per_chunk():
    host = SniperHost()
    assert host.receive(answers(*SESSION)) == SESSION_WRITES
    assert host.position == -130 and host.orders_done == 5 and host.open_orders == {}
    # cash: -100 x 100.05 + 30 x 99.95 + 200 x 99.90, in price units x shares
    assert host.cash == -100 * 1_000_500 + 30 * 999_500 + 200 * 999_000
    assert host.fills[0] == SniperFill(2, "A", Side.BID, 1_000_500, 60, 1)
    assert [fill.shares for fill in host.fills] == [60, 40, 30, 200]


def test_host_takes_any_chunking():
    data = answers(*SESSION) + ServerHeartbeat().encode()
    for cut in range(1, len(data)):
        host = SniperHost()
        writes = host.receive(data[:cut]) + host.receive(data[cut:])
        positions = [write for write in writes if write[0] == "position"]
        assert positions == SESSION_WRITES[:4]
        assert sum(value for name, value in writes if name == "orders_done") == 5
        assert host.position == -130 and host.orders_done == 5


def test_host_counts_an_order_final_only_when_all_its_shares_are_gone():
    host = SniperHost()
    assert host.receive(answers(accepted("A", "B", 100, 1_000_500), Executed(2, "A", 60, 1_000_500, "R", 1))) \
        == [("position", 60)]
    assert host.open_orders == {"A": (Side.BID, 40)}
    assert host.receive(answers(Canceled(3, "A", 40, "I"))) == [("orders_done", 1)]


def test_host_refuses_answers_about_orders_it_never_saw():
    with pytest.raises(HostProtocolError, match="'Z'"):
        SniperHost().receive(answers(Executed(2, "Z", 60, 1_000_500, "R", 1)))


def test_host_follows_the_exchanges_real_answers():
    """A maker rests 60 shares at 100.05; the sniper's IOC buy of 100 trades 60, the rest is cancelled."""
    exchange = Exchange([(1, "LEAD"), (2, "TGT")], ("mm", "sniper"))
    exchange.open(0)
    exchange.receive("mm", chunk(day("M1", "S", 60, "TGT", 1_000_500)), 1)
    order = EnterOrder("S1", "B", 100, "TGT", 1_000_500, TIME_IN_FORCE_IOC, "T2TF", "Y", "P", "N", 0, "N", "R")
    emission = exchange.receive("sniper", chunk(order), 2)
    host = SniperHost()
    assert host.receive(emission.responses["sniper"]) == [("position", 60), ("orders_done", 1)]
    assert host.cash == -60 * 1_000_500
