"""Board builds: a bitstream for one board of host/boards.py, and its report.

``build_board(board, out_dir=..., progress=...)`` elaborates ``BoardTop`` for
the board, has Amaranth write its build plan (``platform.prepare``, with the
amaranth-boards platform's pins, clock constraints and tool options), and
runs the plan's commands itself, one tool at a time, through the YoWASP
builds from PyPI (host/toolchain.py's runner: each tool's output streamed into
``<tool>.log`` with a progress line every few seconds). Running the plan
itself, rather than ``platform.build``, means no tool has to be on PATH or
named by an environment variable (``YOSYS``, ``NEXTPNR_ECP5``, ...), and
the platforms that list openFPGALoader among their required tools (ULX3S,
Colorlight) build without it.

What the plan gets besides the platform's defaults (Amaranth overrides):
``nextpnr_opts`` (``--report`` for the timing and utilisation JSON,
``--timing-allow-fail`` so that a slow build still reports its Fmax,
``--seed``, ``--router``), ``script_after_synth`` (Yosys ``stat -json``
for the cell counts), ``verbose`` (the tools print their whole log, which
the runner streams) and ``debug_verilog=False`` (no Verilog copy of the
design: it takes a minute on the pipeline and nothing reads it).

Everything stays in the output folder: the plan's files (``tick2trade.il``,
``.ys``, ``.lpf``/``.pcf``, ``build_tick2trade.sh``, ...), the tools' logs
(``yosys.log``, ``nextpnr-ecp5.log`` or ``nextpnr-ice40.log``, ``ecppack.log``
or ``icepack.log``; nextpnr's ``--log`` option is taken out of the plan's
command: with it, nextpnr-ecp5's output came in blocks minutes apart), Yosys's cell counts (``tick2trade_stat.json``),
nextpnr's report (``tick2trade_nextpnr.json``), the bitstream
(``tick2trade.bit`` for the ECP5, ``tick2trade.bin`` for the iCE40) and
``build.json`` (written last, atomically; see ``build_board``). A build first
removes the folder's old ``build.json`` and bitstream, so that a failed
build never leaves an older bitstream next to a report of it.
"""

import json
import time
from dataclasses import asdict
from pathlib import Path

from amaranth.build import ResourceError

from .boards import DESIGN_NAME, Board, get_board
from .files import atomic_write
from .toolchain import ECP5_CELL_KEYS, TOOLS, ToolError, ToolRunner, cell_counts, pnr_results, tool_versions

__all__ = ["BuildError", "build_board", "summary", "REPORT_KEYS", "CELL_KEYS"]


class BuildError(ToolError):
    """A board build failed: a tool (the message names it and its log, and ends with the log's
    last lines) or the design's pins. Printed as is, without a traceback."""


#: Yosys cell types counted in build.json, per family (see host/toolchain.py's ``cell_counts``).
CELL_KEYS = {
    "ecp5": ECP5_CELL_KEYS,
    "ice40": {"luts": "SB_LUT4", "ffs": r"SB_DFF\w*", "carry": "SB_CARRY", "brams": r"SB_RAM40_4K\w*",
              "spram": "SB_SPRAM256KA", "dsp": "SB_MAC16"},
}

#: The keys every build.json has (``tick2trade report compare`` reads board, luts, ffs, brams, fmax_mhz).
REPORT_KEYS = ("board", "title", "part", "config", "luts", "ffs", "brams", "carry", "dsp", "cells",
               "device_utilisation", "fmax_mhz", "clock_mhz", "oscillator_mhz", "pll", "timing_met",
               "critical_path", "seed", "router", "tools", "seconds", "bitstream", "logs")


def build_board(board, *, out_dir=None, progress=None, seed=1, top=None, config=None, nextpnr_opts=()):
    """Build ``board`` (a name or a ``Board``) into ``out_dir``; return build.json's content.

    ``out_dir`` defaults to ``out/build/<board>``. ``progress``, if given, is
    called with one-line strings while the tools run. ``top`` replaces
    ``BoardTop(board)`` (it must clock itself at the board's ``clock_hz``),
    ``config`` then describes it in the report; ``nextpnr_opts`` are added to
    nextpnr's options (after the build's own and the configuration's).

    build.json:

    * ``board``, ``title``, ``part`` (family, device, package, speed);
      ``config``: the configuration's name, core, parameters, reductions
      (empty for the full build), router, further nextpnr options, and the
      link (baud, clocks per bit).
    * ``luts``, ``ffs``, ``brams``, ``carry``, ``dsp`` (and ``lutram`` on the
      ECP5, ``spram`` on the iCE40), ``cells``: Yosys's counts for the whole
      design after synthesis (ECP5: LUT4, TRELLIS_FF, DP16KD, CCU2C,
      MULT18X18D, TRELLIS_DPR16X4; iCE40: SB_LUT4, SB_DFF*, SB_RAM40_4K,
      SB_CARRY, SB_MAC16, SB_SPRAM256KA) and every cell type;
      ``device_utilisation``: nextpnr's used/available per resource.
    * ``fmax_mhz`` ({clock net: MHz} after routing), ``clock_mhz`` (what the
      board runs the design at), ``oscillator_mhz``, ``pll`` (the EHXPLLL
      dividers, or null), ``timing_met`` (every clock's Fmax >= clock_mhz),
      ``critical_path`` (nextpnr's worst paths, summarised).
    * ``seed``, ``router``, ``tools`` (versions), ``seconds`` (per step and
      ``total``), ``bitstream`` and ``logs`` (file names in ``out_dir``).

    A failing tool raises :class:`BuildError` with its log's path and tail.
    """
    if not isinstance(board, Board):
        board = get_board(board)
    out_dir = Path(out_dir if out_dir is not None else board.default_out_dir()).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("build.json", board.bitstream_name):
        (out_dir / stale).unlink(missing_ok=True)
    start = time.monotonic()
    runner = ToolRunner(out_dir, progress, start=start, error=BuildError)
    if top is None:
        from ..hdl.board_top import BAUD, BoardTop
        top = BoardTop(board)
        config = {**board.configuration.to_dict(),
                  "link": {"baud": BAUD, "clocks_per_bit": top.clocks_per_bit}}
    elif config is None:
        config = {"name": "custom", "top": type(top).__qualname__, "reductions": ["not the board's gateware"]}
    router = config.get("router", board.configuration.router)
    runner.say("elaborate", f"{board.name}: {config['name']} on {board.part} at {board.clock_mhz:g} MHz")

    stat_file, report_file = f"{DESIGN_NAME}_stat.json", f"{DESIGN_NAME}_nextpnr.json"
    try:
        plan = board.make_platform().prepare(
            top, DESIGN_NAME, debug_verilog=False, verbose=True,
            script_after_synth=f"tee -q -o {stat_file} stat -json",
            nextpnr_opts=["--report", report_file, "--timing-allow-fail", "--seed", str(seed),
                          "--router", router, *config.get("nextpnr_opts", []), *nextpnr_opts])
    except ResourceError as error:
        raise BuildError(f"{board.name}: {error}") from None
    plan.extract(out_dir)
    runner.seconds["elaborate"] = round(time.monotonic() - start, 1)
    runner.say("elaborate", f"done in {runner.seconds['elaborate']}s; build plan in {out_dir}")

    logs = {}
    for argv in json.loads((out_dir / f"{plan.script}.json").read_text())["commands"]:
        tool, args = argv[0], argv[1:]
        if tool not in TOOLS:
            raise BuildError(f"the build plan runs {tool!r}, which has no YoWASP build here")
        if tool.startswith("nextpnr") and "--log" in args:
            # Given a log file, nextpnr-ecp5 wrote its output in blocks minutes apart, so there
            # was no progress to show: the runner's log, from its output, replaces that file.
            index = args.index("--log")
            del args[index:index + 2]
        logs[tool] = runner.run(tool, tool, args).name
    bitstream = out_dir / board.bitstream_name
    if not bitstream.is_file():
        raise BuildError(f"the tools finished but wrote no {bitstream}")

    stat = json.loads((out_dir / stat_file).read_text())
    cells = {cell.lstrip("\\"): count for cell, count in stat["design"]["num_cells_by_type"].items()}
    pnr = pnr_results(json.loads((out_dir / report_file).read_text()), board.clock_mhz)
    pll = getattr(top, "pll", None)
    runner.seconds["total"] = round(time.monotonic() - start, 1)
    result = {
        "board": board.name,
        "title": board.title,
        "part": {"family": board.family, "device": board.device, "package": board.package,
                 "speed": board.speed},
        "config": config,
        **cell_counts(cells, CELL_KEYS[board.family]),
        "device_utilisation": pnr["device_utilisation"],
        "fmax_mhz": pnr["fmax_mhz"],
        "clock_mhz": board.clock_mhz,
        "oscillator_mhz": board.oscillator_hz / 1e6,
        "pll": asdict(pll) if pll is not None else None,
        "timing_met": pnr["timing_met"],
        "critical_path": pnr["critical_path"],
        "seed": seed,
        "router": router,
        "tools": tool_versions(out_dir / logs["yosys"], nextpnr=f"nextpnr-{board.family}",
                                packages=("amaranth", "amaranth-boards")),
        "seconds": runner.seconds,
        "bitstream": bitstream.name,
        "logs": logs,
    }
    with atomic_write(out_dir / "build.json", "w", encoding="utf-8") as file:
        file.write(json.dumps(result, indent=2) + "\n")
    return result


def summary(report, out_dir):
    """Lines for the terminal: what was built, what it used, its timing, where it is."""
    out_dir = Path(out_dir)
    utilisation = report["device_utilisation"]
    used = ", ".join(f"{kind} {info['used']}/{info['available']}" for kind, info in utilisation.items()
                     if info.get("used") and kind in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D",
                                                     "ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"))
    config = report["config"]
    lines = [
        f"{report['board']} ({report['part']['device']}): {config['name']} configuration"
        + (f", reduced: {'; '.join(config['reductions'])}" if config.get("reductions") else ""),
        f"{report['luts']} LUT4, {report['ffs']} FF, {report['brams']} block RAM, {report['dsp']} DSP"
        + (f" (device: {used})" if used else ""),
    ]
    for clock, mhz in report["fmax_mhz"].items():
        verdict = "met" if mhz >= report["clock_mhz"] else "NOT met"
        lines.append(f"Fmax {clock}: {mhz} MHz (runs at {report['clock_mhz']:g} MHz: {verdict})")
    lines.append(f"time: {report['seconds']['total']}s; bitstream: {out_dir / report['bitstream']}")
    lines.append(f"report: {out_dir / 'build.json'}")
    return lines
