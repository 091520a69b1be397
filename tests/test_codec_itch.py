"""ITCH 5.0 codec: known answers from PROTOCOLS.md offsets, round-trips, errors."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.host.codec import itch

# The common header of every known-answer message below, byte by byte:
# locate 0x0102, tracking 0x0304, timestamp 0x0000_1234_5678_9ABC ns.
HEADER_TAIL = bytes([0x01, 0x02, 0x03, 0x04, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC])
LOCATE, TRACKING, TIMESTAMP = 0x0102, 0x0304, 0x123456789ABC


def message(type_char: str, *body_pieces: bytes) -> bytes:
    """Type byte + the common header above + the body pieces, concatenated."""
    return type_char.encode() + HEADER_TAIL + b"".join(body_pieces)


def test_add_order_known_answer_by_offset():
    raw = bytearray(36)
    raw[0] = ord("A")
    raw[1:11] = HEADER_TAIL
    raw[11:19] = (0x0000000000ABCDEF).to_bytes(8, "big")  # order ref at 11
    raw[19] = ord("S")  # side at 19
    raw[20:24] = bytes([0, 0, 0x01, 0xF4])  # shares 500 at 20
    raw[24:32] = b"MSFT    "  # stock at 24
    raw[32:36] = bytes([0x00, 0x12, 0xD6, 0x44])  # price 1234500 at 32
    msg = itch.decode(bytes(raw))
    assert msg == itch.AddOrder(
        locate=LOCATE, tracking=TRACKING, timestamp=TIMESTAMP,
        order_ref=0xABCDEF, side="S", shares=500, stock="MSFT", price=1234500,
    )
    assert itch.encode(msg) == bytes(raw)


KNOWN_ANSWERS = [
    (
        message("S", b"Q"),
        {"event_code": "Q"},
    ),
    (
        message("R", b"TGT     ", b"Q", b" ", b"\x00\x00\x00\x64", b"N", b"C", b"Z ", b"P", b"N", b" ", b"1", b"N",
                b"\x00\x00\x00\x02", b"Y"),
        {"stock": "TGT", "market_category": "Q", "financial_status_indicator": " ", "round_lot_size": 100,
         "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
         "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
         "etp_flag": "N", "etp_leverage_factor": 2, "inverse_indicator": "Y"},
    ),
    (
        message("H", b"LEAD    ", b"H", b" ", b"LUDP"),
        {"stock": "LEAD", "trading_state": "H", "reserved": " ", "reason": "LUDP"},
    ),
    (
        message("F", b"\x00" * 7 + b"\x09", b"B", b"\x00\x00\x27\x10", b"AB      ", b"\xff\xff\xff\xff", b"GS  "),
        {"order_ref": 9, "side": "B", "shares": 10000, "stock": "AB", "price": 0xFFFFFFFF, "attribution": "GS"},
    ),
    (
        message("E", b"\x80" + b"\x00" * 7, b"\x00\x00\x00\x01", b"\x00" * 6 + b"\x01\x00"),
        {"order_ref": 1 << 63, "executed_shares": 1, "match_number": 256},
    ),
    (
        message("C", b"\x00" * 7 + b"\x05", b"\x00\x00\x00\x0a", b"\x00" * 7 + b"\x07", b"Y", b"\x00\x01\x00\x00"),
        {"order_ref": 5, "executed_shares": 10, "match_number": 7, "printable": "Y", "execution_price": 65536},
    ),
    (
        message("X", b"\x00" * 7 + b"\x05", b"\x00\x00\x00\x32"),
        {"order_ref": 5, "cancelled_shares": 50},
    ),
    (
        message("D", b"\x01\x02\x03\x04\x05\x06\x07\x08"),
        {"order_ref": 0x0102030405060708},
    ),
    (
        message("U", b"\x00" * 7 + b"\x05", b"\x00" * 7 + b"\x06", b"\x00\x00\x00\xc8", b"\x00\x0f\x42\x40"),
        {"original_order_ref": 5, "new_order_ref": 6, "shares": 200, "price": 1000000},
    ),
    (
        message("P", b"\x00" * 8, b"B", b"\x00\x00\x01\x00", b"ZZZZZZZZ", b"\x00\x00\x00\x01", b"\x00" * 7 + b"\x02"),
        {"order_ref": 0, "side": "B", "shares": 256, "stock": "ZZZZZZZZ", "price": 1, "match_number": 2},
    ),
]


@pytest.mark.parametrize(("raw", "fields"), KNOWN_ANSWERS, ids=[chr(r[0]) for r, _ in KNOWN_ANSWERS])
def test_known_answers(raw, fields):
    msg = itch.decode(raw)
    assert (msg.type, msg.length, msg.locate, msg.tracking, msg.timestamp) == (
        chr(raw[0]), len(raw), LOCATE, TRACKING, TIMESTAMP)
    assert {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)
            if f.name not in ("locate", "tracking", "timestamp")} == fields
    assert itch.encode(msg) == raw
    record = itch.to_record(msg, seq=12, gap=True)
    assert list(record) == ["seq", "type", "length", "locate", "tracking", "timestamp", "gap", *fields]
    assert record == {"seq": 12, "type": chr(raw[0]), "length": len(raw), "locate": LOCATE,
                      "tracking": TRACKING, "timestamp": TIMESTAMP, "gap": True, **fields}


# Lengths from PROTOCOLS.md, written out here rather than read from the codec.
SPEC_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44,
    "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48,
}
FRAMED_ONLY = "YLVWKJhQBINO"


def test_lengths_table_matches_spec():
    assert itch.MESSAGE_LENGTHS == SPEC_LENGTHS


@given(st.sampled_from(sorted(SPEC_LENGTHS)).flatmap(
    lambda t: st.binary(min_size=SPEC_LENGTHS[t] - 1, max_size=SPEC_LENGTHS[t] - 1).map(lambda body: t.encode() + body)))
def test_bytes_round_trip_every_type(raw):
    msg = itch.decode(raw)
    assert itch.encode(msg) == raw
    assert itch.decode(itch.encode(msg)) == msg
    assert msg.type == chr(raw[0]) and msg.length == len(raw)
    assert msg.locate == int.from_bytes(raw[1:3], "big")
    assert msg.tracking == int.from_bytes(raw[3:5], "big")
    assert msg.timestamp == int.from_bytes(raw[5:11], "big")


@given(st.sampled_from(FRAMED_ONLY).flatmap(
    lambda t: st.binary(min_size=SPEC_LENGTHS[t] - 1, max_size=SPEC_LENGTHS[t] - 1).map(lambda body: t.encode() + body)))
def test_framed_only_types_carry_header_and_body(raw):
    msg = itch.decode(raw)
    assert isinstance(msg, itch.FramedMessage)
    assert msg.body == raw[11:]
    assert list(itch.to_record(msg, 1, False)) == ["seq", "type", "length", "locate", "tracking", "timestamp", "gap"]


ALPHA = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.", max_size=8)


@given(order_ref=st.integers(0, 2**64 - 1), side=st.sampled_from("BS"), shares=st.integers(0, 2**32 - 1),
       stock=ALPHA, price=st.integers(0, 2**32 - 1), timestamp=st.integers(0, 2**48 - 1),
       locate=st.integers(0, 65535), tracking=st.integers(0, 65535))
def test_message_round_trip_add_order(order_ref, side, shares, stock, price, timestamp, locate, tracking):
    msg = itch.AddOrder(locate, tracking, timestamp, order_ref, side, shares, stock, price)
    raw = itch.encode(msg)
    assert raw[32:36] == price.to_bytes(4, "big")
    assert raw[24:32] == stock.encode().ljust(8)
    assert itch.decode(raw) == msg


def test_alpha_and_code_conventions():
    raw = message("H", b"AB CD   ", b" ", b" ", b"    ")
    msg = itch.decode(raw)
    assert msg.stock == "AB CD"  # inner space kept, trailing padding removed
    assert msg.trading_state == " " and msg.reserved == " "  # one-byte codes are never stripped
    assert msg.reason == ""
    assert itch.encode(msg) == raw


def test_f_and_c_are_add_order_and_execution():
    f = itch.decode(message("F", bytes(8), b"B", bytes(4), b"X       ", bytes(4), b"MPID"))
    c = itch.decode(message("C", bytes(8), bytes(4), bytes(8), b"N", bytes(4)))
    assert isinstance(f, itch.AddOrder) and isinstance(c, itch.OrderExecuted)
    assert not isinstance(itch.decode(message("A", bytes(8), b"B", bytes(4), b"X       ", bytes(4))),
                          itch.AddOrderMpid)


@pytest.mark.parametrize("type_char", ["Z", "a", "?", "\x00"])
def test_unknown_type_raises_distinct_error(type_char):
    with pytest.raises(itch.UnknownTypeError) as info:
        itch.decode(type_char.encode() + bytes(20))
    assert info.value.type_code == type_char
    assert isinstance(info.value, itch.ItchError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [b"", b"A" + bytes(34), b"A" + bytes(36), b"L" + bytes(26), b"S" + bytes(10)])
def test_wrong_length_raises(raw):
    with pytest.raises(itch.BadLengthError):
        itch.decode(raw)


@pytest.mark.parametrize("msg", [
    itch.AddOrder(1, 0, 0, 1, "B", 1, "TOOLONGSYM", 1),
    itch.AddOrder(1, 0, 0, 1, "BS", 1, "X", 1),
    itch.AddOrder(1, 0, 2**48, 1, "B", 1, "X", 1),
    itch.OrderDelete(1, 0, 0, -1),
    itch.OrderDelete(65536, 0, 0, 1),
    itch.FramedMessage("L", 0, 0, 0, bytes(14)),
    itch.FramedMessage("Z", 0, 0, 0, bytes(14)),
])
def test_encode_rejects_fields_that_do_not_fit(msg):
    with pytest.raises(itch.ItchError):
        itch.encode(msg)
