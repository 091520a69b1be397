"""The ``tick2trade`` command line."""

import argparse
import json
import pathlib
import signal
import sys
import threading
import time

from .codec.net import CodecError
from .device import BACKENDS, DeviceError, RxFrame, open_rx_device
from .files import atomic_write
from .sniper import SNIPER_BACKENDS

__all__ = ["main"]

PCAP_MAGICS = {bytes.fromhex(m) for m in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1")}
PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
SIMULATORS = [b for b in BACKENDS if b != "model"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Progress:
    """A one-line progress display on stderr, shown only on a terminal."""

    def __init__(self, label):
        self._label = label
        self._shown = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done, total):
        now = time.monotonic()
        if self._shown and (now - self._last > 0.2 or done == total):
            self._last = now
            sys.stderr.write(f"\r{self._label}: {done}/{total} ({100 * done // max(total, 1)}%)")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _existing_file(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def _file_kind(path):
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic in PCAP_MAGICS:
        return "pcap"
    if magic == PCAPNG_MAGIC:
        raise UsageError(f"{path}: pcapng is not supported; convert it with 'editcap -F pcap'")
    return "binaryfile"


def _read_records(path):
    from .codec.pcap import read_pcap
    path = _existing_file(path)
    if _file_kind(path) != "pcap":
        raise UsageError(f"{path}: not a pcap file")
    return list(read_pcap(path))


def _read_frames(path):
    return [RxFrame(record.data) for record in _read_records(path)]


def _load_strategy(path):
    from .strategy import StrategyError, load_strategy
    try:
        return load_strategy(path)
    except StrategyError as error:
        raise UsageError(str(error)) from None


def _write_summary(summary, path):
    """The run's JSON summary to ``path``, or to stdout without one."""
    text = json.dumps(summary, indent=2) + "\n"
    if path is None:
        sys.stdout.write(text)
    else:
        with atomic_write(path, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote the summary to {path}", file=sys.stderr)


def _write_jsonl(path, records):
    with atomic_write(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record))
            file.write("\n")


def _print_counters(counters):
    """The non-zero counters, in the order of docs/receive-path.md, as one JSON line on stderr."""
    from .rx_model import COUNTER_NAMES
    ordered = sorted(counters, key=lambda name: COUNTER_NAMES.index(name) if name in COUNTER_NAMES else len(COUNTER_NAMES))
    print("counters: " + json.dumps({name: counters[name] for name in ordered if counters[name]}), file=sys.stderr)


def _instrument_names(count):
    from .feed import DEFAULT_INSTRUMENTS
    extra = (f"SYM{number:05d}" for number in range(len(DEFAULT_INSTRUMENTS), count))
    return (*DEFAULT_INSTRUMENTS[:count], *extra)


def cmd_feed_generate(args):
    from .codec.pcap import write_pcap
    from .feed import FeedConfig, generate_feed
    config = FeedConfig(
        seed=args.seed, messages=args.messages, instruments=_instrument_names(args.instruments),
        max_messages_per_packet=args.max_per_packet, gap_probability=args.gaps,
        duplicate_probability=args.duplicates, reorder_probability=args.reorder,
        corrupt_probability=args.corrupt, end_of_session=not args.no_end_of_session,
        scenario=args.scenario)
    try:
        records = generate_feed(config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    write_pcap(args.out, records)
    print(f"wrote {len(records)} frames ({args.messages} order-flow messages) to {args.out}", file=sys.stderr)


def _decode_binaryfile(path):
    """Records of a BinaryFILE day file: messages numbered from 1, unknown types skipped and counted."""
    from .codec import itch
    from .codec.binaryfile import iter_messages
    records, counters = [], {"msgs": 0, "msg_unknown_type": 0, "msg_bad_length": 0}
    for seq, raw in enumerate(iter_messages(path), start=1):
        try:
            message = itch.decode(raw)
        except itch.UnknownTypeError:
            counters["msg_unknown_type"] += 1
            continue
        except itch.BadLengthError:
            counters["msg_bad_length"] += 1
            continue
        counters["msgs"] += 1
        records.append(itch.to_record(message, seq, False))
    return records, counters


def cmd_feed_decode(args):
    path = _existing_file(args.input)
    if _file_kind(path) == "pcap":
        device = open_rx_device("model", dst_ip=args.dst_ip, dst_port=args.dst_port)
        result = device.run(_read_frames(path))
        records, counters = result.messages, result.counters
    else:
        records, counters = _decode_binaryfile(path)
    _write_jsonl(args.out, records)
    print(f"wrote {len(records)} messages to {args.out}", file=sys.stderr)
    _print_counters(counters)


def cmd_sim_rx(args):
    frames = _read_frames(args.input)
    device = open_rx_device(args.simulator, dst_ip=args.dst_ip, dst_port=args.dst_port)
    result = device.run(frames, idle_probability=args.idle, seed=args.seed,
                        progress=Progress(f"simulating on {args.simulator}"))
    _write_jsonl(args.out, result.messages)
    print(f"wrote {len(result.messages)} messages to {args.out}", file=sys.stderr)
    _print_counters(result.counters)


def _pipeline_setup(args):
    """The strategy (its instruments found in the feed), the feed's pcap records and frames."""
    from .pipeline_model import stock_directory
    from .strategy import StrategyError, resolve_instruments
    strategy = _load_strategy(args.config)
    records = _read_records(args.input)
    frames = [RxFrame(record.data) for record in records]
    directory = stock_directory(frames)
    try:
        resolve_instruments(strategy, directory)
    except StrategyError as error:
        raise UsageError(f"{args.config}: {error}") from None
    return strategy, records, frames, directory


def cmd_model_run(args):
    from .codec.pcap import write_pcap
    from .pipeline_device import ModelPipelineDevice, golden_order_records, summarize
    strategy, records, frames, directory = _pipeline_setup(args)
    device = ModelPipelineDevice(strategy, directory=directory, dst_ip=args.dst_ip, dst_port=args.dst_port)
    result = device.run(frames, progress=Progress("golden model"))
    orders = golden_order_records(records, device.model.orders)
    write_pcap(args.out, orders)
    print(f"wrote {len(orders)} order frames to {args.out}", file=sys.stderr)
    _write_summary(summarize(result, strategy), args.summary)


def cmd_sim_run(args):
    from .codec.pcap import write_pcap
    from .pipeline_device import (ModelPipelineDevice, actionable_latencies, open_pipeline_device,
                                  sent_order_records, summarize)
    strategy, _records, frames, directory = _pipeline_setup(args)
    device = open_pipeline_device(args.simulator, strategy, dst_ip=args.dst_ip, dst_port=args.dst_port)
    result = device.run(frames, idle_probability=args.idle, seed=args.seed,
                        progress=Progress(f"simulating on {args.simulator}"))
    sent = sent_order_records(result)
    write_pcap(args.out, sent)
    print(f"wrote {len(sent)} order frames to {args.out}", file=sys.stderr)
    # Which message triggered each order comes from the golden model; the cycles from the gateware.
    golden = ModelPipelineDevice(strategy, directory=directory, dst_ip=args.dst_ip, dst_port=args.dst_port)
    golden.run(frames)
    try:
        latencies = actionable_latencies(frames, result, golden.model.orders)
    except ValueError as error:
        print(f"tick2trade: warning: no latency figures: {error}", file=sys.stderr)
        latencies = []
    _write_summary(summarize(result, strategy, latencies), args.summary)


def cmd_verilog(args):
    from ..hdl.rx_path import RxPath
    from ..sim.verilog import write_verilog
    path = write_verilog(RxPath(), pathlib.Path(args.out) / "rx_path.v", name="rx_path")
    print(f"wrote {path}", file=sys.stderr)


def cmd_bench(args):
    from .bench import run_benchmarks
    results = run_benchmarks(progress=lambda line: print(line, file=sys.stderr))
    with atomic_write(args.out, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=2)
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


def cmd_demo(args):
    from .demo import run_demo
    from .strategy import StrategyError
    strategy = _load_strategy(args.config)
    try:
        return run_demo(pathlib.Path(args.out), strategy)
    except StrategyError as error:
        raise UsageError(f"{args.config}: {error}") from None


def cmd_race(args):
    import dataclasses

    from .race import RaceScenarioError, load_scenario, race_and_sweep
    from .report import summary_table, write_race_report
    from .sniper import sniper_factory
    try:
        scenario = load_scenario(args.scenario)
    except RaceScenarioError as error:
        raise UsageError(str(error)) from None
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    if args.backend != "model":
        print(f"starting the gateware on {args.backend} (a first build takes minutes)", file=sys.stderr)
    opened = []
    progress = {}
    try:
        result, sweep = race_and_sweep(
            scenario, sniper_factory=sniper_factory(args.backend, opened), sweep=args.sweep,
            progress=lambda what, done, total: progress.setdefault(what, Progress(what))(done, total))
    finally:
        for sniper in opened:
            sniper.close()
    files = write_race_report(result, sweep, args.out)
    print(summary_table(json.loads(files.json.read_text())))
    print(f"wrote {files.json}, {files.html} and {len(files.histograms)} HDR histograms (.hgrm) in {files.directory}",
          file=sys.stderr)


def cmd_board_simulate(args):
    from ..sim.simulated_board import SimulatedBoard
    configuration = _board(args.board).configuration if args.board else None
    print(f"starting a simulated board on {args.simulator} (a first run builds the simulator) ...",
          file=sys.stderr, flush=True)
    with SimulatedBoard(configuration=configuration, simulator=args.simulator) as board:
        print(board.device, flush=True)
        print(f"serving: use --device {board.device}; every run restarts it; Ctrl-C stops it",
              file=sys.stderr, flush=True)
        while board.running:
            time.sleep(0.5)
    raise DeviceError(f"the simulated board stopped: {board.failure}")


def cmd_board_latency(args):
    from .pipeline_device import CLOCK_NS, latency_summary
    from .serial_device import BoardSession, open_serial, pipeline_registers, serial_port
    strategy = _load_strategy(args.config)
    transport = open_serial(serial_port(args.device))
    try:
        pairs = BoardSession(transport, pipeline_registers(strategy)).probes()
    finally:
        transport.close()
    latencies = [(tx - trigger) % 2**32 for trigger, tx in pairs if trigger or tx]
    if not latencies:
        print("no order has left the board since it was loaded: no latency to show")
        return 0
    cycles = latency_summary(latencies)
    print(f"actionable latency on the board, its last {len(latencies)} orders (probes: the cycle the trigger "
          f"field completed at rx, the cycle the order's first beat left tx):")
    print(f"  min {cycles['min']}, p50 {cycles['p50']}, max {cycles['max']} cycles "
          f"({cycles['min'] * CLOCK_NS:.1f} / {cycles['p50'] * CLOCK_NS:.1f} / {cycles['max'] * CLOCK_NS:.1f} ns "
          f"at 156.25 MHz)")
    print("  by probe: " + " ".join(str(latency) for latency in latencies))
    print("  the serial link's own latency is not part of these figures: the board stamps both ends itself")
    return 0


def cmd_board_check(args):
    from .serial_device import check_counters, serial_port
    frames = _read_frames(args.input)
    check = check_counters(frames, port=serial_port(args.device), dst_ip=args.dst_ip, dst_port=args.dst_port,
                           progress=Progress("injecting"))
    print(f"{check.frames} frames injected into a board running {check.configuration}; its receive-path "
          f"counters against the golden model's:")
    width = max(len(name) for name, _board, _model in check.rows)
    print(f"  {'counter':<{width}}  {'board':>10}  {'model':>10}")
    for name, on_board, in_model in check.rows:
        print(f"  {name:<{width}}  {on_board:>10}  {in_model:>10}" + ("" if on_board == in_model else "  differs"))
    if check.differing:
        print(f"tick2trade: the board differs from the golden model on {len(check.differing)} of "
              f"{len(check.rows)} counters: {', '.join(name for name, *_ in check.differing)}", file=sys.stderr)
        return 1
    print(f"the board agrees with the golden model on all {len(check.rows)} counters")
    return 0


def cmd_report_compare(args):
    from .report import ReportError, compare_reports, comparison_table, load_report
    try:
        comparison = compare_reports(load_report(args.a), load_report(args.b))
    except ReportError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:  # reports of different kinds
        raise UsageError(f"{args.a}, {args.b}: {error}") from None
    print(comparison_table(comparison, regression_pct=args.fail_on_regression))
    if args.fail_on_regression is not None:
        regressions = comparison.regressions(args.fail_on_regression)
        if regressions:
            print(f"tick2trade: {len(regressions)} figures worse by more than {args.fail_on_regression}%",
                  file=sys.stderr)
            return 1
    return 0


def _board(name):
    from .boards import UnknownBoardError, get_board
    try:
        return get_board(name)
    except UnknownBoardError as error:
        raise UsageError(str(error)) from None


def cmd_build(args):
    from .build import BuildError, build_board, summary
    board = _board(args.board)
    out = pathlib.Path(args.out) if args.out else board.default_out_dir()
    try:
        report = build_board(board, out_dir=out, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except BuildError as error:
        print(f"tick2trade: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary(report, out)))
    return 0


def cmd_boards(args):
    from .boards import BOARDS
    rows = [("board", "part", "clock", "configuration")]
    for board in BOARDS.values():
        clock = f"{board.clock_mhz:g} MHz" + (f" (PLL from {board.oscillator_hz / 1e6:g} MHz)"
                                               if board.clock_hz != board.oscillator_hz else " (oscillator)")
        rows.append((board.name, board.part, clock, board.configuration.name))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            continue
        board = BOARDS[row[0]]
        reductions = board.configuration.reductions
        print(f"    reductions: {'none (the full pipeline)' if not reductions else reductions[0]}")
        for reduction in reductions[1:]:
            print(f"                {reduction}")
        print(f"    UART: {board.uart}")
        print(f"    programmer: {board.programmer}")
        for note in board.notes:
            print(f"    note: {note}")


def cmd_flash(args):
    import shlex

    from .flash import FlashError, flash, flash_command
    board = _board(args.board)
    argv = flash_command(board, args.bitstream, cable=args.cable)
    if args.dry_run:
        print(shlex.join(argv))
        return 0
    bitstream = pathlib.Path(argv[-1])
    if not bitstream.is_file():
        hint = "" if args.bitstream else f" (build it first: tick2trade build --board {board.name})"
        raise UsageError(f"{bitstream}: no such bitstream{hint}")
    try:
        output = flash(argv)
    except FlashError as error:
        print(f"tick2trade: error: {error}", file=sys.stderr)
        return 1
    sys.stderr.write(output)
    print(f"programmed {board.name} with {bitstream}", file=sys.stderr)
    return 0


def _checked(convert, noun, holds, requirement):
    """An argparse type: ``convert`` (int or float) the text, then check that ``holds`` of the value."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not holds(value):
            raise argparse.ArgumentTypeError(f"{text} {requirement}")
        return value
    return parse


def _device_type(names):
    """An argparse type: one of ``names``, or ``serial:PORT`` (a board)."""
    choices = ", ".join([*names, "serial:PORT for a board"]) if names else "serial:PORT, e.g. serial:/dev/ttyUSB1"

    def parse(text):
        from .serial_device import serial_port
        try:
            if text in names or serial_port(text) is not None:
                return text
        except DeviceError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        raise argparse.ArgumentTypeError(f"{text!r}: choose {choices}")
    return parse


_percent = _checked(float, "a number", lambda value: value >= 0, "must not be negative")
_probability = _checked(float, "a number", lambda value: 0.0 <= value < 1.0, "is not a probability in [0, 1)")
_positive = _checked(int, "a whole number", lambda value: value >= 1, "must be at least 1")


def build_parser():
    from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
    parser = argparse.ArgumentParser(prog="tick2trade", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_address_options(sub):
        sub.add_argument("--dst-ip", default=DEFAULT_DST_IP, help="feed destination address (%(default)s)")
        sub.add_argument("--dst-port", type=int, default=DEFAULT_DST_PORT, help="feed UDP port (%(default)s)")

    def add_pacing_options(sub):
        sub.add_argument("--idle", type=_probability, default=0.0,
                         help="probability of an idle cycle before each beat (%(default)s)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the idle-cycle pattern")

    feed = commands.add_parser("feed", help="generate and decode market-data feeds")
    feed_commands = feed.add_subparsers(dest="feed_command", required=True, metavar="COMMAND")
    generate = feed_commands.add_parser("generate", help="write a seeded simulated ITCH feed as pcap")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--messages", type=_positive, default=10_000)
    generate.add_argument("--instruments", type=_positive, default=8)
    generate.add_argument("--max-per-packet", type=_positive, default=20,
                          help="most messages in one MoldUDP64 packet (%(default)s)")
    generate.add_argument("--gaps", type=_probability, default=0.0, help="probability a packet is lost")
    generate.add_argument("--duplicates", type=_probability, default=0.0,
                          help="probability a packet is sent again")
    generate.add_argument("--reorder", type=_probability, default=0.0,
                          help="probability two packets swap places")
    generate.add_argument("--corrupt", type=_probability, default=0.0,
                          help="probability a bad frame from the catalogue is inserted")
    generate.add_argument("--no-end-of-session", action="store_true",
                          help="leave out the closing end-of-session packet")
    generate.add_argument("--scenario", choices=("market", "snipe"), default="market",
                          help="market: order flow over every instrument; snipe: a lead instrument and a "
                               "target whose quotes go stale (the first two instruments) (%(default)s)")
    generate.add_argument("--out", required=True)
    generate.set_defaults(run=cmd_feed_generate)

    decode = feed_commands.add_parser("decode", help="golden-model decode of a pcap or BinaryFILE")
    decode.add_argument("input")
    decode.add_argument("--out", required=True)
    add_address_options(decode)
    decode.set_defaults(run=cmd_feed_decode)

    sim = commands.add_parser("sim", help="run the gateware in simulation")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    sim_rx = sim_commands.add_parser("rx", help="decode a pcap with the receive-path gateware")
    sim_rx.add_argument("input")
    sim_rx.add_argument("--out", required=True)
    sim_rx.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    add_pacing_options(sim_rx)
    add_address_options(sim_rx)
    sim_rx.set_defaults(run=cmd_sim_rx)
    sim_run = sim_commands.add_parser("run", help="run a feed through the whole pipeline's gateware")
    sim_run.add_argument("input", help="feed pcap")
    sim_run.add_argument("--config", required=True, help="strategy file (see examples/strategy.toml)")
    sim_run.add_argument("--out", required=True,
                         help="order frames (pcap; timestamps are cycles x 6.4 ns from reset)")
    sim_run.add_argument("--summary", help="write the JSON summary here instead of stdout")
    sim_run.add_argument("--device", "--simulator", dest="simulator", default="verilator",
                         type=_device_type([s for s in SIMULATORS if s != "amaranth"]),
                         help="verilator, icarus, or serial:PORT for a board (%(default)s)")
    add_pacing_options(sim_run)
    add_address_options(sim_run)
    sim_run.set_defaults(run=cmd_sim_run)

    model = commands.add_parser("model", help="run the golden model of the whole pipeline")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    model_run = model_commands.add_parser("run", help="the golden model's order frames for a feed")
    model_run.add_argument("input", help="feed pcap")
    model_run.add_argument("--config", required=True, help="strategy file (see examples/strategy.toml)")
    model_run.add_argument("--out", required=True, help="order frames (pcap)")
    model_run.add_argument("--summary", help="write the JSON summary here instead of stdout")
    add_address_options(model_run)
    model_run.set_defaults(run=cmd_model_run)

    verilog = commands.add_parser("verilog", help="write the receive path as Verilog")
    verilog.add_argument("--out", default="out/verilog")
    verilog.set_defaults(run=cmd_verilog)

    bench = commands.add_parser("bench", help="run the benchmarks and write JSON")
    bench.add_argument("--out", default="out/bench.json")
    bench.set_defaults(run=cmd_bench)

    race = commands.add_parser("race", help="race the gateware (sniper) against a Python market maker in a "
                                             "simulated exchange; write the report")
    race.add_argument("--scenario", default="default", help="'default' or a scenario TOML file "
                                                             "(examples/race.toml documents every field)")
    race.add_argument("--seed", type=int, help="the race's seed (default: the scenario's)")
    race.add_argument("--out", default="out/race", help="report folder (%(default)s)")
    race.add_argument("--device", "--backend", dest="backend", default="model", type=_device_type(SNIPER_BACKENDS),
                      help="the sniper: the golden model (constant latency), the gateware in a simulator, or a "
                           "board, serial:PORT (%(default)s)")
    race.add_argument("--no-sweep", dest="sweep", action="store_false",
                      help="skip the maker-latency sweep (a race per latency, golden-model sniper)")
    race.set_defaults(run=cmd_race)

    board = commands.add_parser("board", help="a board over its serial link: a simulated one, on-board latency, "
                                             "a counter check")
    board_commands = board.add_subparsers(dest="board_command", required=True, metavar="COMMAND")
    board_simulate = board_commands.add_parser(
        "simulate", help="run a simulated board (the pipeline and its link, UART pins bit by bit) behind a "
                         "pseudo-terminal until interrupted; prints its device, serial:PTY")
    board_simulate.add_argument("--simulator", choices=[s for s in SIMULATORS if s != "amaranth"],
                                default="verilator")
    board_simulate.add_argument("--board", help="simulate what this board of 'tick2trade boards' runs (default: "
                                                "the full pipeline)")
    board_simulate.set_defaults(run=cmd_board_simulate)
    board_check = board_commands.add_parser(
        "check", help="inject a feed into any board (the receive-path boards too) and compare its receive-path "
                      "counters with the golden model's; exit 1 if they differ")
    board_check.add_argument("input", help="feed pcap")
    board_check.add_argument("--device", required=True, type=_device_type(()), help="serial:PORT")
    add_address_options(board_check)
    board_check.set_defaults(run=cmd_board_check)
    board_latency = board_commands.add_parser(
        "latency", help="the pipeline's actionable latency of the board's last orders, from its own probes")
    board_latency.add_argument("--device", required=True, type=_device_type(()), help="serial:PORT")
    board_latency.add_argument("--config", default="examples/strategy.toml",
                               help="the strategy file the board runs (its book size gives the register map; "
                                    "%(default)s)")
    board_latency.set_defaults(run=cmd_board_latency)

    report = commands.add_parser("report", help="compare reports")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="COMMAND")
    compare = report_commands.add_parser("compare", help="side-by-side table of two race, synthesis or build "
                                                         "reports, with deltas")
    compare.add_argument("a", help="the reference report (JSON)")
    compare.add_argument("b", help="the report compared with it (JSON)")
    compare.add_argument("--fail-on-regression", type=_percent, metavar="PCT",
                         help="exit 1 when a latency or throughput figure is worse by more than PCT percent")
    compare.set_defaults(run=cmd_report_compare)

    demo = commands.add_parser("demo", help="generate feeds, run them through the golden model and the gateware "
                                             "(receive path, then tick to trade), compare")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--config", default="examples/strategy.toml",
                      help="strategy file for the tick-to-trade part (%(default)s)")
    demo.set_defaults(run=cmd_demo)

    build = commands.add_parser("build", help="build a board's bitstream (amaranth-boards, YoWASP Yosys and nextpnr); "
                                               "writes the bitstream, the tools' logs and build.json")
    build.add_argument("--board", required=True, help="a board of 'tick2trade boards'")
    build.add_argument("--out", help="output folder (default out/build/BOARD)")
    build.set_defaults(run=cmd_build)

    boards = commands.add_parser("boards", help="list the supported boards: part, clock, configuration, UART")
    boards.set_defaults(run=cmd_boards)

    flash = commands.add_parser("flash", help="program a board with openFPGALoader")
    flash.add_argument("--board", required=True, help="a board of 'tick2trade boards'")
    flash.add_argument("--bitstream", help="the bitstream (default: the one 'tick2trade build --board BOARD' wrote)")
    flash.add_argument("--cable", help="openFPGALoader cable (openFPGALoader --list-cables) instead of the board's")
    flash.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    flash.set_defaults(run=cmd_flash)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that a command stops as cleanly on ``kill``."""


def _terminate(signum, frame):
    raise Terminated


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # (signal handlers can only be set from the main thread)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
    try:
        status = args.run(args)
    except (UsageError, CodecError, DeviceError, OSError) as error:
        print(f"tick2trade: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tick2trade: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("tick2trade: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if in_main_thread:  # (None: a handler not set from Python, which cannot be put back)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous_sigterm is None else previous_sigterm)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
