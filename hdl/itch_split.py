"""ITCH message framing: cuts MoldUDP64 message blocks out of frame-aligned beats."""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import BODY_BYTES, MESSAGE_LENGTHS, RawMessage
from .moldudp64_rx import BLOCKS_OFFSET, MoldPacket, PacketEnd
from .stream import BEAT_BYTES, lane, rx_stream
from .udp_rx import UDP_PAYLOAD_OFFSET

__all__ = ["ItchSplit", "ItchSplitEvents", "MIN_MESSAGE_LENGTH"]

#: The shortest ITCH message. Blocks are at least this plus the 2-byte length
#: long, so at most one block ends in any beat, and a block never ends in the
#: beat where its length field completes.
MIN_MESSAGE_LENGTH = min(MESSAGE_LENGTHS.values())
_LENGTH_BYTES = 2
_LANE_BITS = (BEAT_BYTES - 1).bit_length()
#: Block position of lane 0 of a payload's first beat (the beat holding frame byte 42).
_FIRST_POSITION = (UDP_PAYLOAD_OFFSET // BEAT_BYTES) * BEAT_BYTES - BLOCKS_OFFSET
#: Block positions (length field at 0 and 1, message byte k at k + 2) lane 0 of a beat can
#: be at: in the payload's beats after the first (which sets it) before the first block,
#: then from 0 (a block started at lane 8 - k of the beat before, after the one before it
#: ended) up to the last message byte kept (nothing depends on where past it).
_POSITIONS = [*range(_FIRST_POSITION + BEAT_BYTES, 0, BEAT_BYTES), *range(BODY_BYTES + _LENGTH_BYTES)]
#: Block positions k that `position >= k` is kept for: it holds for all before these, and
#: positions past the last message byte kept saturate in the last.
_REACHED = range(_POSITIONS[0] + 1, _POSITIONS[-1] + 2)
#: Lanes where the first byte of a length field completing in a beat can be: -1 stands for
#: lane 7 of the beat before (the field straddles two beats), its byte held in a register.
_FIELD_LANES = range(-1, BEAT_BYTES - 1)
#: Width of the count of beats to a block's end (bytes to it are fewer than 2**17).
_COUNTDOWN_WIDTH = 17 - _LANE_BITS
#: Message bytes of a block that can arrive in the beat where the block before it ends.
_EARLY_BYTES = BEAT_BYTES - _LENGTH_BYTES - 1
#: Width of the message lengths of the type table.
_TYPE_LENGTH_WIDTH = max(MESSAGE_LENGTHS.values()).bit_length()


class ItchSplitEvents(data.Struct):
    """One strobe per counter of this stage."""
    msgs: 1
    msg_duplicate: 1
    msg_beyond_count: 1
    msg_overrun: 1
    msg_bad_length: 1
    msg_unknown_type: 1
    mold_count_mismatch: 1
    packets_bad: 1


class _LengthField(data.Struct):
    """What a length field completing in a beat says about its block.

    The block ends ``eighths + spills`` beats after this one (``eighths``: the
    length's whole eighths; ``spills``: its remainder and the field's lane
    carry past the beat), at ``last_lane`` (one-hot). ``ends_next``: it ends
    in the next beat and its length can be framed; then ``end_lane`` is
    ``last_lane``, zero otherwise. ``ends_after_next``: it ends in the beat
    after the next and its length can be framed.
    """
    length: 16
    short: 1    # below MIN_MESSAGE_LENGTH: framing of the packet stops
    narrow: 1   # below 2**_TYPE_LENGTH_WIDTH
    eighths: 16 - _LANE_BITS
    spills: 1
    last_lane: BEAT_BYTES
    ends_next: 1
    end_lane: BEAT_BYTES
    ends_after_next: 1


def _any(bits):
    """The OR of an iterable of 1-bit values (0 when empty)."""
    return functools.reduce(operator.or_, bits, Const(0))


def _lookup(value, table, default):
    """``table.get(value, default)`` for a table of constants, as plain logic."""
    hits = [(value == key, result) for key, result in table.items()]
    return Mux(_any(hit for hit, _ in hits), _any(Mux(hit, result, 0) for hit, result in hits), default)


def _greater(value, bound):
    """``value > bound`` for a constant bound, as plain logic rather than a carry chain."""
    return _any(value[k] & (value[k + 1:] == bound >> (k + 1))
                for k in range(len(value)) if not bound >> k & 1)


def _between(value, low, high):
    """``low <= value <= high`` for small constants, as plain logic rather than a carry chain."""
    width = high.bit_length()
    return (value[width:] == 0) & _any(value[:width] == v for v in range(low, high + 1))


def _length_field(m, beat_data, length_high, first_lane):
    """The `_LengthField` of a length field whose first byte is at ``first_lane`` of this beat.

    From the beat's data alone (and ``length_high`` for ``first_lane`` -1), so
    that the candidates of every lane are worked out side by side, before the
    state says which one (if any) is a length field. No adder: the eighths
    are the length's own bits.
    """
    name = f"field_at_{first_lane}" if first_lane >= 0 else "field_straddling"
    high = length_high if first_lane < 0 else lane(beat_data, first_lane)
    length = Cat(lane(beat_data, first_lane + 1), high)
    # The block's last byte is `length + to_last` bytes after lane 0 of this beat.
    to_last = first_lane + _LENGTH_BYTES - 1
    remainder = length[:_LANE_BITS]

    def ends_at(beat_after, last_lane):
        """The length can be framed and puts the last byte at ``last_lane`` of beat ``beat_after``."""
        offset = beat_after * BEAT_BYTES + last_lane - to_last
        return _between(length, max(MIN_MESSAGE_LENGTH, offset), offset)

    field = Signal(_LengthField, name=name)
    m.d.comb += [
        field.length.eq(length),
        field.short.eq(_between(length, 0, MIN_MESSAGE_LENGTH - 1)),
        field.narrow.eq(length[_TYPE_LENGTH_WIDTH:] == 0),
        field.eighths.eq(length[_LANE_BITS:]),
        field.spills.eq(_between(remainder, BEAT_BYTES - to_last, BEAT_BYTES - 1)),
        field.last_lane.eq(Cat(*[remainder == (last - to_last) % BEAT_BYTES for last in range(BEAT_BYTES)])),
        field.ends_next.eq(_between(length, MIN_MESSAGE_LENGTH, 2 * BEAT_BYTES - 1 - to_last)),
        field.end_lane.eq(Cat(*[ends_at(1, last) for last in range(BEAT_BYTES)])),
        field.ends_after_next.eq(_between(length, max(MIN_MESSAGE_LENGTH, 2 * BEAT_BYTES - to_last),
                                          3 * BEAT_BYTES - 1 - to_last)),
    ]
    return field


class ItchSplit(wiring.Component):
    """Frames the message blocks of a MoldUDP64 packet, one message per cycle.

    Blocks start at any byte lane and straddle beats. Each block's bytes are
    gathered into the message register as they arrive; in the beat holding a
    block's last byte, that beat's bytes complete it, so the message leaves
    one cycle after its last byte arrived, whatever lane it ends in. The next
    block may start in the same beat. Which blocks are delivered, and what is
    counted, follows docs/receive-path.md ("ITCH framing").

    Interface attributes
    --------------------
    blocks : In(beat stream)
        Frame-aligned beats from ``MoldUdp64Rx``, ``keep`` on block bytes only.
    packet : In(MoldPacket)
        The MoldUDP64 decision for the current packet.
    messages : Out(stream of RawMessage)
        Delivered messages.
    packet_end : Out(stream of PacketEnd)
        One per packet that reached ``MoldUdp64Rx``, two cycles after its last beat.
    events : Out(ItchSplitEvents)
    """

    def __init__(self):
        super().__init__({
            "blocks": In(rx_stream()),
            "packet": In(MoldPacket),
            "messages": Out(rx_stream(RawMessage)),
            "packet_end": Out(rx_stream(PacketEnd)),
            "events": Out(ItchSplitEvents),
        })

    def elaborate(self, platform):
        # Timing: the state is kept one-hot (or as thermometers) and worked out a beat ahead,
        # so that in each beat it only selects among values worked out from the beat's data
        # alone: what a length field at each lane would say (`_length_field`), what the type
        # table says of each lane, which byte lane holds which message byte. `valid` and
        # `first` only enable and reset registers. This relies on the kept lanes being the
        # block bytes only, a contiguous run from frame byte 62 to the payload's end: a
        # packet's first beat has none, and after a lane that is not kept, none is until the
        # next packet, so that the state only has to be right again from its first beat.
        m = Module()
        beat = self.blocks.p
        valid = self.blocks.valid
        packet = self.packet
        events = self.events

        # The block position of lane 0 of this beat, in the block in progress: one-hot (all
        # zero outside _POSITIONS), as a thermometer over _REACHED, and modulo 8 (one-hot).
        at = Signal(len(_POSITIONS), init=1 << _POSITIONS.index(0))
        reached = Signal(len(_REACHED), init=(1 << _REACHED.index(1)) - 1)
        phase = Signal(BEAT_BYTES, init=1)

        def at_position(position):
            return at[_POSITIONS.index(position)] if position in _POSITIONS else Const(0)

        def reached_position(position):
            """Lane 0 of this beat is at or past ``position`` in the block in progress."""
            return reached[_REACHED.index(position)] if position in _REACHED else Const(1)

        # Once the block's length field is read: `countdown` starts at the length's eighths in
        # the next beat and drops by one a beat, the block ending in the beat where it is
        # 1 - `spills`, at `last_lane` (one-hot). If the length can be framed: in the beat
        # before, `ends_next`; in that beat, `ends_here` and that lane in `end_lane` (zero in
        # other beats); the block ends there unless the packet does first. (A length too short
        # to frame is known too: its countdown never reaches the end.)
        length_known = Signal()
        countdown = Signal(_COUNTDOWN_WIDTH)
        spills = Signal()
        last_lane = Signal(BEAT_BYTES)
        ends_next = Signal()
        ends_here = Signal()
        end_lane = Signal(BEAT_BYTES)
        message_length = Signal(16)
        length_narrow = Signal()  # message_length below 2**_TYPE_LENGTH_WIDTH
        # The type table's length for the message type of the block in progress (zero for a
        # type not in the table).
        type_length = Signal(_TYPE_LENGTH_WIDTH)
        length_high = Signal(8)  # lane 7 of the last beat: a straddling length field's first byte
        index = Signal(16)       # blocks completed in this packet
        abandoned = Signal()     # a length field too short to frame came before the last valid beat

        ends = Signal()  # a block ends in this beat (if it is valid)
        m.d.comb += ends.eq((end_lane & beat.keep).any())

        # A length field completes in this beat with its first byte at lane s: the block in
        # progress has its byte 0 there, or a block ends just before it (both can not hold at
        # once: a block's length field is read before it can end). Whether the field's second
        # byte is kept only matters to where framing stops.
        fields = [_length_field(m, beat.data, length_high, s) for s in _FIELD_LANES]
        field_here = Signal(len(_FIELD_LANES))
        m.d.comb += field_here.eq(Cat(*[
            at_position(-s) | (end_lane[s - 1] if s >= 1 else 0) for s in _FIELD_LANES]))
        # Whether one does (if the beat is valid and the field's second byte kept):
        # `field_here.any()`, registered from the next values of `at` and `end_lane`.
        length_done = Signal(init=1)
        field = Signal(_LengthField)  # the one completing, all zero if none
        m.d.comb += field.eq(_any(Mux(here, Value.cast(candidate), 0)
                                  for here, candidate in zip(field_here, fields)))
        # Where a length field completes (kept) in a beat, and whether each would be too short,
        # are registered: whether framing stopped is only needed at the packet's end.
        fields_kept = Signal(len(_FIELD_LANES))
        fields_short = Signal(len(_FIELD_LANES))
        with m.If(valid):
            m.d.sync += [
                fields_kept.eq(field_here & Cat(*[beat.keep[s + 1] for s in _FIELD_LANES])),
                fields_short.eq(Cat(*[candidate.short for candidate in fields])),
            ]
        too_short = Signal()  # the last valid beat completed a length field too short to frame
        m.d.comb += too_short.eq((fields_kept & fields_short).any())

        with m.If(valid):
            with m.If(length_done):
                m.d.sync += [
                    message_length.eq(field.length),
                    length_narrow.eq(field.narrow),
                    spills.eq(field.spills),
                    last_lane.eq(field.last_lane),
                ]
            m.d.sync += [
                countdown.eq(Mux(length_done, field.eighths, countdown - 1)),
                length_high.eq(lane(beat.data, BEAT_BYTES - 1)),
            ]
            # The message type (byte 0) is in lane 2 - position, or 3 lanes after the end lane.
            # What the type table says of each lane is looked up side by side, then chosen.
            type_lane = Cat(*[at_position(_LENGTH_BYTES - j)
                              | (end_lane[j - _LENGTH_BYTES - 1] if j > _LENGTH_BYTES else 0)
                              for j in range(BEAT_BYTES)])
            table = {ord(type_): length for type_, length in MESSAGE_LENGTHS.items()}
            with m.If(type_lane.any()):
                m.d.sync += type_length.eq(
                    _any(Mux(type_lane[j], _lookup(lane(beat.data, j), table, 0), 0) for j in range(BEAT_BYTES)))

        # A packet's first beat starts afresh, lane 0 of the next beat at the block position of
        # the payload's second beat. (Kept apart, so that it can reset the registers directly.)
        with m.If(valid & beat.first):
            m.d.sync += [
                at.eq(1 << _POSITIONS.index(_POSITIONS[0])),
                reached.eq(0),
                phase.eq(1 << (_POSITIONS[0] % BEAT_BYTES)),
                length_known.eq(0),
                ends_next.eq(0),
                ends_here.eq(0),
                end_lane.eq(0),
                index.eq(0),
                abandoned.eq(0),
                length_done.eq(0),
            ]
        with m.Elif(valid):
            # Lane 0 of the next beat: 8 bytes on, or in the block starting after one that ends here.
            def at_next(position):
                if position not in _POSITIONS:
                    return Const(0)
                new_block = end_lane[BEAT_BYTES - 1 - position] if 0 <= position < BEAT_BYTES else 0
                return (at_position(position - BEAT_BYTES) & ~ends_here) | new_block
            m.d.sync += at.eq(Cat(*[at_next(position) for position in _POSITIONS]))
            for position in _REACHED:
                new_block = _any(end_lane[:BEAT_BYTES - position]) if position < BEAT_BYTES else 0
                m.d.sync += reached[_REACHED.index(position)].eq(
                    Mux(ends_here, new_block, reached_position(position - BEAT_BYTES)))
            m.d.sync += phase.eq(Mux(ends_here, end_lane[::-1], phase))
            # `field` is all zero when no length field completes here, and when one does, the
            # block in progress is one whose length is not known yet (or it ends here): what
            # each says about the next beat is OR-ed.
            end_lane_next = field.end_lane | Mux(ends_next, last_lane, 0)
            m.d.sync += [
                length_known.eq(length_done | (length_known & ~ends)),
                ends_next.eq(field.ends_after_next | (length_known & Mux(spills, countdown == 2, countdown == 3))),
                ends_here.eq(field.ends_next | ends_next),
                end_lane.eq(end_lane_next),
                length_done.eq(_any(at_next(-s) | (end_lane_next[s - 1] if s >= 1 else 0) for s in _FIELD_LANES)),
            ]
            with m.If(ends):
                m.d.sync += index.eq(index + 1)
            with m.If(too_short):
                m.d.sync += abandoned.eq(1)

        # The message register (reset-less: it is only read with `valid`). The bytes of the
        # block in progress are laid into its body as they arrive, from the beat turned by the
        # block's position (those laid by position past a block's end, or from lanes not kept,
        # are overwritten by the next block's own before it ends); in the beat where a block
        # ends, the bytes past its type's length are cleared (it is only delivered with that
        # length). The bytes of the next block that arrive in that beat wait in `early` for
        # the next beat.
        message = Signal.like(self.messages.p, reset_less=True)
        m.d.comb += self.messages.p.eq(message)

        def body(i):
            """Message byte i in the register (byte 0 in the most significant bits)."""
            return message.body[8 * (BODY_BYTES - 1 - i):8 * (BODY_BYTES - i)]

        early = Signal(data.ArrayLayout(8, _EARLY_BYTES), reset_less=True)
        early_held = Signal(_EARLY_BYTES)
        rotated = Signal(data.ArrayLayout(8, BEAT_BYTES))  # message byte i, if here, in [(i + 2) % 8]
        m.d.comb += [rotated[k].eq(_any(Mux(phase[(k - j) % BEAT_BYTES], lane(beat.data, j), 0)
                                        for j in range(BEAT_BYTES)))
                     for k in range(BEAT_BYTES)]
        with m.If(valid):
            for i in range(BODY_BYTES):
                position = i + _LENGTH_BYTES
                in_beat = reached_position(position - BEAT_BYTES + 1) & ~reached_position(position + 1)
                byte = Mux(in_beat, rotated[position % BEAT_BYTES], body(i))
                if i < _EARLY_BYTES:
                    byte = Mux(early_held[i], early[i], byte)
                in_message = _greater(type_length, i) | ~ends_here
                m.d.sync += body(i).eq(byte & in_message.replicate(8))
            for i in range(_EARLY_BYTES):
                lanes = [(end, end + _LENGTH_BYTES + 1 + i) for end in range(BEAT_BYTES - _LENGTH_BYTES - 1 - i)]
                m.d.sync += [
                    early_held[i].eq(_any(end_lane[end] for end, _ in lanes)),
                    early[i].eq(_any(Mux(end_lane[end], lane(beat.data, j), 0) for end, j in lanes)),
                ]

        # A block ends: deliver it or count why not.
        right_length = Signal()
        m.d.comb += right_length.eq(length_narrow & (message_length[:_TYPE_LENGTH_WIDTH] == type_length))
        m.d.sync += self.messages.valid.eq(0)
        with m.If(valid & ends & packet.deliver):
            with m.If(index >= packet.count):
                m.d.comb += events.msg_beyond_count.eq(1)
            with m.Elif(index < packet.skip):
                m.d.comb += events.msg_duplicate.eq(1)
            with m.Elif(type_length == 0):
                m.d.comb += events.msg_unknown_type.eq(1)
            with m.Elif(~right_length):
                m.d.comb += events.msg_bad_length.eq(1)
            with m.Else():
                m.d.comb += events.msgs.eq(1)
                m.d.sync += self.messages.valid.eq(1)
        m.d.sync += [message.seq.eq(packet.seq + index), message.gap.eq(packet.gap), message.length.eq(message_length)]

        # The end of a packet, settled two cycles later (the header's decision
        # may still be on its way when a short packet ends).
        # A block not yet complete has bytes in this packet, after this beat: its last kept
        # lane is in the block in progress after any end in it. Beats without kept bytes (a
        # trailer after the datagram) leave it as it was.
        ends_from = [_any(end_lane[j:] & beat.keep[j:]) for j in range(BEAT_BYTES)]
        inside = Signal()
        inside_now = Signal()
        m.d.comb += inside_now.eq(Mux(beat.keep.any(),
                                      _any(beat.keep[j] & reached_position(-j) & ~ends_from[j]
                                           for j in range(BEAT_BYTES)),
                                      inside & ~beat.first))
        with m.If(valid):
            m.d.sync += inside.eq(inside_now)
        end_pending = Signal()
        end_partial = Signal()  # ended inside a block (its length field included)
        end_err = Signal()
        end_abandoned = Signal()
        ended = Signal()  # one cycle after the last beat; the decision of a short packet comes a cycle later
        m.d.sync += [ended.eq(valid & beat.last), end_pending.eq(ended)]
        with m.If(valid & beat.last):
            m.d.sync += [end_partial.eq(inside_now), end_err.eq(beat.err)]
        with m.If(ended):
            m.d.sync += end_abandoned.eq(abandoned | too_short)
        framed = packet.deliver & ~end_abandoned
        miscounted = end_partial | (index != packet.count)
        bad = end_err | (packet.deliver & (end_abandoned | miscounted))
        with m.If(end_pending):
            m.d.comb += [
                events.msg_overrun.eq(framed & end_partial),
                events.mold_count_mismatch.eq(framed & miscounted),
                events.msg_bad_length.eq(packet.deliver & end_abandoned),
                events.packets_bad.eq(bad),
                self.packet_end.valid.eq(1),
                self.packet_end.p.bad.eq(bad),
                self.packet_end.p.blocks.eq(index),
            ]
        return m
