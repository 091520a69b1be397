"""Export Amaranth components to Verilog for HDL simulators.

Differences from ``amaranth.back.verilog.convert``, each for a reason met in
practice (see DESIGN.md, "Pitfalls already met"):

- Yosys writes SystemVerilog-style ``always_comb`` blocks (``write_verilog
  -sv``): with plain Verilog ``always @*`` blocks Icarus can leave
  combinational outputs at X, because such a block only runs once one of its
  inputs changes. But Icarus 11 loops forever at one time step on some
  ``always_comb`` blocks (a block that assigns a default and then overrides it
  under conditions, next to others like it). So for Icarus (``icarus=True``)
  the text is made safe the other way round: ``always @*`` blocks, and
  registers without initial values, so that the reset every bench applies
  first changes every register from X and so runs every block.
- Amaranth's builtin Yosys is used whatever ``YOSYS`` says
  (``AMARANTH_USE_YOSYS=builtin`` for the conversion), so the same design
  gives the same text on every machine.
- The file is only rewritten when its content changes, so its timestamp
  tells simulator builds whether they are up to date.  Source-location and
  other Amaranth-internal attributes are left out: they carry absolute paths
  and line numbers, so an edited comment would otherwise force a rebuild.
- Signature members fixed to a constant (``always_ready`` or
  ``always_valid`` streams) are not ports (Amaranth 0.5's ``convert``
  rejects them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amaranth.back import rtlil
from amaranth.back.verilog import _convert_rtlil_text
from amaranth.lib import wiring

from .ports import signature_ports

__all__ = ["verilog_text", "write_verilog"]


def verilog_text(component: wiring.Component, *, name: str) -> str:
    """Return the Verilog of ``component`` as a module called ``name``.

    The Yosys script is Amaranth's own: ``amaranth.back.verilog`` runs it
    through ``_convert_rtlil_text``, which takes extra ``write_verilog``
    options (``-sv`` here) but is private to Amaranth 0.5 (the project pins
    amaranth below 0.6; the tests of this module would catch a change).
    """
    rtlil_text = rtlil.convert(
        component, name=name, ports=signature_ports(component), emit_src=False)
    with _builtin_yosys():
        return _convert_rtlil_text(
            rtlil_text, strip_internal_attrs=True, write_verilog_opts=("-sv",))


@contextmanager
def _builtin_yosys() -> Iterator[None]:
    """Make Amaranth pick its builtin Yosys while the block runs (not thread-safe)."""
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


_REGISTER_INITIALISER = re.compile(
    r"^(\s*reg\s+(?:signed\s+)?(?:\[[^\]]+\]\s*)?\\?[^\s=;]+\s*)=\s*[^;]+;", re.MULTILINE)


def icarus_safe(text: str) -> str:
    """``text`` with ``always @*`` for ``always_comb`` and no register initialisers (see above)."""
    return _REGISTER_INITIALISER.sub(r"\1;", text.replace("always_comb", "always @*"))


def write_verilog(component: wiring.Component, path: str | os.PathLike, *, name: str,
                  icarus: bool = False) -> Path:
    """Write the Verilog of ``component`` (module ``name``) to ``path``; return the path.

    Parent directories are created.  An existing file with the same content
    is left untouched, timestamp included, so that cached simulator builds
    stay valid.
    """
    path = Path(path)
    text = verilog_text(component, name=name)
    if icarus:
        text = icarus_safe(text)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text)
        temporary.replace(path)
    return path
