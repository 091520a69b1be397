"""``make bench``: what the pipeline reaches, measured, as JSON. Nothing here asserts on time."""

import json
import os
import platform
import statistics
import time
from pathlib import Path

from . import bench_decode
from .device import RxFrame, message_latencies, open_rx_device
from .feed import FeedConfig, generate_feed

__all__ = ["run_benchmarks", "machine"]

SCHEMA_VERSION = 1
#: The 10GbE reference clock of a 64-bit datapath (DESIGN.md, "Latency, defined").
REFERENCE_MHZ = 156.25
#: Messages through each backend for the throughput figures (the Amaranth simulator is slow).
SIMULATION_MESSAGES = {"verilator": 20_000, "icarus": 5_000, "amaranth": 500}
#: Where `make synth` leaves its report.
SYNTH_REPORT = Path("out/synth/pipeline.json")
#: Order-flow messages of the snipe market behind the actionable-latency figures.
PIPELINE_MESSAGES = 20_000
#: The strategy those figures trade with.
PIPELINE_STRATEGY = Path(__file__).resolve().parents[1] / "examples" / "strategy.toml"


def machine():
    """The facts a reader needs to compare two benchmark files."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def _frames(messages, seed=1):
    config = FeedConfig(seed=seed, messages=messages, max_messages_per_packet=32, coalesce_ns=100_000)
    return [RxFrame(record.data) for record in generate_feed(config)]


def _simulate(backend, frames):
    """Run ``frames`` on ``backend`` once to build, once to time; return (result, seconds)."""
    device = open_rx_device(backend)
    device.run(frames[:3])  # builds the simulator if needed, so the timing below is simulation only
    start = time.perf_counter()
    result = device.run(frames, idle_probability=0.1, seed=1)
    return result, time.perf_counter() - start


def _latency_summary(latencies, fmax_mhz, *, count="messages"):
    figures = {"min": min(latencies), "p50": statistics.median_low(latencies), "max": max(latencies)}
    summary = {count: len(latencies), **figures,
               "ns_at_156_25_mhz": {key: round(value * 1000 / REFERENCE_MHZ, 1) for key, value in figures.items()}}
    if fmax_mhz:
        summary["ns_at_synthesized_fmax"] = {"fmax_mhz": fmax_mhz, **{
            key: round(value * 1000 / fmax_mhz, 1) for key, value in figures.items()}}
    return summary


def _pipeline_latency(backend, fmax, progress):
    """Actionable latency of every order of a snipe market through the whole pipeline on ``backend``."""
    from .pipeline_device import ModelPipelineDevice, actionable_latencies, open_pipeline_device
    from .pipeline_model import stock_directory
    from .strategy import load_strategy, resolve_instruments
    config = FeedConfig(seed=1, messages=PIPELINE_MESSAGES, instruments=("LEAD", "TGT", "ALFA"),
                        scenario="snipe")
    frames = [RxFrame(record.data) for record in generate_feed(config)]
    strategy = load_strategy(PIPELINE_STRATEGY)
    directory = stock_directory(frames)
    resolve_instruments(strategy, directory)
    progress(f"{backend}: the whole pipeline on a {PIPELINE_MESSAGES}-message snipe market")
    golden = ModelPipelineDevice(strategy, directory=directory)
    golden.run(frames)
    result = open_pipeline_device(backend, strategy).run(frames, idle_probability=0.1, seed=1)
    latencies = actionable_latencies(frames, result, golden.model.orders)
    return {"simulator": backend, "strategy": "examples/strategy.toml",
            **_latency_summary(latencies, fmax, count="orders"), "fast_path": result.fast_path}


def _synthesized_fmax():
    if not SYNTH_REPORT.is_file():
        return None
    report = json.loads(SYNTH_REPORT.read_text())
    return min(report.get("fmax_mhz", {}).values(), default=None)


def run_benchmarks(progress=print):
    """Every benchmark of the receive path; a JSON-ready dict."""
    from ..sim.runner import available_simulators
    results = {"schema": SCHEMA_VERSION, "machine": machine(), "simulation": {}}
    fmax = _synthesized_fmax()
    unavailable = {**available_simulators(), "amaranth": None}
    for backend, messages in SIMULATION_MESSAGES.items():
        if unavailable[backend]:
            results["simulation"][backend] = {"skipped": unavailable[backend]}
            progress(f"{backend}: skipped ({unavailable[backend]})")
            continue
        progress(f"{backend}: simulating {messages} messages")
        frames = _frames(messages)
        result, seconds = _simulate(backend, frames)
        cycles = sum(len(beats) for beats in result.beat_cycles)
        results["simulation"][backend] = {
            "messages": len(result.messages), "seconds": round(seconds, 3),
            "msgs_per_s": round(len(result.messages) / seconds, 1),
            "beats_per_s": round(cycles / seconds, 1)}
        if "rx_latency_cycles" not in results:
            results["rx_latency_cycles"] = {"simulator": backend, **_latency_summary(
                message_latencies(frames, result), fmax)}
    backend = next((name for name in ("verilator", "icarus") if not unavailable[name]), None)
    if backend:
        results["actionable_latency_cycles"] = _pipeline_latency(backend, fmax, progress)
    progress("host decode: 1,000,000-message BinaryFILE")
    results["host_decode"] = bench_decode.run(progress=progress)
    if fmax:
        results["synthesis"] = json.loads(SYNTH_REPORT.read_text())
    else:
        results["synthesis"] = {"skipped": f"no {SYNTH_REPORT}: run 'make synth' first"}
    return results
