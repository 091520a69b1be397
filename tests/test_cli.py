"""The ``tick2trade`` command line: the issue's exact commands, and one clean line for bad input."""

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tick2trade.hdl.rx_path import COUNTERS
from tick2trade.host.boards import BOARDS, FULL
from tick2trade.host.cli import main
from tick2trade.host.codec import itch, ouch
from tick2trade.host.codec.net import parse_tcp_frame
from tick2trade.host.codec.pcap import read_pcap
from tick2trade.host.codec.binaryfile import write_binaryfile
from tick2trade.host.feed import FeedConfig, generate_messages
from tick2trade.host.rx_model import RxModel


def run_cli(*args):
    """Run the installed console entry point as a user would; return (status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "tick2trade.host.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    path = tmp_path_factory.mktemp("feed") / "feed.pcap"
    assert main(["feed", "generate", "--seed", "5", "--messages", "60", "--corrupt", "0.1",
                 "--duplicates", "0.1", "--out", str(path)]) == 0
    return path


def test_decode_then_simulate_agree(feed, tmp_path, capsys):
    golden, hw = tmp_path / "golden.jsonl", tmp_path / "hw.jsonl"
    assert main(["feed", "decode", str(feed), "--out", str(golden)]) == 0
    golden_counters = capsys.readouterr().err.splitlines()[-1]
    assert main(["sim", "rx", str(feed), "--out", str(hw), "--simulator", "amaranth"]) == 0
    hw_counters = capsys.readouterr().err.splitlines()[-1]
    assert golden.read_bytes() == hw.read_bytes()
    assert golden_counters == hw_counters and golden_counters.startswith("counters: ")
    records = read_jsonl(golden)
    assert len(records) > 60
    assert {"seq", "type", "locate", "timestamp"} <= set(records[0])


def test_decode_binaryfile(tmp_path, capsys):
    messages = [itch.encode(m) for m in generate_messages(FeedConfig(seed=2, messages=200))]
    day = tmp_path / "01302020.NASDAQ_ITCH50"
    write_binaryfile(day, messages + [b"G" + bytes(19)])  # and one message of a type ITCH does not have
    out = tmp_path / "day.jsonl"
    assert main(["feed", "decode", str(day), "--out", str(out)]) == 0
    records = read_jsonl(out)
    assert [r["seq"] for r in records] == list(range(1, len(messages) + 1))
    assert [itch.encode(itch.decode(m)) for m in messages] == messages
    assert records[5] == itch.to_record(itch.decode(messages[5]), 6, False)
    assert '"msg_unknown_type": 1' in capsys.readouterr().err


def test_verilog(tmp_path):
    assert main(["verilog", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "rx_path.v").read_text()
    assert "module rx_path(" in text


BAD_FILES = {
    "missing": None,
    "empty": b"",
    "random": bytes(range(256)) * 4,
    "pcapng": bytes.fromhex("0a0d0d0a") + bytes(60),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_input_file_gives_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.pcap"
    if BAD_FILES[kind] is not None:
        path.write_bytes(BAD_FILES[kind])
    status, _out, err = run_cli("sim", "rx", path, "--out", tmp_path / "hw.jsonl", "--simulator", "amaranth")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path.name) in err
    assert not (tmp_path / "hw.jsonl").exists()


def test_truncated_pcap_gives_one_line_and_writes_nothing(feed, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(feed.read_bytes()[:-7])
    status, _out, err = run_cli("feed", "decode", cut, "--out", tmp_path / "golden.jsonl")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "golden.jsonl").exists()


@pytest.mark.parametrize("args", [
    ["feed", "generate", "--messages", "0", "--out", "x.pcap"],
    ["feed", "generate", "--gaps", "1.5", "--out", "x.pcap"],
    ["sim", "rx", "feed.pcap", "--out", "x.jsonl", "--simulator", "modelsim"],
    ["feed", "frobnicate"],
])
def test_bad_option_exits_non_zero_without_traceback(tmp_path, args):
    status, _out, err = run_cli(*args)
    assert status == 2 and "Traceback" not in err
    assert "error:" in err


# --- the whole pipeline: model run, sim run -----------------------------------------------

EXAMPLE_STRATEGY = pathlib.Path(__file__).resolve().parents[1] / "examples" / "strategy.toml"


@pytest.fixture(scope="module")
def snipe_feed(tmp_path_factory):
    path = tmp_path_factory.mktemp("snipe") / "feed.pcap"
    assert main(["feed", "generate", "--scenario", "snipe", "--seed", "1", "--messages", "3000",
                 "--out", str(path)]) == 0
    return path


def test_model_run_writes_orders_and_a_summary(snipe_feed, tmp_path, capsys):
    orders, summary_path = tmp_path / "golden_orders.pcap", tmp_path / "summary.json"
    assert main(["model", "run", str(snipe_feed), "--config", str(EXAMPLE_STRATEGY), "--out", str(orders),
                 "--summary", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    frames = list(read_pcap(orders))
    assert summary["orders"] == len(frames) > 0
    assert set(summary["rejections"]) == {"kill", "max_qty", "max_notional", "collar", "position",
                                          "outstanding", "rate", "busy"}
    assert summary["book"]["instruments"]["lead"] == {"locate": 1, "symbol": "LEAD", "unreliable": False}
    for record in frames:  # every frame an OUCH Enter Order for the target, in TCP to the template's port
        _eth, _ip, tcp, payload = parse_tcp_frame(record.data)
        order = ouch.decode_inbound(payload[3:])
        assert tcp.dst_port == 15000 and order.stock == "TGT" and order.time_in_force == 0
    # Without --summary the summary goes to stdout.
    capsys.readouterr()
    assert main(["model", "run", str(snipe_feed), "--config", str(EXAMPLE_STRATEGY), "--out", str(orders)]) == 0
    assert json.loads(capsys.readouterr().out) == summary


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("max_qty = 500", "max_qty = -3"), "risk.max_qty: must be an integer"),
    (lambda text: text.replace('lead = "LEAD"', 'lead = "NOPE"'), "instruments.lead: symbol 'NOPE' is not in"),
    (lambda text: text + "\n[extra]\n", "extra: unknown field"),
])
def test_bad_strategy_gives_one_line_and_writes_nothing(snipe_feed, tmp_path, edit, message):
    config = tmp_path / "strategy.toml"
    config.write_text(edit(EXAMPLE_STRATEGY.read_text()))
    out = tmp_path / "orders.pcap"
    status, stdout, stderr = run_cli("model", "run", snipe_feed, "--config", config, "--out", out)
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_demo_with_a_bad_strategy_file_gives_one_line_before_running(tmp_path):
    config = tmp_path / "strategy.toml"
    config.write_text(EXAMPLE_STRATEGY.read_text().replace("max_qty = 500", "max_qty = -3"))
    status, stdout, stderr = run_cli("demo", "--out", tmp_path / "demo", "--config", config)
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "risk.max_qty: must be an integer" in stderr
    assert not (tmp_path / "demo").exists()


EXAMPLE_RACE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "race.toml"


def test_race_writes_a_report_and_prints_the_summary(tmp_path):
    scenario = tmp_path / "race.toml"
    scenario.write_text(EXAMPLE_RACE.read_text().replace("duration_s = 10", "duration_s = 1"))
    status, stdout, stderr = run_cli("race", "--scenario", scenario, "--seed", "4", "--out", tmp_path / "race",
                                     "--no-sweep")
    assert status == 0, stderr
    report = json.loads((tmp_path / "race" / "report.json").read_text())
    assert report["seed"] == 4 and report["scenario"]["duration_ns"] == 10**9
    races = next(line for line in stdout.splitlines() if line.startswith("races"))
    assert races.split()[1:3] == [str(report["races"]["count"]), str(report["races"]["sniper_wins"])]
    assert (tmp_path / "race" / "report.html").is_file()


def test_race_with_a_bad_scenario_gives_one_line(tmp_path):
    scenario = tmp_path / "race.toml"
    scenario.write_text(EXAMPLE_RACE.read_text().replace("duration_s = 10", "duration_s = -1"))
    status, stdout, stderr = run_cli("race", "--scenario", scenario, "--out", tmp_path / "race")
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "duration_s" in stderr
    assert not (tmp_path / "race").exists()


def test_report_compare_fails_on_a_regression_beyond_the_threshold(tmp_path):
    base = {"name": "pipeline", "luts": 1000, "ffs": 900, "brams": 4, "fmax_mhz": {"clk": 100.0}}
    paths = {}
    for name, fmax in (("a", 100.0), ("b", 90.0)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps({**base, "fmax_mhz": {"clk": fmax}}))
    status, stdout, _ = run_cli("report", "compare", paths["a"], paths["b"], "--fail-on-regression", "15")
    assert status == 0 and "fmax_mhz" in stdout
    status, _, stderr = run_cli("report", "compare", paths["a"], paths["b"], "--fail-on-regression", "5")
    assert status == 1 and "worse by more than 5" in stderr
    status, _, stderr = run_cli("report", "compare", paths["a"], tmp_path / "missing.json")
    assert status == 2 and stderr.count("\n") == 1


@pytest.mark.cocotb
@pytest.mark.board
@pytest.mark.xdist_group("simulated_board")
def test_sim_run_and_board_latency_on_a_board(board, tmp_path, capsys):
    """`sim run --device serial:PTY` writes the golden model's order frames; `board latency` then shows the
    actionable latency of the board's last 16 orders from its own probes, within the run's range; a
    second run on the same board writes them again."""
    feed, golden, sent, summary_path = (tmp_path / name for name in ("feed.pcap", "golden.pcap", "hw.pcap",
                                                                     "summary.json"))
    assert main(["feed", "generate", "--scenario", "snipe", "--seed", "1", "--messages", "1000",
                 "--out", str(feed)]) == 0
    assert main(["model", "run", str(feed), "--config", str(EXAMPLE_STRATEGY), "--out", str(golden)]) == 0
    assert main(["sim", "run", str(feed), "--config", str(EXAMPLE_STRATEGY), "--out", str(sent),
                 "--summary", str(summary_path), "--device", board]) == 0
    orders = [record.data for record in read_pcap(golden)]
    assert len(orders) > 16 and [record.data for record in read_pcap(sent)] == orders
    run_latency = json.loads(summary_path.read_text())["latency_cycles"]

    capsys.readouterr()
    assert main(["board", "latency", "--device", board, "--config", str(EXAMPLE_STRATEGY)]) == 0
    printed = capsys.readouterr().out
    probes = [int(cycles) for cycles in printed.split("by probe:")[1].splitlines()[0].split()]
    assert len(probes) == 16
    assert run_latency["min"] <= min(probes) and max(probes) <= run_latency["max"]
    assert "the serial link's own latency is not part of these figures" in printed

    # Its receive-path counters over the feed are the golden model's (board_check_rows, below).
    assert main(["board", "check", str(feed), "--device", board]) == 0
    assert [name for name, _on_board in board_check_rows(capsys.readouterr().out)] == list(COUNTERS)

    # The board has traded: a second run restarts it and sends the same orders again.
    assert main(["sim", "run", str(feed), "--config", str(EXAMPLE_STRATEGY), "--out", str(tmp_path / "again.pcap"),
                 "--device", board]) == 0
    assert [record.data for record in read_pcap(tmp_path / "again.pcap")] == orders


def board_check_rows(printed):
    """(counter, the board's count) of `board check`'s table, each checked against the golden model here."""
    rows = [line.split() for line in printed.splitlines()[2:] if line.startswith("  ")]
    assert rows and all(len(row) == 3 and row[1] == row[2] for row in rows), printed
    assert "the board agrees with the golden model" in printed
    return [(name, int(on_board)) for name, on_board, _model in rows]


@pytest.mark.cocotb
@pytest.mark.board
@pytest.mark.xdist_group("simulated_board")
@pytest.mark.parametrize("board_name", ["icebreaker", "colorlight-5a75b"])
def test_board_check_on_a_receive_path_board(board_name, board_device, tmp_path, capsys):
    """A receive-path board (its decoded messages stay on the board) is checked by its counters: over a
    feed with lost, repeated, reordered and bad frames, each counter it keeps is the golden model's,
    counted here apart from the command; a second check on the same board agrees again."""
    configuration = BOARDS[board_name].configuration
    device = board_device(configuration)
    feed = tmp_path / "feed.pcap"
    assert main(["feed", "generate", "--seed", "7", "--messages", "400", "--gaps", "0.05", "--duplicates", "0.05",
                 "--reorder", "0.05", "--corrupt", "0.05", "--out", str(feed)]) == 0
    model = RxModel()
    for record in read_pcap(feed):
        model.process(record.data)
    kept = dict(configuration.parameters).get("counters", COUNTERS)
    expected = [(name, model.counters[name]) for name in COUNTERS if name in kept]
    assert all(model.counters[name] for name in ("frames_ok", "msgs", "mold_gap", "mold_duplicate_packet"))
    for _run in range(2):
        capsys.readouterr()
        assert main(["board", "check", str(feed), "--device", device]) == 0
        assert board_check_rows(capsys.readouterr().out) == expected


CLI_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "runpy.run_module('tick2trade.host.cli', run_name='__main__')")


@contextlib.contextmanager
def board_simulate():
    """`tick2trade board simulate` in a process of its own: yield it and its simulator's pid once it serves.

    Both are killed on the way out if still running, so that a failing test leaves no simulator behind.
    Ctrl-C is made to raise KeyboardInterrupt in the child, as in a terminal: a shell starts a background
    job (as CI may run `make test`) with SIGINT ignored, the child inherits that, and Python then leaves
    it ignored.
    """
    process = subprocess.Popen([sys.executable, "-c", CLI_WITH_CTRL_C, "board", "simulate"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    simulators = []
    try:
        device = process.stdout.readline().strip()
        assert device.startswith("serial:/dev/"), process.communicate(timeout=60)
        # (the simulator is a child of the thread that runs it: each thread lists its own children)
        children = [int(pid) for task in pathlib.Path(f"/proc/{process.pid}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        build = f"board_{FULL.key}".encode()
        simulators = [pid for pid in children if build in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(simulators) == 1, children
        yield process, simulators[0]
    finally:
        process.kill()
        process.communicate()
        for pid in filter(_running, simulators):
            os.kill(pid, signal.SIGKILL)


def _running(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.cocotb
@pytest.mark.xdist_group("simulated_board")
@pytest.mark.parametrize("stop, status, message", [(signal.SIGINT, 130, "tick2trade: interrupted"),
                                                   (signal.SIGTERM, 143, "tick2trade: terminated")],
                         ids=["ctrl-c", "kill"])
def test_board_simulate_serves_until_stopped(stop, status, message):
    """`board simulate` prints its device first, and on Ctrl-C or `kill` stops its simulator and exits."""
    with board_simulate() as (process, simulator):
        process.send_signal(stop)
        # (read both pipes while it stops: a full pipe would block it)
        _output, errors = process.communicate(timeout=120)
        assert process.returncode == status and message in errors
        assert not _running(simulator)


@pytest.mark.cocotb
@pytest.mark.xdist_group("simulated_board")
def test_simulated_board_stops_when_its_host_is_killed():
    """A simulator whose host dies without a word (SIGKILL) notices and stops: no orphan runs on."""
    with board_simulate() as (process, simulator):
        process.kill()
        process.communicate(timeout=60)
        deadline = time.monotonic() + 60
        while _running(simulator) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(simulator)
