"""ITCH 5.0 field decode: typed views of a framed message, and the fields a trigger needs."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .stream import rx_stream

__all__ = ["ItchDecode", "RawMessage", "ItchMessage", "MESSAGE_LENGTHS", "MESSAGE_FIELDS",
           "HEADER_FIELDS", "BODY_BYTES", "field_value"]

#: Message bytes kept for decoding: the longest field-level message (Trade, 'P').
BODY_BYTES = 44

#: The common header after the type byte, at the same place in every message.
HEADER_FIELDS = [("locate", 1, 2, "int"), ("tracking", 3, 2, "int"), ("timestamp", 5, 6, "int")]
_HEADER = HEADER_FIELDS

#: Field-level messages: type -> [(name, offset, length, kind)], kind "int", "alpha" or "char".
#: Offsets and lengths are those of NASDAQ TotalView-ITCH 5.0 (see PROTOCOLS.md).
MESSAGE_FIELDS = {
    "S": _HEADER + [("event_code", 11, 1, "char")],
    "R": _HEADER + [
        ("stock", 11, 8, "alpha"), ("market_category", 19, 1, "char"),
        ("financial_status_indicator", 20, 1, "char"), ("round_lot_size", 21, 4, "int"),
        ("round_lots_only", 25, 1, "char"), ("issue_classification", 26, 1, "char"),
        ("issue_sub_type", 27, 2, "alpha"), ("authenticity", 29, 1, "char"),
        ("short_sale_threshold_indicator", 30, 1, "char"), ("ipo_flag", 31, 1, "char"),
        ("luld_reference_price_tier", 32, 1, "char"), ("etp_flag", 33, 1, "char"),
        ("etp_leverage_factor", 34, 4, "int"), ("inverse_indicator", 38, 1, "char"),
    ],
    "H": _HEADER + [("stock", 11, 8, "alpha"), ("trading_state", 19, 1, "char"),
                    ("reserved", 20, 1, "char"), ("reason", 21, 4, "alpha")],
    "A": _HEADER + [("order_ref", 11, 8, "int"), ("side", 19, 1, "char"), ("shares", 20, 4, "int"),
                    ("stock", 24, 8, "alpha"), ("price", 32, 4, "int")],
    "F": _HEADER + [("order_ref", 11, 8, "int"), ("side", 19, 1, "char"), ("shares", 20, 4, "int"),
                    ("stock", 24, 8, "alpha"), ("price", 32, 4, "int"), ("attribution", 36, 4, "alpha")],
    "E": _HEADER + [("order_ref", 11, 8, "int"), ("executed_shares", 19, 4, "int"),
                    ("match_number", 23, 8, "int")],
    "C": _HEADER + [("order_ref", 11, 8, "int"), ("executed_shares", 19, 4, "int"),
                    ("match_number", 23, 8, "int"), ("printable", 31, 1, "char"),
                    ("execution_price", 32, 4, "int")],
    "X": _HEADER + [("order_ref", 11, 8, "int"), ("cancelled_shares", 19, 4, "int")],
    "D": _HEADER + [("order_ref", 11, 8, "int")],
    "U": _HEADER + [("original_order_ref", 11, 8, "int"), ("new_order_ref", 19, 8, "int"),
                    ("shares", 27, 4, "int"), ("price", 31, 4, "int")],
    "P": _HEADER + [("order_ref", 11, 8, "int"), ("side", 19, 1, "char"), ("shares", 20, 4, "int"),
                    ("stock", 24, 8, "alpha"), ("price", 32, 4, "int"), ("match_number", 36, 8, "int")],
}

#: Every message type the receive path frames, with its length (without the length field).
MESSAGE_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35,
    "P": 44, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}

#: The trigger fields, by type: normalised name -> the type's own field name.
_TRIGGER_FIELDS = {
    "A": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "F": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "P": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "E": {"order_ref": "order_ref", "shares": "executed_shares"},
    "C": {"order_ref": "order_ref", "shares": "executed_shares", "price": "execution_price"},
    "X": {"order_ref": "order_ref", "shares": "cancelled_shares"},
    "D": {"order_ref": "order_ref"},
    "U": {"order_ref": "original_order_ref", "new_order_ref": "new_order_ref",
          "shares": "shares", "price": "price"},
}


def _body_view(fields):
    """A layout over the message body (byte 0 most significant) with each field in network order."""
    return data.FlexibleLayout(8 * BODY_BYTES, {
        name: data.Field(8 * length, 8 * (BODY_BYTES - offset - length))
        for name, offset, length, _kind in fields
    })


_VIEWS = {type_: _body_view(fields) for type_, fields in MESSAGE_FIELDS.items()}
#: The body seen as each field-level message type.
BodyViews = data.UnionLayout(_VIEWS)


class RawMessage(data.Struct):
    """A framed message as ``ItchSplit`` delivers it.

    Interface attributes
    --------------------
    seq : 64 bits
        MoldUDP64 sequence number of the message.
    gap : 1 bit
        Messages were lost before this message's packet.
    length : 16 bits
        Message length (without the length field).
    body : 352 bits
        The first 44 message bytes, byte 0 (the type) in the most significant
        bits, so that every big-endian field is a plain bit slice; bytes past
        ``length`` are zero.
    """
    seq: 64
    gap: 1
    length: 16
    body: 8 * BODY_BYTES


class ItchMessage(data.Struct):
    """A decoded ITCH message.

    Interface attributes
    --------------------
    seq, gap, length : as in RawMessage
    type : 8 bits
        Message type (ASCII).
    locate, tracking, timestamp :
        The common header, at the same offset in every type.
    order_ref, new_order_ref, side, shares, price :
        The fields a trigger and an order book need, at fixed places whatever
        the type (``order_ref`` is the original reference of a replace;
        ``shares`` the executed or cancelled shares of E, C and X; ``price``
        the execution price of C); zero where the type has no such field.
    fields : union of per-type views
        Every field of the field-level types, ``fields.A.price`` and so on.
    """
    seq: 64
    gap: 1
    length: 16
    type: 8
    locate: 16
    tracking: 16
    timestamp: 48
    order_ref: 64
    new_order_ref: 64
    side: 8
    shares: 32
    price: 32
    fields: BodyViews


def field_value(body, type_, name):
    """The value of field ``name`` of message type ``type_`` in an integer ``body`` (for hosts)."""
    field = _VIEWS[type_][name]
    return (body >> field.offset) & ((1 << field.width) - 1)


class ItchDecode(wiring.Component):
    """ITCH 5.0 field decode, combinational.

    Places the trigger fields of every type at fixed positions and exposes
    every field through per-type views; adds no cycle, so that a field is
    usable in the cycle after its message's last byte arrived.

    Interface attributes
    --------------------
    raw : In(stream of RawMessage)
    decoded : Out(stream of ItchMessage)
    """

    def __init__(self):
        super().__init__({
            "raw": In(rx_stream(RawMessage)),
            "decoded": Out(rx_stream(ItchMessage)),
        })

    def elaborate(self, platform):
        m = Module()
        raw = self.raw.p
        out = self.decoded.p
        views = BodyViews(raw.body)
        header = views.A  # the common header is the same in every view
        message_type = raw.body[-8:]
        m.d.comb += [
            self.decoded.valid.eq(self.raw.valid),
            out.seq.eq(raw.seq),
            out.gap.eq(raw.gap),
            out.length.eq(raw.length),
            out.type.eq(message_type),
            out.locate.eq(header.locate),
            out.tracking.eq(header.tracking),
            out.timestamp.eq(header.timestamp),
            out.fields.eq(raw.body),
        ]
        with m.Switch(message_type):
            for type_, mapping in _TRIGGER_FIELDS.items():
                with m.Case(ord(type_)):
                    view = getattr(views, type_)
                    m.d.comb += [getattr(out, normalised).eq(getattr(view, own))
                                 for normalised, own in mapping.items()]
        return m
