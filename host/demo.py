"""``make demo``: a feed through the golden model and through the gateware in Verilator, compared."""

import json
import sys
import time
from pathlib import Path

from .codec.pcap import write_pcap
from .device import RxFrame, message_latencies, open_rx_device
from .feed import FeedConfig, generate_feed
from .files import atomic_write

__all__ = ["run_demo", "DEMO_FEED"]

#: A morning's order flow over eight instruments, with a few lost, repeated and damaged packets.
DEMO_FEED = FeedConfig(seed=1, messages=20_000, gap_probability=0.002, duplicate_probability=0.005,
                       reorder_probability=0.002, corrupt_probability=0.005)


def _write_jsonl(path, records):
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)


class _Steps:
    """Prints each step as it starts and how long it took."""

    def __init__(self):
        self._start = None

    def start(self, text):
        self._start = time.monotonic()
        print(f"  {text} ...", end="", flush=True)

    def done(self, text=""):
        print(f" {text}({time.monotonic() - self._start:.1f} s)", flush=True)


def run_demo(out_dir, simulator="verilator"):
    """Write feed.pcap, golden.jsonl, hw.jsonl and summary.json under ``out_dir``; 0 if they agree."""
    out_dir = Path(out_dir)
    steps = _Steps()
    print("tick2trade demo: the market-data receive path, gateware against golden model")

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
    summary = {
        "frames": len(frames), "messages": len(hw.messages), "agree": agree,
        "latency_cycles": {"min": min(latencies), "max": max(latencies)},
        "counters": {"gateware": hw.counters, "golden": golden.counters},
    }
    with atomic_write(out_dir / "summary.json", "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)

    print()
    print(f"  {'counter':<24}{'gateware':>10}{'golden':>10}")
    for name, value in hw.counters.items():
        if value or golden.counters.get(name):
            print(f"  {name:<24}{value:>10}{golden.counters.get(name, 0):>10}")
    print()
    print(f"  decode latency: {min(latencies)}..{max(latencies)} cycles from a message's last byte at rx "
          f"({max(latencies) * 6.4:.1f} ns at 156.25 MHz)")
    print(f"  gateware and golden model {'agree, message for message' if agree else 'DISAGREE'}")
    print(f"  files: {out_dir}/feed.pcap, golden.jsonl, hw.jsonl, summary.json")
    print(f"  compare yourself: diff {out_dir}/golden.jsonl {out_dir}/hw.jsonl")
    if not agree:
        print("tick2trade demo: the gateware disagrees with the golden model", file=sys.stderr)
        return 1
    return 0
