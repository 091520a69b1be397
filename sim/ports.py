"""Ports of exported components, and packing of structured port values.

Amaranth flattens a component's signature into Verilog ports named by joining
the member path with ``__``: ``rx.payload`` becomes ``rx__payload`` and
``rx.valid`` becomes ``rx__valid``.  A payload of a ``data.Struct`` shape
stays a single port as wide as the whole layout.  :func:`verilog_ports` lists
those ports (plus the clock and reset ports Amaranth adds for the domains the
design uses), so that benches do not hard-code names; :func:`pack` and
:func:`unpack` convert between a structured value, written as nested dicts
and lists of plain ints, and the flat int that a simulator port carries.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from amaranth.hdl import Const, Fragment, Shape, ShapeLike, Signal, ValueCastable, unsigned
from amaranth.hdl._ir import PortDirection
from amaranth.lib import data, wiring

__all__ = ["Port", "signature_ports", "verilog_ports", "pack", "unpack"]


@dataclass(frozen=True)
class Port:
    """One port of the Verilog module exported for a component.

    ``shape`` is the shape as declared in the signature (for example a
    ``data.Struct`` subclass, to give to :func:`unpack`); clock and reset
    ports have ``unsigned(1)``.
    """

    name: str
    direction: str  # "input" or "output", as seen from the exported module
    width: int
    shape: ShapeLike


def signature_ports(component: wiring.Component) -> dict[str, tuple[Signal, PortDirection]]:
    """Map each Verilog port name of ``component``'s signature to its signal and direction.

    This is the ``ports=`` argument that ``amaranth.back.verilog.convert``
    builds for a component, with one difference: members that a signature
    fixes to a constant (``ready`` of a ``stream.Signature(...,
    always_ready=True)``, ``valid`` of an ``always_valid`` one) are left out,
    because they are not signals and Amaranth 0.5 refuses them as ports.
    """
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue
        direction = PortDirection.Input if member.flow == wiring.In else PortDirection.Output
        ports[_port_name(path)] = (value, direction)
    return ports


def _port_name(path: tuple) -> str:
    """The Verilog port name Amaranth gives the signature member at ``path``: ``("rx", "payload")`` -> ``rx__payload``."""
    return "__".join(map(str, path))


def verilog_ports(component: wiring.Component) -> list[Port]:
    """List the ports of the Verilog module :func:`tick2trade.sim.verilog.write_verilog` emits.

    The list is in Amaranth's port order and comes from Amaranth itself
    (the component is elaborated and prepared exactly as for conversion), so
    it includes the ``clk``/``rst`` ports of the clock domains the design
    uses, which the signature does not mention.
    """
    signal_ports = signature_ports(component)
    declared_shapes = {
        _port_name(path): member.shape
        for path, member, _value in component.signature.flatten(component)
    }
    design = Fragment.get(component, None).prepare(signal_ports)
    return [
        Port(
            name=name,
            direction="input" if direction == PortDirection.Input else "output",
            width=len(signal),
            shape=declared_shapes.get(name, unsigned(len(signal))),
        )
        for name, signal, direction in design.ports
    ]


def _layout(shape: ShapeLike) -> data.Layout | None:
    """Return the data layout of ``shape``, or None for a plain (integer or enum) shape."""
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def pack(shape: ShapeLike, value) -> int:
    """Pack ``value`` into the unsigned int that a port of ``shape`` carries.

    For a struct, ``value`` is a mapping from field name to field value;
    fields left out are zero, unknown names are an error.  For a union it
    names at most one field.  For an array it is a sequence with one value
    per element.  Plain shapes take an int (negative for signed shapes) or an
    enum member.  Values that do not fit their field raise ``ValueError``.
    """
    layout = _layout(shape)
    if layout is None:
        return _pack_scalar(Shape.cast(shape), value)
    if isinstance(layout, data.ArrayLayout):
        if not isinstance(value, Sequence) or len(value) != layout.length:
            raise ValueError(f"{layout!r} needs a sequence of {layout.length} elements, not {value!r}")
        items = dict(enumerate(value))
    else:
        if not isinstance(value, Mapping):
            raise ValueError(f"{layout!r} needs a mapping of field values, not {value!r}")
        unknown = set(value) - {name for name, _field in layout}
        if unknown:
            raise ValueError(f"{layout!r} has no fields {sorted(unknown)}")
        if isinstance(layout, data.UnionLayout) and len(value) > 1:
            raise ValueError(f"{layout!r} is a union: give at most one field, not {sorted(value)}")
        items = value
    packed = 0
    for name, field in layout:
        if name in items:
            packed |= pack(field.shape, items[name]) << field.offset
    return packed


def _pack_scalar(shape: Shape, value) -> int:
    """Pack an int or enum member into ``shape``'s width as two's complement."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{shape!r} needs an int, not {value!r}")
    if shape.signed:
        low, high = -(1 << shape.width >> 1), (1 << shape.width >> 1) - 1
    else:
        low, high = 0, (1 << shape.width) - 1
    if not low <= value <= high:
        raise ValueError(f"{value} does not fit {shape!r}")
    return value & ((1 << shape.width) - 1)


def unpack(shape: ShapeLike, value: int):
    """Unpack the unsigned int carried by a port of ``shape`` into its fields.

    Structs and unions become dicts (a union lists every field, each
    reading the same bits), arrays become lists, and plain shapes become
    ints, negative for signed shapes (enum shapes give their integer value).
    Bits above the layout's width must be zero.
    """
    layout = _layout(shape)
    width = layout.size if layout is not None else Shape.cast(shape).width
    if not 0 <= value < (1 << width):
        raise ValueError(f"{value} is not a {width}-bit unsigned value")
    if layout is None:
        return _unpack_scalar(Shape.cast(shape), value)
    fields = {
        name: unpack(field.shape, (value >> field.offset) & ((1 << field.width) - 1))
        for name, field in layout
    }
    if isinstance(layout, data.ArrayLayout):
        return [fields[index] for index in range(layout.length)]
    return fields


def _unpack_scalar(shape: Shape, value: int) -> int:
    """Interpret ``value`` (already within ``shape``'s width) as ``shape``'s integer."""
    if shape.signed and value >> (shape.width - 1):
        return value - (1 << shape.width)
    return value
