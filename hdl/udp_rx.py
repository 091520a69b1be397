"""Ethernet II / IPv4 / UDP receive filter: keeps the market-data datagrams, drops the rest whole."""



from amaranth.hdl import Cat, Module, Mux, Signal, signed
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


def _ones_complement_fold(value, width=16):
    """Fold the carries of a wide sum back in, as the Internet checksum does."""
    folded = value[:width] + value[width:]
    return (folded[:width] + folded[width:])[:width]


class UdpRx(wiring.Component):
    """Ethernet II / IPv4 / UDP filter for the market-data feed.

    Checks every header field docs/receive-path.md lists while the headers go
    by, and passes on the UDP payload of an accepted frame cut-through: the
    payload beats leave in the same cycle as they arrive, frame-aligned (frame
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
        reason = Signal(DropReason)
        # Bytes of the IPv4 datagram still to come, counted from lane 0 of the current beat.
        ip_bytes_left = Signal(signed(17))
        # Registered a beat ahead from ip_bytes_left: the lanes of this beat inside the
        # datagram, and whether it goes on past this beat.
        ip_lanes = Signal(BEAT_BYTES)
        ip_continues = Signal()
        next_ip_bytes_left = Signal.like(ip_bytes_left)
        # The IPv4 header's ones'-complement sum, added up word by word as the beats go by.
        header_sum = Signal(20)

        with m.If(self.rx.valid):
            with m.If(index < _DECISION_BEAT):
                m.d.sync += header_beats[index].eq(rx.data)
            with m.If(rx.last):
                m.d.sync += beat_index.eq(0)
            with m.Elif(index <= _PAYLOAD_BEAT):
                m.d.sync += beat_index.eq(index + 1)
            m.d.comb += next_ip_bytes_left.eq(Mux(ip_bytes_left > 0, ip_bytes_left - BEAT_BYTES, ip_bytes_left))
            m.d.sync += [
                ip_bytes_left.eq(next_ip_bytes_left),
                ip_lanes.eq(Cat(*[next_ip_bytes_left > j for j in range(BEAT_BYTES)])),
                ip_continues.eq(next_ip_bytes_left > BEAT_BYTES),
            ]
            for beat_number in range(_DECISION_BEAT):
                words = [big_endian(lane(rx.data, o % 8), lane(rx.data, o % 8 + 1))
                         for o in range(14, 34, 2) if o // 8 == beat_number]
                with m.If(index == beat_number):
                    m.d.sync += header_sum.eq(sum(words, header_sum if beat_number else 0))

        # The header as seen in the decision beat: beats 0..3 stored, beat 4 arriving.
        octet = [lane(header_beats[i // 8], i % 8) for i in range(_DECISION_BEAT * 8)]
        octet += [lane(rx.data, i) for i in range(BEAT_BYTES)]
        ethertype = big_endian(*octet[12:14])
        total_length = big_endian(*octet[16:18])
        flags_fragment = big_endian(*octet[20:22])
        protocol = octet[23]
        last_words = [big_endian(*octet[i:i + 2]) for i in range(14, 34, 2) if i // 8 == _DECISION_BEAT]
        checksum = Signal(20)
        m.d.comb += checksum.eq(sum(last_words, header_sum))
        dst_ip = big_endian(*octet[30:34])
        dst_port = big_endian(*octet[36:38])
        udp_length = big_endian(*octet[38:40])

        checks = [  # (failure condition, reason), in priority order
            ((ethertype == 0x8100) | (ethertype == 0x88A8), DropReason.VLAN),
            (ethertype != 0x0800, DropReason.ETHERTYPE),
            (octet[14] != 0x45, DropReason.IP_HEADER),
            (total_length < 28, DropReason.IP_LENGTH),
            ((flags_fragment & 0x3FFF) != 0, DropReason.IP_FRAGMENT),
            (protocol != 17, DropReason.IP_PROTOCOL),
            (_ones_complement_fold(checksum) != 0xFFFF, DropReason.IP_CHECKSUM),
            (dst_ip != self.dst_ip, DropReason.DST_IP),
            (dst_port != self.dst_port, DropReason.DST_PORT),
            (udp_length != total_length - 20, DropReason.UDP_LENGTH),
        ]
        with m.If(self.rx.valid & (index == _DECISION_BEAT)):
            first_payload_bytes = 14 + total_length - _PAYLOAD_BEAT * BEAT_BYTES
            m.d.sync += [
                reason.eq(DropReason.NONE),
                ip_bytes_left.eq(first_payload_bytes),
                ip_lanes.eq(Cat(*[first_payload_bytes > j for j in range(BEAT_BYTES)])),
                ip_continues.eq(first_payload_bytes > BEAT_BYTES),
            ]
            for failed, failure in reversed(checks):
                with m.If(failed):
                    m.d.sync += reason.eq(failure)

        # Bytes in this beat (keep is contiguous from lane 0 at the MAC).
        beat_bytes = Signal(range(BEAT_BYTES + 1))
        for count in range(1, BEAT_BYTES + 1):
            with m.If(rx.keep[count - 1]):
                m.d.comb += beat_bytes.eq(count)
        frame_bytes = index * BEAT_BYTES + beat_bytes
        runt = frame_bytes < UDP_PAYLOAD_OFFSET
        truncated = ip_continues | (ip_lanes & ~rx.keep).any()
        header_ok = reason == DropReason.NONE

        payload_keep = Signal(BEAT_BYTES)
        for i in range(BEAT_BYTES):
            in_payload = (index > _PAYLOAD_BEAT) | (i >= UDP_PAYLOAD_OFFSET % BEAT_BYTES)
            m.d.comb += payload_keep[i].eq(rx.keep[i] & in_payload & ip_lanes[i])

        m.d.comb += [
            self.payload.valid.eq(self.rx.valid & (index >= _PAYLOAD_BEAT) & header_ok
                                  & ~(rx.last & runt)),
            self.payload.p.data.eq(rx.data),
            self.payload.p.keep.eq(payload_keep),
            self.payload.p.first.eq(index == _PAYLOAD_BEAT),
            self.payload.p.last.eq(rx.last),
            self.payload.p.err.eq(rx.last & (rx.err | truncated)),
        ]

        with m.If(self.rx.valid & rx.last):
            m.d.comb += self.events.frames.eq(1)
            with m.If(runt):
                m.d.comb += self.events.drop_runt.eq(1)
            for failure, event in _REASON_EVENT.items():
                with m.Elif(reason == failure):
                    m.d.comb += getattr(self.events, event).eq(1)
            with m.Elif(rx.err):
                m.d.comb += self.events.drop_err.eq(1)
            with m.Elif(truncated):
                m.d.comb += self.events.drop_truncated.eq(1)
            with m.Else():
                m.d.comb += self.events.frames_ok.eq(1)

        return m
