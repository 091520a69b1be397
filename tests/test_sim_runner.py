# amaranth: UnusedElaboratable=no
"""Tests of the simulation infrastructure: Verilog export, port helpers, the cocotb runner.

The simulator tests build ``RegisteredAdder`` (tests/cocotb_benches/smoke_design.py)
and run the cocotb bench tests/cocotb_benches/smoke_bench.py on it, which
compares every output beat with a Python model; the test here checks the
decoded outputs the bench writes out against the same model once more.
Builds are cached in the default cache (``sim_build/``), so only the first
run on a machine pays for compiling.  Icarus tests skip, saying why, where
``iverilog`` is not installed.

(The linter comment on the first line is there because some tests hand run()
a component that it refuses before elaborating.)
"""

import json
import re

import pytest
from amaranth import Module, signed, unsigned
from amaranth.hdl import Const
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from cocotb_benches.smoke_design import (
    Operands, RegisteredAdder, Total, expected_totals, random_operands,
)
from cocotb_tools.runner import get_results
from hypothesis import given
from hypothesis import strategies as st

from tick2trade.sim import runner
from tick2trade.sim.ports import Port, pack, unpack, verilog_ports
from tick2trade.sim.runner import SIMULATORS, SimulationFailed, available_simulators, run
from tick2trade.sim.verilog import verilog_text, write_verilog

BENCH = "cocotb_benches.smoke_bench"
DESIGN_NAME = "smoke_adder"
AVAILABLE = available_simulators()


def on_each_simulator(test):
    """Parametrise ``test`` over the simulators, skipping (with the reason) those not installed."""
    return pytest.mark.parametrize("simulator", [
        pytest.param(name, marks=pytest.mark.skipif(bool(AVAILABLE[name]),
                                                     reason=AVAILABLE[name] or ""))
        for name in SIMULATORS
    ])(pytest.mark.cocotb(test))


# Verilog export and port listing.

def test_verilog_ports_flatten_stream_members_and_add_clock_and_reset():
    """Ports are named like Amaranth names them; constant ``ready`` members are not ports."""
    assert verilog_ports(RegisteredAdder()) == [
        Port("rx__payload", "input", 24, Operands),
        Port("rx__valid", "input", 1, 1),
        Port("total__payload", "output", 22, Total),
        Port("total__valid", "output", 1, 1),
        Port("clk", "input", 1, unsigned(1)),
        Port("rst", "input", 1, unsigned(1)),
    ]


def test_verilog_ports_match_the_emitted_module_header():
    """Every listed port is declared in the Verilog with the listed direction and width, and no other."""
    text = verilog_text(RegisteredAdder(), name=DESIGN_NAME)
    declared = {
        match["name"]: (match["direction"], int(match["msb"] or 0) + 1)
        for match in re.finditer(
            r"^\s*(?P<direction>input|output)\s+(?:\[(?P<msb>\d+):0\]\s+)?(?P<name>\w+);", text, re.M)
    }
    listed = {port.name: (port.direction, port.width) for port in verilog_ports(RegisteredAdder())}
    assert declared == listed


def test_verilog_uses_always_comb_and_builtin_yosys(monkeypatch):
    """Combinational logic is written as ``always_comb``, with Amaranth's builtin Yosys even if YOSYS points elsewhere."""
    monkeypatch.setenv("AMARANTH_USE_YOSYS", "system")
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    text = verilog_text(RegisteredAdder(), name=DESIGN_NAME)
    assert "always_comb" in text
    assert "always @*" not in text
    assert "Amaranth Yosys" in text.splitlines()[0]


class Doubler(wiring.Component):
    """A component whose Verilog differs from ``RegisteredAdder``'s."""

    a: In(8)
    y: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * 2)
        return m


def test_write_verilog_leaves_an_unchanged_file_untouched(tmp_path):
    """Rewriting the same design keeps the file's timestamp (simulator builds key on it); another design replaces it."""
    path = write_verilog(RegisteredAdder(), tmp_path / "out" / "design.v", name="design")
    before = path.stat().st_mtime_ns
    assert write_verilog(RegisteredAdder(), path, name="design") == path
    assert path.stat().st_mtime_ns == before
    write_verilog(Doubler(), path, name="design")
    assert path.read_text() == verilog_text(Doubler(), name="design")


# Packing structured values.

scalar_shapes = st.one_of(st.integers(1, 10).map(unsigned), st.integers(1, 10).map(signed))
field_names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


def layouts_of(children):
    """Strategy: struct, union and array layouts whose fields are drawn from ``children``."""
    fields = st.dictionaries(field_names, children, min_size=1, max_size=4)
    return st.one_of(
        fields.map(data.StructLayout),
        fields.map(data.UnionLayout),
        st.tuples(children, st.integers(1, 3)).map(lambda args: data.ArrayLayout(*args)),
    )


layouts = layouts_of(st.recursive(scalar_shapes, layouts_of, max_leaves=8))


def values_of(shape):
    """Strategy: values :func:`pack` accepts for ``shape`` (one field per union)."""
    if not isinstance(shape, data.Layout):
        low = -(1 << (shape.width - 1)) if shape.signed else 0
        high = (1 << (shape.width - 1 if shape.signed else shape.width)) - 1
        return st.integers(low, high)
    if isinstance(shape, data.ArrayLayout):
        return st.lists(values_of(shape.elem_shape), min_size=shape.length, max_size=shape.length)
    if isinstance(shape, data.UnionLayout):
        return st.sampled_from(list(shape.members)).flatmap(
            lambda name: values_of(shape.members[name]).map(lambda value: {name: value}))
    return st.fixed_dictionaries({name: values_of(field.shape) for name, field in shape})


def from_amaranth_view(shape, view):
    """Read an Amaranth ``data.Const`` view into the dicts, lists and ints :func:`unpack` returns."""
    if not isinstance(shape, data.Layout):
        return view
    if isinstance(shape, data.ArrayLayout):
        return [from_amaranth_view(shape.elem_shape, view[index]) for index in range(shape.length)]
    return {name: from_amaranth_view(field.shape, view[name]) for name, field in shape}


def has_union(shape):
    """Whether a union occurs anywhere in ``shape`` (unions read one bit pattern several ways)."""
    if not isinstance(shape, data.Layout):
        return False
    return isinstance(shape, data.UnionLayout) or any(has_union(f.shape) for _n, f in shape)


@given(layouts.flatmap(lambda layout: st.tuples(st.just(layout), values_of(layout))))
def test_pack_agrees_with_amaranth_constants(layout_and_value):
    """``pack`` gives the bits Amaranth itself gives the same value of the layout."""
    layout, value = layout_and_value
    assert pack(layout, value) == Const.cast(layout.const(value)).value


@given(layouts.flatmap(lambda layout: st.tuples(st.just(layout), st.integers(0, (1 << layout.size) - 1))))
def test_unpack_agrees_with_amaranth_views(layout_and_bits):
    """``unpack`` reads every field as an Amaranth view of the same bits does."""
    layout, bits = layout_and_bits
    assert unpack(layout, bits) == from_amaranth_view(layout, data.Const(layout, bits))


@given(layouts.filter(lambda layout: not has_union(layout)).flatmap(
    lambda layout: st.tuples(st.just(layout), values_of(layout))))
def test_pack_and_unpack_round_trip(layout_and_value):
    """Without unions, ``unpack`` inverts ``pack`` both ways."""
    layout, value = layout_and_value
    bits = pack(layout, value)
    assert unpack(layout, bits) == value
    assert pack(layout, unpack(layout, bits)) == bits


def test_pack_takes_struct_classes_and_zeroes_missing_fields():
    assert pack(Operands, {"a": 0x1234, "b": -1}) == 0xFF_1234
    assert pack(Operands, {"b": 1}) == 0x01_0000
    assert unpack(Total, pack(Total, {"value": -5, "beats": 3})) == {"value": -5, "beats": 3}


@pytest.mark.parametrize("value", [
    {"a": 1 << 16},             # too wide
    {"b": 128},                 # above the signed range
    {"c": 0},                   # no such field
    {"a": 1.5},                 # not an int
    [1, 2],                     # not a mapping
])
def test_pack_rejects_values_that_do_not_fit(value):
    with pytest.raises(ValueError):
        pack(Operands, value)


def test_pack_rejects_two_fields_of_a_union():
    with pytest.raises(ValueError, match="union"):
        pack(data.UnionLayout({"x": 4, "y": 4}), {"x": 1, "y": 2})


# Running cocotb benches.

def test_available_simulators_names_every_simulator():
    assert set(AVAILABLE) == set(SIMULATORS)
    assert all(reason is None or isinstance(reason, str) for reason in AVAILABLE.values())


def test_missing_tools_make_a_simulator_unavailable_with_a_reason(tmp_path, monkeypatch):
    """With nothing on PATH, both simulators say what is missing, and run() refuses with that reason."""
    monkeypatch.setenv("PATH", str(tmp_path))
    reasons = available_simulators()
    assert "iverilog" in reasons["icarus"]
    assert "make" in reasons["verilator"]
    with pytest.raises(RuntimeError, match="iverilog"):
        run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator="icarus")


def test_extra_env_shadowed_by_the_environment_is_refused(monkeypatch):
    """cocotb's runner would let the environment's SMOKE_SEED win over extra_env's: run() refuses instead."""
    monkeypatch.setenv("SMOKE_SEED", "1")
    with pytest.raises(ValueError, match="SMOKE_SEED"):
        run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, extra_env={"SMOKE_SEED": "2"})


@on_each_simulator
def test_smoke_bench_passes_and_outputs_match_the_model(simulator, tmp_path):
    """The simulated adder's decoded outputs equal the Python model; a second run reuses the build."""
    output = tmp_path / "totals.json"
    results = run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator=simulator,
                  extra_env={"SMOKE_SEED": "7", "SMOKE_BEATS": "30", "SMOKE_OUTPUT": str(output)},
                  test_dir=tmp_path / "run")
    assert get_results(results) == (1, 0)
    assert json.loads(output.read_text()) == expected_totals(random_operands(7, 30))

    build_dir = runner.default_cache_dir() / f"{DESIGN_NAME}-{simulator}"
    executable = build_dir / (DESIGN_NAME if simulator == "verilator" else "sim.vvp")
    built_at = executable.stat().st_mtime_ns
    run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator=simulator,
        test_dir=tmp_path / "rerun")
    assert executable.stat().st_mtime_ns == built_at


@on_each_simulator
def test_concurrent_runs_of_one_bench_take_their_own_test_directories(simulator):
    """While another run holds the bench's default test directory, a run takes the next free one."""
    default_dir = runner.default_cache_dir() / f"{DESIGN_NAME}-{simulator}" / "run" / BENCH
    with runner._locked(default_dir):
        results = run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator=simulator,
                      extra_env={"SMOKE_SEED": "3", "SMOKE_BEATS": "10"})
    assert results.parent.name.startswith(f"{BENCH}.")
    assert get_results(results) == (1, 0)


@on_each_simulator
def test_failing_cocotb_test_raises_with_names_and_log_tail(simulator, tmp_path):
    """A failing cocotb test becomes a SimulationFailed naming it and quoting the simulator log."""
    with pytest.raises(SimulationFailed) as failure:
        run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator=simulator,
            extra_env={"SMOKE_MODEL_ERROR": "1"}, test_dir=tmp_path)
    assert failure.value.failed_tests == [f"{BENCH}.adder_matches_python_model"]
    message = str(failure.value)
    assert f"1 of 1 tests failed: {BENCH}.adder_matches_python_model" in message
    assert "first difference at beat 0" in message  # the bench's assertion, from the log tail
    assert failure.value.log_path == tmp_path / "sim.log"


@pytest.mark.cocotb
def test_unknown_test_module_is_a_failure_not_a_pass(tmp_path):
    with pytest.raises(SimulationFailed):
        run(RegisteredAdder(), name=DESIGN_NAME, test_module="cocotb_benches.no_such_bench",
            test_dir=tmp_path)


@on_each_simulator
def test_waves_env_records_fst(simulator, tmp_path, monkeypatch, capsys):
    """WAVES=1 records an FST file (an FST header block first) and prints where."""
    if runner.waves_format(simulator) != "fst":
        pytest.skip(runner._verilator_fst_unavailable())
    monkeypatch.setenv("WAVES", "1")
    run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, simulator=simulator,
        test_dir=tmp_path)
    waves = tmp_path / f"{DESIGN_NAME}.fst"
    assert f"waves: {waves}" in capsys.readouterr().out
    assert waves.read_bytes()[:1] == b"\x00"  # FST_BL_HDR
    assert waves.stat().st_size > 100


@pytest.mark.cocotb
@pytest.mark.skipif(bool(AVAILABLE["verilator"]), reason=AVAILABLE["verilator"] or "")
def test_verilator_waves_fall_back_to_vcd_without_lz4(tmp_path, monkeypatch, capsys):
    """Where Verilator's FST writer cannot be compiled, WAVES=1 records VCD and says why."""
    monkeypatch.setattr(runner, "_verilator_fst_unavailable", lambda: "no lz4 here")
    monkeypatch.setenv("WAVES", "1")
    run(RegisteredAdder(), name=DESIGN_NAME, test_module=BENCH, test_dir=tmp_path)
    printed = capsys.readouterr().out
    assert "recording VCD, not FST: no lz4 here" in printed
    waves = tmp_path / f"{DESIGN_NAME}.vcd"
    assert f"waves: {waves}" in printed
    assert "rx__payload" in waves.read_text()
