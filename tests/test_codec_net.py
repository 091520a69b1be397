"""Tests of tick2trade.host.codec.net.

Expected values come from outside the code under test: RFC 1071's worked
example, a well-known captured IPv4 header, the CRC-32 catalogue, and dpkt's
own decoders and checksum code run over the frames built here.
"""

import ipaddress
import zlib

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.host.codec.net import (
    ETHERTYPE_IPV4,
    IPPROTO_TCP,
    IPPROTO_UDP,
    CodecError,
    EthernetHeader,
    Ipv4Header,
    TcpFlags,
    TcpHeader,
    UdpHeader,
    append_fcs,
    fcs_ok,
    internet_checksum,
    parse_tcp_frame,
    parse_udp_frame,
    pseudo_header_checksum,
    tcp_frame,
    udp_frame,
)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.binary(max_size=1400)

ENDPOINTS = dict(
    src_mac=bytes.fromhex("020000000001"),
    dst_mac=bytes.fromhex("020000000002"),
    src_ip=ipaddress.IPv4Address("10.0.0.1").packed,
    dst_ip=ipaddress.IPv4Address("233.54.12.111").packed,
    src_port=26477,
    dst_port=26400,
)

# The IPv4 header used as the example in Wikipedia's "IPv4 header checksum"
# article: 192.168.0.1 -> 192.168.0.199, UDP, total length 115, DF, TTL 64,
# checksum 0xb861.
CAPTURED_IPV4_HEADER = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")


def rfc1071_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1 transcribed: add 16-bit words, fold the carries, complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --- checksums ---------------------------------------------------------------


def test_internet_checksum_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, whose complement is 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_internet_checksum_of_captured_header():
    assert internet_checksum(CAPTURED_IPV4_HEADER) == 0
    zeroed = CAPTURED_IPV4_HEADER[:10] + b"\0\0" + CAPTURED_IPV4_HEADER[12:]
    assert internet_checksum(zeroed) == 0xB861


@given(st.binary(max_size=2000))
def test_internet_checksum_matches_rfc1071_loop(data):
    assert internet_checksum(data) == rfc1071_checksum(data)


@pytest.mark.parametrize("data", [b"", b"\0\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\x80\x00\x80\x00"])
def test_internet_checksum_edge_cases(data):
    # All-zero data sums to 0 and all-ones to negative zero (0xffff): the two cases
    # a modulo-based sum could confuse.
    assert internet_checksum(data) == rfc1071_checksum(data)


def test_captured_ipv4_header_decodes():
    ip = Ipv4Header.decode(CAPTURED_IPV4_HEADER)
    assert (ip.version, ip.ihl, ip.header_length) == (4, 5, 20)
    assert ip.total_length == 115
    assert ip.identification == 0
    assert ip.dont_fragment and not ip.more_fragments and ip.fragment_offset == 0
    assert (ip.ttl, ip.protocol, ip.checksum) == (64, IPPROTO_UDP, 0xB861)
    assert ip.src == ipaddress.IPv4Address("192.168.0.1").packed
    assert ip.dst == ipaddress.IPv4Address("192.168.0.199").packed
    assert ip.encode() == CAPTURED_IPV4_HEADER


def test_with_checksum_reproduces_captured_checksum():
    ip = Ipv4Header(
        src=ipaddress.IPv4Address("192.168.0.1").packed,
        dst=ipaddress.IPv4Address("192.168.0.199").packed,
        protocol=IPPROTO_UDP, total_length=115,
    )
    assert ip.with_checksum().encode() == CAPTURED_IPV4_HEADER


# --- FCS ---------------------------------------------------------------------


def test_fcs_crc32_catalogue_check_value():
    # CRC-32 (IEEE 802.3) of ASCII "123456789" is 0xcbf43926, sent least significant byte first.
    assert append_fcs(b"123456789") == b"123456789" + bytes.fromhex("2639f4cb")


@given(st.binary(min_size=14, max_size=1514))
def test_fcs_residue(frame):
    # A frame followed by its correct FCS leaves the fixed CRC-32 residue 0x2144df1c
    # (the complement of the 802.3 "magic number" 0xdebb20e3).
    with_fcs = append_fcs(frame)
    assert with_fcs[:-4] == frame
    assert zlib.crc32(with_fcs) == 0x2144DF1C
    assert fcs_ok(with_fcs)


@given(st.binary(min_size=14, max_size=200), st.data())
def test_fcs_detects_a_flipped_bit(frame, data):
    with_fcs = bytearray(append_fcs(frame))
    bit = data.draw(st.integers(0, len(with_fcs) * 8 - 1))
    with_fcs[bit // 8] ^= 1 << bit % 8
    assert not fcs_ok(bytes(with_fcs))


def test_fcs_ok_rejects_too_short_input():
    with pytest.raises(CodecError, match="cannot hold a 4-byte FCS"):
        fcs_ok(b"\x01\x02\x03")


# --- header round trips ------------------------------------------------------


@given(macs, macs, u16)
def test_ethernet_round_trip(dst, src, ethertype):
    header = EthernetHeader(dst, src, ethertype)
    wire = header.encode()
    assert wire == dst + src + ethertype.to_bytes(2, "big")
    assert EthernetHeader.decode(wire) == header


@given(ips, ips, u8, u16, u16, st.integers(0, 7), st.integers(0, 0x1FFF), u8, u8, u16)
def test_ipv4_round_trip(src, dst, protocol, total_length, identification, flags, fragment_offset, ttl, tos, checksum):
    header = Ipv4Header(src, dst, protocol, total_length, identification, flags, fragment_offset, ttl, tos, checksum)
    assert Ipv4Header.decode(header.encode()) == header


@given(st.binary(min_size=19, max_size=19))
def test_ipv4_decode_encode_is_byte_identical(rest):
    wire = b"\x45" + rest
    assert Ipv4Header.decode(wire).encode() == wire


@given(u16, u16, u16, u16)
def test_udp_round_trip(src_port, dst_port, length, checksum):
    header = UdpHeader(src_port, dst_port, length, checksum)
    assert UdpHeader.decode(header.encode()) == header
    assert UdpHeader.decode(header.encode()).encode() == header.encode()


@given(u16, u16, u32, u32, u8, u16, u16, u16, st.integers(0, 15))
def test_tcp_round_trip(src_port, dst_port, seq, ack, flags, window, checksum, urgent, reserved):
    header = TcpHeader(src_port, dst_port, seq, ack, TcpFlags(flags), window, checksum, urgent, 5, reserved)
    assert TcpHeader.decode(header.encode()) == header


@given(st.binary(min_size=20, max_size=20))
def test_tcp_decode_encode_is_byte_identical(wire):
    wire = wire[:12] + bytes([0x50 | wire[12] & 0x0F]) + wire[13:]
    assert TcpHeader.decode(wire).encode() == wire


def test_tcp_header_layout_matches_dpkt():
    header = TcpHeader(1234, 80, 0x01020304, 0x0A0B0C0D, TcpFlags.SYN | TcpFlags.ACK, 512, 0xBEEF, 7)
    parsed = dpkt.tcp.TCP(header.encode())
    assert (parsed.sport, parsed.dport, parsed.seq, parsed.ack) == (1234, 80, 0x01020304, 0x0A0B0C0D)
    assert parsed.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    assert (parsed.off, parsed.win, parsed.sum, parsed.urp) == (5, 512, 0xBEEF, 7)


# --- builders, checked by dpkt -----------------------------------------------


def recomputed_by_dpkt(ip: dpkt.ip.IP) -> tuple[int, int]:
    """Let dpkt compute the IPv4 and transport checksums afresh: (ip sum, transport sum)."""
    ip.sum = 0
    ip.data.sum = 0
    bytes(ip)
    return ip.sum, ip.data.sum


@given(macs, macs, ips, ips, u16, u16, u8, u16, payloads)
def test_udp_frame_parsed_by_dpkt(src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port, ttl, identification, payload):
    frame = udp_frame(
        payload, src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=dst_ip,
        src_port=src_port, dst_port=dst_port, ttl=ttl, identification=identification,
    )
    assert len(frame) == 14 + 20 + 8 + len(payload)
    eth = dpkt.ethernet.Ethernet(frame)
    assert (eth.dst, eth.src, eth.type) == (dst_mac, src_mac, ETHERTYPE_IPV4)
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP)
    assert (ip.v, ip.hl, ip.len, ip.id, ip.ttl, ip.p) == (4, 5, 20 + 8 + len(payload), identification, ttl, 17)
    assert (ip.df, ip.mf, ip.offset) == (1, 0, 0)
    assert (ip.src, ip.dst) == (src_ip, dst_ip)
    udp = ip.data
    assert (udp.sport, udp.dport, udp.ulen, udp.data) == (src_port, dst_port, 8 + len(payload), payload)
    sent = (ip.sum, udp.sum)
    assert recomputed_by_dpkt(ip) == sent


def test_udp_checksum_computing_to_zero_is_sent_as_ffff():
    # Choose the last payload word so that the checksum computes to 0: that word is
    # the checksum (computed by dpkt) of the same datagram with the word zeroed.
    prefix = b"MoldUDP64 packet"  # even length: the appended word is word-aligned
    probe = dpkt.ethernet.Ethernet(udp_frame(prefix + b"\0\0", **ENDPOINTS)).data
    _, zeroed_word_checksum = recomputed_by_dpkt(probe)
    frame = udp_frame(prefix + zeroed_word_checksum.to_bytes(2, "big"), **ENDPOINTS)
    assert frame[40:42] == b"\xff\xff"  # RFC 768: a computed 0 is transmitted as all ones
    ip = dpkt.ethernet.Ethernet(frame).data
    assert recomputed_by_dpkt(ip)[1] == 0xFFFF
    assert parse_udp_frame(frame)[3] == prefix + zeroed_word_checksum.to_bytes(2, "big")


def test_udp_frame_without_checksum():
    frame = udp_frame(b"mold", udp_checksum=False, **ENDPOINTS)
    udp = dpkt.ethernet.Ethernet(frame).data.data
    assert udp.sum == 0
    assert parse_udp_frame(frame)[2].checksum == 0


@given(macs, macs, ips, ips, u16, u16, u32, u32, u8, u16, payloads)
def test_tcp_frame_parsed_by_dpkt(src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port, seq, ack, flags, window, payload):
    frame = tcp_frame(
        payload, src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=dst_ip,
        src_port=src_port, dst_port=dst_port, seq=seq, ack=ack, flags=TcpFlags(flags), window=window,
    )
    assert len(frame) == 14 + 20 + 20 + len(payload)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert (ip.p, ip.len, ip.src, ip.dst) == (6, 40 + len(payload), src_ip, dst_ip)
    tcp = ip.data
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win, tcp.off) == (
        src_port, dst_port, seq, ack, flags, window, 5)
    assert tcp.data == payload
    sent = (ip.sum, tcp.sum)
    assert recomputed_by_dpkt(ip) == sent


def test_tcp_frame_default_flags_are_psh_ack():
    frame = tcp_frame(b"x", seq=1, ack=2, **ENDPOINTS)
    assert dpkt.ethernet.Ethernet(frame).data.data.flags == dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK


# --- parsers -----------------------------------------------------------------


@given(payloads, st.booleans())
def test_parse_udp_frame_round_trip(payload, with_checksum):
    frame = udp_frame(payload, udp_checksum=with_checksum, identification=7, **ENDPOINTS)
    eth, ip, udp, parsed_payload = parse_udp_frame(frame)
    assert parsed_payload == payload
    assert (eth.src, eth.dst) == (ENDPOINTS["src_mac"], ENDPOINTS["dst_mac"])
    assert (ip.src, ip.dst, ip.identification, ip.protocol) == (
        ENDPOINTS["src_ip"], ENDPOINTS["dst_ip"], 7, IPPROTO_UDP)
    assert (udp.src_port, udp.dst_port, udp.length) == (ENDPOINTS["src_port"], ENDPOINTS["dst_port"], 8 + len(payload))
    assert eth.encode() + ip.encode() + udp.encode() + payload == frame


@given(payloads, u32, u32)
def test_parse_tcp_frame_round_trip(payload, seq, ack):
    frame = tcp_frame(payload, seq=seq, ack=ack, **ENDPOINTS)
    eth, ip, tcp, parsed_payload = parse_tcp_frame(frame)
    assert parsed_payload == payload
    assert (tcp.seq, tcp.ack, tcp.flags) == (seq, ack, TcpFlags.PSH | TcpFlags.ACK)
    assert eth.encode() + ip.encode() + tcp.encode() + payload == frame


def test_parse_ignores_ethernet_padding():
    # A frame shorter than the 60-byte Ethernet minimum arrives padded; the padding is not payload.
    frame = udp_frame(b"hi", **ENDPOINTS)
    assert parse_udp_frame(frame + bytes(60 - len(frame)))[3] == b"hi"


def dpkt_frame(transport: dpkt.Packet, protocol: int, ip_options: bytes = b"") -> bytes:
    """An Ethernet/IPv4 frame built and checksummed entirely by dpkt."""
    ip = dpkt.ip.IP(
        src=ENDPOINTS["src_ip"], dst=ENDPOINTS["dst_ip"], p=protocol, ttl=64, opts=ip_options,
        hl=5 + len(ip_options) // 4, data=transport,
    )
    return bytes(dpkt.ethernet.Ethernet(
        src=ENDPOINTS["src_mac"], dst=ENDPOINTS["dst_mac"], type=dpkt.ethernet.ETH_TYPE_IP, data=ip,
    ))


def test_parse_tcp_frame_skips_tcp_options():
    options = bytes.fromhex("020405b4") + bytes.fromhex("01010402")  # MSS 1460, NOP, NOP, SACK permitted
    tcp = dpkt.tcp.TCP(sport=1, dport=2, seq=3, ack=4, off=5 + len(options) // 4, opts=options,
                       flags=dpkt.tcp.TH_ACK, data=b"after options")
    _, _, header, payload = parse_tcp_frame(dpkt_frame(tcp, IPPROTO_TCP))
    assert (header.data_offset, header.header_length) == (7, 28)
    assert payload == b"after options"


def test_parse_udp_frame_skips_ipv4_options():
    options = bytes.fromhex("01010100")  # NOP, NOP, NOP, end of options list
    udp = dpkt.udp.UDP(sport=1, dport=2, data=b"after options")
    udp.ulen = 8 + len(udp.data)
    _, ip, _, payload = parse_udp_frame(dpkt_frame(udp, IPPROTO_UDP, options))
    assert (ip.ihl, ip.header_length) == (6, 24)
    assert payload == b"after options"


@pytest.mark.parametrize(
    ("transport", "protocol", "checksum_at"),
    [
        (dpkt.udp.UDP(sport=5, dport=6, ulen=8 + 5, data=b"hello"), IPPROTO_UDP, 6),
        (dpkt.tcp.TCP(sport=5, dport=6, seq=7, ack=8, flags=dpkt.tcp.TH_ACK, data=b"hello"), IPPROTO_TCP, 16),
    ],
    ids=["udp", "tcp"],
)
def test_pseudo_header_checksum_agrees_with_dpkt(transport, protocol, checksum_at):
    segment = dpkt_frame(transport, protocol)[34:]
    dpkt_checksum = int.from_bytes(segment[checksum_at:checksum_at + 2], "big")
    zeroed = segment[:checksum_at] + b"\0\0" + segment[checksum_at + 2:]
    assert pseudo_header_checksum(ENDPOINTS["src_ip"], ENDPOINTS["dst_ip"], protocol, zeroed) == dpkt_checksum
    assert pseudo_header_checksum(ENDPOINTS["src_ip"], ENDPOINTS["dst_ip"], protocol, segment) == 0


def corrupt(frame: bytes, offset: int, value: int) -> bytes:
    return frame[:offset] + bytes([value]) + frame[offset + 1:]


UDP_FRAME = udp_frame(b"0123456789", **ENDPOINTS)
TCP_FRAME = tcp_frame(b"0123456789", seq=1, ack=1, **ENDPOINTS)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "truncated Ethernet header"),
        (UDP_FRAME[:13], "truncated Ethernet header"),
        (UDP_FRAME[:14], "truncated IPv4 header"),
        (UDP_FRAME[:33], "truncated IPv4 header"),
        (UDP_FRAME[:-1], "truncated IPv4 packet"),
        (UDP_FRAME[:12] + b"\x81\x00" + UDP_FRAME[14:], "EtherType 0x8100 is not IPv4"),
        (corrupt(UDP_FRAME, 14, 0x65), "IP version 6"),
        (corrupt(UDP_FRAME, 14, 0x44), "IHL 4"),
        (corrupt(UDP_FRAME[:34], 14, 0x46), "truncated IPv4 header with options"),
        (corrupt(UDP_FRAME, 20, 0x20), "fragment"),  # MF set
        (corrupt(UDP_FRAME, 21, 0x01), "fragment"),  # fragment offset 1
        (TCP_FRAME, "protocol 6, expected 17"),
        (corrupt(UDP_FRAME, 24, UDP_FRAME[24] ^ 1), "bad IPv4 header checksum"),
        (corrupt(UDP_FRAME, 39, UDP_FRAME[39] + 1), "UDP length"),
        (corrupt(UDP_FRAME, 50, UDP_FRAME[50] ^ 1), "bad UDP checksum"),
    ],
)
def test_parse_udp_frame_rejects(frame, message):
    with pytest.raises(CodecError, match=message):
        parse_udp_frame(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (TCP_FRAME[:40], "truncated IPv4 packet"),
        (UDP_FRAME, "protocol 17, expected 6"),
        (corrupt(TCP_FRAME, 46, 0x40), "data offset 4"),
        (corrupt(TCP_FRAME, 46, 0xF0), "truncated TCP header with options"),
        (corrupt(TCP_FRAME, 60, TCP_FRAME[60] ^ 1), "bad TCP checksum"),
    ],
)
def test_parse_tcp_frame_rejects(frame, message):
    with pytest.raises(CodecError, match=message):
        parse_tcp_frame(frame)


def test_bad_checksums_pass_when_not_verified():
    frame = corrupt(TCP_FRAME, 60, TCP_FRAME[60] ^ 1)
    assert parse_tcp_frame(frame, verify_checksums=False)[3] == frame[54:]  # payload offset from PROTOCOLS.md


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EthernetHeader(b"\x01" * 5, b"\x02" * 6).encode(), "destination MAC must be 6 bytes"),
        (lambda: EthernetHeader(b"\x01" * 6, "aa:bb:cc:dd:ee:ff").encode(), "source MAC must be 6 bytes"),
        (lambda: Ipv4Header(b"\0" * 4, "10.0.0.1", 17, 20).encode(), "destination IPv4 address must be 4 bytes"),
        (lambda: Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 20, ihl=6).encode(), "without options"),
        (lambda: Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 20, fragment_offset=1 << 13).encode(), "13 bits"),
        (lambda: Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 65536).encode(), "cannot encode IPv4 header"),
        (lambda: UdpHeader(70000, 1, 8).encode(), "cannot encode UDP header"),
        (lambda: TcpHeader(1, 2, 1 << 32, 0).encode(), "cannot encode TCP header"),
        (lambda: TcpHeader(1, 2, 0, 0, data_offset=6).encode(), "without options"),
        (lambda: udp_frame(bytes(65536), **ENDPOINTS), "cannot encode"),
    ],
)
def test_encode_rejects_values_that_do_not_fit(build, message):
    with pytest.raises(CodecError, match=message):
        build()
