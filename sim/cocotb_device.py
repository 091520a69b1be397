"""The receive path on Verilator or Icarus through the cocotb runner, behind the device interface."""

import ipaddress
import json
import tempfile
from pathlib import Path

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT, RxPath
from ..host.device import DeviceError, RxResult
from .records import record_from_message
from .runner import SimulationFailed, available_simulators, run

__all__ = ["CocotbRxDevice"]

BENCH = "tick2trade.sim.benches.rx_path_bench"


class CocotbRxDevice:
    """Runs ``RxPath`` (configured through its registers) in an HDL simulator.

    The simulator is built once per machine and cached (see ``sim/runner.py``);
    ``WAVES=1`` in the environment writes an FST waveform and prints its path.
    """

    def __init__(self, *, simulator="verilator", dst_ip=None, dst_port=None, **_options):
        unavailable = available_simulators().get(simulator, f"unknown simulator {simulator!r}")
        if unavailable:
            raise DeviceError(unavailable)
        self._simulator = simulator
        self._dst_ip = int(ipaddress.IPv4Address(dst_ip or DEFAULT_DST_IP))
        self._dst_port = DEFAULT_DST_PORT if dst_port is None else dst_port

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None):
        """Drive ``frames`` (RxFrame) and return an RxResult with cycle numbers."""
        dut = RxPath()
        with tempfile.TemporaryDirectory(prefix="t2t-") as scratch:
            stimulus_path = Path(scratch) / "stimulus.json"
            result_path = Path(scratch) / "result.json"
            stimulus_path.write_text(json.dumps({
                "frames": [[frame.data.hex(), frame.err] for frame in frames],
                "idle_probability": idle_probability, "seed": seed,
                "dst_ip": self._dst_ip, "dst_port": self._dst_port,
                "address_map": dut.address_map,
            }))
            try:
                run(dut, name="rx_path", test_module=BENCH, simulator=self._simulator,
                    extra_env={"T2T_STIMULUS": str(stimulus_path), "T2T_RESULT": str(result_path)})
            except SimulationFailed as error:
                raise DeviceError(f"{error} (log: {error.log_path})") from None
            raw = json.loads(result_path.read_text())
        if progress:
            progress(len(frames), len(frames))
        return RxResult(
            messages=[record_from_message(int(word, 16)) for word in raw["messages"]],
            packet_ends=raw["packet_ends"], counters=raw["counters"],
            message_cycles=raw["message_cycles"], beat_cycles=raw["beat_cycles"])
