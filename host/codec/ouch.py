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

from ._fields import Layout, compile_layout
from ._fields import alpha as _alpha
from ._fields import code as _code
from ._fields import uint as _uint
from .net import CodecError
from .soupbintcp import pad_text

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

class OuchMessage:
    """Base of the OUCH types: the shared encode/decode driven by the compiled field layout."""

    __slots__ = ()
    TYPE: ClassVar[bytes]
    LENGTH: ClassVar[int]
    _LAYOUT: ClassVar[Layout]  # the type byte (position 0 of the unpacked tuple), then the fields

    def encode(self) -> bytes:
        """The message's exact wire bytes. Raises `CodecError` when a field does not fit its width."""
        layout = self._LAYOUT
        names = layout.names
        values: list[Any] = [self.TYPE]
        values.extend(getattr(self, name) for name in names)
        label = type(self).__name__
        for i in layout.code_indexes:
            if not isinstance(values[i], str) or len(values[i]) != 1:
                raise CodecError(f"{label}.{names[i - 1]} must be one character, got {values[i]!r}")
            values[i] = pad_text(values[i], 1, f"{label}.{names[i - 1]}")
        for i, width in zip(layout.alpha_indexes, layout.alpha_widths):
            values[i] = pad_text(values[i], width, f"{label}.{names[i - 1]}")
        try:
            return layout.packer.pack(*values)
        except struct.error as error:
            raise CodecError(f"cannot encode {self!r}: {error}") from None

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> OuchMessage:
        """Decode exactly one message of this type; `CodecError` on a wrong length or type byte."""
        if len(data) != cls.LENGTH:
            raise CodecError(f"OUCH {cls.__name__} is {cls.LENGTH} bytes, got {len(data)}")
        values = cls._LAYOUT.unpack(data)
        if values[0] != cls.TYPE:
            raise CodecError(f"OUCH {cls.__name__} has type {cls.TYPE!r}, got {values[0]!r}")
        return cls(*values[1:])


def _message(type_code: bytes, length: int):
    """Class decorator: make a frozen dataclass and compile its wire layout.

    The compiled size must be the type's length from PROTOCOLS.md, which
    catches a mistyped layout at import time.
    """

    def register(cls):
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.TYPE = type_code
        cls._LAYOUT = compile_layout(dataclasses.fields(cls), ">c", length, f"OUCH {type_code!r}")
        cls.LENGTH = length
        return cls

    return register


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
