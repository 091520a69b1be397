"""Tests of tick2trade.host.codec.ouch.

Known-answer messages are assembled byte by byte at the offsets of the
PROTOCOLS.md tables ("OUCH 4.2 messages"), independently of the field
tables in the module; the frame-size test uses dpkt to take the frame apart.
"""

import dataclasses

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.host.codec.net import CodecError, append_fcs, tcp_frame
from tick2trade.host.codec.ouch import (
    INBOUND_TYPES,
    OUTBOUND_TYPES,
    TIME_IN_FORCE_DAY,
    TIME_IN_FORCE_IOC,
    Accepted,
    CancelOrder,
    Canceled,
    EnterOrder,
    Executed,
    Rejected,
    SystemEvent,
    decode_inbound,
    decode_outbound,
)
from tick2trade.host.codec.soupbintcp import UnsequencedData, decode_packet


def wire(length: int, fields: dict[int, bytes]) -> bytes:
    """A message of `length` bytes with each value written at its offset; every byte must be covered once."""
    buffer = bytearray(length)
    covered: set[int] = set()
    for offset, value in fields.items():
        span = set(range(offset, offset + len(value)))
        assert not span & covered, f"field at {offset} overlaps another"
        covered |= span
        buffer[offset:offset + len(value)] = value
    assert covered == set(range(length)), "fields leave gaps or run past the end"
    return bytes(buffer)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


ENTER_ORDER = EnterOrder(
    token="T0000000000001", side="B", shares=100, stock="AAPL", price=1234500,
    time_in_force=TIME_IN_FORCE_IOC, firm="FRM1", display="Y", capacity="P",
    intermarket_sweep="N", minimum_quantity=0, cross_type="N", customer_type="R",
)
ENTER_ORDER_WIRE = wire(49, {
    0: b"O", 1: b"T0000000000001", 15: b"B", 16: u32(100), 20: b"AAPL    ", 28: u32(1234500),
    32: u32(0), 36: b"FRM1", 40: b"Y", 41: b"P", 42: b"N", 43: u32(0), 47: b"N", 48: b"R",
})

KNOWN_ANSWERS = [
    (ENTER_ORDER, ENTER_ORDER_WIRE),
    (
        CancelOrder(token="ABC", shares=0),
        wire(19, {0: b"X", 1: b"ABC           ", 15: u32(0)}),
    ),
    (
        SystemEvent(timestamp=34_200_000_000_000, event_code="S"),
        wire(10, {0: b"S", 1: u64(34_200_000_000_000), 9: b"S"}),
    ),
    (
        Accepted(
            timestamp=1, token="TOK", side="S", shares=500, stock="MSFT", price=4_100_000,
            time_in_force=TIME_IN_FORCE_DAY, firm="ABCD", display="Y", order_reference_number=987654321,
            capacity="A", intermarket_sweep="N", minimum_quantity=100, cross_type="N",
            order_state="L", bbo_weight_indicator=" ",
        ),
        wire(66, {
            0: b"A", 1: u64(1), 9: b"TOK           ", 23: b"S", 24: u32(500), 28: b"MSFT    ",
            36: u32(4_100_000), 40: u32(99999), 44: b"ABCD", 48: b"Y", 49: u64(987654321), 57: b"A",
            58: b"N", 59: u32(100), 63: b"N", 64: b"L", 65: b" ",
        }),
    ),
    (
        Executed(timestamp=2, token="TOK", executed_shares=200, execution_price=4_099_900,
                 liquidity_flag="R", match_number=2**64 - 1),
        wire(40, {0: b"E", 1: u64(2), 9: b"TOK           ", 23: u32(200), 27: u32(4_099_900),
                  31: b"R", 32: u64(2**64 - 1)}),
    ),
    (
        Canceled(timestamp=3, token="TOK", decrement_shares=300, reason="I"),
        wire(28, {0: b"C", 1: u64(3), 9: b"TOK           ", 23: u32(300), 27: b"I"}),
    ),
    (
        Rejected(timestamp=4, token="TOK", reason="Z"),
        wire(24, {0: b"J", 1: u64(4), 9: b"TOK           ", 23: b"Z"}),
    ),
]


@pytest.mark.parametrize(("message", "expected"), KNOWN_ANSWERS, ids=lambda v: type(v).__name__)
def test_known_answer(message, expected):
    assert message.encode() == expected
    decode = decode_inbound if type(message).TYPE in INBOUND_TYPES else decode_outbound
    assert decode(expected) == message


def test_message_lengths_match_protocols_md():
    lengths = {cls.TYPE: cls.LENGTH for cls in (*INBOUND_TYPES.values(), *OUTBOUND_TYPES.values())}
    assert lengths == {b"O": 49, b"X": 19, b"S": 10, b"A": 66, b"E": 40, b"C": 28, b"J": 24}


def test_enter_order_in_soupbintcp_and_a_tcp_frame():
    """PROTOCOLS.md: 49 bytes of OUCH, 52 in SoupBinTCP 'U', a 110-byte frame with FCS."""
    order = ENTER_ORDER.encode()
    assert len(order) == 49
    soup = UnsequencedData(order).encode()
    assert soup == b"\x00\x32U" + order
    frame = tcp_frame(
        soup, src_mac=bytes(6), dst_mac=b"\xff" * 6, src_ip=bytes([10, 0, 0, 1]), dst_ip=bytes([10, 0, 0, 2]),
        src_port=40000, dst_port=15000, seq=1000, ack=2000,
    )
    assert len(append_fcs(frame)) == 110
    tcp = dpkt.ethernet.Ethernet(frame).data.data
    assert isinstance(tcp, dpkt.tcp.TCP)
    assert decode_inbound(decode_packet(tcp.data).message) == ENTER_ORDER


# --- round trips -------------------------------------------------------------


def alpha(width: int) -> st.SearchStrategy[str]:
    """Latin-1 text that fits `width` and does not end in a space (trailing spaces are padding)."""
    return st.text(st.characters(max_codepoint=0xFF), max_size=width).map(lambda s: s.rstrip(" "))


codes = st.characters(max_codepoint=0xFF)


def strategy_for(cls) -> st.SearchStrategy:
    """Random instances of an OUCH message type, each field drawn to fit its declared width."""
    field_strategies = {}
    for field in dataclasses.fields(cls):
        kind, width = field.metadata["kind"], field.metadata["width"]
        field_strategies[field.name] = {
            "uint": st.integers(0, 2 ** (8 * width) - 1),
            "code": codes,
            "alpha": alpha(width),
        }[kind]
    return st.builds(cls, **field_strategies)


ALL_TYPES = [*INBOUND_TYPES.values(), *OUTBOUND_TYPES.values()]


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_encode_decode_round_trip(cls, data):
    message = data.draw(strategy_for(cls))
    encoded = message.encode()
    assert len(encoded) == cls.LENGTH
    assert cls.decode(encoded) == message


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_decode_encode_is_byte_identical(cls, data):
    """Any bytes of the type's length behind its type byte decode and re-encode to
    the same bytes: the trailing spaces stripped from alpha fields are restored."""
    raw = cls.TYPE + data.draw(st.binary(min_size=cls.LENGTH - 1, max_size=cls.LENGTH - 1))
    assert cls.decode(raw).encode() == raw


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decode", "data", "message"),
    [
        (decode_inbound, b"", "empty inbound OUCH message"),
        (decode_outbound, b"", "empty outbound OUCH message"),
        (decode_inbound, b"Q" + bytes(48), "unknown inbound OUCH message type b'Q'"),
        (decode_inbound, ENTER_ORDER_WIRE[:19], "EnterOrder is 49 bytes, got 19"),
        (decode_outbound, b"O" + bytes(48), "unknown outbound OUCH message type b'O'"),
        (decode_inbound, ENTER_ORDER_WIRE[:-1], "EnterOrder is 49 bytes, got 48"),
        (decode_inbound, ENTER_ORDER_WIRE + b" ", "EnterOrder is 49 bytes, got 50"),
        (decode_outbound, b"A" + bytes(10), "Accepted is 66 bytes, got 11"),
    ],
)
def test_decode_rejects(decode, data, message):
    with pytest.raises(CodecError, match=message):
        decode(data)


def test_decode_of_a_type_checks_the_type_byte():
    with pytest.raises(CodecError, match="CancelOrder has type b'X', got b'Y'"):
        CancelOrder.decode(b"Y" + bytes(18))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (dataclasses.replace(ENTER_ORDER, token="T" * 15), "EnterOrder.token 'TTTTTTTTTTTTTTT' is longer than 14"),
        (dataclasses.replace(ENTER_ORDER, stock="\u20ac"), "EnterOrder.stock must be a str of latin-1"),
        (dataclasses.replace(ENTER_ORDER, side="BS"), "EnterOrder.side must be one character"),
        (dataclasses.replace(ENTER_ORDER, side=""), "EnterOrder.side must be one character"),
        (dataclasses.replace(ENTER_ORDER, display=b"Y"), "EnterOrder.display must be one character"),
        (dataclasses.replace(ENTER_ORDER, price=2**32), "cannot encode EnterOrder"),
        (dataclasses.replace(ENTER_ORDER, shares=-1), "cannot encode EnterOrder"),
        (Executed(0, "T", 1, 1, "A", 2**64), "cannot encode Executed"),
    ],
)
def test_encode_rejects(message, error):
    with pytest.raises(CodecError, match=error):
        message.encode()
