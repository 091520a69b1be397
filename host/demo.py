"""``make demo``: feeds through the golden model and through the gateware in Verilator, compared.

Three parts: the market-data receive path on a morning's order flow
(decoded messages and counters), the whole tick-to-trade pipeline on a
market whose target quotes go stale (order frames, rejections, actionable
latency), then the race: the gateware as sniper against the Python market
maker in the simulated exchange, with its report.
"""

import json
import sys
import threading
import time
from pathlib import Path

from .codec.pcap import write_pcap
from .device import RxFrame, message_latencies, open_rx_device
from .feed import FeedConfig, generate_feed
from .files import atomic_write
from .pipeline_device import (CLOCK_NS, ModelPipelineDevice, actionable_latencies, golden_order_records,
                              latency_summary, open_pipeline_device, sent_order_records, summarize)
from .pipeline_model import stock_directory
from .race import load_scenario, race_and_sweep
from .report import summary_table, write_race_report
from .sniper import sniper_factory
from .strategy import resolve_instruments

__all__ = ["run_demo", "DEMO_FEED", "DEMO_SNIPE_FEED"]

#: A morning's order flow over eight instruments, with a few lost, repeated and damaged packets.
DEMO_FEED = FeedConfig(seed=1, messages=20_000, gap_probability=0.002, duplicate_probability=0.005,
                       reorder_probability=0.002, corrupt_probability=0.005)
#: A lead instrument whose price moves first and a target whose market maker is slow to follow
#: (``tick2trade feed generate --scenario snipe --seed 1 --messages 20000``).
DEMO_SNIPE_FEED = FeedConfig(seed=1, messages=20_000, scenario="snipe")


def _write_jsonl(path, records):
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)


class _Steps:
    """Prints each step as it starts and how long it took; on a terminal, its running time meanwhile
    (a simulator's build and run give no fraction done to show)."""

    def __init__(self):
        self._start = None
        self._text = ""
        self._ticking = None

    def start(self, text):
        self._start, self._text = time.monotonic(), f"  {text} ..."
        print(self._text, end="", flush=True)
        if sys.stdout.isatty():
            stop = threading.Event()
            ticker = threading.Thread(target=self._tick, args=(stop,), daemon=True)
            ticker.start()
            self._ticking = (stop, ticker)

    def _tick(self, stop):
        while not stop.wait(1.0):
            print(f"\r{self._text} {time.monotonic() - self._start:.0f} s", end="", flush=True)

    def done(self, text=""):
        if self._ticking is not None:
            stop, ticker = self._ticking
            stop.set()
            ticker.join()
            self._ticking = None
            print(f"\r{self._text}" + " " * 8 + f"\r{self._text}", end="")
        print(f" {text}({time.monotonic() - self._start:.1f} s)", flush=True)


def run_demo(out_dir, strategy, simulator="verilator"):
    """Both parts of the demo, files under ``out_dir``; 0 if the gateware agrees with the golden model in both.

    ``strategy`` is a loaded strategy file (``examples/strategy.toml`` from
    ``make demo``); its instruments are found in the snipe feed.
    """
    out_dir = Path(out_dir)
    receive = _receive_path(out_dir, simulator)
    print()
    trading = _tick_to_trade(out_dir, strategy, simulator)
    print()
    race = _race(out_dir / "race", simulator)
    with atomic_write(out_dir / "summary.json", "w", encoding="utf-8") as file:
        json.dump({"receive_path": receive, "tick_to_trade": trading, "race": race}, file, indent=2)
    print(f"  summary of the three parts: {out_dir}/summary.json")
    if not (receive["agree"] and trading["agree"]):
        print("tick2trade demo: the gateware disagrees with the golden model", file=sys.stderr)
        return 1
    return 0


def _receive_path(out_dir, simulator):
    """Part 1: feed.pcap decoded by the model (golden.jsonl) and the gateware (hw.jsonl); the summary."""
    steps = _Steps()
    print("tick2trade demo, part 1: the market-data receive path, gateware against golden model")

    steps.start(f"generating a feed of {DEMO_FEED.messages} order-flow messages")
    records = generate_feed(DEMO_FEED)
    write_pcap(out_dir / "feed.pcap", records)
    frames = [RxFrame(record.data) for record in records]
    steps.done(f"{len(frames)} frames ")

    steps.start("decoding it with the golden model")
    golden = open_rx_device("model").run(frames)
    _write_jsonl(out_dir / "golden.jsonl", golden.messages)
    steps.done(f"{len(golden.messages)} messages ")

    steps.start(f"running the gateware on {simulator} (the first run builds the simulator)")
    hw = open_rx_device(simulator).run(frames, idle_probability=0.05, seed=1)
    _write_jsonl(out_dir / "hw.jsonl", hw.messages)
    steps.done(f"{len(hw.messages)} messages ")

    latencies = message_latencies(frames, hw)
    agree = hw.messages == golden.messages and hw.counters == golden.counters
    print()
    print(f"  {'counter':<24}{'gateware':>10}{'golden':>10}")
    for name, value in hw.counters.items():
        if value or golden.counters.get(name):
            print(f"  {name:<24}{value:>10}{golden.counters.get(name, 0):>10}")
    print()
    print(f"  decode latency: {min(latencies)}..{max(latencies)} cycles from a message's last byte at rx "
          f"({max(latencies) * CLOCK_NS:.1f} ns at 156.25 MHz)")
    print(f"  gateware and golden model {'agree, message for message' if agree else 'DISAGREE'}")
    print(f"  files: {out_dir}/feed.pcap, golden.jsonl, hw.jsonl")
    print(f"  compare yourself: diff {out_dir}/golden.jsonl {out_dir}/hw.jsonl")
    return {
        "frames": len(frames), "messages": len(hw.messages), "agree": agree,
        "latency_cycles": {"min": min(latencies), "max": max(latencies)},
        "counters": {"gateware": hw.counters, "golden": golden.counters},
    }


def _tick_to_trade(out_dir, strategy, simulator):
    """Part 2: snipe.pcap through the model (golden_orders.pcap) and the gateware (hw_orders.pcap)."""
    steps = _Steps()
    print("tick2trade demo, part 2: tick to trade, stale quotes sniped by the gateware and by the golden model")

    config = DEMO_SNIPE_FEED
    steps.start(f"generating a market of {config.messages} messages where {config.instruments[1]}'s quotes "
                f"go stale against {config.instruments[0]}")
    records = generate_feed(config)
    write_pcap(out_dir / "snipe.pcap", records)
    frames = [RxFrame(record.data) for record in records]
    directory = stock_directory(frames)
    resolve_instruments(strategy, directory)
    steps.done(f"{len(frames)} frames ")

    steps.start("trading it with the golden model")
    golden = ModelPipelineDevice(strategy, directory=directory)
    want = golden.run(frames)
    write_pcap(out_dir / "golden_orders.pcap", golden_order_records(records, golden.model.orders))
    steps.done(f"{len(want.frames)} orders ")

    steps.start(f"trading it with the gateware on {simulator} (the first run builds the simulator)")
    got = open_pipeline_device(simulator, strategy).run(frames, idle_probability=0.05, seed=1)
    sent = sent_order_records(got)
    write_pcap(out_dir / "hw_orders.pcap", sent)
    steps.done(f"{len(sent)} orders ")

    agree = ([record.data for record in sent] == [frame.data for frame in want.frames]
             and got.counters == want.counters and got.state == want.state)
    latencies = actionable_latencies(frames, got, golden.model.orders) if agree else []
    summary = summarize(got, strategy, latencies)
    rejected = {reason: count for reason, count in summary["rejections"].items() if count}
    cycles = latency_summary(latencies)
    print()
    print(f"  orders sent: {summary['orders']} (every one an OUCH Enter Order, immediate-or-cancel)")
    print(f"  rejected by the risk gate: {rejected or 'none'}")
    if latencies:
        print(f"  actionable latency, trigger field's last byte at rx to the order's first beat at tx: "
              f"min {cycles['min']}, p50 {cycles['p50']}, max {cycles['max']} cycles "
              f"({cycles['p50'] * CLOCK_NS:.1f} ns p50 at 156.25 MHz)")
    fast = got.fast_path
    print(f"  fast path: {fast['fast_confirmed']} orders started in the cycle after their message was decoded "
          f"and confirmed by the exact path, {fast['fast_aborted']} aborted")
    print(f"  gateware and golden model {'agree, order frame for order frame' if agree else 'DISAGREE'}")
    print(f"  files: {out_dir}/snipe.pcap, golden_orders.pcap, hw_orders.pcap (open them in Wireshark)")
    return {**summary, "agree": agree}


def _race(out_dir, simulator):
    """Part 3: the default race with the gateware as sniper, and its report."""
    print(f"tick2trade demo, part 3: the race, the gateware ({simulator}) against a Python market maker")
    scenario = load_scenario("default")
    print(f"  racing for {scenario.duration_ns / 1e9:g} s of market time, then a maker-latency sweep and a "
          f"batch-auction counterfactual (golden-model sniper)")
    started = time.monotonic()
    shown = sys.stdout.isatty()

    def progress(what, done, total):
        if shown:
            print(f"\r    {what}: {100 * done // max(total, 1)} %  ", end="", flush=True)

    opened = []
    try:
        result, sweep = race_and_sweep(scenario, sniper_factory=sniper_factory(simulator, opened), progress=progress)
    finally:
        for sniper in opened:
            sniper.close()
    print(f"{chr(13) if shown else ''}    done ({time.monotonic() - started:.1f} s)" + " " * 30)
    files = write_race_report(result, sweep, out_dir)
    report = json.loads(files.json.read_text())
    print()
    print("\n".join(f"  {line}" for line in summary_table(report).splitlines()))
    print()
    print(f"  report: {files.html} (open it in a browser); data: {files.json}; HDR histograms: {out_dir}/*.hgrm")
    return {"report": str(files.json), "races": report["races"]["count"],
            "sniper_wins": report["races"]["sniper_wins"], "advantage": report["advantage"],
            "mm_pnl_total": report["mm_pnl"]["total"]}

