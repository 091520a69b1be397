"""Turns the gateware's decoded-message words into the JSON records of docs/receive-path.md.

This reads only the gateware's own layouts (``ItchMessage`` and the per-type
views of ``hdl/itch_decode.py``), never the host codecs, so that comparing
its output with the golden model's is a comparison of two decoders.
"""

from amaranth.lib import data

from ..hdl.itch_decode import HEADER_FIELDS, MESSAGE_FIELDS, ItchMessage, field_value

__all__ = ["record_from_message", "message_fields"]

_LAYOUT = data.Layout.cast(ItchMessage)


def message_fields(value):
    """The top-level fields of an ``ItchMessage`` word, as integers by name."""
    return {name: (value >> field.offset) & ((1 << field.width) - 1) for name, field in _LAYOUT}


def _text(number, length):
    return number.to_bytes(length, "big").decode("latin-1")


def record_from_message(value):
    """The JSON record (a dict, keys in schema order) of an ``ItchMessage`` word."""
    fields = message_fields(value)
    type_ = chr(fields["type"])
    record = {"seq": fields["seq"], "type": type_, "length": fields["length"],
              "locate": fields["locate"], "tracking": fields["tracking"],
              "timestamp": fields["timestamp"], "gap": bool(fields["gap"])}
    for name, _offset, length, kind in MESSAGE_FIELDS.get(type_, [])[len(HEADER_FIELDS):]:
        number = field_value(fields["fields"], type_, name)
        if kind == "int":
            record[name] = number
        elif kind == "char":  # a one-byte code stays one character, a space included
            record[name] = _text(number, length)
        else:
            record[name] = _text(number, length).rstrip(" ")
    return record
