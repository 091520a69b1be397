"""MoldUDP64 downstream packets and re-request packets (PROTOCOLS.md).

A downstream packet is a 20-byte header (session 10, sequence number 8,
message count 2) followed by `count` message blocks, each a 2-byte length
(excluding itself) and the message bytes. Count 0 is a heartbeat (the
sequence number is then the next expected one); count 0xFFFF is end of
session (no blocks). A re-request (listener to server) is the bare header:
session, first sequence number wanted, number of messages wanted.

`decode_packet` is strict: anything that is not exactly a well-formed packet
raises `MoldError`. The receive path's tolerant, counted handling of broken
packets lives in the golden model (host/rx_model.py), not here.

The session is held as text without trailing space padding (like ITCH alpha
fields); encoding pads it to 10 bytes with spaces.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .net import CodecError

__all__ = [
    "MoldError",
    "MoldPacket",
    "MoldRequest",
    "HEADER",
    "HEADER_LENGTH",
    "END_OF_SESSION",
    "MAX_BLOCK_LENGTH",
    "decode_packet",
    "encode_packet",
    "decode_request",
    "encode_request",
]

HEADER = struct.Struct(">10sQH")
HEADER_LENGTH = HEADER.size  # 20
END_OF_SESSION = 0xFFFF
MAX_BLOCK_LENGTH = 0xFFFF
SESSION_LENGTH = 10


class MoldError(CodecError):
    """Bytes that are not a well-formed MoldUDP64 packet, or an unencodable one."""


@dataclass(frozen=True, slots=True)
class MoldPacket:
    """A downstream packet: `messages` are the message bytes, without lengths.

    `end_of_session` packets carry no messages; a packet with no messages
    and `end_of_session` false is a heartbeat.
    """

    session: str
    sequence: int
    messages: tuple[bytes, ...] = ()
    end_of_session: bool = False

    @property
    def count(self) -> int:
        """The Message Count field: number of messages, 0 heartbeat, 0xFFFF end of session."""
        return END_OF_SESSION if self.end_of_session else len(self.messages)

    @property
    def is_heartbeat(self) -> bool:
        return not self.end_of_session and not self.messages

    @property
    def next_sequence(self) -> int:
        """Sequence number the receiver expects after this packet."""
        return self.sequence + (0 if self.end_of_session else len(self.messages))

    @property
    def encoded_length(self) -> int:
        """Length of `encode_packet(self)` without building it."""
        return HEADER_LENGTH + sum(2 + len(m) for m in self.messages)


@dataclass(frozen=True, slots=True)
class MoldRequest:
    """A re-request: `count` messages wanted from `sequence` on."""

    session: str
    sequence: int
    count: int


def _session_bytes(session: str) -> bytes:
    raw = session.encode("latin-1")
    if len(raw) > SESSION_LENGTH:
        raise MoldError(f"session {session!r} is longer than {SESSION_LENGTH} bytes")
    return raw.ljust(SESSION_LENGTH, b" ")


def _pack_header(session: str, sequence: int, count: int) -> bytes:
    try:
        return HEADER.pack(_session_bytes(session), sequence, count)
    except struct.error as exc:
        raise MoldError(f"header field out of range: {exc}") from exc


def encode_packet(packet: MoldPacket) -> bytes:
    """The packet's exact bytes (the UDP payload)."""
    if packet.end_of_session and packet.messages:
        raise MoldError("an end-of-session packet carries no messages")
    if len(packet.messages) >= END_OF_SESSION:
        raise MoldError(f"{len(packet.messages)} messages do not fit a packet")
    parts = [_pack_header(packet.session, packet.sequence, packet.count)]
    for message in packet.messages:
        if len(message) > MAX_BLOCK_LENGTH:
            raise MoldError(f"message of {len(message)} bytes does not fit a block")
        parts.append(len(message).to_bytes(2, "big"))
        parts.append(message)
    return b"".join(parts)


def decode_packet(payload: bytes | bytearray | memoryview) -> MoldPacket:
    """Decode a complete, well-formed packet; raise `MoldError` otherwise."""
    if len(payload) < HEADER_LENGTH:
        raise MoldError(f"packet of {len(payload)} bytes is shorter than the header")
    session, sequence, count = HEADER.unpack_from(payload)
    session_text = session.decode("latin-1").rstrip(" ")
    if count == END_OF_SESSION:
        if len(payload) != HEADER_LENGTH:
            raise MoldError("end-of-session packet with trailing bytes")
        return MoldPacket(session_text, sequence, (), end_of_session=True)
    messages = tuple(_iter_blocks(payload, count))
    return MoldPacket(session_text, sequence, messages)


def _iter_blocks(payload, count: int) -> Iterator[bytes]:
    offset = HEADER_LENGTH
    for index in range(count):
        if offset + 2 > len(payload):
            raise MoldError(f"packet ends before block {index} of {count}")
        length = int.from_bytes(payload[offset:offset + 2], "big")
        end = offset + 2 + length
        if end > len(payload):
            raise MoldError(f"block {index} of {length} bytes runs past the end of the packet")
        yield bytes(payload[offset + 2:end])
        offset = end
    if offset != len(payload):
        raise MoldError(f"{len(payload) - offset} bytes after the {count} blocks")


def encode_request(request: MoldRequest) -> bytes:
    """The re-request packet bytes."""
    return _pack_header(request.session, request.sequence, request.count)


def decode_request(payload: bytes | bytearray | memoryview) -> MoldRequest:
    """Decode a re-request packet (exactly 20 bytes)."""
    if len(payload) != HEADER_LENGTH:
        raise MoldError(f"re-request of {len(payload)} bytes, expected {HEADER_LENGTH}")
    session, sequence, count = HEADER.unpack_from(payload)
    return MoldRequest(session.decode("latin-1").rstrip(" "), sequence, count)
