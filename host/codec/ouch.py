"""OUCH 4.2 order entry messages: the inbound and outbound types the race uses.

Inbound (client to exchange, carried in SoupBinTCP 'U'): Enter Order 'O' and
Cancel Order 'X'. Outbound (exchange to client, carried in SoupBinTCP 'S'):
System Event 'S', Accepted 'A', Executed 'E', Canceled 'C', Rejected 'J'.
Layouts are those of PROTOCOLS.md ("OUCH 4.2 messages").

Each type is a frozen dataclass whose wire layout is declared once, on its
fields, in wire order after the type byte (`_uint`, `_code`, `_alpha`), and
compiled into one `struct.Struct`; one shared `encode`/`decode` serves every
type. Representation, as in `codec.itch`:

- integers are unsigned big-endian; prices have 4 implied decimals
  (1234500 = 123.4500), timestamps are nanoseconds since midnight;
- alpha fields (token, stock, firm) hold the text without the trailing spaces
  that pad it on the wire, so they cannot end in a space themselves;
- one-byte codes (side, display, ...) are one-character strings, never
  stripped;
- text is latin-1, so any byte value decodes and re-encodes exactly.

`decode(data)` requires exactly the type's length; `decode_inbound` and
`decode_outbound` dispatch on the type byte. Every error is a `CodecError`.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from .net import CodecError
from .soupbintcp import pad_text, unpad_text

__all__ = [
    "TIME_IN_FORCE_IOC",
    "TIME_IN_FORCE_DAY",
    "OuchMessage",
    "EnterOrder",
    "CancelOrder",
    "SystemEvent",
    "Accepted",
    "Executed",
    "Canceled",
    "Rejected",
    "INBOUND_TYPES",
    "OUTBOUND_TYPES",
    "decode_inbound",
    "decode_outbound",
]

#: `time_in_force` values: immediate-or-cancel, and the trading day.
TIME_IN_FORCE_IOC = 0
TIME_IN_FORCE_DAY = 99999

_UINT_FORMATS = {4: "I", 8: "Q"}


def _uint(width: int) -> Any:
    """A big-endian unsigned integer field of `width` bytes."""
    return dataclasses.field(metadata={"format": _UINT_FORMATS[width], "kind": "uint", "width": width})


def _code() -> Any:
    """A one-byte code, held as a one-character string."""
    return dataclasses.field(metadata={"format": "c", "kind": "code", "width": 1})


def _alpha(width: int) -> Any:
    """A left-justified, space-padded text field of `width` bytes, held without its padding."""
    return dataclasses.field(metadata={"format": f"{width}s", "kind": "alpha", "width": width})


class OuchMessage:
    """Base of the OUCH types: the shared encode/decode driven by the compiled field layout."""

    __slots__ = ()
    TYPE: ClassVar[bytes]
    LENGTH: ClassVar[int]
    _STRUCT: ClassVar[struct.Struct]
    _NAMES: ClassVar[tuple[str, ...]]
    _CODE_INDEXES: ClassVar[tuple[int, ...]]  # positions in the unpacked tuple (0 is the type byte)
    _ALPHA_INDEXES: ClassVar[tuple[int, ...]]
    _ALPHA_WIDTHS: ClassVar[tuple[int, ...]]

    def encode(self) -> bytes:
        """The message's exact wire bytes. Raises `CodecError` when a field does not fit its width."""
        values: list[Any] = [self.TYPE]
        values.extend(getattr(self, name) for name in self._NAMES)
        label = type(self).__name__
        for i in self._CODE_INDEXES:
            if not isinstance(values[i], str) or len(values[i]) != 1:
                raise CodecError(f"{label}.{self._NAMES[i - 1]} must be one character, got {values[i]!r}")
            values[i] = pad_text(values[i], 1, f"{label}.{self._NAMES[i - 1]}")
        for i, width in zip(self._ALPHA_INDEXES, self._ALPHA_WIDTHS):
            values[i] = pad_text(values[i], width, f"{label}.{self._NAMES[i - 1]}")
        try:
            return self._STRUCT.pack(*values)
        except struct.error as error:
            raise CodecError(f"cannot encode {self!r}: {error}") from None

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> OuchMessage:
        """Decode exactly one message of this type; `CodecError` on a wrong length or type byte."""
        if len(data) != cls.LENGTH:
            raise CodecError(f"OUCH {cls.__name__} is {cls.LENGTH} bytes, got {len(data)}")
        values: list[Any] = list(cls._STRUCT.unpack(data))
        if values[0] != cls.TYPE:
            raise CodecError(f"OUCH {cls.__name__} has type {cls.TYPE!r}, got {values[0]!r}")
        for i in cls._CODE_INDEXES:
            values[i] = values[i].decode("latin-1")
        for i in cls._ALPHA_INDEXES:
            values[i] = unpad_text(values[i])
        return cls(*values[1:])


def _message(type_code: bytes, length: int):
    """Class decorator: make a frozen dataclass and compile its wire layout.

    The compiled size must be the type's length from PROTOCOLS.md, which
    catches a mistyped layout at import time.
    """

    def compile_layout(cls):
        cls = dataclass(frozen=True, slots=True)(cls)
        fields = dataclasses.fields(cls)
        kinds = [f.metadata["kind"] for f in fields]
        cls.TYPE = type_code
        cls._STRUCT = struct.Struct(">c" + "".join(f.metadata["format"] for f in fields))
        if cls._STRUCT.size != length:
            raise AssertionError(f"OUCH {type_code!r} layout is {cls._STRUCT.size} bytes, expected {length}")
        cls.LENGTH = length
        cls._NAMES = tuple(f.name for f in fields)
        cls._CODE_INDEXES = tuple(i + 1 for i, kind in enumerate(kinds) if kind == "code")
        cls._ALPHA_INDEXES = tuple(i + 1 for i, kind in enumerate(kinds) if kind == "alpha")
        cls._ALPHA_WIDTHS = tuple(f.metadata["width"] for f in fields if f.metadata["kind"] == "alpha")
        return cls

    return compile_layout


# --- inbound -----------------------------------------------------------------


@_message(b"O", 49)
class EnterOrder(OuchMessage):
    """Enter Order. `side` is B (buy), S (sell), T (sell short), E (sell short exempt);
    `time_in_force` is `TIME_IN_FORCE_IOC`, `TIME_IN_FORCE_DAY` or seconds; `cross_type` 'N' is none."""

    token: str = _alpha(14)
    side: str = _code()
    shares: int = _uint(4)
    stock: str = _alpha(8)
    price: int = _uint(4)
    time_in_force: int = _uint(4)
    firm: str = _alpha(4)
    display: str = _code()
    capacity: str = _code()
    intermarket_sweep: str = _code()
    minimum_quantity: int = _uint(4)
    cross_type: str = _code()
    customer_type: str = _code()


@_message(b"X", 19)
class CancelOrder(OuchMessage):
    """Cancel Order: reduce the order `token` to `shares` (0 cancels it all)."""

    token: str = _alpha(14)
    shares: int = _uint(4)


# --- outbound ----------------------------------------------------------------


@_message(b"S", 10)
class SystemEvent(OuchMessage):
    """System Event, e.g. start or end of day."""

    timestamp: int = _uint(8)
    event_code: str = _code()


@_message(b"A", 66)
class Accepted(OuchMessage):
    """Accepted: the order as the exchange took it; `order_state` 'L' live or 'D' dead."""

    timestamp: int = _uint(8)
    token: str = _alpha(14)
    side: str = _code()
    shares: int = _uint(4)
    stock: str = _alpha(8)
    price: int = _uint(4)
    time_in_force: int = _uint(4)
    firm: str = _alpha(4)
    display: str = _code()
    order_reference_number: int = _uint(8)
    capacity: str = _code()
    intermarket_sweep: str = _code()
    minimum_quantity: int = _uint(4)
    cross_type: str = _code()
    order_state: str = _code()
    bbo_weight_indicator: str = _code()


@_message(b"E", 40)
class Executed(OuchMessage):
    """Executed: part or all of the order traded; `liquidity_flag` 'A' added or 'R' removed."""

    timestamp: int = _uint(8)
    token: str = _alpha(14)
    executed_shares: int = _uint(4)
    execution_price: int = _uint(4)
    liquidity_flag: str = _code()
    match_number: int = _uint(8)


@_message(b"C", 28)
class Canceled(OuchMessage):
    """Canceled: the order lost `decrement_shares`; `reason` 'U' user, 'I' immediate-or-cancel, 'T' timeout, ..."""

    timestamp: int = _uint(8)
    token: str = _alpha(14)
    decrement_shares: int = _uint(4)
    reason: str = _code()


@_message(b"J", 24)
class Rejected(OuchMessage):
    """Rejected: the Enter Order `token` was refused for `reason`."""

    timestamp: int = _uint(8)
    token: str = _alpha(14)
    reason: str = _code()


INBOUND_TYPES: dict[bytes, type[OuchMessage]] = {cls.TYPE: cls for cls in (EnterOrder, CancelOrder)}
OUTBOUND_TYPES: dict[bytes, type[OuchMessage]] = {
    cls.TYPE: cls for cls in (SystemEvent, Accepted, Executed, Canceled, Rejected)
}


def _decode_by_type(data: bytes | bytearray | memoryview, types: dict[bytes, type[OuchMessage]],
                    direction: str) -> OuchMessage:
    if not data:
        raise CodecError(f"empty {direction} OUCH message")
    cls = types.get(bytes(data[:1]))
    if cls is None:
        raise CodecError(f"unknown {direction} OUCH message type {bytes(data[:1])!r}")
    return cls.decode(data)


def decode_inbound(data: bytes | bytearray | memoryview) -> OuchMessage:
    """Decode a client-to-exchange message (Enter Order or Cancel Order) by its type byte."""
    return _decode_by_type(data, INBOUND_TYPES, "inbound")


def decode_outbound(data: bytes | bytearray | memoryview) -> OuchMessage:
    """Decode an exchange-to-client message (System Event, Accepted, Executed, Canceled, Rejected)."""
    return _decode_by_type(data, OUTBOUND_TYPES, "outbound")
