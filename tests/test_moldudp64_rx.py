"""MoldUdp64Rx alone in the Amaranth simulator against MoldUdp64RxModel, packet by packet.

The input is what UdpRx passes on for the frames of a generated feed (the
UDP payloads and bad flags of UdpRxModel): frame-aligned beats from frame
beat 5 (payload byte 0 in lane 2, ``first`` set), ``keep`` on payload bytes
only, random bytes in the lanes not kept, trailing beats without kept bytes
after Ethernet padding, ``err`` on the last beat of bad frames. The feed
(``stage_harness.mold_stream``) has two sessions with gaps, duplicates,
reordering, partly duplicate packets, heartbeats, ends of session (of the
current session, of another one, and before any sync), packets of another
session, corrupt frames of the whole catalogue, and resync strobes; random
idle cycles inside and between packets, some packets back to back.

Per packet the test compares ``packet`` (sampled the cycle after the header
beat and again the cycle after the packet's last beat, as the MoldPacket
docstring promises it valid over that span) with the model's decision, the
event strobes with the model's counter deltas, and checks that ``blocks``
carries every beat unchanged but for ``keep``, which marks exactly payload
bytes 20 on.
"""

import random

from amaranth.lib import data
from amaranth.hdl import Value
from stage_harness import (Counters, Schedule, frame_for, kept_bytes, layout_fields, mold_stream, pack_fields,
                           run_cycles, udp_output_beats, UDP_LEAD_BEATS)

from tick2trade.hdl.moldudp64_rx import MoldPacket, MoldUdp64Events, MoldUdp64Rx, PacketEnd
from tick2trade.hdl.stream import Beat
from tick2trade.host import feed
from tick2trade.host.rx_model import COUNTER_MASK, Counters as ModelCounters, ItchSplitModel, MoldUdp64RxModel, UdpRxModel

MOLD_COUNTERS = [name for name, _ in data.Layout.cast(MoldUdp64Events)]
HEADER_BEAT = 7  # frame beat of the MoldUDP64 header's last byte (frame byte 61, lane 5)
#: docs/receive-path.md, "Timing in the gateware": the decision is in `packet` this many
#: cycles after the header's last byte, and its events strobe the cycle before; ItchSplit's
#: packet_end comes this many cycles after a packet's last beat.
DECISION_DELAY = 2
END_DELAY = 2
#: Cycles from what an event counts (a header's decision, a short packet's last beat) to its strobe.
EVENT_DELAY = 1


def build_packets(seed: int, messages: int):
    """The UdpRx output of the stream's accepted frames: (frame, payload, bad, resync before it).

    Besides ``mold_stream``: payloads shorter than the header, of every length,
    in frames with a trailer after the datagram (keep-less beats at the end).
    """
    stream = mold_stream(seed, messages)
    rng = random.Random(f"moldudp64_rx/{seed}")
    config = feed.FeedConfig()
    for length in list(range(20)) * 2:
        at = rng.randrange(1, len(stream.frames))
        frame = frame_for(config, bytes(rng.randrange(256) for _ in range(length)),
                          padding=bytes(rng.randrange(256) for _ in range(rng.randrange(0, 48))))
        stream.frames.insert(at, (frame, rng.random() < 0.2))
        stream.resync_before = {i + (i >= at) for i in stream.resync_before}
    udp = UdpRxModel()
    packets = []
    resync_pending = False
    for number, (frame, err) in enumerate(stream.frames):
        resync_pending |= number in stream.resync_before
        result = udp.process(frame, err)
        if result.payload is not None:
            packets.append((frame, result.payload, result.bad, resync_pending))
            resync_pending = False
    return packets


def model_decisions(packets):
    """Per packet: the model's decision, its counter deltas, and the complete blocks ItchSplit reports."""
    model = MoldUdp64RxModel()
    split = ItchSplitModel(ModelCounters())  # only for the number of complete blocks
    decisions = []
    for frame, payload, bad, resync in packets:
        if resync:
            model.resync()
        before = dict(model.counters)
        decision = model.process(payload)
        complete = split.process(payload, decision).complete if decision.framed else 0
        if decision.framed:
            model.end(decision, complete)  # ItchSplit's packet_end, the cycle after the last beat
        delta = {n: (model.counters[n] - before[n]) & COUNTER_MASK
                 for n in MOLD_COUNTERS if model.counters[n] != before[n]}
        decisions.append((decision, delta, complete))
    return model, decisions


def test_moldudp64_rx_against_model():
    seed = 5
    packets = build_packets(seed, 1500)
    model, decisions = model_decisions(packets)
    rng = random.Random(f"moldudp64_rx/schedule/{seed}")
    schedule = Schedule(rng, idle_probability=0.15)
    header_cycle, last_cycle = {}, {}
    for number, (frame, payload, bad, resync) in enumerate(packets):
        beats = udp_output_beats(frame, payload, bad, rng)
        if resync:  # strobe in an idle cycle before the packet, or with its first beat
            if rng.random() < 0.5:
                schedule.idle()
            schedule.set_at(len(schedule.cycles), resync=1)
            schedule.set_at(len(schedule.cycles) + 1, resync=0)
        schedule.add_frame(beats, back_to_back=not resync and rng.random() < 0.3, lead=UDP_LEAD_BEATS)
        cycles = schedule.frame_cycles[number]
        last_cycle[number] = cycles[-1]
        if len(payload) >= 20:
            header_cycle[number] = cycles[HEADER_BEAT - 5]
        # ItchSplit's packet_end, END_DELAY cycles after the last beat
        schedule.set_at(cycles[-1] + END_DELAY, end_valid=1,
                        end=pack_fields(PacketEnd, bad=int(bad), blocks=decisions[number][2]))
        schedule.set_at(cycles[-1] + END_DELAY + 1, end_valid=0)

    dut = MoldUdp64Rx()
    samples = run_cycles(dut, dut.payload.valid, dut.payload.p, schedule,
                         [dut.blocks.valid, dut.blocks.p, dut.packet, dut.events],
                         extra_inputs={"resync": dut.resync, "end_valid": dut.packet_end.valid,
                                       "end": Value.cast(dut.packet_end.p)})

    got_events = [Counters() for _ in packets]
    blocks = [{} for _ in packets]
    totals = Counters()
    problems = []
    deciding = {cycle + DECISION_DELAY - 1: number for number, cycle in header_cycle.items()}
    for cycle, (valid, beat, _packet, events) in enumerate(samples):
        entry = schedule.cycles[cycle] if cycle < len(schedule.cycles) else None
        fired = totals.add_events(MoldUdp64Events, events)
        # mold_short counts a packet's last beat, the others its header's decision
        counted = cycle - EVENT_DELAY
        at_last = schedule.cycles[counted] if 0 <= counted < len(schedule.cycles) else None
        for name, amount in fired.items():
            owner = ((at_last[0] if at_last and at_last[1].last else None) if name == "mold_short"
                     else deciding.get(counted))
            if owner is None:
                problems.append(f"cycle {cycle}: {name} strobes, but no packet's header or end is there")
            else:
                got_events[owner][name] = got_events[owner].get(name, 0) + amount
        if entry is None:
            if valid:
                problems.append(f"cycle {cycle}: idle input, but blocks.valid")
            continue
        number, beat_in = entry
        out, sent = layout_fields(Beat, beat), layout_fields(Beat, beat_in.word)
        if not valid or {**out, "keep": 0} != {**sent, "keep": 0} or out["keep"] & ~sent["keep"]:
            problems.append(f"cycle {cycle}: packet {number} beat {beat_in.index}: blocks {valid} {out} "
                            f"for payload beat {sent}")
        kept_bytes(out["data"], out["keep"], beat_in.index * 8 - 42, blocks[number])
    assert not problems, problems[:5]

    kinds = set()
    for number, (frame, payload, bad, resync) in enumerate(packets):
        decision, expected_events, complete = decisions[number]
        kinds.add(decision.counter or ("gap" if decision.gap else "skip" if decision.skip else "in order"))
        if decision.framed and complete < decision.count:
            kinds.add("fewer blocks than count")
        where = f"packet {number} ({len(payload)} bytes, resync={resync}) {payload[:20].hex()}"
        if dict(got_events[number]) != expected_events:
            problems.append(f"{where}: events {dict(got_events[number])} != model {expected_events}")
        expected = {"deliver": int(decision.framed)}
        if decision.framed:
            expected.update(seq=decision.seq, count=decision.count, skip=decision.skip, gap=int(decision.gap))
        checks = [("after its last beat", max(last_cycle[number] + 1,
                                              header_cycle.get(number, 0) + DECISION_DELAY))]
        if number in header_cycle:
            checks.insert(0, ("after its header", header_cycle[number] + DECISION_DELAY))
        for when, cycle in checks:
            got = layout_fields(MoldPacket, samples[cycle][2])
            got = {name: got[name] for name in expected}
            if got != expected:
                problems.append(f"{where}: packet {when} (cycle {cycle}) {got} != model {expected}")
        want = {42 + 20 + i: byte for i, byte in enumerate(payload[20:])}
        got_blocks = {42 + position: byte for position, byte in blocks[number].items()}
        if got_blocks != want:
            problems.append(f"{where}: blocks keep frame bytes {sorted(got_blocks)[:2]}..{len(got_blocks)} "
                            f"!= payload bytes 20.. ({len(want)})")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:10])
    assert dict(totals) == {n: v for n, v in model.counters.items() if n in MOLD_COUNTERS and v}
    # the stimulus reached every decision
    assert kinds >= {"mold_short", "mold_end_of_session", "mold_session_mismatch", "gap", "skip", "in order",
                     "fewer blocks than count"}, kinds
    assert all(model.counters[n] for n in MOLD_COUNTERS), model.counters
