"""MoldUDP64 receive: session and sequence tracking of the downstream packets."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .stream import BEAT_BYTES, rx_stream, big_endian, lane
from .udp_rx import UDP_PAYLOAD_OFFSET

__all__ = ["MoldUdp64Rx", "MoldUdp64Events", "MoldPacket", "PacketEnd", "MOLD_HEADER_BYTES", "BLOCKS_OFFSET"]

#: MoldUDP64 header: session (10), sequence number (8), message count (2).
MOLD_HEADER_BYTES = 20
#: Frame offset of the first message block.
BLOCKS_OFFSET = UDP_PAYLOAD_OFFSET + MOLD_HEADER_BYTES
SESSION_BYTES = 10
END_OF_SESSION = 0xFFFF
_HEADER_BEAT = (BLOCKS_OFFSET - 1) // BEAT_BYTES  # frame beat holding the header's last byte
_FIRST_BEAT = UDP_PAYLOAD_OFFSET // BEAT_BYTES    # frame beat of the payload's first beat


class MoldPacket(data.Struct):
    """What the MoldUDP64 header of the current packet decided.

    Interface attributes
    --------------------
    deliver : 1 bit
        The packet is in sequence tracking (not short, not an end of session,
        not from another session): its blocks are to be framed.
    seq : 64 bits
        Sequence number of the packet's first message block.
    count : 16 bits
        Message count of the header.
    skip : 16 bits
        Number of leading blocks that are duplicates of messages already delivered.
    gap : 1 bit
        Messages were lost before this packet.
    """
    deliver: 1
    seq: 64
    count: 16
    skip: 16
    gap: 1


class PacketEnd(data.Struct):
    """The end of a packet that reached MoldUDP64 tracking.

    Interface attributes
    --------------------
    bad : 1 bit
        The frame was bad at its end, or its blocks did not frame as the
        header said. Messages of it may already have been delivered.
    blocks : 16 bits
        Complete blocks framed (meaningful for packets in sequence tracking).
    """
    bad: 1
    blocks: 16


class MoldUdp64Events(data.Struct):
    """One strobe per counter of this stage; ``mold_gap_messages`` is an amount to add."""
    mold_packets: 1
    mold_short: 1
    mold_heartbeat: 1
    mold_end_of_session: 1
    mold_session_mismatch: 1
    mold_gap: 1
    mold_gap_messages: 32
    mold_duplicate_packet: 1


class MoldUdp64Rx(wiring.Component):
    """MoldUDP64 session and sequence tracking, cut-through.

    Reads the header of each UDP payload as it goes by, and decides, from the
    header alone, which of the packet's messages are new (docs/receive-path.md,
    "MoldUDP64"). The payload continues to ``ItchSplit`` in the same cycle;
    the decision follows in ``packet``.

    Interface attributes
    --------------------
    payload : In(beat stream)
        UDP payloads from ``UdpRx``.
    blocks : Out(beat stream)
        The same beats, frame-aligned, ``keep`` narrowed to the message blocks.
    packet : Out(MoldPacket)
        The decision for the current packet, valid from the second cycle after
        the header's last byte (before any message block can be complete)
        until the next packet's header; ``deliver`` is clear from the next
        packet's first beat.
    packet_end : In(stream of PacketEnd)
        From ``ItchSplit``: a packet with fewer complete blocks than its count
        gives back the sequence numbers it claimed but lacked.
    resync : In(1)
        Forget the session: the next packet starts a new one.
    events : Out(MoldUdp64Events)
        Strobes, the cycle after the header's decision (``mold_short``: after the last beat).
    """

    def __init__(self):
        super().__init__({
            "payload": In(rx_stream()),
            "blocks": Out(rx_stream()),
            "packet": Out(MoldPacket),
            "packet_end": In(rx_stream(PacketEnd)),
            "resync": In(1),
            "events": Out(MoldUdp64Events),
        })

    def elaborate(self, platform):
        m = Module()
        payload = self.payload.p

        frame_beat = Signal(range(_FIRST_BEAT, _HEADER_BEAT + 2), init=_FIRST_BEAT)
        beat = Signal.like(frame_beat)  # frame beat index of the beat now at `payload`
        m.d.comb += beat.eq(Mux(payload.first, _FIRST_BEAT, frame_beat))
        stored = Signal(data.ArrayLayout(64, _HEADER_BEAT - _FIRST_BEAT))

        with m.If(self.payload.valid):
            for index in range(_HEADER_BEAT - _FIRST_BEAT):
                with m.If(beat == _FIRST_BEAT + index):
                    m.d.sync += stored[index].eq(payload.data)
            with m.If(payload.last):
                m.d.sync += frame_beat.eq(_FIRST_BEAT)
            with m.Elif(beat <= _HEADER_BEAT):
                m.d.sync += frame_beat.eq(beat + 1)

        # A header field as seen in the beat `arriving`: earlier beats stored, that one arriving.
        def field(offset, length, arriving):
            octets = []
            for byte_offset in range(offset, offset + length):
                index, byte_lane = divmod(byte_offset, BEAT_BYTES)
                source = payload.data if index == arriving else stored[index - _FIRST_BEAT]
                octets.append(lane(source, byte_lane))
            return big_endian(*octets)

        session_offset = UDP_PAYLOAD_OFFSET
        seq_offset = session_offset + SESSION_BYTES
        count_offset = seq_offset + 8
        session_beat = (seq_offset - 1) // BEAT_BYTES  # the beat holding the session's last byte
        session = field(session_offset, SESSION_BYTES, session_beat)
        seq = field(seq_offset, 8, _HEADER_BEAT)
        count = field(count_offset, 2, _HEADER_BEAT)
        header_last_lane = (BLOCKS_OFFSET - 1) % BEAT_BYTES

        synced = Signal()
        expected_session = Signal(8 * SESSION_BYTES)
        next_seq = Signal(64)
        expected_before = Signal(64)  # next_seq before the current packet's header
        info = self.packet

        # What this cycle counts; the counters' strobes follow a cycle later.
        found = Signal(MoldUdp64Events)
        m.d.sync += self.events.eq(found)

        header_done = self.payload.valid & (beat == _HEADER_BEAT) & payload.keep[header_last_lane]
        # The header is taken in registers as it arrives (the session compared byte by byte,
        # the sequence number's distance from next_seq as its halves arrive) and decided on in
        # the next cycle, whatever `payload` does then. What only the next packet needs (the
        # session and sequence number expected) is settled in the cycle after that.
        deciding = Signal()
        header_session = Signal.like(session)
        header_seq = Signal.like(seq)
        header_count = Signal.like(count)
        # What the header is, worked out as it ends, for the decision in the next cycle.
        end_of_session = Signal()
        heartbeat = Signal()
        was_synced = Signal()        # synced when the decision is made
        other_session = Signal()     # synced to another session
        ends_session = Signal()      # the end of the session synced to
        tracked = Signal()           # the packet goes into sequence tracking
        m.d.sync += deciding.eq(header_done)
        with m.If(self.payload.valid & (beat == session_beat)):
            m.d.sync += header_session.eq(session)
        # The session is compared with the expected one byte by byte as its beats arrive.
        session_byte_match = Signal(SESSION_BYTES)
        for i in range(SESSION_BYTES):
            part_beat, part_lane = divmod(session_offset + i, BEAT_BYTES)
            with m.If(self.payload.valid & (beat == part_beat)):
                m.d.sync += session_byte_match[i].eq(
                    lane(payload.data, part_lane) == lane(expected_session, SESSION_BYTES - 1 - i))
        with m.If(header_done):
            synced_then = synced & ~self.resync
            match = session_byte_match.all()
            is_end = count == END_OF_SESSION
            m.d.sync += [
                header_seq.eq(seq), header_count.eq(count),
                end_of_session.eq(is_end), heartbeat.eq(count == 0), was_synced.eq(synced_then),
                other_session.eq(synced_then & ~match), ends_session.eq(is_end & synced_then & match),
                tracked.eq(~is_end & ~(synced_then & ~match)),
            ]

        # 64-bit sums with the sequence number, a piece at a time (a 64-bit carry chain takes
        # longer than a cycle at 156 MHz): its high half arrives a beat before its low half,
        # so the high halves are added then, both with and without a carry in; the header's
        # last beat adds the low half as two 16-bit pieces, the upper one also both ways, and
        # picks each piece by the carry out of the piece below it.
        seq_high_beat = seq_offset // BEAT_BYTES
        assert seq_high_beat == _HEADER_BEAT - 1 and (seq_offset + 4) % BEAT_BYTES == 0
        seq_high = field(seq_offset, 4, seq_high_beat)
        seq_high_arrives = self.payload.valid & (beat == seq_high_beat)

        def with_carry(a, b, carry):
            """a + b + carry, one carry chain long (a bit `carry` below both operands carries in)."""
            return (Cat(carry, a) + Cat(carry, b))[1:]

        def header_sum(name, high, low, carry_in=0):
            """(high[0] + high[1]) << 32 + low[0] + low[1] + carry_in, registered as the header ends.

            65 bits (the carry out on top), and whether its bits 32..63 are zero. The `high`
            terms are taken in the beat holding the sequence number's high half, the `low`
            ones as the header ends."""
            high_sums = [Signal(33, name=f"{name}_high_{carry}") for carry in (0, 1)]
            with m.If(seq_high_arrives):
                m.d.sync += [s.eq(with_carry(*high, carry)) for carry, s in enumerate(high_sums)]
            low_sum = with_carry(low[0][:16], low[1][:16], carry_in)
            middle_sums = [with_carry(low[0][16:32], low[1][16:32], carry) for carry in (0, 1)]
            middle_sum = Mux(low_sum[16], middle_sums[1], middle_sums[0])
            total = Signal(65, name=name)
            high_zero = Signal(name=f"{name}_high_zero")
            with m.If(header_done):
                m.d.sync += [
                    total.eq(Cat(low_sum[:16], middle_sum[:16], Mux(middle_sum[16], high_sums[1], high_sums[0]))),
                    high_zero.eq(Mux(middle_sum[16], high_sums[1][:32] == 0, high_sums[0][:32] == 0)),
                ]
            return total, high_zero

        seq_low = seq[:32]
        # seq - next_seq and next_seq - seq as a + ~b + 1; the carry out is set when a >= b.
        distance, _ = header_sum("distance", (seq_high, ~next_seq[32:]), (seq_low, ~next_seq[:32]), 1)
        shortfall, shortfall_high_zero = header_sum(
            "shortfall", (next_seq[32:], ~seq_high), (next_seq[:32], ~seq_low), 1)
        end, _ = header_sum("end", (seq_high, 0), (seq_low, count))  # seq + count
        # Whether count > shortfall[:16] and shortfall[16:32] == 0: what the decision needs of the
        # low half, worked out as the header ends and in the next cycle, a carry chain in each.
        # seq[:16] > next_seq[:16] is the borrow of shortfall[:16] from the bits above it.
        low_borrow = seq_low[:16] > next_seq[:16]
        # shortfall[16:32] == 0 exactly when seq[16:32] equals next_seq[16:32] less that borrow:
        # comparisons for equality, the decrement taken from the register alone.
        next_middle_less_one = (next_seq[16:32] - 1)[:16]
        shortfall_middle_zero = Signal()
        # count > shortfall[:16] exactly when count + seq[:16] > next_seq[:16] + 2**16 * borrow.
        count_plus_seq = Signal(17)
        next_low_past = Signal(17)  # next_seq[:16] + 2**16 * borrow
        with m.If(header_done):
            m.d.sync += [
                shortfall_middle_zero.eq(Mux(low_borrow, seq_low[16:32] == next_middle_less_one,
                                             seq_low[16:32] == next_seq[16:32])),
                count_plus_seq.eq(count + seq_low[:16]),
                next_low_past.eq(Cat(next_seq[:16], low_borrow)),
            ]
        count_exceeds = count_plus_seq > next_low_past

        settling = Signal()       # the cycle after the decision on a packet in sequence tracking
        past_expected = Signal()  # that packet ends past the sequence number expected
        m.d.sync += settling.eq(0)
        with m.If(settling):
            expected = Mux(was_synced, next_seq, header_seq)
            m.d.sync += [
                expected_session.eq(header_session),
                expected_before.eq(expected),
                next_seq.eq(Mux(past_expected, end, expected)),
            ]
        with m.If(self.payload.valid & payload.first):
            m.d.sync += [info.deliver.eq(0), info.gap.eq(0), info.skip.eq(0)]
        with m.If(deciding):
            m.d.sync += [info.seq.eq(header_seq), info.count.eq(header_count)]
            m.d.comb += [
                found.mold_end_of_session.eq(end_of_session),
                found.mold_session_mismatch.eq(other_session),
            ]
            with m.If(ends_session):
                m.d.sync += synced.eq(0)
            with m.If(tracked):
                # Unsynced, the packet starts the count: it is neither ahead nor behind.
                ahead = ~shortfall[64]  # seq > next_seq: a gap
                behind = ~distance[64]  # seq < next_seq: a (partial) duplicate, shortfall messages delivered
                # seq + count > next_seq
                passes = ~behind | (shortfall_high_zero & shortfall_middle_zero & count_exceeds)
                m.d.comb += [
                    found.mold_packets.eq(1),
                    found.mold_heartbeat.eq(heartbeat),
                ]
                m.d.sync += [
                    synced.eq(1),
                    info.deliver.eq(1),
                    settling.eq(1),
                    past_expected.eq(~was_synced | passes),
                ]
                with m.If(was_synced & ahead):
                    m.d.comb += [
                        found.mold_gap.eq(1),
                        found.mold_gap_messages.eq(distance[:64]),
                    ]
                    m.d.sync += info.gap.eq(1)
                with m.Elif(was_synced & behind):
                    m.d.sync += info.skip.eq(Mux(passes, shortfall, header_count))
                    m.d.comb += found.mold_duplicate_packet.eq(~heartbeat & ~passes)
        # The header has been seen in this packet (a trailer after the datagram may run past
        # the header beat without completing the header: keep-less beats).
        header_seen = Signal()
        header_seen_now = Signal()
        m.d.comb += header_seen_now.eq((header_seen & ~payload.first) | header_done)
        with m.If(self.payload.valid):
            m.d.sync += header_seen.eq(header_seen_now)
        with m.If(self.payload.valid & payload.last & ~header_seen_now):
            m.d.comb += found.mold_short.eq(1)
        # The give-back, over two cycles: where the packet's complete blocks end (the high half
        # plus one ready in case the low half carries), then the sequence number expected next.
        # That end is past the one expected before the packet if the packet was a gap, or if
        # more blocks were complete than it began with duplicates.
        blocks = self.packet_end.p.blocks
        giving_back = Signal()
        claimed_low = Signal(33)
        claimed_past = Signal()
        seq_high_plus_one = Signal(32)
        m.d.sync += [
            giving_back.eq(self.packet_end.valid & info.deliver & (blocks < info.count)),
            claimed_low.eq(info.seq[:32] + blocks),
            claimed_past.eq(info.gap | (blocks > info.skip)),
            seq_high_plus_one.eq(info.seq[32:] + 1),
        ]
        with m.If(giving_back):
            claimed_end = Cat(claimed_low[:32], Mux(claimed_low[32], seq_high_plus_one, info.seq[32:]))
            m.d.sync += next_seq.eq(Mux(claimed_past, claimed_end, expected_before))
        with m.If(self.resync):
            m.d.sync += synced.eq(0)

        blocks_keep = Signal(BEAT_BYTES)
        for i in range(BEAT_BYTES):
            # From the register alone (it is back at the first beat after every packet's last),
            # so that the keep path does not wait for `first`.
            in_blocks = (frame_beat > _HEADER_BEAT) | ((frame_beat == _HEADER_BEAT) & (i > header_last_lane))
            m.d.comb += blocks_keep[i].eq(payload.keep[i] & in_blocks)
        m.d.comb += [
            self.blocks.valid.eq(self.payload.valid),
            self.blocks.p.eq(payload),
            self.blocks.p.keep.eq(blocks_keep),
        ]
        return m
