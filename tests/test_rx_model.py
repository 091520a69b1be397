"""Golden receive-path model against docs/receive-path.md, with expectations worked by hand.

Frames are built with the network codec (`net.udp_frame`) around MoldUDP64
payloads and ITCH messages written here byte by byte; expected records and
counters follow the doc's rules, not the model's output.
"""

import random
import re
from pathlib import Path

import pytest

from tick2trade.host import feed
from tick2trade.host.codec.net import udp_frame
from tick2trade.host.rx_model import RxModel

DOC = Path(__file__).resolve().parents[1] / "docs" / "receive-path.md"
DST_IP = bytes([233, 54, 12, 111])
SESSION = b"TICK2TRADE"


def ts(value: int) -> bytes:
    return value.to_bytes(6, "big")


def add_order(ref: int, price: int, locate: int = 2) -> bytes:
    return (b"A" + locate.to_bytes(2, "big") + b"\x00\x00" + ts(1000 + ref) + ref.to_bytes(8, "big")
            + b"S" + (300).to_bytes(4, "big") + b"TGT     " + price.to_bytes(4, "big"))


def add_order_record(seq: int, ref: int, price: int, gap: bool = False) -> dict:
    return {"seq": seq, "type": "A", "length": 36, "locate": 2, "tracking": 0, "timestamp": 1000 + ref,
            "gap": gap, "order_ref": ref, "side": "S", "shares": 300, "stock": "TGT", "price": price}


def delete(ref: int) -> bytes:
    return b"D" + (2).to_bytes(2, "big") + b"\x00\x07" + ts(2000 + ref) + ref.to_bytes(8, "big")


def delete_record(seq: int, ref: int, gap: bool = False) -> dict:
    return {"seq": seq, "type": "D", "length": 19, "locate": 2, "tracking": 7, "timestamp": 2000 + ref,
            "gap": gap, "order_ref": ref}


def replace(old: int, new: int) -> bytes:
    return (b"U" + (2).to_bytes(2, "big") + b"\x00\x00" + ts(3000) + old.to_bytes(8, "big")
            + new.to_bytes(8, "big") + (100).to_bytes(4, "big") + (99).to_bytes(4, "big"))


def replace_record(seq: int, old: int, new: int, gap: bool = False) -> dict:
    return {"seq": seq, "type": "U", "length": 35, "locate": 2, "tracking": 0, "timestamp": 3000, "gap": gap,
            "original_order_ref": old, "new_order_ref": new, "shares": 100, "price": 99}


def payload(seq: int, messages, *, count: int | None = None, session: bytes = SESSION) -> bytes:
    """A MoldUDP64 packet by hand: session(10) seq(8) count(2), then length(2)+message blocks."""
    count = len(messages) if count is None else count
    return (session + seq.to_bytes(8, "big") + count.to_bytes(2, "big")
            + b"".join(len(m).to_bytes(2, "big") + m for m in messages))


def frame(mold_payload: bytes, dst_port: int = 26477) -> bytes:
    return udp_frame(mold_payload, src_mac=bytes(6), dst_mac=b"\x01\x00\x5e\x36\x0c\x6f",
                     src_ip=bytes([10, 0, 0, 1]), dst_ip=DST_IP, src_port=1234, dst_port=dst_port,
                     udp_checksum=False)


def nonzero(counters: dict) -> dict:
    return {name: value for name, value in counters.items() if value}


class Path_:
    """A model plus the counter deltas of each step."""

    def __init__(self):
        self.model = RxModel()
        self.before = dict(self.model.counters)

    def send(self, data: bytes, err: bool = False):
        records = self.model.process(data, err)
        after = dict(self.model.counters)
        delta = {name: after[name] - self.before[name] for name in after if after[name] != self.before[name]}
        self.before = after
        return records, delta


# P1 syncs at seq 1 (3 messages); P2 is seq 4 (A, D, U); P3 is seq 7 (one D).
P1 = frame(payload(1, [add_order(1, 100), add_order(2, 200), add_order(3, 300)]))
P2_MESSAGES = [add_order(4, 400), delete(1), replace(2, 5)]
P2 = frame(payload(4, P2_MESSAGES))
P2_RECORDS = [add_order_record(4, 4, 400), delete_record(5, 1), replace_record(6, 2, 5)]
P3 = frame(payload(7, [delete(3)]))
GOOD = {"frames": 1, "frames_ok": 1, "mold_packets": 1}


@pytest.fixture
def synced():
    path = Path_()
    records, delta = path.send(P1)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert delta == {**GOOD, "msgs": 3}
    return path


def test_counter_names_are_the_docs():
    section = DOC.read_text().split("## Counters")[1].split("## Configuration")[0]
    names = re.findall(r"`([a-z_]+)`", section.split("use exactly these names:")[1])
    assert list(RxModel().counters) == names
    assert len(names) == 31


def test_good_packet_records(synced):
    records, delta = synced.send(P2)
    assert records == P2_RECORDS
    assert [list(r) for r in records][0] == ["seq", "type", "length", "locate", "tracking", "timestamp", "gap",
                                             "order_ref", "side", "shares", "stock", "price"]
    assert delta == {**GOOD, "msgs": 3}
    assert synced.model.packet_ends == [False, False]


def test_padding_after_ip_total_length_is_ignored(synced):
    records, delta = synced.send(P2 + bytes(10))
    assert records == P2_RECORDS and delta == {**GOOD, "msgs": 3}


# Header checks: the frame is dropped whole, only its counter (and `frames`) moves,
# and P3 then sees a gap of the 3 lost messages.
HEADER_DROPS = {
    feed.CorruptKind.RUNT: "drop_runt",
    feed.CorruptKind.VLAN_TAG: "drop_vlan",
    feed.CorruptKind.WRONG_ETHERTYPE: "drop_ethertype",
    feed.CorruptKind.IP_OPTIONS: "drop_ip_header",
    feed.CorruptKind.IP_LENGTH_SHORT: "drop_ip_length",
    feed.CorruptKind.FRAGMENT: "drop_ip_fragment",
    feed.CorruptKind.WRONG_PROTOCOL: "drop_ip_protocol",
    feed.CorruptKind.BAD_IP_CHECKSUM: "drop_ip_checksum",
    feed.CorruptKind.WRONG_DST_IP: "drop_dst_ip",
    feed.CorruptKind.WRONG_PORT: "drop_dst_port",
    feed.CorruptKind.BAD_UDP_LENGTH: "drop_udp_length",
}
# MoldUDP64 drops: the frame passes UdpRx, the packet is dropped before framing.
MOLD_DROPS = {
    feed.CorruptKind.MOLD_SHORT: "mold_short",
    feed.CorruptKind.SESSION_MISMATCH: "mold_session_mismatch",
}
def p3_after_losing(lost):
    """P3 (seq 7) after `lost` of P2's messages were claimed but never arrived: a gap of that many."""
    if not lost:
        return ([delete_record(7, 3)], {**GOOD, "msgs": 1})
    return ([delete_record(7, 3, gap=True)], {**GOOD, "msgs": 1, "mold_gap": 1, "mold_gap_messages": lost})


P3_AFTER_GAP = p3_after_losing(3)


def first_changed_block(bad_frame: bytes) -> int:
    """Index of the P2 block holding the first byte where `bad_frame` differs from P2."""
    offset = next(i for i, (a, b) in enumerate(zip(P2[62:], bad_frame[62:])) if a != b)
    starts = [0, 38, 38 + 21]
    return max(i for i, start in enumerate(starts) if start <= offset)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", list(feed.CorruptKind), ids=lambda k: k.value)
def test_every_catalogue_kind(synced, kind, seed):
    bad = feed.corrupt(P2, kind, random.Random(seed))
    records, delta = synced.send(bad)
    # nothing from a bad frame is ever a record that differs from what was sent at that seq
    assert all(r in P2_RECORDS for r in records)
    if kind in HEADER_DROPS:
        assert (records, delta) == ([], {"frames": 1, HEADER_DROPS[kind]: 1})
        assert synced.model.packet_ends == [False]  # never reached MoldUdp64Rx
        assert synced.send(P3) == P3_AFTER_GAP
        return
    if kind in MOLD_DROPS:
        assert (records, delta) == ([], {"frames": 1, "frames_ok": 1, MOLD_DROPS[kind]: 1})
        assert synced.send(P3) == P3_AFTER_GAP
        return
    p3_ok = p3_after_losing(0)
    match kind:
        case feed.CorruptKind.TRUNCATED:
            assert delta["drop_truncated"] == 1 and delta["packets_bad"] == 1 and "frames_ok" not in delta
            arrived = len(bad) - 42
            if arrived < 20:
                assert delta == {"frames": 1, "drop_truncated": 1, "mold_short": 1, "packets_bad": 1}
                assert synced.send(P3) == P3_AFTER_GAP
            else:
                complete = sum(1 for end in (20 + 38, 20 + 38 + 21) if end <= arrived)
                assert records == P2_RECORDS[:complete]
                assert delta["mold_count_mismatch"] == 1
                assert delta.get("msg_overrun", 0) == (arrived not in (20, 58, 79))
                # the messages claimed but not carried are given back: P3 shows them lost
                assert synced.send(P3) == p3_after_losing(3 - complete)
        case feed.CorruptKind.MOLD_COUNT_HIGH:
            count = int.from_bytes(bad[60:62], "big")
            assert count > 3
            assert records == P2_RECORDS
            assert delta == {**GOOD, "msgs": 3, "mold_count_mismatch": 1, "packets_bad": 1}
            # the header moved next_seq to 4 + count, but only 3 blocks came: it is given back to 7
            assert synced.send(P3) == p3_ok
        case feed.CorruptKind.MOLD_COUNT_LOW:
            assert records == P2_RECORDS[:2]
            assert delta == {**GOOD, "msgs": 2, "msg_beyond_count": 1, "mold_count_mismatch": 1,
                             "packets_bad": 1}
            # next_seq is 4 + 2: P3 at 7 reports one lost message
            assert synced.send(P3) == ([delete_record(7, 3, gap=True)],
                                       {**GOOD, "msgs": 1, "mold_gap": 1, "mold_gap_messages": 1})
        case feed.CorruptKind.MESSAGE_PAST_END:
            assert records == P2_RECORDS[:2]
            assert delta == {**GOOD, "msgs": 2, "msg_overrun": 1, "mold_count_mismatch": 1, "packets_bad": 1}
            assert synced.send(P3) == p3_after_losing(1)
        case feed.CorruptKind.ZERO_LENGTH_MESSAGE:
            block = first_changed_block(bad)
            assert records == P2_RECORDS[:block]
            expected = {**GOOD, "msg_bad_length": 1, "packets_bad": 1}
            assert delta == ({**expected, "msgs": block} if block else expected)
            assert synced.send(P3) == p3_after_losing(3 - block)
        case feed.CorruptKind.BAD_MESSAGE_LENGTH | feed.CorruptKind.UNKNOWN_ITCH_TYPE:
            block = first_changed_block(bad)
            counter = "msg_bad_length" if kind is feed.CorruptKind.BAD_MESSAGE_LENGTH else "msg_unknown_type"
            assert records == [r for i, r in enumerate(P2_RECORDS) if i != block]
            assert delta == {**GOOD, "msgs": 2, counter: 1}  # framing goes on; the packet is not bad
            assert synced.send(P3) == p3_ok
        case _:
            pytest.fail(f"no expectation for {kind}")


@pytest.mark.parametrize(("arrived", "records", "extra"), [
    (10, [], {"mold_short": 1}),
    (20, [], {"mold_packets": 1, "mold_count_mismatch": 1}),
    (21, [], {"mold_packets": 1, "msg_overrun": 1, "mold_count_mismatch": 1}),  # inside a length field
    (58, P2_RECORDS[:1], {"mold_packets": 1, "msgs": 1, "mold_count_mismatch": 1}),  # on a block boundary
    (63, P2_RECORDS[:1], {"mold_packets": 1, "msgs": 1, "msg_overrun": 1, "mold_count_mismatch": 1}),
])
def test_truncated_frames_by_hand(synced, arrived, records, extra):
    got, delta = synced.send(P2[:42 + arrived])
    assert got == records
    assert delta == {"frames": 1, "drop_truncated": 1, "packets_bad": 1, **extra}
    assert synced.model.packet_ends == [False, True]


def test_err_marks_the_packet_bad_but_delivered_messages_stay(synced):
    records, delta = synced.send(P2, err=True)
    assert records == P2_RECORDS
    assert delta == {"frames": 1, "drop_err": 1, "mold_packets": 1, "msgs": 3, "packets_bad": 1}
    assert synced.model.packet_ends == [False, True]


def test_err_is_checked_before_truncation_and_header_checks_win(synced):
    assert synced.send(P2[:80], err=True)[1]["drop_err"] == 1
    assert "drop_truncated" not in synced.send(P2[:80], err=True)[1]
    assert synced.send(P2[:30], err=True)[1] == {"frames": 1, "drop_runt": 1}


def test_dont_fragment_flag_is_accepted(synced):
    assert P2[20] & 0x40  # the builder sets DF
    assert synced.send(P2)[1] == {**GOOD, "msgs": 3}


def test_gap():
    path = Path_()
    path.send(P1)
    records, delta = path.send(frame(payload(10, [delete(1), delete(2)])))
    assert records == [delete_record(10, 1, gap=True), delete_record(11, 2, gap=True)]
    assert delta == {**GOOD, "msgs": 2, "mold_gap": 1, "mold_gap_messages": 6}
    assert path.send(frame(payload(12, [delete(3)]))) == ([delete_record(12, 3)], {**GOOD, "msgs": 1})


def test_duplicate_packet(synced):
    assert synced.send(P1) == ([], {**GOOD, "msg_duplicate": 3, "mold_duplicate_packet": 1})


def test_partial_duplicate(synced):
    # next_seq is 4; a retransmission of 2..5 delivers only 4 and 5
    records, delta = synced.send(frame(payload(2, [add_order(2, 200), add_order(3, 300),
                                                   add_order(4, 400), delete(1)])))
    assert records == [add_order_record(4, 4, 400), delete_record(5, 1)]
    assert delta == {**GOOD, "msgs": 2, "msg_duplicate": 2}
    # next_seq is now 6: P2 (4..6) is a partial duplicate of one new message
    assert synced.send(P2) == ([P2_RECORDS[2]], {**GOOD, "msgs": 1, "msg_duplicate": 2})


def test_heartbeats(synced):
    assert synced.send(frame(payload(4, []))) == ([], {**GOOD, "mold_heartbeat": 1})
    # a heartbeat ahead of next_seq reveals lost messages
    assert synced.send(frame(payload(6, []))) == ([], {**GOOD, "mold_heartbeat": 1, "mold_gap": 1,
                                                       "mold_gap_messages": 2})
    assert synced.send(frame(payload(6, [delete(9)]))) == ([delete_record(6, 9)], {**GOOD, "msgs": 1})
    # a heartbeat with a block: the block is beyond the count
    assert synced.send(frame(payload(7, [delete(9)], count=0))) == (
        [], {**GOOD, "mold_heartbeat": 1, "msg_beyond_count": 1, "mold_count_mismatch": 1, "packets_bad": 1})


def test_end_of_session_then_new_session(synced):
    end = frame(payload(4, [], count=0xFFFF))
    assert synced.send(end) == ([], {"frames": 1, "frames_ok": 1, "mold_end_of_session": 1})
    # unsynced now: another session at a lower sequence number syncs without gap or duplicates
    other = frame(payload(1, [delete(8)], session=b"NEXTSESS01"))
    assert synced.send(other) == ([delete_record(1, 8)], {**GOOD, "msgs": 1})
    # an end of session while unsynced counts only itself
    fresh = Path_()
    assert fresh.send(end) == ([], {"frames": 1, "frames_ok": 1, "mold_end_of_session": 1})


def test_end_of_session_of_another_session_while_synced(synced):
    foreign_end = frame(payload(4, [], count=0xFFFF, session=b"OTHERSESSN"))
    assert synced.send(foreign_end) == ([], {"frames": 1, "frames_ok": 1, "mold_end_of_session": 1,
                                             "mold_session_mismatch": 1})
    assert synced.send(P2)[0] == P2_RECORDS  # still synced on TICK2TRADE


def test_resync_forgets_the_session(synced):
    synced.model.resync()
    assert synced.send(P1) == ([add_order_record(1, 1, 100), add_order_record(2, 2, 200),
                                add_order_record(3, 3, 300)], {**GOOD, "msgs": 3})


def test_block_checks_in_documented_order(synced):
    # block 0 is a duplicate *and* has an unknown type: counted as duplicate;
    # block 1 has an unknown type and 36 bytes: unknown type, not bad length;
    # block 2 is a D with 20 bytes: bad length; block 3 is beyond the count.
    unknown = b"Z" + add_order(9, 9)[1:]
    messages = [unknown, unknown, delete(1) + b"\x00", delete(2)]
    records, delta = synced.send(frame(payload(3, messages, count=3)))
    assert records == []
    assert delta == {**GOOD, "msg_duplicate": 1, "msg_unknown_type": 1, "msg_bad_length": 1,
                     "msg_beyond_count": 1, "mold_count_mismatch": 1, "packets_bad": 1}


def test_short_length_field_stops_framing(synced):
    # length 11 (one below the shortest message) in block 1: framing stops,
    # block 2 is never framed, and no overrun or count mismatch is counted
    raw = bytearray(payload(4, P2_MESSAGES))
    raw[20 + 38:20 + 40] = (11).to_bytes(2, "big")
    records, delta = synced.send(frame(bytes(raw)))
    assert records == P2_RECORDS[:1]
    assert delta == {**GOOD, "msgs": 1, "msg_bad_length": 1, "packets_bad": 1}


def test_counters_wrap_at_32_bits(synced):
    synced.model.counters["msgs"] = 0xFFFF_FFFF
    synced.model.process(P2)
    assert synced.model.counters["msgs"] == 2
    synced.model.clear_counters()
    assert not nonzero(synced.model.counters)


def test_configured_destination():
    model = RxModel(dst_ip="10.1.2.3", dst_port=5000)
    assert model.process(P1) == []
    assert nonzero(model.counters) == {"frames": 1, "drop_dst_ip": 1}
    ok = udp_frame(payload(1, [delete(1)]), src_mac=bytes(6), dst_mac=bytes(6), src_ip=bytes(4),
                   dst_ip=bytes([10, 1, 2, 3]), src_port=1, dst_port=5000)
    assert model.process(ok) == [delete_record(1, 1)]


def test_whole_generated_feed_decodes_to_its_messages():
    """A clean generated feed: every message delivered once, in sequence, nothing counted as bad."""
    config = feed.FeedConfig(seed=11, messages=3_000)
    model = RxModel()
    records = [r for rec in feed.generate_feed(config) for r in model.process(rec.data)]
    messages = list(feed.generate_messages(config))
    assert [r["seq"] for r in records] == list(range(1, len(messages) + 1))
    assert [(r["type"], r["timestamp"]) for r in records] == [(m.type, m.timestamp) for m in messages]
    bad = {k: v for k, v in nonzero(model.counters).items() if k.startswith(("drop_", "msg_")) or k in (
        "mold_gap", "mold_count_mismatch", "packets_bad", "mold_session_mismatch")}
    assert bad == {}
    assert model.counters["mold_end_of_session"] == 1
