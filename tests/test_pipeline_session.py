"""The pipeline as an interactive simulator session (sim/pipeline_session.py), against the golden
model and against the whole-input device.

Expected order frames come from the golden model (host/pipeline_model.py),
given the same host writes at the same place in the input; expected cycles
from ``CocotbPipelineDevice`` on the same input, which drives it through a
different bench.
"""

import dataclasses

import pytest

from tick2trade.host.device import DeviceError
from tick2trade.host.pipeline_device import PipelineResult, actionable_latencies
from tick2trade.host.pipeline_model import PipelineModel, stock_directory
from tick2trade.host.strategy import resolve_instruments
from tick2trade.hdl.stream import BEAT_BYTES
from tick2trade.host.race import load_scenario, run_race
from tick2trade.host.serial_device import SERIAL_PREFIX
from tick2trade.host.sniper import ModelSniper, sniper_factory
from tick2trade.sim.pipeline_session import PipelineSession
from tick2trade.sim.runner import available_simulators

from test_pipeline import BOARD, ON_A_BOARD, _device, _simulator, run_both, snipe_frames, strategy_with

pytestmark = pytest.mark.cocotb


@pytest.fixture(params=["verilator", pytest.param("icarus", marks=pytest.mark.slow)])
def simulator(request):
    return _simulator(request)


def beats(frame):
    return max(1, -(-len(frame.data) // BEAT_BYTES))


def feed_back_to_back(session, frames, at):
    """Send ``frames`` back to back from cycle ``at``; each frame's beat cycles."""
    beat_cycles = []
    for frame in frames:
        session.send_frame(frame.data, at, err=frame.err)
        beat_cycles.append([at + index for index in range(beats(frame))])
        at += beats(frame)
    return beat_cycles


def drain(session):
    sent = session.advance(session.cycle)
    while not session.idle:
        sent += session.advance(session.cycle + 64)
    return sent


def test_session_sends_what_the_whole_input_device_sends_in_the_same_cycles(simulator):
    frames = snipe_frames(17, 3_000)
    strategy = strategy_with()
    got, want, model = run_both(simulator, strategy, frames)
    assert len(want.frames) >= 20
    with PipelineSession(strategy, simulator=simulator) as session:
        beat_cycles = feed_back_to_back(session, frames, session.start_cycle)
        sent = drain(session)
    assert [frame.data for frame in sent if not frame.aborted] == [frame.data for frame in want.frames]
    # The same latency, order by order, as the device that drives the whole input at once.
    as_result = PipelineResult(frames=sent, counters={}, beat_cycles=beat_cycles)
    session_latencies = actionable_latencies(frames, as_result, model.orders)
    assert session_latencies == actionable_latencies(frames, got, model.orders)
    assert min(session_latencies) == 4


def test_host_writes_between_frames_act_as_in_the_model(simulator):
    """The race's host loop: after part of the market, the host reports the position and finished
    orders; the orders after that must be the model's given the same writes at the same place."""
    frames = snipe_frames(23, 3_000)
    strategy = strategy_with(risk={"max_long": 300, "max_short": 300, "max_outstanding": 6})
    directory = stock_directory(frames)
    resolve_instruments(strategy, directory)
    model = PipelineModel(strategy, directory=directory)
    half = len(frames) // 2
    writes = [("position", 300), ("orders_done", 6)]  # long to the limit: buys now fail; sells free again

    expected = [order.frame for frame in frames[:half] for order in model.process(frame.data)]
    model.risk.set_position(300)
    model.risk.orders_done(6)
    expected += [order.frame for frame in frames[half:] for order in model.process(frame.data)]
    assert model.risk.counters["reject_position"] > 0 and model.risk.counters["reject_outstanding"] > 0

    with PipelineSession(strategy, simulator=simulator) as session:
        feed_back_to_back(session, frames[:half], session.start_cycle)
        sent = drain(session)
        session.write(writes, session.cycle)
        feed_back_to_back(session, frames[half:], session.cycle + len(writes) + 1)
        sent += drain(session)
        counters = session.read(["reject_position", "reject_outstanding", "orders_accepted"])
    assert [frame.data for frame in sent if not frame.aborted] == expected
    assert counters == {name: model.risk.counters[name]
                        for name in ("reject_position", "reject_outstanding", "orders_accepted")}


def test_a_failing_simulator_is_a_device_error(monkeypatch):
    if available_simulators()["verilator"]:
        pytest.skip(available_simulators()["verilator"])
    frames = snipe_frames(3, 200)
    strategy = strategy_with()
    resolve_instruments(strategy, stock_directory(frames))
    monkeypatch.setattr("tick2trade.sim.pipeline_session.BENCH", "tick2trade.sim.benches.no_such_bench")
    with pytest.raises(DeviceError, match="did not start"):
        PipelineSession(strategy, simulator="verilator")


# --- the gateware as the race's sniper ---------------------------------------------------------------


class RecordingSniper:
    """A sniper that keeps what went in and out, in order, for replaying it through the golden model."""

    def __init__(self, sniper):
        self.sniper, self.inputs, self.orders = sniper, [], []

    def feed(self, frame, at_ns):
        self.inputs.append(("frame", frame))
        self.sniper.feed(frame, at_ns)

    def write_registers(self, writes, at_ns):
        self.inputs.append(("writes", list(writes)))
        self.sniper.write_registers(writes, at_ns)

    def advance(self, until_ns):
        orders = self.sniper.advance(until_ns)
        self.orders += orders
        return orders

    def counters(self):
        return self.sniper.counters()


@pytest.fixture(params=["verilator", pytest.param("icarus", marks=pytest.mark.slow),
                        pytest.param(BOARD, marks=ON_A_BOARD)])
def sniper_backend(request):
    """A simulator session, or a board through the serial backend (a simulated one's ``serial:PTY``, or
    ``--board``)."""
    return _device(request)


def test_a_race_with_the_gateware_as_sniper_sends_the_golden_models_orders(sniper_backend):
    """A short default race with the gateware as sniper: its orders are the model's for the same inputs
    (frames and host writes, replayed in order), its first beats leave a few cycles after its frames."""
    scenario = dataclasses.replace(load_scenario("default"), duration_ns=300_000_000, maker_decision_ns=60_000)
    opened, made = [], []
    backend_factory = sniper_factory(sniper_backend, opened)

    def factory(scenario, directory):
        made.append(RecordingSniper(backend_factory(scenario, directory)))
        return made[0]

    try:
        result = run_race(scenario, sniper_factory=factory, seed=3)
    finally:
        for sniper in opened:
            sniper.close()
    recorder = made[0]
    assert result.races.count > 0 and result.races.sniper_wins > 0
    if not sniper_backend.startswith(SERIAL_PREFIX):
        # Inputs due while the design ran on to finish an order frame go in a few cycles late: rare.
        assert result.sniper.counters["late_inputs"] <= len(recorder.inputs) // 100

    model_sniper = ModelSniper(scenario.sniper, {scenario.lead_symbol: 1, scenario.target_symbol: 2}, latency_ns=0)
    expected = []
    for at, (kind, value) in enumerate(recorder.inputs):
        if kind == "frame":
            model_sniper.feed(value, at)
        else:
            model_sniper.write_registers(value, at)
        expected += [order.frame for order in model_sniper.advance(at)]
    assert [order.frame for order in recorder.orders] == expected
    # From the trigger frame's first beat at rx to the order's first beat at tx: the frame's beats and
    # a few cycles; never less than the actionable latency's 4 cycles (25.6 ns).
    decision = result.sniper.decision_latency
    assert decision.count == len(expected) and 26 <= decision.min and decision.max < 1_000
