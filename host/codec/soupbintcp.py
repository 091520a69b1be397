"""SoupBinTCP 3.0 packets: the session layer that carries OUCH over TCP.

Every packet is a 2-byte big-endian length (of what follows it), a 1-byte
packet type and a payload (PROTOCOLS.md, "SoupBinTCP 3.0"). Each packet type
is a frozen dataclass; `encode()` gives the whole packet, length included, and
`decode_packet` turns one whole packet back into its dataclass. The type codes
of client and server packets do not overlap, so one dispatch serves both
directions. TCP is a byte stream: `split_packets` cuts a receive buffer into
complete packets and returns the bytes of the incomplete one left over.

Text fields follow the SoupBinTCP 3.0 specification: username and password
are alphanumeric, left-justified and padded on the right with spaces; the
session fields are padded on the left with spaces ("Left padded with spaces"
in the spec's Login Accepted packet; the reference implementation, Nassau,
right-justifies the requested session the same way); sequence numbers are
ASCII decimal, right-justified and padded on the left with spaces. Decoded
text holds the value without its padding. Text is read and written as
latin-1, so every byte value round-trips exactly, as in `codec.itch`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .net import CodecError

__all__ = [
    "REJECT_NOT_AUTHORIZED",
    "REJECT_SESSION_NOT_AVAILABLE",
    "SoupPacket",
    "Debug",
    "LoginAccepted",
    "LoginRejected",
    "SequencedData",
    "ServerHeartbeat",
    "EndOfSession",
    "LoginRequest",
    "UnsequencedData",
    "ClientHeartbeat",
    "LogoutRequest",
    "decode_packet",
    "split_packets",
    "pad_text",
    "unpad_text",
]

#: `LoginRejected.reason` codes.
REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_NOT_AVAILABLE = "S"

_HEADER = struct.Struct(">Hc")
_MAX_PAYLOAD = 0xFFFF - 1  # the length field counts the type byte too


def _latin1(value: str, label: str) -> bytes:
    """`value` as latin-1 bytes; `CodecError` (naming the field `label`) if it is not such a str."""
    try:
        return value.encode("latin-1")
    except (AttributeError, UnicodeEncodeError):
        raise CodecError(f"{label} must be a str of latin-1 characters, got {value!r}") from None


def pad_text(value: str, width: int, label: str, *, right_justify: bool = False) -> bytes:
    """`value` as latin-1 bytes space-padded to `width`: on the right (left-justified)
    by default, on the left with `right_justify`. Raises `CodecError` (naming the
    field `label`) when it is not a str of latin-1 characters or does not fit.
    """
    raw = _latin1(value, label)
    if len(raw) > width:
        raise CodecError(f"{label} {value!r} is longer than {width} characters")
    return raw.rjust(width, b" ") if right_justify else raw.ljust(width, b" ")


def unpad_text(raw: bytes, *, right_justify: bool = False) -> str:
    """The inverse of `pad_text`: the text with its padding spaces removed."""
    text = raw.decode("latin-1")
    return text.lstrip(" ") if right_justify else text.rstrip(" ")


def _pad_number(value: int, width: int, label: str) -> bytes:
    """A non-negative integer as ASCII decimal, right-justified in `width` characters."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CodecError(f"{label} must be a non-negative int, got {value!r}")
    return pad_text(str(value), width, label, right_justify=True)


def _unpad_number(raw: bytes, label: str) -> int:
    """The integer in a space-padded ASCII decimal field (padding on either side is accepted)."""
    digits = raw.strip(b" ")
    if not digits.isdigit():  # bytes.isdigit is ASCII digits only, and false when empty
        raise CodecError(f"{label} {raw!r} is not a space-padded decimal number")
    return int(digits)


class SoupPacket:
    """Base of the packet types: the length/type framing around each type's payload."""

    __slots__ = ()
    TYPE: ClassVar[bytes]

    def encode(self) -> bytes:
        """The whole packet: length, type, payload."""
        payload = self._payload()
        if len(payload) > _MAX_PAYLOAD:
            raise CodecError(f"SoupBinTCP payload of {len(payload)} bytes exceeds {_MAX_PAYLOAD}")
        return _HEADER.pack(len(payload) + 1, self.TYPE) + payload

    def _payload(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _from_payload(cls, payload: bytes) -> SoupPacket:
        raise NotImplementedError


class _EmptyPacket(SoupPacket):
    """A packet type without payload."""

    __slots__ = ()

    def _payload(self) -> bytes:
        return b""

    @classmethod
    def _from_payload(cls, payload: bytes) -> _EmptyPacket:
        if payload:
            raise CodecError(f"{cls.__name__} carries no payload, got {len(payload)} bytes")
        return cls()


@dataclass(frozen=True, slots=True)
class _MessagePacket(SoupPacket):
    """A packet type whose payload is one opaque higher-level message (OUCH here)."""

    message: bytes

    def _payload(self) -> bytes:
        return bytes(self.message)

    @classmethod
    def _from_payload(cls, payload: bytes) -> _MessagePacket:
        return cls(payload)


@dataclass(frozen=True, slots=True)
class Debug(SoupPacket):
    """'+' Debug (either direction): free-form human-readable text."""

    TYPE = b"+"
    text: str

    def _payload(self) -> bytes:
        return _latin1(self.text, "Debug.text")

    @classmethod
    def _from_payload(cls, payload: bytes) -> Debug:
        return cls(payload.decode("latin-1"))


@dataclass(frozen=True, slots=True)
class LoginAccepted(SoupPacket):
    """'A' Login Accepted (server): the session logged into and the next sequence number it will send."""

    TYPE = b"A"
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("10s20s")
    session: str
    sequence_number: int

    def _payload(self) -> bytes:
        return (pad_text(self.session, 10, "LoginAccepted.session", right_justify=True)
                + _pad_number(self.sequence_number, 20, "LoginAccepted.sequence_number"))

    @classmethod
    def _from_payload(cls, payload: bytes) -> LoginAccepted:
        session, sequence_number = _unpack_exact(cls, payload)
        return cls(
            unpad_text(session, right_justify=True),
            _unpad_number(sequence_number, "LoginAccepted.sequence_number"),
        )


@dataclass(frozen=True, slots=True)
class LoginRejected(SoupPacket):
    """'J' Login Rejected (server): `reason` is `REJECT_NOT_AUTHORIZED` or `REJECT_SESSION_NOT_AVAILABLE`."""

    TYPE = b"J"
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("c")
    reason: str

    def _payload(self) -> bytes:
        reason = _latin1(self.reason, "LoginRejected.reason")
        if len(reason) != 1:
            raise CodecError(f"LoginRejected.reason must be one character, got {self.reason!r}")
        return reason

    @classmethod
    def _from_payload(cls, payload: bytes) -> LoginRejected:
        (reason,) = _unpack_exact(cls, payload)
        return cls(reason.decode("latin-1"))


@dataclass(frozen=True, slots=True)
class SequencedData(_MessagePacket):
    """'S' Sequenced Data (server): one sequenced message, e.g. an OUCH outbound message."""

    TYPE = b"S"


@dataclass(frozen=True, slots=True)
class ServerHeartbeat(_EmptyPacket):
    """'H' Server Heartbeat."""

    TYPE = b"H"


@dataclass(frozen=True, slots=True)
class EndOfSession(_EmptyPacket):
    """'Z' End of Session (server): the session is over; no more sequenced data will follow."""

    TYPE = b"Z"


@dataclass(frozen=True, slots=True)
class LoginRequest(SoupPacket):
    """'L' Login Request (client).

    A blank `requested_session` logs into the currently active session;
    `requested_sequence_number` is the next sequenced message the client
    wants, 0 for only the most recently generated ones onwards.
    """

    TYPE = b"L"
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("6s10s10s20s")
    username: str
    password: str
    requested_session: str = ""
    requested_sequence_number: int = 0

    def _payload(self) -> bytes:
        return (pad_text(self.username, 6, "LoginRequest.username")
                + pad_text(self.password, 10, "LoginRequest.password")
                + pad_text(self.requested_session, 10, "LoginRequest.requested_session", right_justify=True)
                + _pad_number(self.requested_sequence_number, 20, "LoginRequest.requested_sequence_number"))

    @classmethod
    def _from_payload(cls, payload: bytes) -> LoginRequest:
        username, password, session, sequence_number = _unpack_exact(cls, payload)
        return cls(
            unpad_text(username),
            unpad_text(password),
            unpad_text(session, right_justify=True),
            _unpad_number(sequence_number, "LoginRequest.requested_sequence_number"),
        )


@dataclass(frozen=True, slots=True)
class UnsequencedData(_MessagePacket):
    """'U' Unsequenced Data (client): one unsequenced message, e.g. an OUCH inbound message."""

    TYPE = b"U"


@dataclass(frozen=True, slots=True)
class ClientHeartbeat(_EmptyPacket):
    """'R' Client Heartbeat."""

    TYPE = b"R"


@dataclass(frozen=True, slots=True)
class LogoutRequest(_EmptyPacket):
    """'O' Logout Request (client)."""

    TYPE = b"O"


def _unpack_exact(cls: type, payload: bytes) -> tuple[bytes, ...]:
    """Unpack a fixed-size payload with `cls._LAYOUT`, raising `CodecError` on a wrong size."""
    if len(payload) != cls._LAYOUT.size:
        raise CodecError(f"{cls.__name__} payload is {cls._LAYOUT.size} bytes, got {len(payload)}")
    return cls._LAYOUT.unpack(payload)


_PACKET_TYPES: dict[bytes, type[SoupPacket]] = {
    cls.TYPE: cls
    for cls in (Debug, LoginAccepted, LoginRejected, SequencedData, ServerHeartbeat, EndOfSession,
                LoginRequest, UnsequencedData, ClientHeartbeat, LogoutRequest)
}


def decode_packet(packet: bytes | memoryview) -> SoupPacket:
    """Decode one whole packet (length field included) into its dataclass.

    Raises `CodecError` when the length field does not match `len(packet)`,
    the type is unknown or the payload does not fit the type.
    """
    if len(packet) < _HEADER.size:
        raise CodecError(f"SoupBinTCP packet of {len(packet)} bytes is shorter than length + type (3)")
    length, packet_type = _HEADER.unpack_from(packet)
    if length + 2 != len(packet):
        raise CodecError(f"SoupBinTCP length field says {length} + 2 bytes, packet has {len(packet)}")
    cls = _PACKET_TYPES.get(packet_type)
    if cls is None:
        raise CodecError(f"unknown SoupBinTCP packet type {packet_type!r}")
    return cls._from_payload(bytes(packet[_HEADER.size:]))


def split_packets(buffer: bytes | bytearray | memoryview) -> tuple[list[SoupPacket], bytes]:
    """Cut a TCP receive buffer into its complete packets, decoded, and the leftover bytes.

    The leftover is the start of a packet not yet fully received: prepend it
    to the next bytes read. Raises `CodecError` for a complete packet that
    does not decode (a zero length field included: it has no type byte).
    """
    view = memoryview(buffer)
    packets = []
    start = 0
    while len(view) - start >= 2:
        end = start + 2 + (view[start] << 8 | view[start + 1])
        if end > len(view):
            break
        packets.append(decode_packet(view[start:end]))
        start = end
    return packets, bytes(view[start:])
