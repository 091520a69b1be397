"""UdpRx alone in the Amaranth simulator against UdpRxModel, frame by frame, bit for bit.

Frames come from the feed generator (gaps, duplicates, reordering, the whole
corrupt-frame catalogue) plus frames made here: MAC ``err`` on random frames,
Ethernet padding/trailers after the IPv4 datagram, runts of every length,
empty UDP payloads, and header bytes mutated at random (with and without a
recomputed IPv4 checksum) so that every check and its order is exercised.
They go in as the MAC delivers them (frame byte 8n+k in beat n lane k, keep
contiguous from lane 0), with random idle cycles inside and between frames
and some frames back to back. Per frame the test rebuilds the UDP payload
from the output beats (by frame position, so alignment is checked too), the
``err`` flag of its last beat and the event strobes, and compares them with
``UdpRxModel.process`` and the model's counter deltas for that frame.
"""

import dataclasses
import ipaddress
import random

from amaranth.lib import data
from stage_harness import Counters, Schedule, aligned_beats, kept_bytes, layout_fields, run_cycles

from tick2trade.hdl.stream import Beat
from tick2trade.hdl.udp_rx import UdpRx, UdpRxEvents
from tick2trade.host import feed
from tick2trade.host.codec.net import internet_checksum, udp_frame
from tick2trade.host.rx_model import UdpRxModel

PAYLOAD_OFFSET = 42
UDP_COUNTERS = [name for name, _ in data.Layout.cast(UdpRxEvents)]
# Not the receive path's defaults, so that the configuration inputs are really used.
DST_IP = "239.1.2.3"
DST_PORT = 30001
#: Cycles from a beat at ``rx`` to the same beat at ``payload`` (and its frame's events).
LATENCY = 1


def fix_ip_checksum(frame: bytes) -> bytes:
    header = bytearray(frame[14:34])
    header[10:12] = b"\0\0"
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return frame[:14] + bytes(header) + frame[34:]


def make_frames(seed: int, messages: int):
    """(frame, err, back_to_back) for the test, in order."""
    rng = random.Random(f"udp_rx/{seed}")
    config = feed.FeedConfig(seed=seed, messages=messages, dst_ip=ipaddress.IPv4Address(DST_IP).packed,
                             dst_port=DST_PORT, mean_gap_ns=5_000, heartbeat_interval_ns=40_000,
                             gap_probability=0.03, duplicate_probability=0.03, reorder_probability=0.03,
                             corrupt_probability=0.2)
    good = [record.data for record in feed.generate_feed(config)]
    frames = []
    for frame in good:
        choice = rng.random()
        if choice < 0.08:  # Ethernet padding or a trailer after the datagram: ignored
            frame = frame + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
        elif choice < 0.2 and len(frame) >= PAYLOAD_OFFSET:  # a mutated header byte or two, checksum fixed or not
            mutated = bytearray(frame)
            for _ in range(rng.randrange(1, 3)):
                mutated[rng.randrange(12, PAYLOAD_OFFSET)] ^= 1 << rng.randrange(8)
            frame = fix_ip_checksum(bytes(mutated)) if rng.random() < 0.6 else bytes(mutated)
        frames.append(frame)
    # two frames of every kind of the corrupt-frame catalogue, whatever the random draw gave
    clean = feed.generate_feed(dataclasses.replace(config, corrupt_probability=0.0))
    carrying = [r.data for r in clean if len(r.data) > PAYLOAD_OFFSET + 20]
    for kind in feed.CorruptKind:
        for _ in range(2):
            frames.insert(rng.randrange(len(frames)), feed.corrupt(rng.choice(carrying), kind, rng))
    # every runt length, empty payloads (bare and padded to the Ethernet minimum), the other address
    for length in range(1, PAYLOAD_OFFSET):
        frames.insert(rng.randrange(len(frames)), good[rng.randrange(len(good))][:length])
    empty = udp_frame(b"", src_mac=bytes(6), dst_mac=bytes(6), src_ip=bytes(4),
                      dst_ip=ipaddress.IPv4Address(DST_IP).packed, src_port=1, dst_port=DST_PORT,
                      udp_checksum=False)
    for padding in (0, 18, 0, 18):
        frames.insert(rng.randrange(len(frames)), empty + bytes(padding))
    default_address = feed.generate_feed(feed.FeedConfig(seed=seed, messages=5))
    frames.insert(rng.randrange(len(frames)), default_address[3].data)
    return [(frame, rng.random() < 0.1, rng.random() < 0.3) for frame in frames]


def test_udp_rx_against_model():
    seed = 11
    frames = make_frames(seed, 1500)
    rng = random.Random(f"udp_rx/schedule/{seed}")
    schedule = Schedule(rng, idle_probability=0.15)
    for frame, err, back_to_back in frames:
        schedule.add_frame(aligned_beats(frame, err=err), back_to_back=back_to_back)

    dut = UdpRx()
    schedule.set_at(0, dst_ip=int(ipaddress.IPv4Address(DST_IP)), dst_port=DST_PORT)
    samples = run_cycles(dut, dut.rx.valid, dut.rx.p, schedule,
                         [dut.payload.valid, dut.payload.p, dut.events],
                         extra_inputs={"dst_ip": dut.dst_ip, "dst_port": dut.dst_port})

    # What the gateware did, per frame.
    got_beats = [[] for _ in frames]     # (cycle, frame beat index, Beat fields) of output beats
    got_events = [Counters() for _ in frames]
    totals = Counters()
    stray = []
    for cycle, (valid, beat, events) in enumerate(samples):
        # UdpRx registers every beat on its way out: what leaves comes from the previous cycle.
        at_input = cycle - LATENCY
        entry = schedule.cycles[at_input] if 0 <= at_input < len(schedule.cycles) else None
        fired = totals.add_events(UdpRxEvents, events)
        if entry is None:
            if valid or fired:
                stray.append(f"cycle {cycle}: idle input, but valid={valid} events={fired}")
            continue
        number, beat_in = entry
        for name, amount in fired.items():
            got_events[number][name] = got_events[number].get(name, 0) + amount
        if valid:
            got_beats[number].append((cycle, beat_in.index, layout_fields(Beat, beat)))
    assert not stray, stray[:5]

    # What the model says, per frame.
    model = UdpRxModel(DST_IP, DST_PORT)
    mismatches = []
    covered = set()
    for number, (frame, err, _) in enumerate(frames):
        before = dict(model.counters)
        expected = model.process(frame, err)
        expected_events = {n: model.counters[n] - before[n] for n in UDP_COUNTERS if model.counters[n] != before[n]}
        covered.add(expected.counter)
        beats = got_beats[number]
        where = f"frame {number} ({len(frame)} bytes, err={err}) {frame[:48].hex()}"
        if dict(got_events[number]) != expected_events:
            mismatches.append(f"{where}: events {dict(got_events[number])} != model {expected_events}")
        if expected.payload is None:
            if beats:
                mismatches.append(f"{where}: dropped by the model ({expected.counter}) but {len(beats)} "
                                  f"beats out from cycle {beats[0][0]}")
            continue
        last_index = (len(frame) - 1) // 8
        if [index for _, index, _ in beats] != list(range(5, last_index + 1)):
            mismatches.append(f"{where}: output beats {[i for _, i, _ in beats]}, expected frame beats "
                              f"5..{last_index}")
            continue
        flags = [(b["first"], b["last"]) for _, _, b in beats]
        if flags != [(i == 0, i == len(beats) - 1) for i in range(len(beats))]:
            mismatches.append(f"{where}: first/last flags {flags}")
        if beats[-1][2]["err"] != expected.bad:
            mismatches.append(f"{where}: err on last beat (cycle {beats[-1][0]}) {beats[-1][2]['err']}, "
                              f"model bad={expected.bad} ({expected.counter})")
        payload = {}
        for _, index, b in beats:
            kept_bytes(b["data"], b["keep"], index * 8 - PAYLOAD_OFFSET, payload)
        got = bytes(payload[i] for i in sorted(payload))
        if sorted(payload) != list(range(len(payload))) or got != expected.payload:
            mismatches.append(f"{where}: payload at {sorted(payload)[:3]}.. {got.hex()} != model "
                              f"{expected.payload.hex()}")
    assert not mismatches, f"{len(mismatches)} frames differ:\n" + "\n".join(mismatches[:10])
    assert dict(totals) == {n: v for n, v in model.counters.items() if n in UDP_COUNTERS and v}

    # The stimulus reached every check of the stage.
    assert covered >= set(UDP_COUNTERS) - {"frames", "frames_ok"} | {None}, set(UDP_COUNTERS) - covered
    assert model.counters["frames_ok"] > 300
