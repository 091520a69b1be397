"""Race reports, and the comparison of two reports of one kind (for CI).

A race report (`write_race_report`) is one folder:

- `report.json`: `RaceResult.to_dict()` (host/race.py's module docstring
  defines every figure), with `report_schema` (`REPORT_SCHEMA`, the version
  of this file's layout, apart from the result's own `schema`) and `sweep`:
  the latency sweep's points ({latency_ns, maker_total_pnl, races,
  sniper_wins}), empty when none was run. When `race_and_sweep` ran them,
  `counterfactual` (the race in the other market design: its
  `batch_interval_ns`, races, stale quotes taken, late cancels, the maker's
  and the sniper's P&L, counts) and `agents.maker.implementations` (the
  maker's asyncio and blocking runners on loopback: round-trip, socket and
  decision latencies in ns, and whether each sent the core's orders).
- One HDR histogram per agent and latency kind (`maker_tick_to_trade.hgrm`,
  `maker_decision.hgrm`, `sniper_...`): the raw values in ns, recorded with 3
  significant digits, written as the hdrhistogram package's percentile
  distribution (the standard .hgrm text that HdrHistogram's plotter reads).
  An agent without samples gets a file with the header only.
- `report.html`: one file, no external assets and no JavaScript: the summary
  table, the latency histograms and CDFs of both agents side by side, the
  maker's profit against its decision latency (the sweep), both agents'
  cumulative P&L through the run and the maker's P&L split. Plots are SVG
  made by matplotlib without pyplot (no display, no global state), each
  embedded as a data: URI image, so that the ids inside one plot cannot clash
  with another's. Measured fields are marked, with the machine named.

The folder is written atomically (the project's rule, as host/files.py does
for single files): everything goes into a temporary folder beside it first;
only when all files are complete are they moved into place, so a failure
leaves the old report (or nothing) and no temporary folder.

`summary_table` is the terminal summary: latencies in µs, the advantage,
the races, the maker's P&L in dollars, and which numbers were measured;
with a counterfactual, the two market designs side by side (races, sniper
wins, stale quotes taken, the maker's P&L split), and with runners, their
latencies. report.html shows the same tables.

Comparison (`compare_reports`, `comparison_table`): two reports of one kind,
every number side by side with its absolute and relative change. Kinds
(`report_kind`): a race report (its `report_schema`), a synthesis report
(host/synth.py: `luts`, `ffs`, `brams`, `fmax_mhz` per clock, ...) and a board
build report (the same keys and a `board`). The walk is generic: every
number and boolean in nested objects is a metric, named by its path; lists
(raw samples, time series, fills, critical paths) are left out, except a race
report's sweep, compared point by point by latency. Differing text fields
(scenario, machine, tool versions) are listed apart. `Comparison.regressions`
finds the figures that got worse by more than a given percentage:

- race reports: the distribution statistics (min, p50, p99, p99.9, max) of
  every figure whose path contains "latency"; higher is worse.
- synthesis and build reports: `fmax_mhz` (per clock, or a single number),
  lower is worse; the totals `luts`, `ffs`, `brams`, higher is worse.

A figure that was 0 and got worse has got worse by more than any percentage.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .files import current_umask, read_text
from .race import RaceResult, SweepPoint

__all__ = [
    "REPORT_SCHEMA", "RACE", "SYNTHESIS", "BUILD", "ReportError", "ReportFiles", "race_report", "write_race_report",
    "summary_table", "render_html", "report_kind", "load_report", "MetricDelta", "TextDifference", "Comparison",
    "compare_reports", "comparison_table",
]

#: The version of report.json's layout (the race result inside has its own, `schema`).
REPORT_SCHEMA = "tick2trade.race-report/1"
_RACE_SCHEMA_PREFIX = REPORT_SCHEMA.rsplit("/", 1)[0] + "/"  # any version of it
#: Report kinds.
RACE, SYNTHESIS, BUILD = "race", "synthesis", "build"

_AGENTS = ("maker", "sniper")
_LATENCY_SUFFIX = "_latency_ns"
_LATENCY_STATISTICS = ("min", "p50", "p99", "p99.9", "max")
_UTILISATION = ("luts", "ffs", "brams")
_PRICE_SCALE = 10_000  # P&L is in 1/10000 dollar-shares
_HDR_SIGNIFICANT_DIGITS = 3
_HDR_HIGHEST_NS = 3600 * 10**9  # the longest race; a longer value widens the histogram
_PLOT_LOWEST_NS = 1  # log axes start at 1 ns (a 0 ns sample is drawn there)
_PLOT_HIGHEST_NS = 10**6  # ... and reach at least 1 ms
_SVG_HASH_SALT = "tick2trade"  # matplotlib's SVG ids from a fixed salt: the same report gives the same file
_COLOURS = {"maker": "#d62728", "sniper": "#1f77b4"}


class ReportError(ValueError):
    """A report cannot be read or compared; the message is one line, naming the file when there is one."""


# --- the race report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    """What `write_race_report` wrote: the folder, report.json, report.html and the histograms by name."""

    directory: Path
    json: Path
    html: Path
    histograms: dict[str, Path]  # "maker_tick_to_trade" -> .../maker_tick_to_trade.hgrm


def race_report(result: RaceResult, sweep: list[SweepPoint] | None) -> dict:
    """report.json's content: the result's data, the sweep's points (none when `sweep` is None), the version."""
    return {"report_schema": REPORT_SCHEMA, **result.to_dict(),
            "sweep": [point._asdict() for point in sweep or ()]}


def write_race_report(result: RaceResult, sweep: list[SweepPoint] | None, out_dir: str | os.PathLike) -> ReportFiles:
    """Write the race report into `out_dir` (module docstring), atomically; files already there are replaced."""
    report = race_report(result, sweep)
    directory = Path(out_dir)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        (staging / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        histograms = {}
        for name, values in _latency_samples(report):
            with open(staging / f"{name}.hgrm", "wb") as file:
                _hdr_histogram(values).output_percentile_distribution(file, 1)
            histograms[name] = directory / f"{name}.hgrm"
        (staging / "report.html").write_text(render_html(report), encoding="utf-8")
        _move_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ReportFiles(directory, directory / "report.json", directory / "report.html", histograms)


def _latency_samples(report: dict) -> Iterator[tuple[str, list[int]]]:
    """("maker_tick_to_trade", raw values in ns), ... for every agent and every latency kind it has."""
    for agent in _AGENTS:
        for key, stats in report["agents"][agent].items():
            if key.endswith(_LATENCY_SUFFIX):
                yield f"{agent}_{key.removesuffix(_LATENCY_SUFFIX)}", stats["values"]


def _hdr_histogram(values: list[int]) -> HdrHistogram:
    histogram = HdrHistogram(1, max([_HDR_HIGHEST_NS, *values]), _HDR_SIGNIFICANT_DIGITS)
    for value in values:
        histogram.record_value(value)
    return histogram


def _move_into_place(staging: Path, directory: Path) -> None:
    """The staged files into `directory`: the whole folder renamed when it is new, else file by file."""
    if not directory.exists():
        staging.chmod(0o777 & ~current_umask())  # mkdtemp made it private
        staging.rename(directory)
        return
    for path in staging.iterdir():
        os.replace(path, directory / path.name)
    staging.rmdir()


# --- the summary table -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A header row and rows of text cells; the first column names the row (left-aligned), the others are figures."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


def _us(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1000:,.3f}"


def _dollars(units: int) -> str:
    return f"{units / _PRICE_SCALE:,.2f}"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:,.1f}x"


def _machine(report: dict) -> str:
    machine = report["machine"]
    return f"{machine['cpu']} ({machine['cpus']} CPUs), {machine['platform']}, Python {machine['python']}"


def _title(report: dict) -> str:
    scenario = report["scenario"]
    return (f"race report: scenario {scenario['name']}, seed {report['seed']}, "
            f"{scenario['duration_ns'] / 1e9:g} s ({report['report_schema']})")


def _measured_note(report: dict) -> str:
    measured = report["measured"]
    if not measured:
        return ("measured: nothing; every leg is a constant or simulated, so the run is deterministic for its seed "
                f"(machine: {_machine(report)})")
    return (f"* measured (wall-clock) on {_machine(report)}: {', '.join(measured)}; "
            "the advantage, the races and the P&L follow from them")


def _summary_tables(report: dict) -> list[_Table]:
    """The summary's tables: latencies, legs, advantage, races, the maker's quotes, its P&L split."""
    measured = set(report["measured"])
    agents = report["agents"]
    latency = _Table(("latency (µs)", "count", *_LATENCY_STATISTICS), [])
    for agent in _AGENTS:
        for key, stats in agents[agent].items():
            if key.endswith(_LATENCY_SUFFIX):
                mark = " *" if f"agents.{agent}.{key}" in measured else ""
                name = f"{agent} {key.removesuffix(_LATENCY_SUFFIX).replace('_', '-')}{mark}"
                latency.rows.append((name, f"{stats['count']:,}", *(_us(stats[s]) for s in _LATENCY_STATISTICS)))
    legs = _Table(("", "feed", "entry", "response", "decision"),
                  [(f"{agent} legs (ns)", *(f"{agents[agent]['legs_ns'][leg]:,}"
                                            for leg in ("feed_ns", "entry_ns", "response_ns")),
                    agents[agent]["decision"]) for agent in _AGENTS])
    advantage = report["advantage"]
    ratio = _Table(("", "p50", "p99"), [("advantage (maker / sniper tick-to-trade)", _times(advantage["p50_ratio"]),
                                         _times(advantage["p99_ratio"]))])
    races = report["races"]
    race_table = _Table(("", "count", "sniper wins", "maker wins", "uncontested", "duration p50 (µs)"),
                        [("races", *(f"{races[key]:,}" for key in ("count", "sniper_wins", "maker_wins",
                                                                    "uncontested")),
                          _us(races["duration_ns"]["p50"]))])
    quotes = _Table(("", "count"), [("stale quotes taken", f"{report['stale_quotes_taken']:,}"),
                                    ("late cancels", f"{report['late_cancels']:,}")])
    pnl = report["mm_pnl"]
    split = _Table(("maker P&L", "$"), [
        ("spread capture", _dollars(pnl["spread_capture"])),
        *((f"  with {party}", _dollars(value)) for party, value in pnl["spread_capture_by_counterparty"].items()),
        ("adverse selection (1 s markout)", _dollars(pnl["adverse_selection"])),
        ("inventory", _dollars(pnl["inventory"])),
        ("total", _dollars(pnl["total"])),
    ])
    tables = [latency, legs, ratio, race_table, quotes, split]
    if "counterfactual" in report:
        tables.append(_design_table(report))
    implementations = agents["maker"].get("implementations")
    if implementations:
        tables.append(_runner_table(implementations, "agents.maker.implementations" in measured))
    return tables


def _design(batch_interval_ns: int | None) -> str:
    return "continuous" if batch_interval_ns is None else f"batch auction {batch_interval_ns / 1e6:g} ms"


def _design_table(report: dict) -> _Table:
    """The race and its counterfactual side by side: races, stale quotes, the maker's P&L split."""
    other = report["counterfactual"]
    runs = (report, other)
    parties = sorted({party for run in runs for party in run["mm_pnl"]["spread_capture_by_counterparty"]})
    rows = [(label, *(f"{run['races'][key]:,}" for run in runs))
            for label, key in (("races", "count"), ("sniper wins", "sniper_wins"), ("maker wins", "maker_wins"),
                               ("uncontested", "uncontested"))]
    rows += [(label, *(f"{run[key]:,}" for run in runs))
             for label, key in (("stale quotes taken", "stale_quotes_taken"), ("late cancels", "late_cancels"))]
    rows += [("maker P&L ($): spread capture", *(_dollars(run["mm_pnl"]["spread_capture"]) for run in runs))]
    rows += [(f"  with {party}", *(_dollars(run["mm_pnl"]["spread_capture_by_counterparty"].get(party, 0))
                                   for run in runs)) for party in parties]
    rows += [(label, *(_dollars(run["mm_pnl"][key]) for run in runs))
             for label, key in (("  adverse selection (1 s markout)", "adverse_selection"),
                                ("  inventory", "inventory"), ("  total", "total"))]
    sniper = report["agents"]["sniper"]["pnl"]["total"]
    rows.append(("sniper P&L total ($)", _dollars(sniper), _dollars(other["sniper_pnl"]["total"])))
    header = ("market design (counterfactual: sniper " + other["sniper"] + ")",
              _design(report["scenario"]["exchange"]["batch_interval_ns"]), _design(other["batch_interval_ns"]))
    return _Table(header, rows)


def _runner_table(implementations: dict, measured: bool) -> _Table:
    """The maker's runners on loopback: round trip (UDP send to order bytes at the TCP server), socket legs, core."""
    mark = " *" if measured else ""
    table = _Table(("maker runner, loopback (µs)", "count", *_LATENCY_STATISTICS, "orders = core's"), [])
    for name, runner in implementations.items():
        if runner.get("error"):
            table.rows.append((f"{name}: not measured ({runner['error']})", "", *("-" for _ in _LATENCY_STATISTICS),
                               "-"))
            continue
        for key in ("round_trip", "socket", "decision"):
            stats = runner[f"{key}{_LATENCY_SUFFIX}"]
            same = ("yes" if runner["orders_match_core"] else "NO") if key == "round_trip" else ""
            table.rows.append((f"{name} {key.replace('_', '-')}{mark}", f"{stats['count']:,}",
                               *(_us(stats[s]) for s in _LATENCY_STATISTICS), same))
    return table


def _aligned(table: _Table) -> list[str]:
    rows = [table.header, *table.rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(table.header))]
    return ["  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))])
            .rstrip() for row in rows]


def summary_table(report: dict) -> str:
    """The terminal summary of a race report (plain text, aligned columns)."""
    lines = [_title(report), ""]
    for table in _summary_tables(report):
        lines += [*_aligned(table), ""]
    lines.append(_measured_note(report))
    return "\n".join(lines)


# --- the HTML report -------------------------------------------------------------------------------


def _ns_label(value: float, _position=None) -> str:
    """An axis label for a time in ns: 1 ns, 10 µs, 1 ms, 1 s."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if value >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g} ns"


def _log_ns_axis(axes, highest: float) -> None:
    axes.set_xscale("log")
    axes.set_xlim(_PLOT_LOWEST_NS, highest)
    axes.xaxis.set_major_locator(LogLocator(base=10, numticks=20))
    axes.xaxis.set_major_formatter(FuncFormatter(_ns_label))


def _agent_label(report: dict, agent: str, key: str, count: int) -> str:
    measured = ", measured" if f"agents.{agent}.{key}" in report["measured"] else ""
    return f"{agent} (n={count:,}{measured})"


def _latency_figure(report: dict, key: str) -> Figure:
    """Histogram (log bins) and CDF of one latency kind, both agents, side by side."""
    samples = {agent: report["agents"][agent][key]["values"] for agent in _AGENTS}
    highest = max([_PLOT_HIGHEST_NS, *(2 * max(values) for values in samples.values() if values)])
    bins = numpy.logspace(0, math.log10(highest), 61)
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    histogram, cdf = figure.subplots(1, 2)
    for agent, values in samples.items():
        drawn = numpy.maximum(numpy.asarray(values, dtype=float), _PLOT_LOWEST_NS)
        label = _agent_label(report, agent, key, len(values))
        histogram.hist(drawn, bins=bins, histtype="stepfilled", alpha=0.45, color=_COLOURS[agent], label=label)
        ordered = numpy.sort(drawn)
        cdf.step(ordered, numpy.arange(1, len(ordered) + 1) / max(len(ordered), 1), where="post",
                 color=_COLOURS[agent], label=label)
    name = key.removesuffix(_LATENCY_SUFFIX).replace("_", "-")
    for axes, what in ((histogram, "count"), (cdf, "fraction of samples at or below")):
        _log_ns_axis(axes, highest)
        axes.set_xlabel(f"{name} latency")
        axes.set_ylabel(what)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(loc="upper left")
    histogram.set_title(f"{name} latency: histogram")
    cdf.set_title(f"{name} latency: CDF")
    cdf.set_ylim(0, 1.02)
    return figure


def _sweep_figure(report: dict) -> Figure:
    """The maker's P&L against its constant decision latency, the zero line and the agents' decision p50s."""
    points = report["sweep"]
    latencies = [point["latency_ns"] for point in points]
    dollars = [point["maker_total_pnl"] / _PRICE_SCALE for point in points]
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(latencies, dollars, color="grey", linewidth=1)
    axes.scatter(latencies, dollars, color=[_sign_colour(value) for value in dollars], zorder=3)
    axes.axhline(0, color="black", linewidth=0.8)
    for agent, style in (("sniper", "--"), ("maker", ":")):
        p50 = report["agents"][agent]["decision_latency_ns"]["p50"]
        if p50 is not None:
            measured = " (measured)" if f"agents.{agent}.decision_latency_ns" in report["measured"] else ""
            axes.axvline(max(p50, _PLOT_LOWEST_NS), color=_COLOURS[agent], linestyle=style,
                         label=f"{agent}'s decision p50{measured}: {_ns_label(p50)}")
    _log_ns_axis(axes, max([_PLOT_HIGHEST_NS, *(2 * latency for latency in latencies)]))
    axes.set_xlabel("the maker's decision latency (a constant, one race per point)")
    axes.set_ylabel("maker P&L ($)")
    axes.set_title("the maker's profit against its latency (green: profit, red: loss)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best")
    return figure


def _cumulative_pnl_figure(report: dict) -> Figure:
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots()
    for agent in _AGENTS:
        series = report["agents"][agent]["pnl_over_time"]
        axes.plot([at / 1e9 for at, _pnl in series], [pnl / _PRICE_SCALE for _at, pnl in series],
                  color=_COLOURS[agent], label=agent)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xlabel("race time (s)")
    axes.set_ylabel("P&L, cash + position at fair value ($)")
    axes.set_title("cumulative P&L through the run")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best")
    return figure


def _bars(axes, bars: list[tuple[str, int]], *, horizontal: bool) -> None:
    """Named P&L figures (1/10000 dollar-shares) as labelled bars in dollars, green for profit, red for loss."""
    draw = axes.barh if horizontal else axes.bar
    values = [value / _PRICE_SCALE for _name, value in bars]
    drawn = draw([name for name, _value in bars], values, color=[_sign_colour(value) for value in values])
    axes.bar_label(drawn, labels=[f"{value:,.2f}" for value in values], padding=2)


def _sign_colour(value: float) -> str:
    return "#2ca02c" if value >= 0 else "#d62728"


def _pnl_split_figure(report: dict) -> Figure:
    """The maker's P&L parts (spread capture by counterparty), which add up to the total, and its markouts."""
    pnl = report["mm_pnl"]
    parts = [(f"spread capture with {party}", value) for party, value in pnl["spread_capture_by_counterparty"].items()]
    parts += [("adverse selection (1 s markout)", pnl["adverse_selection"]), ("inventory", pnl["inventory"]),
              ("total", pnl["total"])]
    figure = Figure(figsize=(11, 4), layout="constrained")
    split, markouts = figure.subplots(1, 2)
    _bars(split, parts, horizontal=True)
    split.invert_yaxis()  # the parts top down, the total last
    split.axvline(0, color="black", linewidth=0.8)
    split.margins(x=0.3)
    split.set_xlabel("$")
    split.set_title("the maker's P&L split")
    _bars(markouts, list(pnl["markouts"].items()), horizontal=False)
    markouts.axhline(0, color="black", linewidth=0.8)
    markouts.margins(y=0.2)
    markouts.set_xlabel("horizon (fair value then minus at the fill)")
    markouts.set_ylabel("$")
    markouts.set_title("the maker's markouts by horizon")
    return figure


def _image(figure: Figure, alt: str) -> str:
    """`figure` as an <img> with an SVG data: URI."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_HASH_SALT}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    encoded = base64.b64encode(buffer.getvalue().encode()).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{encoded}" alt="{html.escape(alt)}">'


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; white-space: pre; }
img { max-width: 100%; }
.note { background: #fff6d5; padding: 0.5em 0.8em; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; }
"""


def render_html(report: dict) -> str:
    """report.html for a race report (module docstring): one self-contained page."""
    title = _title(report)
    sweep = (_image(_sweep_figure(report), "the maker's P&L against its decision latency") if report["sweep"]
             else "<p>No latency sweep in this report.</p>")
    sections = [
        ("Tick-to-trade latency", _image(_latency_figure(report, "tick_to_trade_latency_ns"),
                                         "tick-to-trade latency, histogram and CDF")),
        ("Decision latency", _image(_latency_figure(report, "decision_latency_ns"),
                                    "decision latency, histogram and CDF")),
        ("Profit against the maker's latency", sweep),
        ("P&L through the run", _image(_cumulative_pnl_figure(report), "cumulative P&L of both agents")),
        ("The maker's P&L split", _image(_pnl_split_figure(report), "the maker's P&L split and markouts")),
    ]
    scenario = json.dumps(report["scenario"], indent=2)
    body = "\n".join([
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(_measured_note(report))}</p>',
        "<h2>Summary</h2>", *(_html_table(table) for table in _summary_tables(report)),
        *(f"<h2>{html.escape(heading)}</h2>\n{content}" for heading, content in sections),
        f"<details><summary>Scenario</summary><pre>{html.escape(scenario)}</pre></details>",
    ])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


# --- loading and comparing reports -----------------------------------------------------------


def report_kind(report: object) -> str:
    """RACE, SYNTHESIS or BUILD (module docstring); ReportError for anything else."""
    if isinstance(report, dict):
        schema = report.get("report_schema")
        if isinstance(schema, str) and schema.startswith(_RACE_SCHEMA_PREFIX):
            return RACE
        if all(_is_number(report.get(key)) for key in ("luts", "ffs", "brams")) and "fmax_mhz" in report:
            return BUILD if "board" in report else SYNTHESIS
    raise ReportError("not a known report kind (a race report with report_schema, or a synthesis or board build "
                      "report with luts, ffs, brams and fmax_mhz)")


def load_report(path: str | os.PathLike) -> dict:
    """A report from a JSON file, checked to be of a known kind; ReportError (one line, naming the file) if not."""
    path = Path(path)
    text = read_text(path, ReportError)
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not JSON ({error})") from None
    try:
        report_kind(report)
    except ReportError as error:
        raise ReportError(f"{path}: {error}") from None
    return report


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KeyPath = tuple[str, ...]
_Scalar = int | float | bool | str | None


@dataclass(frozen=True)
class MetricDelta:
    """One number (or boolean) of two reports: a, b (None where missing) and which way is better, if checked.

    `better` is "lower" or "higher" for the figures `Comparison.regressions`
    checks, None for the others.
    """

    path: _KeyPath
    a: int | float | bool | None
    b: int | float | bool | None
    better: str | None = None

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def absolute(self) -> int | float | None:
        """b - a; None when either is missing or a boolean."""
        if _is_number(self.a) and _is_number(self.b):
            return self.b - self.a
        return None

    @property
    def relative_pct(self) -> float | None:
        """(b - a) / |a| in percent; None when a is 0 or there is no absolute change."""
        change = self.absolute
        return None if change is None or not self.a else change / abs(self.a) * 100

    @property
    def worsening_pct(self) -> float | None:
        """How many percent worse b is than a (negative: better; inf: worse than a 0); None if not checked."""
        change = self.absolute
        if self.better is None or change is None:
            return None
        worse = change if self.better == "lower" else -change
        if not worse:
            return 0.0
        return math.copysign(math.inf, worse) if not self.a else worse / abs(self.a) * 100


@dataclass(frozen=True)
class TextDifference:
    """A field that is not a number and differs between the two reports (scenario name, machine, tools)."""

    path: _KeyPath
    a: _Scalar
    b: _Scalar

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Comparison:
    """Two reports of one kind, every metric side by side (module docstring)."""

    kind: str
    metrics: tuple[MetricDelta, ...]
    text_differences: tuple[TextDifference, ...]

    def regressions(self, pct: float) -> list[MetricDelta]:
        """The checked figures (latency; Fmax and utilisation) that got worse by more than `pct` percent."""
        if not _is_number(pct) or not pct >= 0:
            raise ValueError(f"the regression threshold must be a percentage of 0 or more, not {pct!r}")
        return [metric for metric in self.metrics
                if metric.worsening_pct is not None and metric.worsening_pct > pct]


def _leaves(value: object, path: _KeyPath = ()) -> Iterator[tuple[_KeyPath, _Scalar]]:
    """Every scalar in nested objects, by path; lists are left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif not isinstance(value, list):
        yield path, value


def _race_leaves(report: dict) -> Iterator[tuple[_KeyPath, _Scalar]]:
    """A race report's scalars, and its sweep's by point ("sweep", "1000ns", "maker_total_pnl")."""
    yield from _leaves({key: value for key, value in report.items() if key != "sweep"})
    for point in report.get("sweep") or ():
        at = f"{point['latency_ns']}ns"
        yield from _leaves({key: value for key, value in point.items() if key != "latency_ns"}, ("sweep", at))


def _race_better(path: _KeyPath) -> str | None:
    if path[-1] in _LATENCY_STATISTICS and any("latency" in part for part in path[:-1]):
        return "lower"
    return None


def _synthesis_better(path: _KeyPath) -> str | None:
    if path[0] == "fmax_mhz":
        return "higher"
    if len(path) == 1 and path[0] in _UTILISATION:
        return "lower"
    return None


def compare_reports(a: dict, b: dict) -> Comparison:
    """Every metric of `a` and `b`, side by side; ReportError (a ValueError) if they are not of one known kind."""
    kind_a, kind_b = report_kind(a), report_kind(b)
    if kind_a != kind_b:
        raise ReportError(f"cannot compare a {kind_a} report with a {kind_b} report")
    if kind_a == RACE:
        leaves_a, leaves_b, better = dict(_race_leaves(a)), dict(_race_leaves(b)), _race_better
    else:
        leaves_a, leaves_b, better = dict(_leaves(a)), dict(_leaves(b)), _synthesis_better
    metrics, texts = [], []
    for path in [*leaves_a, *(path for path in leaves_b if path not in leaves_a)]:
        value_a, value_b = leaves_a.get(path), leaves_b.get(path)
        if all(value is None or isinstance(value, int | float) for value in (value_a, value_b)):
            if value_a is not None or value_b is not None:
                metrics.append(MetricDelta(path, value_a, value_b, better(path)))
        elif value_a != value_b:
            texts.append(TextDifference(path, value_a, value_b))
    return Comparison(kind_a, tuple(metrics), tuple(texts))


def _value(value: _Scalar) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _change(change: int | float | None) -> str:
    if change is None:
        return ""
    return f"{change:+,}" if isinstance(change, int) else f"{change:+.6g}"


def _verdict(metric: MetricDelta, regressions: set[str]) -> str:
    if metric.name in regressions:
        return "REGRESSION"
    worse = metric.worsening_pct
    return "" if not worse else "worse" if worse > 0 else "better"


def _worse_by(metric: MetricDelta) -> str:
    worse = metric.worsening_pct
    return "worse than 0" if math.isinf(worse) else f"{worse:.1f} % worse"


def comparison_table(comparison: Comparison, *, changed_only: bool = False,
                     regression_pct: float | None = None) -> str:
    """The comparison as aligned text: metric, a, b, change, change in %, and worse/better where checked.

    `changed_only` leaves out the metrics equal in both. With
    `regression_pct`, the figures that got worse by more than it are marked
    REGRESSION and listed at the end.
    """
    regressions = [] if regression_pct is None else comparison.regressions(regression_pct)
    flagged = {metric.name for metric in regressions}
    table = _Table(("metric", "a", "b", "change", "change %", ""), [])
    for metric in comparison.metrics:
        unchanged = metric.a == metric.b
        if changed_only and unchanged:
            continue
        relative = metric.relative_pct
        table.rows.append((metric.name, _value(metric.a), _value(metric.b),
                           "" if unchanged else _change(metric.absolute),
                           "" if unchanged or relative is None else f"{relative:+.1f}%",
                           _verdict(metric, flagged)))
    lines = [f"{comparison.kind} reports: {len(comparison.metrics)} metrics, "
             f"{sum(metric.a != metric.b for metric in comparison.metrics)} changed", ""]
    lines += _aligned(table)
    if comparison.text_differences:
        lines += ["", "other fields that differ:"]
        lines += [f"  {difference.name}: {_value(difference.a)} -> {_value(difference.b)}"
                  for difference in comparison.text_differences]
    if regression_pct is not None:
        lines += ["", f"{len(regressions)} regression(s) of more than {regression_pct:g} %"
                      + (":" if regressions else "")]
        lines += [f"  {metric.name}: {_value(metric.a)} -> {_value(metric.b)} ({_worse_by(metric)})"
                  for metric in regressions]
    return "\n".join(lines)
