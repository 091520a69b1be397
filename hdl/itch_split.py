"""ITCH message framing: cuts MoldUDP64 message blocks out of frame-aligned beats."""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal, signed
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
#: Block position of lane 0 of a payload's first beat (the beat holding frame byte 42).
_FIRST_POSITION = (UDP_PAYLOAD_OFFSET // BEAT_BYTES) * BEAT_BYTES - BLOCKS_OFFSET


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


class ItchSplit(wiring.Component):
    """Frames the message blocks of a MoldUDP64 packet, one message per cycle.

    Blocks start at any byte lane and straddle beats. Each block's bytes are
    gathered into a message buffer as they arrive; in the beat holding a
    block's last byte, the buffer and that beat's bytes are registered as the
    message, so the message leaves one cycle after its last byte arrived,
    whatever lane it ends in. The next block may start in the same beat.
    Which blocks are delivered, and what is counted, follows
    docs/receive-path.md ("ITCH framing").

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
        m = Module()
        beat = self.blocks.p
        packet = self.packet
        events = self.events

        # Block position (length field at 0 and 1, message byte k at k + 2) of
        # lane 0 of the next beat. Only positions up to the end of the message
        # buffer matter, so it saturates past them.
        position = Signal(signed(8))
        # Once the length field is read: bytes from lane 0 of the next beat to the
        # block's end, and, registered ahead, the lane the block ends in if it
        # ends in the next beat (one-hot; zero otherwise).
        length_known = Signal()
        to_end = Signal(17)
        end_lane = Signal(BEAT_BYTES)
        message_length = Signal(16)
        message_mask = Signal(BODY_BYTES)  # bytes of the buffer inside the message
        length_high = Signal(8)  # a length field's first byte, when it ends a beat
        index = Signal(16)       # blocks completed in this packet
        abandoned = Signal()     # a length field too short to frame was met
        buffer = Signal(data.ArrayLayout(8, BODY_BYTES))

        ends = Signal()
        m.d.comb += ends.eq(length_known & ~beat.first & ~abandoned & (end_lane & beat.keep).any())

        # Where the block at lane 0 of this beat starts (`at == k`: lane 0 holds its byte k),
        # for the block in progress, and for the one after it when a block ends here.
        positions = range(1 - BEAT_BYTES, BODY_BYTES + _LENGTH_BYTES)
        at_current = {k: position == k for k in positions}
        after_end = {k: end_lane[-k - 1] if -BEAT_BYTES <= k < 0 else 0 for k in positions}
        at_next = {k: Mux(ends, after_end[k], at_current[k]) for k in positions}

        def gather(base, at):
            """Message bytes with this beat's bytes laid over `base` as placed by the one-hot `at`."""
            gathered = []
            for i in range(BODY_BYTES):
                hits = [(at[i + _LENGTH_BYTES - j] & beat.keep[j], lane(beat.data, j)) for j in range(BEAT_BYTES)]
                taken = functools.reduce(operator.or_, [Mux(hit, byte, 0) for hit, byte in hits])
                gathered.append(Mux(Cat(*[hit for hit, _byte in hits]).any(), taken, base[i]))
            return gathered

        def length_field(at):
            """(complete in this beat, value) of the length field of the block placed by `at`.

            Its second byte is in lane j when that block's byte 1 - j is at lane 0. (Written
            as expressions rather than a process: Icarus 11 loops forever on the process form.)
            """
            second_byte_lane = [at[1 - j] for j in range(BEAT_BYTES)]
            done = Cat(*[hit & beat.keep[j] for j, hit in enumerate(second_byte_lane)]).any()
            value = functools.reduce(operator.or_, [
                Mux(hit, Cat(lane(beat.data, j), length_high if j == 0 else lane(beat.data, j - 1)), 0)
                for j, hit in enumerate(second_byte_lane)])
            return done, value

        def lane0_ahead(known, to_end_next):
            """The one-hot end lane of the next beat, from that beat's bytes-to-end."""
            return Cat(*[known & (to_end_next == j + 1) for j in range(BEAT_BYTES)])

        # The state after this beat is worked out both ways, no block ending in it and a block
        # ending in it, side by side; `ends` (from this beat's keep) picks one at the end.
        stay_done, stay_length = length_field(at_current)
        stay_position = position + BEAT_BYTES
        stay_to_end = Signal(17)
        m.d.comb += stay_to_end.eq(Mux(stay_done, stay_length + _LENGTH_BYTES - stay_position,
                                       to_end - BEAT_BYTES))
        # A packet's first beat starts afresh: a block the previous packet left unfinished is forgotten.
        stay_known = stay_done | (length_known & ~beat.first)

        turn_done, turn_length = length_field(after_end)
        turn_position = BEAT_BYTES - to_end
        turn_to_end = Signal(17)
        m.d.comb += turn_to_end.eq(turn_length + _LENGTH_BYTES - turn_position)

        length_done = Mux(ends, turn_done, stay_done)
        new_length = Signal(16)
        m.d.comb += new_length.eq(Mux(ends, turn_length, stay_length))
        next_to_end = Mux(ends, turn_to_end, stay_to_end)
        next_known = Mux(ends, turn_done, stay_known)
        next_end_lane = Mux(ends, lane0_ahead(turn_done, turn_to_end), lane0_ahead(stay_known, stay_to_end))
        # Lane 0 of this beat, in the block in progress after any end in it.
        offset = Signal(signed(18))
        m.d.comb += offset.eq(Mux(ends, -to_end, position))

        # What the message type says about the block that ends.
        message_type = buffer[0]
        known_type = Signal()
        right_length = Signal()
        with m.Switch(message_type):
            for type_, length in MESSAGE_LENGTHS.items():
                with m.Case(ord(type_)):
                    m.d.comb += [known_type.eq(1), right_length.eq(message_length == length)]

        with m.If(self.blocks.valid):
            saturation = BODY_BYTES + _LENGTH_BYTES + BEAT_BYTES
            # A packet's first beat carries no block bytes (it is frame beat 5): the position
            # it sets up for the next beat needs no path from `first` to the lane logic.
            m.d.sync += [
                position.eq(Mux(beat.first, _FIRST_POSITION + BEAT_BYTES,
                                Mux(ends, turn_position,
                                    Mux(stay_position > saturation, saturation, stay_position)))),
                length_known.eq(next_known),
                to_end.eq(next_to_end),
                end_lane.eq(next_end_lane),
            ]
            m.d.sync += [buffer[i].eq(byte) for i, byte in enumerate(gather(buffer, at_next))]
            with m.If(length_done):
                m.d.sync += [
                    message_length.eq(new_length),
                    message_mask.eq(Cat(*[new_length > i for i in range(BODY_BYTES)])),
                ]
                with m.If(new_length < MIN_MESSAGE_LENGTH):
                    m.d.sync += abandoned.eq(1)
            with m.If(at_next[1 - BEAT_BYTES] & beat.keep[BEAT_BYTES - 1]):
                m.d.sync += length_high.eq(lane(beat.data, BEAT_BYTES - 1))
            with m.If(beat.first):
                m.d.sync += [index.eq(0), abandoned.eq(0)]
            with m.Elif(ends):
                m.d.sync += index.eq(index + 1)

        # A block ends: deliver it or count why not.
        message = self.messages.p
        m.d.sync += self.messages.valid.eq(0)
        with m.If(self.blocks.valid & ends & packet.deliver):
            with m.If(index >= packet.count):
                m.d.comb += events.msg_beyond_count.eq(1)
            with m.Elif(index < packet.skip):
                m.d.comb += events.msg_duplicate.eq(1)
            with m.Elif(~known_type):
                m.d.comb += events.msg_unknown_type.eq(1)
            with m.Elif(~right_length):
                m.d.comb += events.msg_bad_length.eq(1)
            with m.Else():
                m.d.comb += events.msgs.eq(1)
                m.d.sync += self.messages.valid.eq(1)
        body = gather(buffer, at_current)
        m.d.sync += [
            message.seq.eq(packet.seq + index),
            message.gap.eq(packet.gap),
            message.length.eq(message_length),
            message.body.eq(Cat(*(Mux(message_mask[i], byte, 0)
                                  for i, byte in reversed(list(enumerate(body)))))),
        ]

        # The end of a packet, settled two cycles later (the header's decision
        # may still be on its way when a short packet ends).
        last_kept_lane = Signal(signed(5), init=-1)
        for j in range(BEAT_BYTES):
            with m.If(beat.keep[j]):
                m.d.comb += last_kept_lane.eq(j)
        # A block not yet complete has bytes in this packet, after this beat. Beats without kept
        # bytes (a trailer after the datagram) leave it as it was.
        inside = Signal()
        inside_now = Signal()
        m.d.comb += inside_now.eq(Mux(beat.keep.any(), offset + last_kept_lane >= 0, inside & ~beat.first))
        with m.If(self.blocks.valid):
            m.d.sync += inside.eq(inside_now)
        end_pending = Signal()
        end_partial = Signal()  # ended inside a block (its length field included)
        end_err = Signal()
        end_abandoned = Signal()
        ended = Signal()  # one cycle after the last beat; the decision of a short packet comes a cycle later
        m.d.sync += [ended.eq(self.blocks.valid & beat.last), end_pending.eq(ended)]
        with m.If(self.blocks.valid & beat.last):
            m.d.sync += [
                end_partial.eq(inside_now),
                end_err.eq(beat.err),
                end_abandoned.eq((abandoned & ~beat.first)
                                 | (length_done & (new_length < MIN_MESSAGE_LENGTH))),
            ]
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
