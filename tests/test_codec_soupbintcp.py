"""Tests of tick2trade.host.codec.soupbintcp.

Expected bytes are written out by hand from the SoupBinTCP 3.0 specification:
2-byte length (excluding itself), type, payload; login fields padded as the
specification says (username and password on the right, session and
sequence numbers on the left).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.host.codec.net import CodecError
from tick2trade.host.codec.soupbintcp import (
    REJECT_NOT_AUTHORIZED,
    REJECT_SESSION_NOT_AVAILABLE,
    ClientHeartbeat,
    Debug,
    EndOfSession,
    LoginAccepted,
    LoginRejected,
    LoginRequest,
    LogoutRequest,
    SequencedData,
    ServerHeartbeat,
    UnsequencedData,
    decode_packet,
    split_packets,
)


def text(width: int, *, right_justified: bool = False) -> st.SearchStrategy[str]:
    """Latin-1 text that fits `width` and has no space on its padded side (padding is stripped)."""
    chars = st.characters(min_codepoint=0, max_codepoint=0xFF)
    strip = str.lstrip if right_justified else str.rstrip
    return st.text(chars, max_size=width).map(lambda s: strip(s, " "))


sequence_numbers = st.integers(0, 10**20 - 1)
messages = st.binary(max_size=300)

packets = st.one_of(
    st.builds(LoginRequest, text(6), text(10), text(10, right_justified=True), sequence_numbers),
    st.builds(LoginAccepted, text(10, right_justified=True), sequence_numbers),
    st.builds(LoginRejected, st.sampled_from([REJECT_NOT_AUTHORIZED, REJECT_SESSION_NOT_AVAILABLE])),
    st.builds(UnsequencedData, messages),
    st.builds(SequencedData, messages),
    st.builds(Debug, st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)),
    st.sampled_from([ClientHeartbeat(), ServerHeartbeat(), EndOfSession(), LogoutRequest()]),
)


# --- known answers -----------------------------------------------------------


def test_login_request_layout():
    # length 47 = type (1) + username (6) + password (10) + session (10) + sequence number (20)
    expected = (
        b"\x00\x2f" b"L"
        b"TRADER"
        b"secret    "          # alphanumeric: left-justified, padded on the right
        b"  SESSION1"          # session: padded on the left
        b"                  42"  # numeric: right-justified, padded on the left
    )
    packet = LoginRequest("TRADER", "secret", "SESSION1", 42)
    assert packet.encode() == expected
    assert decode_packet(expected) == packet


def test_login_request_blank_session_and_sequence_zero():
    packet = LoginRequest("ME", "pw").encode()
    assert packet[3:] == b"ME    " + b"pw        " + b" " * 10 + b" " * 19 + b"0"


def test_login_accepted_layout():
    # length 31 = type (1) + session (10) + sequence number (20)
    expected = b"\x00\x1f" b"A" b"    ABCDEF" b"                 123"
    assert LoginAccepted("ABCDEF", 123).encode() == expected
    assert decode_packet(expected) == LoginAccepted("ABCDEF", 123)


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (LoginRejected(REJECT_NOT_AUTHORIZED), b"\x00\x02JA"),
        (LoginRejected(REJECT_SESSION_NOT_AVAILABLE), b"\x00\x02JS"),
        (ServerHeartbeat(), b"\x00\x01H"),
        (ClientHeartbeat(), b"\x00\x01R"),
        (EndOfSession(), b"\x00\x01Z"),
        (LogoutRequest(), b"\x00\x01O"),
        (Debug("hello"), b"\x00\x06+hello"),
        (UnsequencedData(b"\x00\x01\xff"), b"\x00\x04U\x00\x01\xff"),
        (SequencedData(b""), b"\x00\x01S"),
    ],
)
def test_short_packet_layouts(packet, wire):
    assert packet.encode() == wire
    assert decode_packet(wire) == packet


# --- round trips -------------------------------------------------------------


@given(packets)
def test_encode_decode_round_trip(packet):
    wire = packet.encode()
    assert int.from_bytes(wire[:2], "big") == len(wire) - 2
    assert wire[2:3] == packet.TYPE
    assert decode_packet(wire) == packet


@given(st.sampled_from([b"A", b"L"]), st.data())
def test_decode_encode_is_byte_identical(packet_type, data):
    """Any correctly padded login payload decodes and re-encodes to the same bytes."""
    def padded(width, right):
        value = data.draw(text(width, right_justified=right))
        return value.rjust(width) if right else value.ljust(width)

    def number():
        return str(data.draw(sequence_numbers)).rjust(20)

    if packet_type == b"A":
        payload = padded(10, True) + number()
    else:
        payload = padded(6, False) + padded(10, False) + padded(10, True) + number()
    wire = (len(payload) + 1).to_bytes(2, "big") + packet_type + payload.encode("latin-1")
    assert decode_packet(wire).encode() == wire


# --- stream splitting --------------------------------------------------------


@given(st.lists(packets, max_size=12), st.lists(st.integers(0, 5000), max_size=8))
def test_split_packets_reassembles_any_chunking(sent, cuts):
    stream = b"".join(p.encode() for p in sent)
    boundaries = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
    received = []
    pending = b""
    start = 0
    for end in boundaries:
        complete, pending = split_packets(pending + stream[start:end])
        received.extend(complete)
        start = end
    assert received == sent
    assert pending == b""


def test_split_packets_at_every_cut():
    first, second = LoginAccepted("S1", 7).encode(), SequencedData(b"order").encode()
    stream = first + second
    for cut in range(len(stream) + 1):
        complete, leftover = split_packets(stream[:cut])
        expected = [LoginAccepted("S1", 7)] if cut >= len(first) else []
        if cut == len(stream):
            expected.append(SequencedData(b"order"))
        assert complete == expected, cut
        assert leftover == stream[sum(len(p.encode()) for p in expected):cut], cut


def test_split_packets_keeps_partial_packet():
    heartbeat = ServerHeartbeat().encode()
    data = SequencedData(b"0123456789").encode()
    complete, leftover = split_packets(heartbeat + data[:7])
    assert complete == [ServerHeartbeat()]
    assert leftover == data[:7]
    assert split_packets(b"\x00") == ([], b"\x00")
    assert split_packets(b"") == ([], b"")


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"", "shorter than length \\+ type"),
        (b"\x00\x01", "shorter than length \\+ type"),
        (b"\x00\x05H", "length field says 5"),
        (b"\x00\x01H\x00", "length field says 1"),
        (b"\x00\x01Q", "unknown SoupBinTCP packet type b'Q'"),
        (b"\x00\x02HX", "ServerHeartbeat carries no payload"),
        (b"\x00\x01J", "LoginRejected payload is 1 bytes, got 0"),
        (b"\x00\x1eA" + b" " * 29, "LoginAccepted payload is 30 bytes, got 29"),
        (b"\x00\x1fA" + b"   SESSION" + b" " * 20, "sequence_number .* is not a space-padded decimal"),
        (b"\x00\x1fA" + b"   SESSION" + b" " * 17 + b"-12", "not a space-padded decimal"),
        (b"\x00\x2fL" + b" " * 26 + b" " * 18 + b"1x", "requested_sequence_number"),
    ],
)
def test_decode_rejects(wire, message):
    with pytest.raises(CodecError, match=message):
        decode_packet(wire)


def test_split_packets_rejects_zero_length_packet():
    with pytest.raises(CodecError, match="shorter than length \\+ type"):
        split_packets(ServerHeartbeat().encode() + b"\x00\x00")


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (LoginRequest("SEVENCH", "pw"), "username 'SEVENCH' is longer than 6"),
        (LoginRequest("me", "pw", "ELEVEN_CHAR"), "requested_session 'ELEVEN_CHAR' is longer than 10"),
        (LoginRequest("me", "pw", "", -1), "requested_sequence_number must be a non-negative int"),
        (LoginRequest("me", "pw", "", 10**20), "longer than 20"),
        (LoginRequest("me\u20ac", "pw"), "latin-1"),
        (LoginAccepted("S", "12"), "sequence_number must be a non-negative int"),
        (LoginRejected("AS"), "one character"),
        (LoginRejected(""), "one character"),
        (Debug("\u20ac"), "latin-1"),
        (UnsequencedData(bytes(65535)), "exceeds 65534"),
    ],
)
def test_encode_rejects(packet, message):
    with pytest.raises(CodecError, match=message):
        packet.encode()
