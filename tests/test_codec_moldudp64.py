"""MoldUDP64 codec: hand-built packets from PROTOCOLS.md offsets, round-trips, errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.host.codec.moldudp64 import (
    MoldError,
    MoldPacket,
    MoldRequest,
    decode_packet,
    decode_request,
    encode_packet,
    encode_request,
)

# Session "SESSION001", sequence 0x0102030405060708, count 2, blocks of 3 and 1 bytes.
TWO_BLOCKS = (b"SESSION001" + bytes([1, 2, 3, 4, 5, 6, 7, 8]) + b"\x00\x02"
              + b"\x00\x03abc" + b"\x00\x01z")


def test_known_packet():
    packet = decode_packet(TWO_BLOCKS)
    assert packet == MoldPacket("SESSION001", 0x0102030405060708, (b"abc", b"z"))
    assert packet.count == 2 and packet.next_sequence == 0x0102030405060708 + 2
    assert encode_packet(packet) == TWO_BLOCKS
    assert packet.encoded_length == len(TWO_BLOCKS)


def test_heartbeat_and_end_of_session():
    heartbeat = b"TICK2TRADE" + (41).to_bytes(8, "big") + b"\x00\x00"
    packet = decode_packet(heartbeat)
    assert packet.is_heartbeat and packet.count == 0 and packet.next_sequence == 41
    assert encode_packet(packet) == heartbeat

    end = b"TICK2TRADE" + (41).to_bytes(8, "big") + b"\xff\xff"
    packet = decode_packet(end)
    assert packet.end_of_session and not packet.is_heartbeat and packet.count == 0xFFFF
    assert encode_packet(packet) == end


def test_short_session_is_space_padded():
    assert encode_packet(MoldPacket("AB", 1))[:10] == b"AB        "


def test_request():
    raw = b"TICK2TRADE" + (1000).to_bytes(8, "big") + (25).to_bytes(2, "big")
    assert decode_request(raw) == MoldRequest("TICK2TRADE", 1000, 25)
    assert encode_request(MoldRequest("TICK2TRADE", 1000, 25)) == raw


@given(session=st.text(alphabet="ABCXYZ0123456789", min_size=1, max_size=10),
       sequence=st.integers(0, 2**64 - 1),
       messages=st.lists(st.binary(max_size=60), max_size=30))
def test_round_trip(session, sequence, messages):
    packet = MoldPacket(session, sequence, tuple(messages))
    raw = encode_packet(packet)
    assert len(raw) == 20 + sum(2 + len(m) for m in messages)
    assert int.from_bytes(raw[18:20], "big") == len(messages)
    assert decode_packet(raw) == packet


@pytest.mark.parametrize("raw", [
    TWO_BLOCKS[:19],  # shorter than the header
    TWO_BLOCKS[:-1],  # last block runs past the end
    TWO_BLOCKS[:-3],  # ends before the second block's length field
    TWO_BLOCKS + b"\x00",  # trailing byte
    TWO_BLOCKS[:18] + b"\x00\x03" + TWO_BLOCKS[20:],  # count says 3 blocks
    TWO_BLOCKS[:18] + b"\xff\xff" + TWO_BLOCKS[20:],  # end of session with blocks
])
def test_malformed_packets_raise(raw):
    with pytest.raises(MoldError):
        decode_packet(raw)


@pytest.mark.parametrize("packet", [
    MoldPacket("ELEVENCHARS", 1),
    MoldPacket("S", 2**64),
    MoldPacket("S", 1, (b"x",), end_of_session=True),
    MoldPacket("S", 1, (bytes(65536),)),
])
def test_unencodable_packets_raise(packet):
    with pytest.raises(MoldError):
        encode_packet(packet)
