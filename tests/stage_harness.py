"""Shared helpers of the per-stage gateware tests: frame-aligned beats, idle cycles, a cycle loop.

A stage test builds, per frame, the beats a stage sees (``aligned_beats``),
lays them out over cycles with random idle cycles inside and between frames
(``Schedule``), runs the stage in the Amaranth simulator setting its inputs
and reading its outputs once per cycle (``run_cycles``), and compares what
came out with the golden model's stage, frame by frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator

from tick2trade.hdl.stream import BEAT_BYTES, Beat
from tick2trade.host import feed
from tick2trade.host.codec.moldudp64 import MoldPacket, encode_packet
from tick2trade.host.codec.net import udp_frame
from tick2trade.host.rx_model import MOLD_HEADER

__all__ = ["BeatIn", "aligned_beats", "Schedule", "run_cycles", "layout_fields", "pack_fields", "pack_beat",
           "kept_bytes", "Counters", "frame_for", "mold_header", "Stream", "mold_stream", "udp_output_beats",
           "UDP_LEAD_BEATS"]

_BEAT = data.Layout.cast(Beat)


def layout_fields(layout, value: int) -> dict[str, int]:
    """The top-level fields of an integer ``value`` of ``layout``, by name."""
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in data.Layout.cast(layout)}


def pack_fields(layout, **fields) -> int:
    """An integer value of ``layout`` with the given fields (the others 0)."""
    layout = data.Layout.cast(layout)
    return sum(value << layout[name].offset for name, value in fields.items())


def pack_beat(data_: int, keep: int, first: bool, last: bool, err: bool) -> int:
    """A Beat as one integer (for ``ctx.set`` on the whole struct)."""
    fields = {"data": data_, "keep": keep, "first": int(first), "last": int(last), "err": int(err)}
    return sum(value << _BEAT[name].offset for name, value in fields.items())


@dataclass(frozen=True)
class BeatIn:
    """One input beat: frame beat number ``index`` and its packed ``Beat`` value."""
    index: int
    word: int
    keep: int
    first: bool
    last: bool


def aligned_beats(frame: bytes, *, start: int = 0, end: int | None = None, keep_from: int = 0,
                  keep_to: int | None = None, err: bool = False, rng: random.Random | None = None
                  ) -> list[BeatIn]:
    """The beats of frame bytes ``start .. end`` (``start`` a multiple of 8), frame-aligned.

    Frame byte ``8n + k`` is in beat ``n`` lane ``k``. ``keep`` is set on the
    bytes ``keep_from .. keep_to`` only; lanes outside the frame, or not kept,
    carry random bytes when ``rng`` is given (a stage must ignore them), else
    the frame's bytes (zero past its end). The first beat has ``first``, the
    last ``last`` and ``err``. At least one beat is made, even for no bytes.
    """
    end = len(frame) if end is None else end
    keep_to = end if keep_to is None else keep_to
    assert start % BEAT_BYTES == 0
    count = max(1, -(-(end - start) // BEAT_BYTES))
    beats = []
    for n in range(count):
        base = start + n * BEAT_BYTES
        lanes = []
        keep = 0
        for k in range(BEAT_BYTES):
            position = base + k
            kept = keep_from <= position < keep_to
            if kept:
                keep |= 1 << k
            if kept or (rng is None and position < len(frame)):
                lanes.append(frame[position])
            elif rng is not None:
                lanes.append(rng.randrange(256))
            else:
                lanes.append(0)
        word = int.from_bytes(bytes(lanes), "little")
        first, last = n == 0, n == count - 1
        beats.append(BeatIn(base // BEAT_BYTES, pack_beat(word, keep, first, last, err and last),
                            keep, first, last))
    return beats


@dataclass
class Schedule:
    """Per-cycle stimulus: ``cycles[c]`` is (frame number, BeatIn) or None (idle); ``extra[c]``
    holds other inputs to set in that cycle (name -> value), e.g. a strobe."""
    rng: random.Random
    idle_probability: float = 0.2
    cycles: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    frames: int = 0
    frame_cycles: list = field(default_factory=list)  # per frame, the cycles of its beats

    def idle(self, count: int = 1) -> None:
        self.cycles.extend([None] * count)

    def add_frame(self, beats: list[BeatIn], *, back_to_back: bool = False, lead: int = 0) -> int:
        """Append a frame's beats with random idle cycles before and inside it; its number.

        ``lead`` beats of the frame that the stage does not see come first, as
        idle cycles: UdpRx passes nothing of a frame's beats 0..4 on, so a
        packet's first beat after it follows the previous packet's last beat
        by at least 5 cycles (when the frames were back to back at the MAC).
        ``back_to_back``: no idle cycle before the frame's first beat.
        """
        number = self.frames
        self.frames += 1
        self.frame_cycles.append([])
        for i, beat in enumerate([None] * lead + beats):
            if not (back_to_back and i == 0):
                while self.rng.random() < self.idle_probability:
                    self.cycles.append(None)
            if beat is None:
                self.cycles.append(None)
                continue
            self.frame_cycles[number].append(len(self.cycles))
            self.cycles.append((number, beat))
        return number

    def set_at(self, cycle: int, **values) -> None:
        self.extra.setdefault(cycle, {}).update(values)


def run_cycles(dut, valid, payload, schedule: Schedule, outputs, *, extra_inputs=None, drain: int = 4):
    """Run ``dut`` over ``schedule``; per cycle, the settled integer values of ``outputs``.

    In cycle ``c`` the testbench sets ``valid`` and ``payload`` (the stream
    beat, one integer) and the ``extra_inputs`` named in ``schedule.extra[c]``
    (held until set again), then reads ``outputs`` (combinational ones show
    this cycle's inputs; registered ones what the last clock edge stored),
    then ticks. ``drain`` idle cycles follow the schedule.
    """
    extra_inputs = extra_inputs or {}
    outputs = [Value.cast(o) for o in outputs]
    payload = Value.cast(payload)
    samples = []

    async def bench(ctx):
        current_valid = None
        for cycle, entry in enumerate(schedule.cycles + [None] * drain):
            want_valid = entry is not None
            if want_valid != current_valid:
                ctx.set(valid, want_valid)
                current_valid = want_valid
            if entry is not None:
                ctx.set(payload, entry[1].word)
            for name, value in schedule.extra.get(cycle, {}).items():
                ctx.set(extra_inputs[name], value)
            samples.append(tuple(ctx.get(o) for o in outputs))
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return samples


def kept_bytes(word: int, keep: int, base: int, into: dict[int, int]) -> None:
    """Put the kept lanes of a beat ``word`` (data in bits 0..63) at ``base + lane`` in ``into``."""
    for k in range(BEAT_BYTES):
        if keep >> k & 1:
            position = base + k
            assert position not in into, f"byte {position} delivered twice"
            into[position] = word >> (8 * k) & 0xFF


class Counters(dict):
    """Counter name -> sum of event strobes (or amounts) seen."""

    def add_events(self, layout, value: int) -> dict[str, int]:
        fired = {name: amount for name, amount in layout_fields(layout, value).items() if amount}
        for name, amount in fired.items():
            self[name] = self.get(name, 0) + amount
        return fired


# --- MoldUDP64 streams shared by the MoldUdp64Rx and ItchSplit tests ------------------------


def frame_for(config, payload: bytes, *, padding: bytes = b"") -> bytes:
    """A well-formed feed frame of ``config``'s addresses carrying ``payload``."""
    return udp_frame(payload, src_mac=config.src_mac, dst_mac=config.dst_mac, src_ip=config.src_ip,
                     dst_ip=config.dst_ip, src_port=config.src_port, dst_port=config.dst_port,
                     udp_checksum=False) + padding


def mold_header(payload: bytes) -> tuple[bytes, int, int] | None:
    return MOLD_HEADER.unpack_from(payload) if len(payload) >= MOLD_HEADER.size else None


@dataclass
class Stream:
    """Frames in the order they go to the receive path, and where a resync strobe comes."""
    frames: list = field(default_factory=list)    # (frame bytes, MAC err)
    resync_before: set = field(default_factory=set)


def mold_stream(seed: int, messages: int, *, faults: float = 0.03, corrupt: float = 0.15,
                kinds=None, **config_changes) -> Stream:
    """A MoldUDP64 feed over two sessions with every sequence-tracking situation.

    Session A (``messages`` order-flow messages) with gaps, duplicates,
    reordering and corrupt frames at the given rates, heartbeats, packets that
    overlap the previous one (partly duplicate), an end of session of another
    session and a packet of another session in the middle, resync strobes, a
    short payload and an end of session before any sync; then A's end of
    session, and session B (a fifth of the messages, sequence numbers from
    2**40) with the same faults and its own end of session. Random frames
    carry a MAC ``err`` or Ethernet padding.
    """
    rng = random.Random(f"mold_stream/{seed}")
    base = dict(seed=seed, messages=messages, mean_gap_ns=20_000, heartbeat_interval_ns=30_000,
                gap_probability=faults, duplicate_probability=faults, reorder_probability=faults,
                corrupt_probability=corrupt, corrupt_kinds=kinds)
    base.update(config_changes)
    config_a = feed.FeedConfig(**base)
    config_b = feed.FeedConfig(**{**base, "seed": seed + 1, "messages": max(20, messages // 5),
                                  "session": "SESSION2", "first_sequence": 1 << 40})
    stream = Stream()
    other = b"OTHERSESSN"
    # before any sync: a short payload, an end of session
    stream.frames.append((frame_for(config_a, b"TICK2"), False))
    stream.frames.append((frame_for(config_a, other + (7).to_bytes(8, "big") + b"\xff\xff"), False))

    for config in (config_a, config_b):
        frames = [(r.data, False) for r in feed.generate_feed(config)]
        packets = [p for _, p in feed.generate_packets(config) if p.messages]
        # packets overlapping the one before them: some of their messages are duplicates
        for _ in range(max(2, len(packets) // 40)):
            k = rng.randrange(len(packets) - 1)
            merged = MoldPacket(config.session, packets[k].sequence, packets[k].messages + packets[k + 1].messages)
            at = next((i for i, (f, _) in enumerate(frames)
                       if mold_header(f[42:]) and mold_header(f[42:])[1] == packets[k + 1].sequence), None)
            if at is not None:
                frames.insert(at, (frame_for(config, encode_packet(merged)), False))
        # another session's end of session and data packet in the middle
        middle = len(frames) // 2
        frames.insert(middle, (frame_for(config, other + (1).to_bytes(8, "big") + b"\xff\xff"), False))
        frames.insert(middle + 3, (frame_for(config, encode_packet(MoldPacket("OTHERSESSN", 5, packets[0].messages))),
                                   False))
        first = len(stream.frames)
        stream.frames.extend(frames)
        for _ in range(2):
            stream.resync_before.add(rng.randrange(first + 1, len(stream.frames)))
    # MAC err and Ethernet padding on random frames
    for i, (frame, _) in enumerate(stream.frames):
        if rng.random() < 0.05:
            frame = frame + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        stream.frames[i] = (frame, rng.random() < 0.04)
    return stream


#: Frame beats before the first beat of a UDP payload (UdpRx passes on none of them).
UDP_LEAD_BEATS = 5


def udp_output_beats(frame: bytes, payload: bytes, bad: bool, rng: random.Random, *, keep_from: int = 42
                     ) -> list[BeatIn]:
    """The beats UdpRx passes on for an accepted ``frame``: frame beats 5 .. last, frame-aligned,
    ``keep`` on the payload bytes from frame offset ``keep_from`` (42; 62 for the message blocks),
    random bytes in lanes not kept, ``err`` = ``bad`` on the last beat."""
    return aligned_beats(frame, start=40, end=max(len(frame), 41), keep_from=keep_from,
                         keep_to=42 + len(payload), err=bad, rng=rng)
