"""Wire layouts declared on dataclass fields, shared by `codec.itch` and `codec.ouch`.

A message type is a frozen dataclass whose fields carry their wire format in
their metadata (`uint`, `code`, `alpha`). `compile_layout` turns the fields,
after a fixed prefix (the type byte, or ITCH's whole common header), into one
precompiled `struct.Struct` plus the positions of the text fields, and
`Layout.unpack` decodes a message's bytes into field values:

- integers are unsigned big-endian;
- one-byte codes are one-character strings, never stripped;
- alpha fields are space-padded on the right on the wire and held without
  that padding;
- text is latin-1, so any byte value decodes and re-encodes exactly.

Encoding stays with each codec, which validates values and reports errors in
its own terms.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_UINT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def uint(width: int) -> Any:
    """A big-endian unsigned integer field of `width` bytes."""
    return dataclasses.field(metadata={"format": _UINT_FORMATS[width], "kind": "uint", "width": width})


def code() -> Any:
    """A one-byte code, held as a one-character string."""
    return dataclasses.field(metadata={"format": "c", "kind": "code", "width": 1})


def alpha(width: int) -> Any:
    """A left-justified, space-padded text field of `width` bytes, held without its padding."""
    return dataclasses.field(metadata={"format": f"{width}s", "kind": "alpha", "width": width})


@dataclass(frozen=True, slots=True)
class Layout:
    """Precompiled wire layout of one message type: prefix, then the declared fields."""

    packer: struct.Struct
    names: tuple[str, ...]  # the declared fields, in wire order
    prefix_count: int  # values of the prefix, before the declared fields in the unpacked tuple
    code_indexes: tuple[int, ...]  # positions in the unpacked tuple
    alpha_indexes: tuple[int, ...]
    alpha_widths: tuple[int, ...]

    def unpack(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """The prefix values, then the field values, of exactly `packer.size` bytes.

        Codes and alpha fields come back as str (alpha without its padding);
        a wrong length raises `struct.error`, so callers check it first.
        """
        values = list(self.packer.unpack(data))
        for i in self.code_indexes:
            values[i] = values[i].decode("latin-1")
        for i in self.alpha_indexes:
            values[i] = values[i].decode("latin-1").rstrip(" ")
        return values


def compile_layout(fields: Sequence[dataclasses.Field], prefix_format: str, length: int, label: str) -> Layout:
    """Compile `fields` (declared with `uint`/`code`/`alpha`) after `prefix_format`.

    `prefix_format` starts with the byte order (">"). The size must be the
    type's `length` from PROTOCOLS.md, which catches a mistyped layout at
    import time (`AssertionError` naming `label`).
    """
    prefix = struct.Struct(prefix_format)
    prefix_count = len(prefix.unpack(bytes(prefix.size)))
    packer = struct.Struct(prefix_format + "".join(f.metadata["format"] for f in fields))
    if packer.size != length:
        raise AssertionError(f"{label} layout is {packer.size} bytes, expected {length}")
    kinds = [f.metadata["kind"] for f in fields]
    return Layout(
        packer=packer,
        names=tuple(f.name for f in fields),
        prefix_count=prefix_count,
        code_indexes=tuple(prefix_count + i for i, kind in enumerate(kinds) if kind == "code"),
        alpha_indexes=tuple(prefix_count + i for i, kind in enumerate(kinds) if kind == "alpha"),
        alpha_widths=tuple(f.metadata["width"] for f in fields if f.metadata["kind"] == "alpha"),
    )
