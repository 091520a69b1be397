"""ItchSplit alone in the Amaranth simulator against ItchSplitModel, message by message.

The stimulus is what MoldUdp64Rx passes on for the frames of a generated
feed: ``blocks`` beats from frame beat 5 (``first``), frame-aligned, ``keep``
on the message-block bytes only (frame offset 62 on), random bytes in the
lanes not kept, keep-less trailing beats after Ethernet padding, ``err`` on
the last beat of frames bad at their end; and the ``packet`` input set from
the golden model's decision in the cycle after the header beat, cleared
(``deliver``, ``gap``, ``skip``) in the cycle after a packet's first beat,
as MoldUdp64Rx's register does. Random idle cycles inside and between
packets, some packets back to back.

The feed (``stage_harness.mold_stream``, framing faults of the catalogue:
count high and low, a message past the end, zero length fields, bad
lengths, unknown types, truncated frames, short payloads, another session)
is followed by packets made here: one 12-byte message (S, W), heartbeats
with and without a block, payloads of exactly 1472 bytes (1500-byte MTU),
runs of shortest messages, every length field below 12, payloads ending
inside a length field or a message, a 0xFFFF length, messages longer than
the 44 bytes kept (I, O), duplicates. Expected values come from the golden
model (``RxModel.trace``, which composes MoldUdp64RxModel and ItchSplitModel
as the gateware does): delivered messages (seq, gap, length, first 44 bytes,
zero past the length), the packet-end ``bad`` flag and complete-block count,
and the stage's counters, per packet.
"""

import random

from amaranth.hdl import Value
from amaranth.lib import data
from stage_harness import (Counters, Schedule, Stream, frame_for, layout_fields, mold_stream, pack_fields, run_cycles,
                           udp_output_beats, UDP_LEAD_BEATS)

from tick2trade.hdl.itch_decode import BODY_BYTES, RawMessage
from tick2trade.hdl.itch_split import ItchSplit, ItchSplitEvents
from tick2trade.hdl.moldudp64_rx import MoldPacket, PacketEnd
from tick2trade.host import feed
from tick2trade.host.codec import itch
from tick2trade.host.rx_model import MOLD_HEADER, RxModel

SPLIT_COUNTERS = [name for name, _ in data.Layout.cast(ItchSplitEvents)]
HEADER_BEAT = 7
#: docs/receive-path.md, "Timing in the gateware": MoldUdp64Rx's decision is in `packet` this
#: many cycles after the header's last byte; packet_end comes this many after the last beat.
DECISION_DELAY = 2
END_DELAY = 2
FRAMING_FAULTS = (feed.CorruptKind.TRUNCATED, feed.CorruptKind.MOLD_SHORT, feed.CorruptKind.SESSION_MISMATCH,
                  feed.CorruptKind.MOLD_COUNT_HIGH, feed.CorruptKind.MOLD_COUNT_LOW,
                  feed.CorruptKind.MESSAGE_PAST_END, feed.CorruptKind.ZERO_LENGTH_MESSAGE,
                  feed.CorruptKind.BAD_MESSAGE_LENGTH, feed.CorruptKind.UNKNOWN_ITCH_TYPE)
MTU_PAYLOAD = feed.MAX_UDP_PAYLOAD


def random_message(rng: random.Random, type_: str | None = None) -> bytes:
    type_ = type_ or rng.choice(sorted(itch.MESSAGE_LENGTHS))
    return type_.encode() + bytes(rng.randrange(256) for _ in range(itch.MESSAGE_LENGTHS[type_] - 1))


def blocks_of(messages) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def exact_size_messages(rng: random.Random, size: int) -> list[bytes]:
    """Random messages whose blocks take exactly ``size`` bytes."""
    sizes = {length + 2: type_ for type_, length in itch.MESSAGE_LENGTHS.items()}
    messages = []
    while size > 2 * max(sizes):
        message = random_message(rng)
        messages.append(message)
        size -= len(message) + 2
    reachable = {0: []}  # bytes -> block sizes making them
    for total in range(1, size + 1):
        for block in sizes:
            if total - block in reachable:
                reachable[total] = reachable[total - block] + [block]
                break
    return messages + [random_message(rng, sizes[block]) for block in reachable[size]]


def directed_frames(rng: random.Random) -> list[tuple[bytes, bool]]:
    """Packets of one session, made here, that the generated feed does not make (see module doc)."""
    config = feed.FeedConfig()
    session = b"DIRECTED00"
    sent = []
    next_seq = 5000

    def packet(body: bytes, count: int, *, seq: int | None = None, err: bool = False, advance: int | None = None):
        nonlocal next_seq
        seq = next_seq if seq is None else seq
        sent.append((frame_for(config, MOLD_HEADER.pack(session, seq, count) + body), err))
        next_seq = max(next_seq, seq + (count if advance is None else advance))

    for type_ in "SWSW":  # the smallest packets that carry a message
        packet(blocks_of([random_message(rng, type_)]), 1)
    packet(b"", 0)  # heartbeat
    packet(blocks_of([random_message(rng, "A")]), 0, advance=0)  # heartbeat with a block: beyond count
    for _ in range(6):  # exactly the 1500-byte MTU
        messages = exact_size_messages(rng, MTU_PAYLOAD - MOLD_HEADER.size)
        packet(blocks_of(messages), len(messages))
    shortest = [random_message(rng, rng.choice("SW")) for _ in range(100)]
    packet(blocks_of(shortest), len(shortest))
    for length in range(0, 12):  # a length field below 12 stops framing
        before = [random_message(rng) for _ in range(rng.randrange(0, 3))]
        after = [random_message(rng) for _ in range(2)]
        body = blocks_of(before) + length.to_bytes(2, "big") + bytes(rng.randrange(256) for _ in range(length))
        packet(body + blocks_of(after), len(before) + 1 + len(after), advance=len(before))
    for cut in (1, 2, 3, 13):  # the payload ends inside a length field, after it, inside the message
        messages = [random_message(rng) for _ in range(rng.randrange(1, 4))]
        body = blocks_of(messages) + blocks_of([random_message(rng, "A")])[:cut]
        packet(body, len(messages) + 1, advance=len(messages))
    messages = [random_message(rng) for _ in range(2)]
    packet(blocks_of(messages) + b"\xff\xff" + bytes(30), 3, advance=2)  # a 0xFFFF length runs past the end
    for type_ in "IOIO":  # longer than the 44 bytes kept
        packet(blocks_of([random_message(rng, type_), random_message(rng, "P")]), 2)
    messages = [random_message(rng) for _ in range(5)]
    packet(blocks_of(messages), 5)
    packet(blocks_of(messages), 5, seq=next_seq - 5)  # all duplicates
    packet(blocks_of(messages + messages[:2]), 7, seq=next_seq - 5)  # five duplicates, two new
    packet(blocks_of(messages), 5, err=True)  # MAC error at the end
    packet(blocks_of(messages), 5, seq=next_seq + 3)  # gap
    return sent


def build_stream(seed: int, messages: int) -> Stream:
    rng = random.Random(f"itch_split/{seed}")
    stream = mold_stream(seed, messages, corrupt=0.2, kinds=FRAMING_FAULTS)
    stream.resync_before.add(len(stream.frames))
    stream.frames.extend(directed_frames(rng))
    return stream


def block_lanes(payload: bytes) -> list[int]:
    """Frame lanes where the length fields of the payload's blocks start, while framing goes on."""
    lanes, position = [], MOLD_HEADER.size
    while position + 2 <= len(payload):
        length = int.from_bytes(payload[position:position + 2], "big")
        if length < 12 or position + 2 + length > len(payload):
            break
        lanes.append((42 + position) % 8)
        position += 2 + length
    return lanes


def test_itch_split_against_model():
    seed = 3
    stream = build_stream(seed, 1500)
    model = RxModel()
    packets = []  # (frame, err, RxTrace, resync before it, model counter deltas)
    resync_pending = False
    for number, (frame, err) in enumerate(stream.frames):
        resync_pending |= number in stream.resync_before
        if resync_pending:
            model.resync()
            resync_pending = False
        before = dict(model.counters)
        trace = model.trace(frame, err)
        if trace.udp.payload is None:
            continue
        delta = {n: model.counters[n] - before[n] for n in SPLIT_COUNTERS if model.counters[n] != before[n]}
        packets.append((frame, err, trace, delta))

    rng = random.Random(f"itch_split/schedule/{seed}")
    schedule = Schedule(rng, idle_probability=0.15)
    register = pack_fields(MoldPacket, deliver=0, seq=0, count=0, skip=0, gap=0)  # MoldUdp64Rx's `packet`
    deliver_mask = ~pack_fields(MoldPacket, deliver=1, skip=0xFFFF, gap=1)
    start_lanes = set()
    sizes = []
    for number, (frame, err, trace, _) in enumerate(packets):
        payload = trace.udp.payload
        sizes.append(len(payload))
        beats = udp_output_beats(frame, payload, trace.udp.bad, rng, keep_from=62)
        schedule.add_frame(beats, back_to_back=rng.random() < 0.3, lead=UDP_LEAD_BEATS)
        cycles = schedule.frame_cycles[number]
        register &= deliver_mask
        schedule.set_at(cycles[0] + 1, packet=register)
        if trace.mold.framed:
            d = trace.mold
            register = pack_fields(MoldPacket, deliver=1, seq=d.seq, count=d.count, skip=d.skip, gap=int(d.gap))
            schedule.set_at(cycles[HEADER_BEAT - 5] + DECISION_DELAY, packet=register)
            start_lanes.update(block_lanes(payload))

    dut = ItchSplit()
    samples = run_cycles(dut, dut.blocks.valid, dut.blocks.p, schedule,
                         [dut.messages.valid, dut.messages.p, dut.packet_end.valid, dut.packet_end.p, dut.events],
                         extra_inputs={"packet": Value.cast(dut.packet)})

    got_messages = [[] for _ in packets]
    got_ends = [[] for _ in packets]
    got_events = [Counters() for _ in packets]
    totals = Counters()
    problems = []
    for cycle, (valid, message, end_valid, end, events) in enumerate(samples):
        entry = schedule.cycles[cycle] if cycle < len(schedule.cycles) else None
        previous = schedule.cycles[cycle - 1] if 0 < cycle <= len(schedule.cycles) else None
        fired = totals.add_events(ItchSplitEvents, events)
        # a packet's end shows END_DELAY cycles after its last beat, a message the cycle after its last byte
        before_end = schedule.cycles[cycle - END_DELAY] if END_DELAY <= cycle < len(schedule.cycles) + END_DELAY else None
        ending = before_end[0] if before_end and before_end[1].last else None
        if valid:
            if previous is None:
                problems.append(f"cycle {cycle}: a message, but no beat the cycle before")
            else:
                got_messages[previous[0]].append(layout_fields(RawMessage, message))
        if end_valid:
            if ending is None:
                problems.append(f"cycle {cycle}: packet_end, but no last beat {END_DELAY} cycles before")
            else:
                got_ends[ending].append(layout_fields(PacketEnd, end))
        owner = ending if ending is not None else entry[0] if entry else None
        if fired:
            if owner is None:
                problems.append(f"cycle {cycle}: events {fired} with no packet")
            else:
                for name, amount in fired.items():
                    got_events[owner][name] = got_events[owner].get(name, 0) + amount
    assert not problems, problems[:5]

    delivered = 0
    for number, (frame, err, trace, delta) in enumerate(packets):
        payload = trace.udp.payload
        where = (f"packet {number} ({len(payload)} bytes, err={err}, decision {trace.mold}) "
                 f"{payload[:20].hex()}")
        expected = [{"seq": m.seq, "gap": int(m.gap), "length": m.length,
                     "body": int.from_bytes(m.data[:BODY_BYTES].ljust(BODY_BYTES, b"\0"), "big")}
                    for m in trace.split.messages] if trace.split else []
        delivered += len(expected)
        got = got_messages[number]
        if got != expected:
            first = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
            show = [{**m, "body": f"{m['body']:088x}"} for m in (got[first:first + 1] + expected[first:first + 1])]
            problems.append(f"{where}: {len(got)} messages, model {len(expected)}; first difference at "
                            f"message {first}: {show[:len(got[first:first + 1])]} != model "
                            f"{show[len(got[first:first + 1]):]}")
        expected_end = {"bad": int(trace.packet_bad)}
        ends = got_ends[number]
        if trace.split is not None:
            expected_end["blocks"] = trace.split.complete
        elif ends:
            ends = [{"bad": e["bad"]} for e in ends]
        if ends != [expected_end]:
            problems.append(f"{where}: packet_end {ends} != model [{expected_end}]")
        if dict(got_events[number]) != delta:
            problems.append(f"{where}: events {dict(got_events[number])} != model {delta}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:10])
    assert dict(totals) == {n: v for n, v in model.counters.items() if n in SPLIT_COUNTERS and v}

    # the stimulus covers what it should
    assert start_lanes == set(range(8)), start_lanes
    assert sizes.count(MTU_PAYLOAD) >= 6 and MOLD_HEADER.size + 14 in sizes
    assert all(model.counters[n] for n in SPLIT_COUNTERS), model.counters
    assert delivered > 1000
