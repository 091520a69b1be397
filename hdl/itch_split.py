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
        One per packet that reached ``MoldUdp64Rx``, the cycle after its last beat.
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
        # lane 0 of the next beat, for the block in progress.
        position = Signal(signed(18))
        message_length = Signal(16)
        length_high = Signal(8)  # a length field's first byte, when it ends a beat
        index = Signal(16)       # blocks completed in this packet
        abandoned = Signal()     # a length field too short to frame was met
        buffer = Signal(data.ArrayLayout(8, BODY_BYTES))

        current = Signal.like(position)
        m.d.comb += current.eq(Mux(beat.first, _FIRST_POSITION, position))
        block_length = message_length + _LENGTH_BYTES

        # The block in progress ends in this beat?
        end_lane = Signal(signed(19))
        m.d.comb += end_lane.eq(block_length - 1 - current)
        ends = Signal()
        m.d.comb += ends.eq((current >= _LENGTH_BYTES) & ~abandoned
                            & Cat(*[beat.keep[j] & (end_lane == j) for j in range(BEAT_BYTES)]).any())
        # Position of lane 0 for the block whose length field may be in this beat.
        offset = Signal.like(position)
        m.d.comb += offset.eq(Mux(ends, current - block_length, current))

        def gather(base, at):
            """Message bytes with this beat's bytes at block offset `at` laid over `base`."""
            is_at = {k: at == k for k in range(_LENGTH_BYTES - (BEAT_BYTES - 1), BODY_BYTES + _LENGTH_BYTES)}
            gathered = []
            for i in range(BODY_BYTES):
                byte = base[i]
                for j in range(BEAT_BYTES):
                    byte = Mux(is_at[i + _LENGTH_BYTES - j] & beat.keep[j], lane(beat.data, j), byte)
                gathered.append(byte)
            return gathered

        # The length field of the block at `offset`: its second byte is in lane j when offset == 1 - j.
        # (Written as expressions rather than a process: Icarus 11 loops forever on the process form.)
        second_byte_lane = [offset == 1 - j for j in range(BEAT_BYTES)]
        length_done = Signal()
        new_length = Signal(16)
        m.d.comb += [
            length_done.eq(Cat(*[at & beat.keep[j] for j, at in enumerate(second_byte_lane)]).any()),
            new_length.eq(functools.reduce(operator.or_, [
                Mux(at, Cat(lane(beat.data, j), length_high if j == 0 else lane(beat.data, j - 1)), 0)
                for j, at in enumerate(second_byte_lane)])),
        ]

        # What the message type says about the block that ends.
        message_type = buffer[0]
        known_type = Signal()
        right_length = Signal()
        with m.Switch(message_type):
            for type_, length in MESSAGE_LENGTHS.items():
                with m.Case(ord(type_)):
                    m.d.comb += [known_type.eq(1), right_length.eq(message_length == length)]

        with m.If(self.blocks.valid):
            m.d.sync += position.eq(offset + BEAT_BYTES)
            m.d.sync += [buffer[i].eq(byte) for i, byte in enumerate(gather(buffer, offset))]
            with m.If(length_done):
                m.d.sync += message_length.eq(new_length)
                with m.If(new_length < MIN_MESSAGE_LENGTH):
                    m.d.sync += abandoned.eq(1)
            with m.If((offset == 1 - BEAT_BYTES) & beat.keep[BEAT_BYTES - 1]):
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
        body = gather(buffer, current)
        m.d.sync += [
            message.seq.eq(packet.seq + index),
            message.gap.eq(packet.gap),
            message.length.eq(message_length),
            message.body.eq(Cat(*(Mux(i < message_length, byte, 0)
                                  for i, byte in reversed(list(enumerate(body)))))),
        ]

        # The end of a packet, settled in the next cycle (the header's decision
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
        m.d.sync += end_pending.eq(self.blocks.valid & beat.last)
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
