"""The receive path and the whole pipeline on Verilator or Icarus through the cocotb runner,
behind the device interfaces."""

import ipaddress
import json
import tempfile
from pathlib import Path

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT, RxPath
from ..host.device import DeviceError, RxResult
from .records import record_from_message
from .runner import SimulationFailed, available_simulators, run

__all__ = ["CocotbRxDevice", "CocotbPipelineDevice"]

BENCH = "tick2trade.sim.benches.rx_path_bench"
PIPELINE_BENCH = "tick2trade.sim.benches.pipeline_bench"


def _run_bench(dut, *, name, bench, simulator, stimulus):
    """Run ``bench`` on ``dut`` with ``stimulus`` (JSON); what the bench wrote back."""
    with tempfile.TemporaryDirectory(prefix="t2t-") as scratch:
        stimulus_path = Path(scratch) / "stimulus.json"
        result_path = Path(scratch) / "result.json"
        stimulus_path.write_text(json.dumps(stimulus))
        try:
            run(dut, name=name, test_module=bench, simulator=simulator,
                extra_env={"T2T_STIMULUS": str(stimulus_path), "T2T_RESULT": str(result_path)})
        except SimulationFailed as error:
            raise DeviceError(f"{error} (log: {error.log_path})") from None
        return json.loads(result_path.read_text())


def _check_simulator(simulator):
    unavailable = available_simulators().get(simulator, f"unknown simulator {simulator!r}")
    if unavailable:
        raise DeviceError(unavailable)


class CocotbRxDevice:
    """Runs ``RxPath`` (configured through its registers) in an HDL simulator.

    The simulator is built once per machine and cached (see ``sim/runner.py``);
    ``WAVES=1`` in the environment writes an FST waveform and prints its path.
    """

    def __init__(self, *, simulator="verilator", dst_ip=None, dst_port=None, **_options):
        _check_simulator(simulator)
        self._simulator = simulator
        self._dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self._dst_port = DEFAULT_DST_PORT if dst_port is None else dst_port

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None):
        """Drive ``frames`` (RxFrame) and return an RxResult with cycle numbers."""
        dut = RxPath()
        raw = _run_bench(dut, name="rx_path", bench=BENCH, simulator=self._simulator, stimulus={
            "frames": [[frame.data.hex(), frame.err] for frame in frames],
            "idle_probability": idle_probability, "seed": seed,
            "dst_ip": self._dst_ip, "dst_port": self._dst_port,
            "address_map": dut.address_map,
        })
        if progress:
            progress(len(frames), len(frames))
        return RxResult(
            messages=[record_from_message(int(word, 16)) for word in raw["messages"]],
            packet_ends=raw["packet_ends"], counters=raw["counters"],
            message_cycles=raw["message_cycles"], beat_cycles=raw["beat_cycles"])


class CocotbPipelineDevice:
    """Runs ``Pipeline``, configured through its registers from a strategy file, in an HDL simulator."""

    def __init__(self, strategy, *, simulator="verilator", dst_ip=None, dst_port=None, **_options):
        _check_simulator(simulator)
        self._simulator = simulator
        self._strategy = strategy
        self._dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self._dst_port = DEFAULT_DST_PORT if dst_port is None else dst_port

    def run(self, frames, *, idle_probability=0.0, seed=0, tx_ready_probability=1.0, progress=None):
        """Drive ``frames`` (RxFrame) and return a PipelineResult with cycle numbers."""
        from ..hdl.pipeline import Pipeline
        from ..host.pipeline_device import (FAST_PATH_COUNTERS, PROBE_DEPTH, STATE_REGISTERS, PipelineResult, TxFrame,
                                            bus_writes, register_writes)
        strategy = self._strategy
        dut = Pipeline(capacity=strategy.book_capacity, levels=strategy.book_levels)
        registers = dut.registers
        writes = register_writes(strategy, dst_ip=self._dst_ip, dst_port=self._dst_port)
        reads = {name: (register.address, register.words) for name, register in registers.items()
                 if register.kind == "counter" or name in STATE_REGISTERS}
        raw = _run_bench(
            dut, name=f"pipeline_c{strategy.book_capacity}_l{strategy.book_levels}", bench=PIPELINE_BENCH,
            simulator=self._simulator, stimulus={
                "frames": [[frame.data.hex(), frame.err] for frame in frames],
                "idle_probability": idle_probability, "seed": seed,
                "tx_ready_probability": tx_ready_probability,
                "writes": bus_writes(registers, writes),
                "reads": reads,
                "probe_select": registers["probe_select"].address, "probe_depth": PROBE_DEPTH,
                "probe_registers": [registers[name].address for name in ("probe_trigger_cycle", "probe_tx_cycle")],
            })
        if progress:
            progress(len(frames), len(frames))
        values = raw["registers"]
        return PipelineResult(
            frames=[TxFrame(bytes.fromhex(data), aborted, cycle) for data, aborted, cycle in raw["frames"]],
            counters={name: value for name, value in values.items()
                      if name not in STATE_REGISTERS and name not in FAST_PATH_COUNTERS},
            state={name: values[name] for name in STATE_REGISTERS},
            fast_path={name: values[name] for name in FAST_PATH_COUNTERS},
            probes=[tuple(pair) for pair in raw["probes"]], beat_cycles=raw["beat_cycles"])
