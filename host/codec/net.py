"""Ethernet II, IPv4, UDP and TCP headers, their checksums, and the Ethernet FCS.

Layouts and checksum rules are those of PROTOCOLS.md ("Frame offsets"): big-endian
fields, IPv4 header checksum over the header, UDP and TCP checksums over the IPv4
pseudo-header plus the segment, FCS as `zlib.crc32` appended little-endian.

Addresses are raw network-order bytes throughout: a MAC is 6 bytes, an IPv4
address 4 bytes (`ipaddress.IPv4Address("10.0.0.1").packed` converts). Bytes are
what the wire, the gateware templates and the registers hold, so no conversion
happens on the hot path.

Each header is a frozen dataclass whose `encode()` writes exactly the fields it
holds (checksums included, so decode -> encode is byte-identical) and whose
`decode(data)` reads the header from the start of `data`. The builders
(`udp_frame`, `tcp_frame`) fill in lengths and checksums; the parsers
(`parse_udp_frame`, `parse_tcp_frame`) check them. Frames are handled without
their FCS, as the MAC delivers them; `append_fcs` and `fcs_ok` add and check it.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import zlib
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "CodecError",
    "ETHERTYPE_IPV4",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPV4_DONT_FRAGMENT",
    "IPV4_MORE_FRAGMENTS",
    "DEFAULT_TCP_WINDOW",
    "TcpFlags",
    "EthernetHeader",
    "Ipv4Header",
    "UdpHeader",
    "TcpHeader",
    "internet_checksum",
    "pseudo_header_checksum",
    "append_fcs",
    "fcs_ok",
    "udp_frame",
    "tcp_frame",
    "parse_udp_frame",
    "parse_tcp_frame",
]


class CodecError(ValueError):
    """Bytes that are not a valid message of the protocol, or values that cannot be encoded.

    The base of every error raised by the `tick2trade.host.codec` modules, so a
    caller can drop and count a malformed input with one `except`.
    """


ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6
IPPROTO_UDP = 17

#: Bits of `Ipv4Header.flags` (the 3-bit field: reserved, DF, MF).
IPV4_DONT_FRAGMENT = 0b010
IPV4_MORE_FRAGMENTS = 0b001

DEFAULT_TCP_WINDOW = 65535


class TcpFlags(enum.IntFlag):
    """The eight TCP control bits (RFC 9293 header byte 13)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


_ETHERNET = struct.Struct(">6s6sH")
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_UDP = struct.Struct(">HHHH")
_TCP = struct.Struct(">HHIIBBHHH")
_PSEUDO_HEADER = struct.Struct(">4s4sxBH")
_FCS = struct.Struct("<I")

# Offsets of the checksum fields within their headers.
_IPV4_CHECKSUM_AT = 10
_UDP_CHECKSUM_AT = 6
_TCP_CHECKSUM_AT = 16


def _pack(layout: struct.Struct, what: str, *values: object) -> bytes:
    """`layout.pack(*values)`, reporting a value out of range as a `CodecError`."""
    try:
        return layout.pack(*values)
    except struct.error as error:
        raise CodecError(f"cannot encode {what}: {error}") from None


def _check_address(value: object, length: int, what: str) -> None:
    """Reject an address that is not `length` raw bytes (struct would silently pad or cut it)."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        raise CodecError(f"{what} must be {length} bytes, got {value!r}")


def _check_bits(value: int, bits: int, what: str) -> None:
    """Reject a value that would spill out of its bit field into the neighbouring one."""
    if not 0 <= value < 1 << bits:
        raise CodecError(f"{what} must fit in {bits} bits, got {value}")


def _require(data: bytes | memoryview, length: int, what: str) -> None:
    """Raise `CodecError` when `data` is shorter than `length`, the size of the `what` being read."""
    if len(data) < length:
        raise CodecError(f"truncated {what}: {len(data)} bytes, need {length}")


# --- headers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    """Ethernet II header: destination MAC, source MAC, EtherType (14 bytes)."""

    SIZE: ClassVar[int] = _ETHERNET.size

    dst: bytes
    src: bytes
    ethertype: int = ETHERTYPE_IPV4

    def encode(self) -> bytes:
        _check_address(self.dst, 6, "destination MAC")
        _check_address(self.src, 6, "source MAC")
        return _pack(_ETHERNET, "Ethernet header", self.dst, self.src, self.ethertype)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> EthernetHeader:
        _require(data, cls.SIZE, "Ethernet header")
        return cls(*_ETHERNET.unpack_from(data))


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """IPv4 header (RFC 791). Options are not kept: `encode` writes IHL 5 only.

    `flags` is the 3-bit field (reserved, DF, MF; see `IPV4_DONT_FRAGMENT`),
    `fragment_offset` counts 8-byte units, `tos` is the DSCP/ECN byte.
    `decode` accepts a header with options (IHL > 5) and skips them; the
    header length is `header_length`.
    """

    MIN_SIZE: ClassVar[int] = _IPV4.size

    src: bytes
    dst: bytes
    protocol: int
    total_length: int
    identification: int = 0
    flags: int = IPV4_DONT_FRAGMENT
    fragment_offset: int = 0
    ttl: int = 64
    tos: int = 0
    checksum: int = 0
    version: int = 4
    ihl: int = 5

    @property
    def header_length(self) -> int:
        """Header length in bytes, options included."""
        return self.ihl * 4

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & IPV4_DONT_FRAGMENT)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & IPV4_MORE_FRAGMENTS)

    def encode(self) -> bytes:
        if self.version != 4 or self.ihl != 5:
            raise CodecError(f"can only encode IPv4 without options (version 4, IHL 5), got {self.version}/{self.ihl}")
        _check_bits(self.flags, 3, "IPv4 flags")
        _check_bits(self.fragment_offset, 13, "IPv4 fragment offset")
        _check_address(self.src, 4, "source IPv4 address")
        _check_address(self.dst, 4, "destination IPv4 address")
        return _pack(
            _IPV4, "IPv4 header",
            0x45, self.tos, self.total_length, self.identification,
            self.flags << 13 | self.fragment_offset,
            self.ttl, self.protocol, self.checksum, self.src, self.dst,
        )

    def with_checksum(self) -> Ipv4Header:
        """A copy whose `checksum` is the correct header checksum."""
        unsummed = dataclasses.replace(self, checksum=0).encode()
        return dataclasses.replace(self, checksum=internet_checksum(unsummed))

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Ipv4Header:
        """Decode the header at the start of `data`; raises `CodecError` if it is not IPv4."""
        _require(data, cls.MIN_SIZE, "IPv4 header")
        (version_ihl, tos, total_length, identification, flags_fragment,
         ttl, protocol, checksum, src, dst) = _IPV4.unpack_from(data)
        version, ihl = version_ihl >> 4, version_ihl & 0x0F
        if version != 4:
            raise CodecError(f"IP version {version}, expected 4")
        if ihl < 5:
            raise CodecError(f"IPv4 IHL {ihl} is below the minimum of 5")
        _require(data, ihl * 4, "IPv4 header with options")
        return cls(
            src=src, dst=dst, protocol=protocol, total_length=total_length,
            identification=identification, flags=flags_fragment >> 13,
            fragment_offset=flags_fragment & 0x1FFF, ttl=ttl, tos=tos,
            checksum=checksum, version=version, ihl=ihl,
        )


@dataclass(frozen=True, slots=True)
class UdpHeader:
    """UDP header (RFC 768). `length` covers header and payload; checksum 0 means none."""

    SIZE: ClassVar[int] = _UDP.size

    src_port: int
    dst_port: int
    length: int
    checksum: int = 0

    def encode(self) -> bytes:
        return _pack(_UDP, "UDP header", self.src_port, self.dst_port, self.length, self.checksum)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> UdpHeader:
        _require(data, cls.SIZE, "UDP header")
        return cls(*_UDP.unpack_from(data))


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """TCP header (RFC 9293). Options are not kept: `encode` writes data offset 5 only.

    `decode` accepts options (data offset > 5) and skips them; the payload
    starts at `header_length`. `reserved` is the 4 bits between data offset
    and the control bits, kept so that decode -> encode is exact.
    """

    MIN_SIZE: ClassVar[int] = _TCP.size

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags = TcpFlags.PSH | TcpFlags.ACK
    window: int = DEFAULT_TCP_WINDOW
    checksum: int = 0
    urgent_pointer: int = 0
    data_offset: int = 5
    reserved: int = 0

    @property
    def header_length(self) -> int:
        """Header length in bytes, options included."""
        return self.data_offset * 4

    def encode(self) -> bytes:
        if self.data_offset != 5:
            raise CodecError(f"can only encode TCP without options (data offset 5), got {self.data_offset}")
        _check_bits(self.reserved, 4, "TCP reserved bits")
        return _pack(
            _TCP, "TCP header",
            self.src_port, self.dst_port, self.seq, self.ack,
            self.data_offset << 4 | self.reserved, self.flags,
            self.window, self.checksum, self.urgent_pointer,
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> TcpHeader:
        """Decode the header at the start of `data`, options included in the length check."""
        _require(data, cls.MIN_SIZE, "TCP header")
        (src_port, dst_port, seq, ack, offset_reserved, flags,
         window, checksum, urgent_pointer) = _TCP.unpack_from(data)
        data_offset = offset_reserved >> 4
        if data_offset < 5:
            raise CodecError(f"TCP data offset {data_offset} is below the minimum of 5")
        _require(data, data_offset * 4, "TCP header with options")
        return cls(
            src_port, dst_port, seq, ack, TcpFlags(flags), window, checksum,
            urgent_pointer, data_offset, offset_reserved & 0x0F,
        )


# --- checksums ---------------------------------------------------------------


def internet_checksum(data: bytes | memoryview) -> int:
    """The Internet checksum of RFC 1071: the complement of the ones'-complement
    sum of `data` taken as big-endian 16-bit words (an odd length is padded with
    a zero byte).

    With the checksum field of a header zeroed this is the value to store
    there; over a header that carries a correct checksum it is 0.

    The ones'-complement sum is computed as one big integer modulo 0xFFFF
    (2**16 is 1 modulo 0xFFFF, so the words add up as the end-around carry
    would), which is one C-level operation instead of a Python loop per word.
    The only value that reduction cannot tell apart is ones'-complement
    "negative zero": a sum of words that are not all zero is 0xFFFF, never 0.
    """
    if len(data) % 2:
        data = bytes(data) + b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number != 0:
        total = 0xFFFF
    return ~total & 0xFFFF


def pseudo_header_checksum(src_ip: bytes, dst_ip: bytes, protocol: int, segment: bytes | memoryview) -> int:
    """The Internet checksum of the IPv4 pseudo-header followed by a UDP or TCP `segment`.

    The pseudo-header is source address, destination address, a zero byte,
    the protocol and the segment length. With the segment's checksum field
    zeroed this is the checksum to store (UDP stores a result of 0 as
    0xFFFF, RFC 768); over a segment carrying a correct checksum it is 0.
    """
    _check_address(src_ip, 4, "source IPv4 address")
    _check_address(dst_ip, 4, "destination IPv4 address")
    pseudo_header = _pack(_PSEUDO_HEADER, "pseudo-header", src_ip, dst_ip, protocol, len(segment))
    return internet_checksum(pseudo_header + segment)


def append_fcs(frame: bytes) -> bytes:
    """`frame` (destination MAC to end of payload) followed by its Ethernet FCS."""
    return frame + _FCS.pack(zlib.crc32(frame))


def fcs_ok(frame_with_fcs: bytes) -> bool:
    """Whether the last 4 bytes are the correct FCS of the bytes before them."""
    if len(frame_with_fcs) < _FCS.size:
        raise CodecError(f"{len(frame_with_fcs)} bytes cannot hold a 4-byte FCS")
    (fcs,) = _FCS.unpack_from(frame_with_fcs, len(frame_with_fcs) - _FCS.size)
    return zlib.crc32(frame_with_fcs[:-_FCS.size]) == fcs


# --- frames ------------------------------------------------------------------


def _store_checksum(unsummed: bytes, offset: int, checksum: int) -> bytes:
    """`unsummed` (encoded with a zero checksum field) with `checksum` stored at `offset`.

    The builders patch bytes rather than re-encode a copied dataclass: it is
    the same result at a fraction of the cost, and builders run per frame.
    """
    return unsummed[:offset] + checksum.to_bytes(2, "big") + unsummed[offset + 2:]


def _ipv4_frame(
    segment: bytes, protocol: int, *, src_mac: bytes, dst_mac: bytes,
    src_ip: bytes, dst_ip: bytes, ttl: int, identification: int,
) -> bytes:
    """Ethernet II + IPv4 (IHL 5, DF, correct checksum) headers in front of `segment`."""
    unsummed = Ipv4Header(
        src=src_ip, dst=dst_ip, protocol=protocol,
        total_length=Ipv4Header.MIN_SIZE + len(segment),
        identification=identification, ttl=ttl,
    ).encode()
    ip = _store_checksum(unsummed, _IPV4_CHECKSUM_AT, internet_checksum(unsummed))
    return EthernetHeader(dst=dst_mac, src=src_mac).encode() + ip + segment


def udp_frame(
    payload: bytes, *, src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes,
    src_port: int, dst_port: int, ttl: int = 64, identification: int = 0, udp_checksum: bool = True,
) -> bytes:
    """A complete Ethernet/IPv4/UDP frame carrying `payload`, without FCS.

    IPv4 has IHL 5, DF set (the datagram is never fragmented, so an
    identification of 0 is allowed, RFC 6864) and a correct header checksum.
    With `udp_checksum` false the UDP checksum is 0 ("not computed"), as
    NASDAQ sends MoldUDP64.
    """
    segment = UdpHeader(src_port, dst_port, UdpHeader.SIZE + len(payload)).encode() + payload
    if udp_checksum:
        checksum = pseudo_header_checksum(src_ip, dst_ip, IPPROTO_UDP, segment) or 0xFFFF
        segment = _store_checksum(segment, _UDP_CHECKSUM_AT, checksum)
    return _ipv4_frame(
        segment, IPPROTO_UDP, src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=dst_ip,
        ttl=ttl, identification=identification,
    )


def tcp_frame(
    payload: bytes, *, src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes,
    src_port: int, dst_port: int, seq: int, ack: int,
    flags: TcpFlags = TcpFlags.PSH | TcpFlags.ACK, window: int = DEFAULT_TCP_WINDOW,
    ttl: int = 64, identification: int = 0,
) -> bytes:
    """A complete Ethernet/IPv4/TCP frame carrying `payload`, without FCS.

    TCP has no options (data offset 5) and a correct checksum; IPv4 is as in
    `udp_frame`.
    """
    segment = TcpHeader(src_port, dst_port, seq, ack, flags, window).encode() + payload
    checksum = pseudo_header_checksum(src_ip, dst_ip, IPPROTO_TCP, segment)
    segment = _store_checksum(segment, _TCP_CHECKSUM_AT, checksum)
    return _ipv4_frame(
        segment, IPPROTO_TCP, src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=dst_ip,
        ttl=ttl, identification=identification,
    )


def _parse_ipv4_frame(
    frame: bytes, protocol: int, verify_checksums: bool,
) -> tuple[EthernetHeader, Ipv4Header, memoryview]:
    """Check the Ethernet and IPv4 layers of `frame`; return their headers and the IPv4 payload.

    Bytes after the IPv4 total length (Ethernet padding) are not part of the payload.
    """
    view = memoryview(frame)
    eth = EthernetHeader.decode(view)
    if eth.ethertype != ETHERTYPE_IPV4:
        raise CodecError(f"EtherType 0x{eth.ethertype:04x} is not IPv4 (0x0800)")
    packet = view[EthernetHeader.SIZE:]
    ip = Ipv4Header.decode(packet)
    if ip.total_length < ip.header_length:
        raise CodecError(f"IPv4 total length {ip.total_length} is shorter than its header ({ip.header_length})")
    if ip.total_length > len(packet):
        raise CodecError(f"truncated IPv4 packet: total length {ip.total_length}, {len(packet)} bytes present")
    if ip.more_fragments or ip.fragment_offset:
        raise CodecError("IPv4 fragment (MF set or non-zero fragment offset): cannot parse its payload")
    if ip.protocol != protocol:
        raise CodecError(f"IPv4 protocol {ip.protocol}, expected {protocol}")
    if verify_checksums and internet_checksum(packet[:ip.header_length]) != 0:
        raise CodecError(f"bad IPv4 header checksum 0x{ip.checksum:04x}")
    return eth, ip, packet[ip.header_length:ip.total_length]


def parse_udp_frame(
    frame: bytes, *, verify_checksums: bool = True,
) -> tuple[EthernetHeader, Ipv4Header, UdpHeader, bytes]:
    """Split an Ethernet/IPv4/UDP frame (without FCS) into its headers and payload.

    Raises `CodecError` for anything that is not a complete, unfragmented
    UDP/IPv4 frame whose UDP length matches the IPv4 payload. With
    `verify_checksums` (the default) the IPv4 header checksum and a non-zero
    UDP checksum must be correct.
    """
    eth, ip, datagram = _parse_ipv4_frame(frame, IPPROTO_UDP, verify_checksums)
    udp = UdpHeader.decode(datagram)
    if udp.length != len(datagram):
        raise CodecError(f"UDP length {udp.length} does not match the IPv4 payload length {len(datagram)}")
    if verify_checksums and udp.checksum and pseudo_header_checksum(ip.src, ip.dst, IPPROTO_UDP, datagram):
        raise CodecError(f"bad UDP checksum 0x{udp.checksum:04x}")
    return eth, ip, udp, bytes(datagram[UdpHeader.SIZE:])


def parse_tcp_frame(
    frame: bytes, *, verify_checksums: bool = True,
) -> tuple[EthernetHeader, Ipv4Header, TcpHeader, bytes]:
    """Split an Ethernet/IPv4/TCP frame (without FCS) into its headers and payload.

    TCP options are skipped. Raises `CodecError` for anything that is not a
    complete, unfragmented TCP/IPv4 frame; with `verify_checksums` (the
    default) the IPv4 header checksum and the TCP checksum must be correct.
    """
    eth, ip, segment = _parse_ipv4_frame(frame, IPPROTO_TCP, verify_checksums)
    tcp = TcpHeader.decode(segment)
    if verify_checksums and pseudo_header_checksum(ip.src, ip.dst, IPPROTO_TCP, segment):
        raise CodecError(f"bad TCP checksum 0x{tcp.checksum:04x}")
    return eth, ip, tcp, bytes(segment[tcp.header_length:])
