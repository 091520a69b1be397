"""Feed generator: determinism, message mix, book consistency, packets and frames, faults."""

import collections
import random

import pytest

from tick2trade.host import feed
from tick2trade.host.codec import itch
from tick2trade.host.codec.moldudp64 import decode_packet
from tick2trade.host.codec.net import parse_udp_frame

SMALL = feed.FeedConfig(seed=7, messages=3_000)


@pytest.fixture(scope="module")
def day():
    """100,000 order-flow messages of the default config."""
    return list(feed.generate_messages(feed.FeedConfig(seed=1, messages=100_000)))


def test_same_seed_same_feed_other_seed_other_feed():
    faulty = dict(gap_probability=0.02, duplicate_probability=0.02, reorder_probability=0.02,
                  corrupt_probability=0.02)
    first = feed.generate_feed(feed.FeedConfig(seed=3, messages=2_000, **faulty))
    again = feed.generate_feed(feed.FeedConfig(seed=3, messages=2_000, **faulty))
    other = feed.generate_feed(feed.FeedConfig(seed=4, messages=2_000, **faulty))
    assert first == again
    assert first != other


def test_preamble_and_closing(day):
    types = [m.type for m in day]
    assert [m.event_code for m in day[:2]] == ["O", "S"]
    directory = day[2:10]
    assert [(m.type, m.locate, m.stock) for m in directory] == [
        ("R", i, name) for i, name in enumerate(feed.DEFAULT_INSTRUMENTS, start=1)]
    assert "LEAD" in feed.DEFAULT_INSTRUMENTS and "TGT" in feed.DEFAULT_INSTRUMENTS
    assert itch.encode(directory[1])[11:19] == b"TGT     "
    assert types[10:18] == ["H"] * 8
    assert (day[18].type, day[18].event_code) == ("S", "Q")
    assert [(m.type, m.event_code) for m in day[-3:]] == [("S", "M"), ("S", "E"), ("S", "C")]
    assert len(day) == 100_000 + 22


def test_mix_within_tolerance(day):
    flow = day[19:-3]
    counts = collections.Counter(m.type for m in flow)
    share = {t: counts[t] / len(flow) for t in counts}
    for type_code, expected, tolerance in [("A", 0.44, 0.02), ("D", 0.43, 0.02), ("U", 0.08, 0.01),
                                           ("E", 0.02, 0.006), ("X", 0.01, 0.004)]:
        assert abs(share[type_code] - expected) <= tolerance, (type_code, share[type_code])
    assert {"F", "C", "P", "H", "L", "I"} <= set(counts)


def test_book_consistency(day):
    """Replay with an independent book: every reference names a live order of the same locate."""
    live = {}  # ref -> [locate, side, shares]
    last_timestamp = -1
    for msg in day:
        assert msg.timestamp > last_timestamp
        last_timestamp = msg.timestamp
        match msg.type:
            case "A" | "F":
                assert msg.order_ref not in live and msg.side in "BS" and msg.shares > 0 and msg.price > 0
                live[msg.order_ref] = [msg.locate, msg.side, msg.shares]
            case "D":
                assert live.pop(msg.order_ref)[0] == msg.locate
            case "X":
                order = live[msg.order_ref]
                assert order[0] == msg.locate and 0 < msg.cancelled_shares < order[2]
                order[2] -= msg.cancelled_shares
            case "E" | "C":
                order = live[msg.order_ref]
                assert order[0] == msg.locate and 0 < msg.executed_shares <= order[2]
                order[2] -= msg.executed_shares
                if not order[2]:
                    del live[msg.order_ref]
            case "U":
                locate, side, _ = live.pop(msg.original_order_ref)
                assert locate == msg.locate and msg.new_order_ref not in live and msg.shares > 0
                live[msg.new_order_ref] = [locate, side, msg.shares]
    assert live  # the book is not trivially empty at the close


def test_frames_carry_the_messages_in_sequence():
    config = feed.FeedConfig(seed=5, messages=5_000, max_messages_per_packet=7, burst_probability=0.8)
    expected = [itch.encode(m) for m in feed.generate_messages(config)]
    records = feed.generate_feed(config)
    delivered, next_seq, sizes = [], config.first_sequence, collections.Counter()
    for record in records:
        assert len(record.data) <= 1514
        eth, ip, udp, payload = parse_udp_frame(record.data)
        assert (ip.dst, udp.dst_port, eth.ethertype) == (bytes([233, 54, 12, 111]), 26477, 0x0800)
        packet = decode_packet(payload)
        assert packet.session == "TICK2TRADE" and packet.sequence == next_seq
        assert packet.count <= 7 or packet.end_of_session
        sizes[packet.count] += 1
        delivered.extend(packet.messages)
        next_seq = packet.next_sequence
    assert delivered == expected
    assert decode_packet(parse_udp_frame(records[-1].data)[3]).end_of_session
    assert sizes[7] > 0 and sizes[1] > 0  # bursts fill packets, lone messages go alone
    timestamps = [r.ts_ns for r in records]
    assert timestamps == sorted(timestamps)


def test_mtu_limits_packet_size():
    config = feed.FeedConfig(seed=2, messages=3_000, max_messages_per_packet=500, burst_probability=1.0,
                             coalesce_ns=10**9)
    records = feed.generate_feed(config)
    assert max(len(r.data) for r in records) <= 1514
    assert max(len(r.data) for r in records) > 1400


def test_heartbeats_when_idle():
    config = feed.FeedConfig(seed=1, messages=200, mean_gap_ns=50_000_000, burst_probability=0.0,
                             heartbeat_interval_ns=100_000_000)
    packets = list(feed.generate_packets(config))
    heartbeats = [(ts, p) for ts, p in packets if p.is_heartbeat]
    assert heartbeats
    # a heartbeat carries the next expected sequence number: that of the next data packet
    for (ts, heartbeat), (_, after) in zip(packets, packets[1:]):
        if heartbeat.is_heartbeat:
            assert after.sequence == heartbeat.sequence
    gaps = [b - a for (a, _), (b, _) in zip(packets, packets[1:-1])]
    assert max(gaps) <= 100_000_000


def test_fault_injection_changes_the_stream():
    base = feed.FeedConfig(seed=9, messages=4_000)
    clean = feed.generate_feed(base)
    clean_frames = {r.data for r in clean}

    gappy = feed.generate_feed(feed.FeedConfig(seed=9, messages=4_000, gap_probability=0.1))
    assert 0.8 * len(clean) < len(gappy) < 0.97 * len(clean)
    assert {r.data for r in gappy} < clean_frames

    duplicated = feed.generate_feed(feed.FeedConfig(seed=9, messages=4_000, duplicate_probability=0.1))
    assert len(duplicated) > 1.05 * len(clean) and {r.data for r in duplicated} == clean_frames

    reordered = feed.generate_feed(feed.FeedConfig(seed=9, messages=4_000, reorder_probability=0.1))
    assert sorted(r.data for r in reordered) == sorted(r.data for r in clean)
    assert [r.data for r in reordered] != [r.data for r in clean]
    assert [r.ts_ns for r in reordered] == [r.ts_ns for r in clean]

    corrupted = feed.generate_feed(feed.FeedConfig(seed=9, messages=4_000, corrupt_probability=0.1,
                                                   corrupt_kinds=(feed.CorruptKind.BAD_IP_CHECKSUM,)))
    bad = [r.data for r in corrupted if r.data not in clean_frames]
    assert len(corrupted) == len(clean) and 0.05 * len(clean) < len(bad) < 0.15 * len(clean)
    for frame in bad:
        with pytest.raises(ValueError):
            parse_udp_frame(frame)


@pytest.mark.parametrize("kind", list(feed.CorruptKind))
def test_every_corruption_changes_the_frame_deterministically(kind):
    good = feed.generate_feed(SMALL)[30].data
    first = feed.corrupt(good, kind, random.Random(1))
    assert first != good
    assert first == feed.corrupt(good, kind, random.Random(1))
