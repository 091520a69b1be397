"""The whole receive path in HDL simulators (cocotb), compared with the golden model.

Expected values come from the golden model (host/rx_model.py), from the
generator's own record of what it encoded, and from docs/receive-path.md;
never from the gateware.
"""

import random

import pytest

from tick2trade.host.codec import itch
from tick2trade.host.codec.moldudp64 import MoldPacket, encode_packet
from tick2trade.host.codec.net import udp_frame
from tick2trade.host.device import RxFrame, message_latencies, open_rx_device
from tick2trade.host.feed import CorruptKind, FeedConfig, corrupt, generate_feed, generate_packets
from tick2trade.sim.runner import available_simulators

pytestmark = pytest.mark.cocotb

BLOCKS_OFFSET = 62   # PROTOCOLS.md: frame offset of the first message block
MTU_PAYLOAD = 1472   # UDP payload of a 1500-byte IPv4 packet


@pytest.fixture(params=["verilator", "icarus"])
def simulator(request):
    reason = available_simulators()[request.param]
    if reason:
        pytest.skip(reason)
    return request.param


def run_model(frames):
    return open_rx_device("model").run(frames)


def first_difference(got, want):
    for index, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"message {index}: gateware {a} != model {b}"
    return f"gateware delivered {len(got)} messages, model {len(want)}"


def assert_same_as_model(hw, model):
    assert hw.messages == model.messages, first_difference(hw.messages, model.messages)
    assert hw.counters == model.counters
    assert hw.packet_ends == model.packet_ends


# --- a large seeded market ------------------------------------------------------------

MARKET = FeedConfig(seed=2026, messages=52_000, max_messages_per_packet=64, coalesce_ns=2_000_000,
                    gap_probability=0.002, duplicate_probability=0.005, reorder_probability=0.005,
                    corrupt_probability=0.01, end_of_session=False)


@pytest.fixture(scope="module")
def market_frames():
    """The market (packets up to the MTU), then the smallest packets: heartbeats and single 12-byte messages."""
    records = generate_feed(MARKET)
    packets = [packet for _time, packet in generate_packets(MARKET)]
    session, next_seq = packets[-1].session, packets[-1].next_sequence
    event = itch.encode(itch.SystemEvent(locate=0, tracking=0, timestamp=57_600_000_000_000, event_code="E"))
    smallest = [MoldPacket(session, next_seq), MoldPacket(session, next_seq, (event,)),
                MoldPacket(session, next_seq + 1, (event,)), MoldPacket(session, next_seq + 2)]
    tail = [feed_frame(encode_packet(packet), MARKET) for packet in smallest]
    return [RxFrame(record.data) for record in records] + [RxFrame(frame) for frame in tail]


def test_market_covers_the_corners(market_frames):
    """The stimulus itself: every start lane, largest and smallest packets, heartbeats."""
    lanes, payloads = set(), []
    for frame in market_frames:
        data = frame.data
        payloads.append(len(data) - 42)
        position = BLOCKS_OFFSET
        while position + 2 <= len(data):
            lanes.add((position + 2) % 8)  # lane of the message's first byte
            position += 2 + int.from_bytes(data[position:position + 2], "big")
    assert lanes == set(range(8))
    assert max(payloads) > MTU_PAYLOAD - 50   # no further ITCH message would fit
    assert 20 in payloads                      # heartbeats: the MoldUDP64 header alone
    assert 20 + 2 + 12 in payloads             # one message, of the shortest type


def test_market_matches_golden_model(simulator, market_frames):
    """At least 50,000 messages with faults and random idle cycles: message for message, counter for counter."""
    hw = open_rx_device(simulator).run(market_frames, idle_probability=0.1, seed=7)
    model = run_model(market_frames)
    assert len(model.messages) >= 50_000
    assert_same_as_model(hw, model)
    back_to_back = sum(1 for this, following in zip(hw.beat_cycles, hw.beat_cycles[1:])
                       if following[0] == this[-1] + 1)
    assert back_to_back > len(market_frames) // 2
    latencies = message_latencies(market_frames, hw)
    assert len(latencies) == len(hw.messages)
    assert max(latencies) <= 2, "a message left more than 2 cycles after its last byte (issue requirement)"


# --- the bad-input catalogue -----------------------------------------------------------

#: The counter docs/receive-path.md names for each kind of bad frame.
EXPECTED_COUNTER = {
    CorruptKind.RUNT: "drop_runt",
    CorruptKind.VLAN_TAG: "drop_vlan",
    CorruptKind.WRONG_ETHERTYPE: "drop_ethertype",
    CorruptKind.IP_OPTIONS: "drop_ip_header",
    CorruptKind.IP_LENGTH_SHORT: "drop_ip_length",
    CorruptKind.FRAGMENT: "drop_ip_fragment",
    CorruptKind.WRONG_PROTOCOL: "drop_ip_protocol",
    CorruptKind.BAD_IP_CHECKSUM: "drop_ip_checksum",
    CorruptKind.WRONG_DST_IP: "drop_dst_ip",
    CorruptKind.WRONG_PORT: "drop_dst_port",
    CorruptKind.BAD_UDP_LENGTH: "drop_udp_length",
    CorruptKind.TRUNCATED: "drop_truncated",
    CorruptKind.MOLD_SHORT: "mold_short",
    CorruptKind.SESSION_MISMATCH: "mold_session_mismatch",
    CorruptKind.MOLD_COUNT_HIGH: "mold_count_mismatch",
    CorruptKind.MOLD_COUNT_LOW: "msg_beyond_count",
    CorruptKind.MESSAGE_PAST_END: "msg_overrun",
    CorruptKind.ZERO_LENGTH_MESSAGE: "msg_bad_length",
    CorruptKind.BAD_MESSAGE_LENGTH: "msg_bad_length",
    CorruptKind.UNKNOWN_ITCH_TYPE: "msg_unknown_type",
}
#: Kinds found from the headers, before any message of the frame could leave.
DROPPED_WHOLE = {kind for kind, counter in EXPECTED_COUNTER.items() if counter.startswith("drop_")} - {
    CorruptKind.TRUNCATED} | {CorruptKind.MOLD_SHORT, CorruptKind.SESSION_MISMATCH}
#: Kinds seen only at the end of the packet, after some of its messages left (cut-through):
#: the packet's end is flagged bad.
FLAGGED_AT_END = {CorruptKind.TRUNCATED, CorruptKind.MOLD_COUNT_HIGH, CorruptKind.MOLD_COUNT_LOW,
                  CorruptKind.MESSAGE_PAST_END, CorruptKind.ZERO_LENGTH_MESSAGE}


class Scenario:
    """Good packets A, B, C, D of a small feed, their frames, and what each message was when encoded."""

    def __init__(self, seed=11):
        config = FeedConfig(seed=seed, messages=400, end_of_session=False, coalesce_ns=200_000)
        packets = [packet for _time, packet in generate_packets(config)]
        frames = [record.data for record in generate_feed(config)]
        assert len(packets) == len(frames)
        self.encoded = {}
        for packet in packets:
            for index, message in enumerate(packet.messages):
                self.encoded[packet.sequence + index] = message
        # four consecutive order-flow packets with several messages each
        start = next(i for i in range(len(packets) - 4)
                     if all(len(p.messages) >= 3 for p in packets[i:i + 4]) and i > 20)
        self.packets = packets[start:start + 4]
        self.frames = frames[start:start + 4]

    def seqs(self, packet):
        return set(range(packet.sequence, packet.sequence + len(packet.messages)))

    def record(self, seq):
        return itch.to_record(itch.decode(self.encoded[seq]), seq, False)


def run_scenario(simulator, frames):
    hw = open_rx_device(simulator).run(frames, idle_probability=0.2, seed=3)
    model = run_model(frames)
    assert_same_as_model(hw, model)
    return hw


def assert_truthful(hw, scenario):
    """Every message the gateware delivered is one that was really sent, unchanged."""
    for record in hw.messages:
        want = scenario.record(record["seq"])
        assert {k: v for k, v in record.items() if k != "gap"} == {k: v for k, v in want.items() if k != "gap"}


@pytest.mark.parametrize("kind", list(CorruptKind), ids=lambda kind: kind.value)
def test_bad_frame(simulator, kind):
    scenario = Scenario()
    a, b, c, _ = scenario.packets
    bad = corrupt(scenario.frames[1], kind, random.Random(kind.value))
    hw = run_scenario(simulator, [RxFrame(scenario.frames[0]), RxFrame(bad), RxFrame(scenario.frames[2])])
    assert hw.counters[EXPECTED_COUNTER[kind]] >= 1
    assert_truthful(hw, scenario)
    delivered = {record["seq"] for record in hw.messages}
    assert scenario.seqs(a) <= delivered
    assert scenario.seqs(c) <= delivered, "the good frame after the bad one must decode"
    if kind in DROPPED_WHOLE:
        assert not scenario.seqs(b) & delivered
    elif kind is not CorruptKind.MOLD_COUNT_HIGH:  # there every block is real; only the count lies
        assert not scenario.seqs(b) <= delivered, "the bad block must not be delivered"
    assert hw.packet_ends[1] == (kind in FLAGGED_AT_END) or kind in DROPPED_WHOLE


def test_mac_error_flag(simulator):
    """``err`` on the last beat: what left cut-through stays, the packet is flagged bad and counted."""
    scenario = Scenario()
    frames = [RxFrame(scenario.frames[0]), RxFrame(scenario.frames[1], err=True), RxFrame(scenario.frames[2])]
    hw = run_scenario(simulator, frames)
    assert hw.counters["drop_err"] == 1 and hw.counters["packets_bad"] == 1
    assert hw.packet_ends == [False, True, False]
    assert_truthful(hw, scenario)


def test_sequence_gap(simulator):
    scenario = Scenario()
    hw = run_scenario(simulator, [RxFrame(scenario.frames[0]), RxFrame(scenario.frames[2])])
    b = scenario.packets[1]
    assert hw.counters["mold_gap"] == 1
    assert hw.counters["mold_gap_messages"] == len(b.messages)
    assert [r["gap"] for r in hw.messages if r["seq"] in scenario.seqs(scenario.packets[2])] == \
        [True] * len(scenario.packets[2].messages)


def test_duplicates(simulator):
    """A resent packet and a packet overlapping the last one: only new messages leave."""
    scenario = Scenario()
    a, b, c, _ = scenario.packets
    overlap = MoldPacket(session=b.session, sequence=b.sequence + 1, messages=b.messages[1:] + c.messages)
    frames = [scenario.frames[0], scenario.frames[1], scenario.frames[1],
              feed_frame(encode_packet(overlap))]
    hw = run_scenario(simulator, [RxFrame(f) for f in frames])
    assert [r["seq"] for r in hw.messages] == sorted(scenario.seqs(a) | scenario.seqs(b) | scenario.seqs(c))
    assert hw.counters["mold_duplicate_packet"] == 1
    assert hw.counters["msg_duplicate"] == len(b.messages) + len(b.messages) - 1
    assert_truthful(hw, scenario)


def test_end_of_session(simulator):
    """After an end of session, the next packet starts a new sync without a gap."""
    scenario = Scenario()
    a, b, _, d = scenario.packets
    end = MoldPacket(session=b.session, sequence=b.sequence, end_of_session=True)
    frames = [scenario.frames[0], feed_frame(encode_packet(end)), scenario.frames[3]]
    hw = run_scenario(simulator, [RxFrame(f) for f in frames])
    assert hw.counters["mold_end_of_session"] == 1
    assert hw.counters["mold_gap"] == 0
    assert [r["seq"] for r in hw.messages] == sorted(scenario.seqs(a) | scenario.seqs(d))


def feed_frame(payload, config=FeedConfig()):
    """A frame carrying ``payload`` to the feed's address, as the generator addresses it."""
    return udp_frame(payload, src_mac=config.src_mac, dst_mac=config.dst_mac, src_ip=config.src_ip,
                     dst_ip=config.dst_ip, src_port=config.src_port, dst_port=config.dst_port)
