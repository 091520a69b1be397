"""Ethernet II / IPv4 / UDP receive filter: keeps the market-data datagrams, drops the rest whole."""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from .stream import BEAT_BYTES, rx_stream, big_endian, lane

__all__ = ["UdpRx", "UdpRxEvents", "DropReason", "UDP_PAYLOAD_OFFSET"]

#: Frame offset of the first UDP payload byte (untagged Ethernet, IPv4 without options).
UDP_PAYLOAD_OFFSET = 14 + 20 + 8
#: Headers end in beat 5; every header check is decided from beats 0..4.
_DECISION_BEAT = 4
_PAYLOAD_BEAT = UDP_PAYLOAD_OFFSET // BEAT_BYTES


class DropReason(enum.Enum, shape=4):
    """The first failing header check of a frame, in the order docs/receive-path.md gives."""
    NONE = 0
    VLAN = 1
    ETHERTYPE = 2
    IP_HEADER = 3
    IP_LENGTH = 4
    IP_FRAGMENT = 5
    IP_PROTOCOL = 6
    IP_CHECKSUM = 7
    DST_IP = 8
    DST_PORT = 9
    UDP_LENGTH = 10


class UdpRxEvents(data.Struct):
    """One strobe per counter this stage keeps; each is high for one cycle per event."""
    frames: 1
    frames_ok: 1
    drop_runt: 1
    drop_vlan: 1
    drop_ethertype: 1
    drop_ip_header: 1
    drop_ip_length: 1
    drop_ip_fragment: 1
    drop_ip_protocol: 1
    drop_ip_checksum: 1
    drop_dst_ip: 1
    drop_dst_port: 1
    drop_udp_length: 1
    drop_err: 1
    drop_truncated: 1


_REASON_EVENT = {
    DropReason.VLAN: "drop_vlan",
    DropReason.ETHERTYPE: "drop_ethertype",
    DropReason.IP_HEADER: "drop_ip_header",
    DropReason.IP_LENGTH: "drop_ip_length",
    DropReason.IP_FRAGMENT: "drop_ip_fragment",
    DropReason.IP_PROTOCOL: "drop_ip_protocol",
    DropReason.IP_CHECKSUM: "drop_ip_checksum",
    DropReason.DST_IP: "drop_dst_ip",
    DropReason.DST_PORT: "drop_dst_port",
    DropReason.UDP_LENGTH: "drop_udp_length",
}


class UdpRx(wiring.Component):
    """Ethernet II / IPv4 / UDP filter for the market-data feed.

    Checks every header field docs/receive-path.md lists while the headers go
    by, and passes on the UDP payload of an accepted frame cut-through: each
    payload beat leaves one cycle after it arrives (the IPv4 checksum is
    settled in the cycle after the header's last byte), frame-aligned (frame
    byte ``8n + k`` stays in beat ``n``, lane ``k``), with ``keep`` marking
    the payload bytes only. Problems that show only at the end of the frame
    (``err`` from the MAC, a frame shorter than its IPv4 total length) set
    ``err`` on the payload's last beat. A frame that fails a header check
    passes on nothing.

    Interface attributes
    --------------------
    rx : In(beat stream)
        Frames from the MAC, without FCS; ``valid`` may drop between beats.
    payload : Out(beat stream)
        UDP payloads. The first beat is frame beat 5 (payload byte 0 in lane
        2); ``last`` comes with the frame's last beat, after which lanes past
        the IPv4 total length are not kept.
    dst_ip, dst_port : In
        Configuration: the destination address and port accepted.
    events : Out(UdpRxEvents)
        One strobe per counted event.
    """

    def __init__(self):
        super().__init__({
            "rx": In(rx_stream()),
            "payload": Out(rx_stream()),
            "dst_ip": In(32),
            "dst_port": In(16),
            "events": Out(UdpRxEvents),
        })

    def elaborate(self, platform):
        m = Module()
        rx = self.rx.p

        beat_index = Signal(range(_PAYLOAD_BEAT + 2))  # saturates one past the first payload beat
        index = Signal.like(beat_index)  # of the beat now at rx
        m.d.comb += index.eq(Mux(rx.first, 0, beat_index))

        header_beats = Signal(data.ArrayLayout(64, _DECISION_BEAT))
        # Where the IPv4 datagram ends, counted from the current beat (set up in the decision
        # beat for the first payload beat): its lanes inside the datagram, whether the datagram
        # goes on past it, how many later beats hold datagram bytes, and the datagram's lanes
        # in the last of them.
        ip_lanes = Signal(BEAT_BYTES)
        ip_continues = Signal()
        ip_beats_after = Signal(13)
        ip_end_lanes = Signal(BEAT_BYTES)
        with m.If(self.rx.valid):
            with m.If(index < _DECISION_BEAT):
                m.d.sync += header_beats[index].eq(rx.data)
            with m.If(rx.last):
                m.d.sync += beat_index.eq(0)
            with m.Elif(index <= _PAYLOAD_BEAT):
                m.d.sync += beat_index.eq(index + 1)
            m.d.sync += [
                ip_lanes.eq(Mux(ip_continues, Mux(ip_beats_after == 1, ip_end_lanes, 0xFF), 0)),
                ip_continues.eq(ip_continues & (ip_beats_after > 1)),
                ip_beats_after.eq(ip_beats_after - ip_continues),
            ]

        # The IPv4 header's sum, unfolded (ten 16-bit words fit in 20 bits). A beat's words are
        # added up in its own cycle and into `header_sum` in the next one, except those of the
        # decision beat, which go straight in: the sum is complete when the decision beat has
        # gone by, and no cycle adds more than three numbers. Header words are 2-byte aligned,
        # so a beat's words are some of its lane pairs; beats with the same pairs share an adder.
        lane_pairs = [big_endian(lane(rx.data, j), lane(rx.data, j + 1)) for j in range(0, BEAT_BYTES, 2)]
        pairs_of_beat = {}  # frame beat -> the lane pairs holding header words
        for offset in range(14, 34, 2):
            pairs_of_beat.setdefault(offset // BEAT_BYTES, []).append(offset % BEAT_BYTES // 2)
        at_beat = {number: self.rx.valid & (index == number) for number in range(_PAYLOAD_BEAT + 1)}

        def words_at(beats):
            """The sum of the header words of the beat now at rx, if it is one of `beats` (else 0)."""
            by_pairs = {}
            for number in beats:
                by_pairs.setdefault(tuple(pairs_of_beat[number]), []).append(at_beat[number])
            return functools.reduce(operator.or_, [
                Mux(functools.reduce(operator.or_, enables), sum(lane_pairs[j] for j in pairs), 0)
                for pairs, enables in by_pairs.items()])

        later_words = Signal(18)  # the words of the previous cycle's beat, not yet in header_sum
        header_sum = Signal(20)
        m.d.sync += [
            later_words.eq(words_at([number for number in pairs_of_beat if number != _DECISION_BEAT])),
            header_sum.eq(Mux(self.rx.valid & rx.first, 0,
                              header_sum + later_words + words_at([_DECISION_BEAT]))),
        ]

        # The header as seen in the decision beat: beats 0..3 stored, beat 4 arriving.
        octet = [lane(header_beats[i // 8], i % 8) for i in range(_DECISION_BEAT * 8)]
        octet += [lane(rx.data, i) for i in range(BEAT_BYTES)]
        ethertype = big_endian(*octet[12:14])
        total_length = big_endian(*octet[16:18])
        flags_fragment = big_endian(*octet[20:22])
        protocol = octet[23]
        dst_ip = big_endian(*octet[30:34])
        dst_port = big_endian(*octet[36:38])
        udp_length = big_endian(*octet[38:40])
        # What the UDP length must be, worked out as the total length goes by (frame beat 2).
        ip_payload_length = Signal(16)
        total_length_beat = 16 // BEAT_BYTES
        with m.If(at_beat[total_length_beat]):
            m.d.sync += ip_payload_length.eq(
                big_endian(*[lane(rx.data, i % BEAT_BYTES) for i in (16, 17)]) - 20)
        # Each check's failure, decided in the decision beat; the checksum's in the cycle after
        # it, from the complete sum (good when the sum folds to 0xFFFF, which for a 20-bit sum
        # is when its low 16 bits and its carries add up to exactly 0xFFFF).
        checks = {
            DropReason.VLAN: (ethertype == 0x8100) | (ethertype == 0x88A8),
            DropReason.ETHERTYPE: ethertype != 0x0800,
            DropReason.IP_HEADER: octet[14] != 0x45,
            DropReason.IP_LENGTH: total_length < 28,
            DropReason.IP_FRAGMENT: (flags_fragment & 0x3FFF) != 0,
            DropReason.IP_PROTOCOL: protocol != 17,
            DropReason.DST_IP: dst_ip != self.dst_ip,
            DropReason.DST_PORT: dst_port != self.dst_port,
            DropReason.UDP_LENGTH: udp_length != ip_payload_length,
        }
        failed = Signal(data.ArrayLayout(1, len(DropReason)))  # by DropReason value
        checksum_due = Signal()
        with m.If(at_beat[_DECISION_BEAT]):
            m.d.sync += failed.eq(Cat(checks.get(reason, 0) for reason in DropReason))
            # Datagram bytes from lane 0 of the first payload beat on: 14 + total_length - 40.
            datagram_start = _PAYLOAD_BEAT * BEAT_BYTES - 14
            m.d.sync += [
                ip_lanes.eq(Cat(*[total_length > datagram_start + j for j in range(BEAT_BYTES)])),
                ip_continues.eq(total_length > datagram_start + BEAT_BYTES),
                ip_beats_after.eq((total_length - datagram_start - 1) >> 3),
                ip_end_lanes.eq(Cat(*[((total_length - datagram_start - 1) & 7) >= j
                                      for j in range(BEAT_BYTES)])),
            ]
        # Every check passed: settled with the checksum, before the first payload beat leaves.
        header_ok = Signal()
        m.d.sync += checksum_due.eq(at_beat[_DECISION_BEAT])
        checksum_bad = header_sum[:16] + header_sum[16:] != 0xFFFF
        # What header_ok is in the next cycle, when the first payload beat may leave.
        header_ok_next = Signal()
        m.d.comb += header_ok_next.eq(header_ok)
        with m.If(checksum_due):
            m.d.comb += header_ok_next.eq(~failed.as_value().any() & ~checksum_bad)
            m.d.sync += failed[DropReason.IP_CHECKSUM.value].eq(checksum_bad)
        m.d.sync += header_ok.eq(header_ok_next)
        # The first failing check, in the order of DropReason.
        reason = Signal(DropReason)
        m.d.comb += reason.eq(functools.reduce(
            lambda later, failure: Mux(failed[failure.value], failure, later),
            reversed([failure for failure in DropReason if failure != DropReason.NONE]),
            DropReason.NONE))

        # Whether a last beat ends the frame before the UDP payload: it comes before the payload's
        # first beat, or is that beat without the header's last byte (keep is contiguous from lane
        # 0 at the MAC), so that no byte count (a carry chain) is needed.
        header_end_lane = (UDP_PAYLOAD_OFFSET - 1) % BEAT_BYTES
        assert (UDP_PAYLOAD_OFFSET - 1) // BEAT_BYTES == _PAYLOAD_BEAT
        ends_in_header = (index < _PAYLOAD_BEAT) | ((index == _PAYLOAD_BEAT) & ~rx.keep[header_end_lane])
        payload_keep = Signal(BEAT_BYTES)
        for i in range(BEAT_BYTES):
            in_payload = (index > _PAYLOAD_BEAT) | (i >= UDP_PAYLOAD_OFFSET % BEAT_BYTES)
            m.d.comb += payload_keep[i].eq(rx.keep[i] & in_payload & ip_lanes[i])

        # Every beat is registered on its way out, with what its frame's end needs, so that the
        # checksum is settled before the first payload beat leaves.
        out = self.payload.p
        out_valid = Signal()   # a beat was at rx in the previous cycle
        out_payload = Signal()  # it belongs to the payload (frame beat 5 on, not ending a runt) of a good header
        out_runt = Signal()    # it ends a frame too short for the headers
        out_mac_err = Signal()
        out_truncated = Signal()  # it ends a frame shorter than its IPv4 total length
        truncated = ip_continues | (ip_lanes & ~rx.keep).any()
        runt = rx.last & ends_in_header
        m.d.sync += [
            out_valid.eq(self.rx.valid),
            out_payload.eq(self.rx.valid & (index >= _PAYLOAD_BEAT) & ~runt & header_ok_next),
            out_runt.eq(runt),
            out_mac_err.eq(rx.err),
            out_truncated.eq(truncated),
            out.data.eq(rx.data),
            out.keep.eq(payload_keep),
            out.first.eq(index == _PAYLOAD_BEAT),
            out.last.eq(rx.last),
            out.err.eq(rx.last & (rx.err | truncated)),
        ]

        # A register of its own: its fan-out reaches every stage after this one.
        m.d.comb += self.payload.valid.eq(out_payload)

        with m.If(out_valid & out.last):
            m.d.comb += self.events.frames.eq(1)
            with m.If(out_runt):
                m.d.comb += self.events.drop_runt.eq(1)
            for failure, event in _REASON_EVENT.items():
                with m.Elif(reason == failure):
                    m.d.comb += getattr(self.events, event).eq(1)
            with m.Elif(out_mac_err):
                m.d.comb += self.events.drop_err.eq(1)
            with m.Elif(out_truncated):
                m.d.comb += self.events.drop_truncated.eq(1)
            with m.Else():
                m.d.comb += self.events.frames_ok.eq(1)

        return m
