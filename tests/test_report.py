"""Race reports (report.json, .hgrm, report.html, the summary table) and the comparison of two reports.

The races are short and use a constant maker decision latency, so they are
deterministic; the hand-worked one is test_race.py's tiny scenario (one lead
jump, one race), whose figures are worked out there. Expected values are
computed here, independently of the code under test: percentiles of the raw
values, HDR precision from its definition (3 significant digits), number
formats, deltas of hand-built reports.
"""

import base64
import dataclasses
import json
import math
import os
import re

import pytest
from matplotlib.figure import Figure

from tick2trade.host.race import latency_sweep, load_scenario, parse_scenario, race_and_sweep, run_race
from tick2trade.host.report import (BUILD, RACE, SYNTHESIS, ReportError, compare_reports, comparison_table,
                                    load_report, race_report, render_html, report_kind, summary_table,
                                    write_race_report)

LATENCY_KINDS = ("decision", "tick_to_trade")
STATISTICS = ("min", "p50", "p99", "p99.9", "max")
PLOTS_WITH_SWEEP = 5  # tick-to-trade, decision, sweep, cumulative P&L, P&L split

# test_race.py's tiny scenario: one +10-tick lead jump at 1 ms; the sniper takes the maker's stale ask in 443 ns,
# the maker's cancel comes 3000 ns after the jump; the maker loses 100 x (1_001_000 - 1_000_500) = 50_000.
TINY = {"duration_s": 0.01, "lead": {"moves": [[1_000_000, 10]]}, "takers": {"rate_per_s": 0},
        "maker": {"inventory_skew_enabled": False},
        "legs": {"maker": {"feed_ns": 1000, "entry_ns": 1000, "response_ns": 1500, "decision": 1000}}}


def short(seconds, **changes):
    return dataclasses.replace(load_scenario("default"), duration_ns=int(seconds * 10**9), **changes)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A one-second default race (constant maker latency) with a three-point sweep, written once."""
    scenario = short(1, maker_decision_ns=50_000)
    result = run_race(scenario)
    sweep = latency_sweep(scenario, [10**6, 50_000, 26])
    parent = tmp_path_factory.mktemp("reports")
    return result, sweep, parent, write_race_report(result, sweep, parent / "race")


def nearest_rank(values, percent):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent * len(ordered) / 100) - 1)]


# --- the files ----------------------------------------------------------------------------------


def test_the_report_folder_holds_every_file_and_nothing_else(written):
    _result, _sweep, parent, files = written
    names = {f"{agent}_{kind}" for agent in ("maker", "sniper") for kind in LATENCY_KINDS}
    assert sorted(os.listdir(files.directory)) == sorted(["report.json", "report.html",
                                                          *(f"{name}.hgrm" for name in names)])
    assert set(files.histograms) == names
    assert all(path.is_file() for path in [files.json, files.html, *files.histograms.values()])
    assert os.listdir(parent) == ["race"]  # no temporary folder left beside it
    assert files.directory.stat().st_mode & 0o777 == 0o777 & ~current_umask()


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_report_json_has_the_required_keys_and_the_pnl_adds_up(written):
    result, sweep, _parent, files = written
    report = json.loads(files.json.read_text(encoding="utf-8"))
    assert report["report_schema"] == "tick2trade.race-report/1"
    assert report["scenario"]["name"] == "default" and report["machine"]["cpus"] == os.cpu_count()
    for agent in ("maker", "sniper"):
        latencies = {key: stats for key, stats in report["agents"][agent].items() if "latency" in key}
        assert set(latencies) == {"decision_latency_ns", "tick_to_trade_latency_ns"}
        for stats in latencies.values():
            assert stats["count"] == len(stats["values"]) > 0
            assert [stats[name] for name in STATISTICS] == [
                min(stats["values"]), *(nearest_rank(stats["values"], p) for p in (50, 99, 99.9)),
                max(stats["values"])]
    maker_ttt = report["agents"]["maker"]["tick_to_trade_latency_ns"]
    sniper_ttt = report["agents"]["sniper"]["tick_to_trade_latency_ns"]
    assert report["advantage"] == {"p50_ratio": maker_ttt["p50"] / sniper_ttt["p50"],
                                   "p99_ratio": maker_ttt["p99"] / sniper_ttt["p99"]}
    assert report["races"]["count"] == result.races.count > 0
    pnl = report["mm_pnl"]
    assert pnl["spread_capture"] + pnl["adverse_selection"] + pnl["inventory"] == pnl["total"] != 0
    assert report["sweep"] == [{"latency_ns": p.latency_ns, "maker_total_pnl": p.maker_total_pnl, "races": p.races,
                                "sniper_wins": p.sniper_wins} for p in sweep]
    assert report["sweep"][1]["maker_total_pnl"] == pnl["total"]  # the same race as the report's
    assert {key: value for key, value in report.items() if key not in ("report_schema", "sweep")} == \
        result.to_dict()
    assert load_report(files.json) == report and report_kind(report) == RACE


def hgrm_lines(path):
    """(value, percentile, total count) of each percentile line of a .hgrm file, and its '#[...]' lines."""
    rows, footer = [], []
    for line in path.read_text(encoding="ascii").splitlines():
        fields = line.split()
        if line.startswith("#"):
            footer.append(line)
        elif fields and fields[0] != "Value":
            assert len(fields) in (3, 4), line
            rows.append((float(fields[0]), float(fields[1]), int(fields[2])))
    return rows, footer


def test_each_hgrm_parses_back_to_the_raw_values_within_hdr_precision(written):
    result, _sweep, _parent, files = written
    for agent in ("maker", "sniper"):
        for kind in LATENCY_KINDS:
            values = getattr(getattr(result, agent), f"{kind}_latency").values
            rows, footer = hgrm_lines(files.histograms[f"{agent}_{kind}"])
            # 3 significant digits: a value is reported within a thousandth of itself (exactly below 2048)
            first, last = rows[0], rows[-1]
            assert abs(first[0] - min(values)) <= min(values) / 1000
            assert abs(last[0] - max(values)) <= max(values) / 1000
            assert (last[1], last[2]) == (1.0, len(values))
            assert all(a[0] <= b[0] and a[2] <= b[2] for a, b in zip(rows, rows[1:]))
            maximum = float(re.search(r"Max\s*=\s*([\d.]+)", footer[1]).group(1))
            assert abs(maximum - max(values)) <= max(values) / 1000


def data_images(page):
    return re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)


def test_the_html_is_self_contained_with_one_image_per_plot(written):
    _result, _sweep, _parent, files = written
    page = files.html.read_text(encoding="utf-8")
    images = data_images(page)
    assert len(images) == PLOTS_WITH_SWEEP == page.count("data:image")
    for encoded in images:
        svg = base64.b64decode(encoded).decode("utf-8")
        assert "<svg" in svg and "</svg>" in svg
        # inside a plot, every reference is to the plot itself (xmlns declarations are names, not references)
        assert re.findall(r'href="([^"#][^"]*)"', svg) == []
    outside = re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http" not in outside and "<script" not in outside and "<link" not in outside
    assert "<table>" in outside and "tick-to-trade" in outside
    assert "measured: nothing" in outside  # the maker's latency was a constant


def test_a_measured_race_is_marked_as_measured_with_the_machine_named():
    result = run_race(short(0.2))  # the maker's decision leg measured on this machine
    report = race_report(result, None)
    cpu = report["machine"]["cpu"]
    table = summary_table(report)
    assert re.search(r"^maker decision \*\s", table, re.MULTILINE)
    assert re.search(r"^maker tick-to-trade \*\s", table, re.MULTILINE)
    assert re.search(r"^sniper decision\s+\d", table, re.MULTILINE)  # the sniper's are not measured
    assert f"* measured (wall-clock) on {cpu}" in table and "agents.maker.decision_latency_ns" in table
    page = render_html(report)
    assert "maker decision *" in page and f"measured (wall-clock) on {cpu}" in page
    assert len(data_images(page)) == PLOTS_WITH_SWEEP - 1 and "No latency sweep" in page


# --- the summary table ----------------------------------------------------------------------------


def row(table, name):
    """The cells after `name` on the summary line that starts with it."""
    line = next(line for line in table.splitlines() if line.startswith(name + " "))
    return line[len(name):].split()


def test_the_summary_table_shows_the_hand_worked_race():
    report = race_report(run_race(parse_scenario(TINY)), None)
    table = summary_table(report)
    # sniper: one order, 241 + 26 + 176 ns; maker: tick-to-trade 4000 and 3000 ns, decisions 1000 ns each
    assert row(table, "sniper tick-to-trade") == ["1", "0.443", "0.443", "0.443", "0.443", "0.443"]
    assert row(table, "sniper decision") == ["1", "0.026", "0.026", "0.026", "0.026", "0.026"]
    assert row(table, "maker tick-to-trade") == ["2", "3.000", "3.000", "4.000", "4.000", "4.000"]
    assert row(table, "maker decision") == ["2", "1.000", "1.000", "1.000", "1.000", "1.000"]
    assert row(table, "maker legs (ns)") == ["1,000", "1,000", "1,500", "constant"]
    assert row(table, "sniper legs (ns)") == ["241", "176", "241", "device"]
    assert row(table, "advantage (maker / sniper tick-to-trade)") == [f"{3000 / 443:.1f}x", f"{4000 / 443:.1f}x"]
    # one race, the sniper's, lasting from its order's arrival (1_000_443) to the maker's cancel's (1_003_000)
    assert row(table, "races") == ["1", "1", "0", "0", "2.557"]
    assert row(table, "stale quotes taken") == ["1"] and row(table, "late cancels") == ["1"]
    assert row(table, "spread capture") == ["-5.00"] and row(table, "  with sniper") == ["-5.00"]
    assert row(table, "adverse selection (1 s markout)") == ["0.00"]
    assert row(table, "inventory") == ["0.00"] and row(table, "total") == ["-5.00"]
    assert "measured: nothing" in table


def test_the_summary_shows_the_race_beside_its_batch_auction_counterfactual(tmp_path):
    # test_race.py's tiny race and its counterfactual in a 400 us batch auction: there the maker's cancel, in the
    # same batch as the sniper's order, wins; the maker keeps its quote and loses nothing
    scenario = parse_scenario(dict(TINY, exchange={"counterfactual_batch_interval_ms": 0.4}))
    result, _sweep = race_and_sweep(scenario, sweep=False, runners=False)
    files = write_race_report(result, None, tmp_path / "fba")
    report = json.loads(files.json.read_text(encoding="utf-8"))
    counterfactual = report["counterfactual"]
    assert counterfactual["batch_interval_ns"] == 400_000 and counterfactual["sniper"] == "golden model at 26 ns"
    assert (counterfactual["races"]["count"], counterfactual["races"]["sniper_wins"]) == (1, 0)
    assert (counterfactual["stale_quotes_taken"], counterfactual["late_cancels"]) == (0, 0)
    assert counterfactual["mm_pnl"]["total"] == 0 and report["mm_pnl"]["total"] == -50_000
    table = summary_table(report)
    assert re.search(r"^market design .*  continuous  batch auction 0\.4 ms$", table, re.MULTILINE)
    assert row(table, "sniper wins") == ["1", "0"] and row(table, "maker wins") == ["0", "1"]
    assert row(table, "maker P&L ($): spread capture") == ["-5.00", "0.00"]
    assert row(table, "  with sniper") == ["-5.00"]  # the P&L split's row comes first
    assert row(table, "  total") == ["-5.00", "0.00"]
    assert "batch auction 0.4 ms" in files.html.read_text(encoding="utf-8")


def test_the_makers_two_runners_are_in_the_report_and_marked_measured():
    result, _sweep = race_and_sweep(short(0.5, maker_decision_ns=50_000), sweep=False, counterfactual=False)
    report = race_report(result, None)
    runners = report["agents"]["maker"]["implementations"]
    assert set(runners) == {"asyncio", "blocking"}
    for runner in runners.values():
        assert runner["orders_match_core"] is True
        for key in ("round_trip_latency_ns", "socket_latency_ns"):
            assert runner[key]["count"] > 10 and runner[key]["min"] > 0
            assert [runner[key][name] for name in STATISTICS] == [
                min(runner[key]["values"]), *(nearest_rank(runner[key]["values"], p) for p in (50, 99, 99.9)),
                max(runner[key]["values"])]
    assert report["measured"] == ["agents.maker.implementations"]  # the race itself had a constant maker latency
    table = summary_table(report)
    for name in ("asyncio round-trip *", "asyncio socket *", "blocking round-trip *", "blocking socket *"):
        assert row(table, name)[0] == f"{runners[name.split()[0]]['round_trip_latency_ns']['count']:,}"
    assert row(table, "blocking round-trip *")[-1] == "yes"
    assert "asyncio round-trip *" in render_html(report)
    checked = {metric.name for metric in compare_reports(report, report).metrics if metric.better == "lower"}
    assert "agents.maker.implementations.blocking.round_trip_latency_ns.p99" in checked


def test_an_agent_without_samples_gets_an_empty_histogram_and_dashes(tmp_path):
    # one tick up: the maker's ask stays above fair value plus the sniper's edge, so the sniper never fires
    result = run_race(parse_scenario(dict(TINY, lead={"moves": [[1_000_000, 1]]})))
    assert result.sniper.tick_to_trade_latency.count == 0
    files = write_race_report(result, None, tmp_path / "quiet")
    rows, _footer = hgrm_lines(files.histograms["sniper_tick_to_trade"])
    assert rows == []
    table = summary_table(json.loads(files.json.read_text(encoding="utf-8")))
    assert row(table, "sniper tick-to-trade") == ["0", "-", "-", "-", "-", "-"]
    assert row(table, "advantage (maker / sniper tick-to-trade)") == ["-", "-"]
    assert row(table, "races") == ["0", "0", "0", "0", "-"]


# --- atomic writing -------------------------------------------------------------------------------


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    result = run_race(parse_scenario(TINY))

    def broken_plot(*_args, **_kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(Figure, "savefig", broken_plot)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_race_report(result, None, tmp_path / "new")
    assert os.listdir(tmp_path) == []
    # an old report stays as it was
    monkeypatch.undo()
    old = write_race_report(result, None, tmp_path / "old")
    before = {path.name: path.read_bytes() for path in old.directory.iterdir()}
    monkeypatch.setattr(Figure, "savefig", broken_plot)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_race_report(run_race(parse_scenario(dict(TINY, seed=2))), None, tmp_path / "old")
    assert os.listdir(tmp_path) == ["old"]
    assert {path.name: path.read_bytes() for path in old.directory.iterdir()} == before


def test_writing_into_an_existing_folder_replaces_the_report_and_keeps_other_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "report.json").write_text("old")
    files = write_race_report(run_race(parse_scenario(TINY)), None, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads(files.json.read_text(encoding="utf-8"))["races"]["count"] == 1
    assert sorted(os.listdir(tmp_path)) == ["out"]


# --- comparing reports ----------------------------------------------------------------------------


def latency(values):
    ordered = sorted(values)
    return {"count": len(values), "min": ordered[0], "p50": nearest_rank(values, 50), "p99": nearest_rank(values, 99),
            "p99.9": nearest_rank(values, 99.9), "max": ordered[-1], "values": values}


def race_dict(maker_ttt, sniper_ttt, *, total, sweep_pnl, cpu="cpu A", orders=10, model_latency_ns=26,
              race_durations=(2000, 3000, 4000)):
    return {
        "report_schema": "tick2trade.race-report/1", "schema": "tick2trade.race/1",
        "scenario": {"name": "default", "legs": {"sniper": {"model_latency_ns": model_latency_ns}}}, "seed": 1,
        "measured": [], "machine": {"cpu": cpu, "cpus": 2},
        "agents": {"maker": {"tick_to_trade_latency_ns": latency(maker_ttt), "counts": {"orders": orders}},
                   "sniper": {"tick_to_trade_latency_ns": latency(sniper_ttt)}},
        "advantage": {"p50_ratio": nearest_rank(maker_ttt, 50) / nearest_rank(sniper_ttt, 50)},
        "races": {"count": 3, "duration_ns": latency(list(race_durations))},
        "mm_pnl": {"total": total},
        "fair_value": [[0, 1_000_000], [5, 1_000_100]],
        "sweep": [{"latency_ns": 1000, "maker_total_pnl": sweep_pnl, "races": 1, "sniper_wins": 1}],
    }


def test_comparing_two_race_reports_gives_every_number_and_its_deltas():
    a = race_dict([100_000, 200_000, 400_000], [400, 500, 600], total=1000, sweep_pnl=5)
    b = race_dict([100_000, 230_000, 404_000], [300, 500, 700, 700], total=-500, sweep_pnl=-5, cpu="cpu B", orders=8,
                  model_latency_ns=40, race_durations=(2000, 3000, 8000))
    comparison = compare_reports(a, b)
    assert comparison.kind == RACE
    metrics = {metric.name: metric for metric in comparison.metrics}
    p50 = metrics["agents.maker.tick_to_trade_latency_ns.p50"]
    assert (p50.a, p50.b, p50.absolute, p50.relative_pct) == (200_000, 230_000, 30_000, 15.0)
    p99 = metrics["agents.maker.tick_to_trade_latency_ns.p99"]
    assert (p99.absolute, p99.relative_pct) == (4000, 1.0)
    orders = metrics["agents.maker.counts.orders"]
    assert (orders.absolute, orders.relative_pct) == (-2, -20.0)
    total = metrics["mm_pnl.total"]
    assert (total.absolute, total.relative_pct) == (-1500, -150.0)
    assert metrics["sweep.1000ns.maker_total_pnl"].absolute == -10
    assert metrics["advantage.p50_ratio"].absolute == pytest.approx(230_000 / 500 - 200_000 / 500)
    assert metrics["scenario.legs.sniper.model_latency_ns"].absolute == 14
    assert metrics["agents.sniper.tick_to_trade_latency_ns.count"].absolute == 1
    assert metrics["races.duration_ns.max"].relative_pct == 100.0
    assert not any("values" in name or "fair_value" in name for name in metrics)  # samples and series left out
    assert [(d.name, d.a, d.b) for d in comparison.text_differences] == [("machine.cpu", "cpu A", "cpu B")]

    # the maker's p50 is 15 % worse, its p99 1 %, the sniper's max 16.7 % (600 -> 700); the sniper's min improved;
    # the sniper's sample count (+33 %) and the model's latency setting (+54 %) are not distribution statistics,
    # the races' durations (max +100 %) not latencies
    assert [m.name for m in comparison.regressions(10)] == ["agents.maker.tick_to_trade_latency_ns.p50",
                                                            "agents.sniper.tick_to_trade_latency_ns.p99",
                                                            "agents.sniper.tick_to_trade_latency_ns.p99.9",
                                                            "agents.sniper.tick_to_trade_latency_ns.max"]
    assert [m.name for m in comparison.regressions(16)] == ["agents.sniper.tick_to_trade_latency_ns.p99",
                                                            "agents.sniper.tick_to_trade_latency_ns.p99.9",
                                                            "agents.sniper.tick_to_trade_latency_ns.max"]
    assert comparison.regressions(17) == []
    assert {m.name for m in comparison.regressions(0.5)} >= {"agents.maker.tick_to_trade_latency_ns.p99"}
    # counts, P&L and the sweep are compared but never regressions
    assert not any(name.endswith(("count", "orders", "total", "model_latency_ns")) or name.startswith("sweep")
                   for name in (m.name for m in comparison.regressions(0)))
    with pytest.raises(ValueError, match="percentage"):
        comparison.regressions(-1)

    table = comparison_table(comparison, regression_pct=10)
    line = next(line for line in table.splitlines() if line.startswith("agents.maker.tick_to_trade_latency_ns.p50 "))
    assert line.split() == ["agents.maker.tick_to_trade_latency_ns.p50", "200,000", "230,000", "+30,000", "+15.0%",
                            "REGRESSION"]
    assert "4 regression(s) of more than 10 %" in table and "machine.cpu: cpu A -> cpu B" in table
    changed = comparison_table(comparison, changed_only=True)
    assert "agents.maker.tick_to_trade_latency_ns.p50 " in changed and "races.count " not in changed


def test_a_latency_that_was_zero_and_grew_is_always_a_regression():
    a = race_dict([100], [0, 10, 10], total=0, sweep_pnl=0)
    b = race_dict([100], [1, 10, 10], total=0, sweep_pnl=0)
    worse = compare_reports(a, b).regressions(10**6)
    assert [m.name for m in worse] == ["agents.sniper.tick_to_trade_latency_ns.min"]
    assert worse[0].relative_pct is None and worse[0].worsening_pct == math.inf


def synth_dict(*, luts, brams, fmax, timing_met=False, dut_luts=10):
    return {"name": "pipeline", "device": "LFE5U-85F", "luts": luts, "ffs": 800, "carry": 10, "brams": brams,
            "dsp": 2, "per_module": {"dut": {"luts": dut_luts}}, "fmax_mhz": {"clk": fmax}, "target_mhz": 156.25,
            "timing_met": timing_met, "critical_path": [{"delay_ns": 1000 / fmax}], "tools": {"yosys": "0.70"}}


def test_comparing_synthesis_reports_flags_an_fmax_drop_and_more_logic():
    a = synth_dict(luts=1000, brams=4, fmax=100.0)
    b = synth_dict(luts=1050, brams=4, fmax=90.0, dut_luts=20)
    comparison = compare_reports(a, b)
    assert comparison.kind == SYNTHESIS
    metrics = {metric.name: metric for metric in comparison.metrics}
    fmax = metrics["fmax_mhz.clk"]
    assert (fmax.a, fmax.b, fmax.absolute, fmax.relative_pct, fmax.worsening_pct) == (100.0, 90.0, -10.0, -10.0, 10.0)
    assert (metrics["luts"].absolute, metrics["luts"].relative_pct) == (50, 5.0)
    assert metrics["per_module.dut.luts"].relative_pct == 100.0
    assert (metrics["timing_met"].a, metrics["timing_met"].b, metrics["timing_met"].absolute) == (False, False, None)
    assert not any(name.startswith("critical_path") for name in metrics)
    assert [m.name for m in comparison.regressions(5)] == ["fmax_mhz.clk"]  # luts +5 %: not more than 5
    assert [m.name for m in comparison.regressions(4)] == ["luts", "fmax_mhz.clk"]  # per_module is not checked
    assert compare_reports(b, a).regressions(0) == []  # faster and smaller
    line = next(line for line in comparison_table(comparison, regression_pct=5).splitlines()
                if line.startswith("fmax_mhz.clk "))
    assert line.split() == ["fmax_mhz.clk", "100", "90", "-10", "-10.0%", "REGRESSION"]


def build_dict(*, fmax, timing_met, brams=8):
    return {"board": "ulx3s-85f", "part": "LFE5U-85F-6BG381C", "luts": 20_000, "ffs": 15_000, "brams": brams,
            "fmax_mhz": fmax, "clock_mhz": 156.25, "timing_met": timing_met}


def test_comparing_build_reports_is_the_same_walk():
    comparison = compare_reports(build_dict(fmax=160.0, timing_met=True), build_dict(fmax=150.0, timing_met=False,
                                                                                       brams=10))
    assert comparison.kind == BUILD
    metrics = {metric.name: metric for metric in comparison.metrics}
    assert (metrics["timing_met"].a, metrics["timing_met"].b) == (True, False)
    assert [m.name for m in comparison.regressions(6)] == ["brams", "fmax_mhz"]  # +25 % and -6.25 %
    assert "timing_met" in comparison_table(comparison) and "true" in comparison_table(comparison)


def test_reports_of_different_kinds_do_not_compare():
    race = race_dict([100], [10], total=0, sweep_pnl=0)
    synth = synth_dict(luts=1, brams=0, fmax=1.0)
    build = build_dict(fmax=1.0, timing_met=False)
    with pytest.raises(ValueError, match="cannot compare a race report with a synthesis report"):
        compare_reports(race, synth)
    with pytest.raises(ValueError, match="cannot compare a synthesis report with a build report"):
        compare_reports(synth, build)
    with pytest.raises(ReportError, match="not a known report kind"):
        compare_reports({"schema": 1, "simulation": {}}, synth)


def test_load_report_gives_one_line_errors_naming_the_file(tmp_path):
    cases = {"missing.json": None, "broken.json": "{", "list.json": "[1, 2]", "other.json": '{"luts": 1}'}
    messages = {}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ReportError) as caught:
            load_report(tmp_path / name)
        messages[name] = str(caught.value)
    assert all(message.startswith(str(tmp_path / name) + ": ") and "\n" not in message
               for name, message in messages.items())
    assert "no such file" in messages["missing.json"] and "not JSON" in messages["broken.json"]
    assert "not a known report kind" in messages["list.json"] and "not a known report kind" in messages["other.json"]
    (tmp_path / "synth.json").write_text(json.dumps(synth_dict(luts=1, brams=0, fmax=1.0)))
    assert report_kind(load_report(tmp_path / "synth.json")) == SYNTHESIS
