"""NASDAQ TotalView-ITCH 5.0 messages: typed decode, exact encode, JSON records.

Layouts are those of /work/shared/PROTOCOLS.md. Every message starts with the
11-byte common header (type, stock locate, tracking number, 6-byte timestamp
in nanoseconds since midnight). The eleven types the receive path decodes
field by field (S R H A F E C X D U P) are frozen dataclasses; their wire
layout is declared once, on the fields themselves (`_uint`, `_code`,
`_alpha`), and turned into one precompiled `struct.Struct` per type, so that
decode and encode are the same table-driven code for every type.

The other known types (Y L V W K J h Q B I N O) are kept as `FramedMessage`:
type, common header and the raw body bytes, which round-trips exactly.

Representation choices:

- Alpha fields (e.g. `stock`) hold the text without its trailing space
  padding; `encode` pads with spaces again, so bytes -> message -> bytes is
  exact. Bytes are read as latin-1, so any byte value round-trips.
- One-byte codes (e.g. `side`) are one-character strings, never stripped
  (a space code stays " ").
- Unknown types raise `UnknownTypeError`, a wrong length for a known type
  raises `BadLengthError`; both are `ItchError` (a `CodecError`), so callers
  can skip and count them. `MESSAGE_LENGTHS` answers "is this type known and
  how long is it" without decoding.
- `AddOrderMpid` subclasses `AddOrder` and `OrderExecutedWithPrice`
  subclasses `OrderExecuted`: an F is an add order and a C is an execution,
  so a book handling `AddOrder` / `OrderExecuted` handles both.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import Layout, compile_layout
from ._fields import alpha as _alpha
from ._fields import code as _code
from ._fields import uint as _uint
from .net import CodecError

__all__ = [
    "ItchError",
    "UnknownTypeError",
    "BadLengthError",
    "ItchMessage",
    "SystemEvent",
    "StockDirectory",
    "StockTradingAction",
    "AddOrder",
    "AddOrderMpid",
    "OrderExecuted",
    "OrderExecutedWithPrice",
    "OrderCancel",
    "OrderDelete",
    "OrderReplace",
    "Trade",
    "FramedMessage",
    "Message",
    "MESSAGE_LENGTHS",
    "DECODED_TYPES",
    "FRAMED_TYPES",
    "HEADER_LENGTH",
    "decode",
    "encode",
    "to_record",
]

HEADER_LENGTH = 11

#: Lengths of the types that are framed but not decoded field by field.
FRAMED_TYPES: dict[str, int] = {
    "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35,
    "h": 21, "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48,
}

# Common header as packed on the wire: type, locate, tracking, then the 48-bit
# timestamp split into its high 16 and low 32 bits (struct has no 6-byte int).
_HEADER_FORMAT = ">cHHHI"
_HEADER_FIELD_COUNT = 5


class ItchError(CodecError):
    """A byte string is not a valid ITCH 5.0 message."""


class UnknownTypeError(ItchError):
    """The message type byte is not an ITCH 5.0 type."""

    def __init__(self, type_code: str):
        super().__init__(f"unknown ITCH message type {type_code!r}")
        self.type_code = type_code


class BadLengthError(ItchError):
    """The message length does not match its type's fixed length."""


@dataclass(frozen=True, slots=True)
class ItchMessage:
    """Common header of every ITCH message; base of the decoded types."""

    TYPE: ClassVar[str]
    LENGTH: ClassVar[int]
    _LAYOUT: ClassVar[Layout]  # header, then the type's own fields

    locate: int
    tracking: int
    timestamp: int

    @property
    def type(self) -> str:
        """The one-character message type."""
        return self.TYPE

    @property
    def length(self) -> int:
        """The message length in bytes (without the framing length field)."""
        return self.LENGTH


_CLASSES: dict[str, type[ItchMessage]] = {}


def _message(type_code: str, length: int):
    """Class decorator: make a frozen dataclass and register its layout.

    The struct format is built from the field declarations; its size must be
    the type's length from PROTOCOLS.md, which catches a mistyped layout at
    import time.
    """

    def register(cls):
        cls.TYPE = type_code
        cls.LENGTH = length
        cls = dataclass(frozen=True, slots=True)(cls)
        body = [f for f in dataclasses.fields(cls) if f.name not in ("locate", "tracking", "timestamp")]
        cls._LAYOUT = compile_layout(body, _HEADER_FORMAT, length, f"ITCH {type_code!r}")
        _CLASSES[type_code] = cls
        return cls

    return register


@_message("S", 12)
class SystemEvent(ItchMessage):
    """System Event: start/end of messages, system hours, market hours."""

    event_code: str = _code()


@_message("R", 39)
class StockDirectory(ItchMessage):
    """Stock Directory: assigns the day's stock locate to a symbol."""

    stock: str = _alpha(8)
    market_category: str = _code()
    financial_status_indicator: str = _code()
    round_lot_size: int = _uint(4)
    round_lots_only: str = _code()
    issue_classification: str = _code()
    issue_sub_type: str = _alpha(2)
    authenticity: str = _code()
    short_sale_threshold_indicator: str = _code()
    ipo_flag: str = _code()
    luld_reference_price_tier: str = _code()
    etp_flag: str = _code()
    etp_leverage_factor: int = _uint(4)
    inverse_indicator: str = _code()


@_message("H", 25)
class StockTradingAction(ItchMessage):
    """Stock Trading Action: halted, paused, quotation only, trading."""

    stock: str = _alpha(8)
    trading_state: str = _code()
    reserved: str = _code()
    reason: str = _alpha(4)


@_message("A", 36)
class AddOrder(ItchMessage):
    """Add Order (no MPID attribution)."""

    order_ref: int = _uint(8)
    side: str = _code()
    shares: int = _uint(4)
    stock: str = _alpha(8)
    price: int = _uint(4)


@_message("F", 40)
class AddOrderMpid(AddOrder):
    """Add Order with MPID attribution (an `AddOrder` with `attribution`)."""

    attribution: str = _alpha(4)


@_message("E", 31)
class OrderExecuted(ItchMessage):
    """Order Executed at the resting order's price."""

    order_ref: int = _uint(8)
    executed_shares: int = _uint(4)
    match_number: int = _uint(8)


@_message("C", 36)
class OrderExecutedWithPrice(OrderExecuted):
    """Order Executed with Price (an `OrderExecuted` at another price)."""

    printable: str = _code()
    execution_price: int = _uint(4)


@_message("X", 23)
class OrderCancel(ItchMessage):
    """Order Cancel: partial cancellation of a resting order."""

    order_ref: int = _uint(8)
    cancelled_shares: int = _uint(4)


@_message("D", 19)
class OrderDelete(ItchMessage):
    """Order Delete: the resting order is removed."""

    order_ref: int = _uint(8)


@_message("U", 35)
class OrderReplace(ItchMessage):
    """Order Replace: cancel `original_order_ref`, add `new_order_ref`."""

    original_order_ref: int = _uint(8)
    new_order_ref: int = _uint(8)
    shares: int = _uint(4)
    price: int = _uint(4)


@_message("P", 44)
class Trade(ItchMessage):
    """Trade (non-cross): an execution against a non-displayed order."""

    order_ref: int = _uint(8)
    side: str = _code()
    shares: int = _uint(4)
    stock: str = _alpha(8)
    price: int = _uint(4)
    match_number: int = _uint(8)


@dataclass(frozen=True, slots=True)
class FramedMessage:
    """A known type that is framed but not decoded: header plus raw body."""

    type: str
    locate: int
    tracking: int
    timestamp: int
    body: bytes

    @property
    def length(self) -> int:
        """The message length in bytes (without the framing length field)."""
        return HEADER_LENGTH + len(self.body)


Message = ItchMessage | FramedMessage

#: Types decoded field by field, with their classes.
DECODED_TYPES: dict[str, type[ItchMessage]] = dict(_CLASSES)

#: Every known type and its fixed length.
MESSAGE_LENGTHS: dict[str, int] = {**{t: c.LENGTH for t, c in DECODED_TYPES.items()}, **FRAMED_TYPES}

_FRAMED_HEADER = struct.Struct(_HEADER_FORMAT)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one ITCH message (without its framing length field).

    Raises `UnknownTypeError` for a type not in ITCH 5.0 and `BadLengthError`
    when `len(data)` is not the type's length.
    """
    if not data:
        raise BadLengthError("empty message")
    type_code = chr(data[0])
    cls = _CLASSES.get(type_code)
    expected = cls.LENGTH if cls else FRAMED_TYPES.get(type_code)
    if expected is None:
        raise UnknownTypeError(type_code)
    if len(data) != expected:
        raise BadLengthError(f"type {type_code!r} is {expected} bytes, got {len(data)}")
    if cls is None:
        _, locate, tracking, ts_high, ts_low = _FRAMED_HEADER.unpack_from(data)
        return FramedMessage(type_code, locate, tracking, ts_high << 32 | ts_low, bytes(data[HEADER_LENGTH:]))
    values = cls._LAYOUT.unpack(data)
    return cls(values[1], values[2], values[3] << 32 | values[4], *values[_HEADER_FIELD_COUNT:])


def encode(msg: Message) -> bytes:
    """Encode a message to its exact wire bytes (without a length field).

    Raises `ItchError` when a field does not fit its width.
    """
    if msg.timestamp >> 48:
        raise ItchError(f"timestamp {msg.timestamp} does not fit in 48 bits")
    ts_high, ts_low = msg.timestamp >> 32, msg.timestamp & 0xFFFFFFFF
    if isinstance(msg, FramedMessage):
        if MESSAGE_LENGTHS.get(msg.type) != msg.length:
            raise ItchError(f"framed type {msg.type!r} cannot be {msg.length} bytes")
        header = _FRAMED_HEADER.pack(msg.type.encode("latin-1"), msg.locate, msg.tracking, ts_high, ts_low)
        return header + msg.body
    layout = msg._LAYOUT
    values: list[Any] = [msg.TYPE.encode("latin-1"), msg.locate, msg.tracking, ts_high, ts_low]
    values.extend(getattr(msg, name) for name in layout.names)
    try:
        for i in layout.code_indexes:
            values[i] = values[i].encode("latin-1")
            if len(values[i]) != 1:
                raise ItchError(f"one-byte code field holds {values[i]!r}")
        for i, width in zip(layout.alpha_indexes, layout.alpha_widths):
            text = values[i].encode("latin-1")
            if len(text) > width:
                raise ItchError(f"alpha field {values[i]!r} is longer than {width} bytes")
            values[i] = text.ljust(width, b" ")
        return layout.packer.pack(*values)
    except (struct.error, UnicodeEncodeError) as exc:
        raise ItchError(f"cannot encode {msg!r}: {exc}") from exc


def to_record(msg: Message, seq: int, gap: bool) -> dict[str, Any]:
    """The JSON record of a delivered message, as docs/receive-path.md fixes it.

    Keys in order: seq, type, length, locate, tracking, timestamp, gap, then
    the type's fields (none for framed-only types).
    """
    record: dict[str, Any] = {
        "seq": seq,
        "type": msg.type,
        "length": msg.length,
        "locate": msg.locate,
        "tracking": msg.tracking,
        "timestamp": msg.timestamp,
        "gap": bool(gap),
    }
    if isinstance(msg, ItchMessage):
        for name in msg._LAYOUT.names:
            record[name] = getattr(msg, name)
    return record
