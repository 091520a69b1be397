"""The whole pipeline in HDL simulators (cocotb), compared with the golden model, frame for frame.

Feeds come from the generator's snipe scenario (a lead instrument and a
target whose quotes go stale); the strategy from a strategy file. Expected
order frames, counters and register values come from the golden model
(host/pipeline_model.py), every order frame also goes through an independent
decoder (dpkt, with checksums recomputed here), and latencies are measured
from the stimulus (the cycle each beat was at ``rx``) to the cycle each
order's first beat was accepted at ``tx``.
"""

import copy
import struct

import dpkt
import pytest

from tick2trade.hdl.order_types import RejectReason
from tick2trade.host.device import DeviceError, RxFrame
from tick2trade.host.feed import FeedConfig, generate_feed
from tick2trade.host.pipeline_device import (PROBE_DEPTH, ModelPipelineDevice, actionable_latencies,
                                             message_spans, open_pipeline_device)
from tick2trade.host.pipeline_model import stock_directory
from tick2trade.host.strategy import parse_strategy, resolve_instruments
from tick2trade.sim.runner import available_simulators

pytestmark = pytest.mark.cocotb

#: docs/pipeline.md: the issue's bound on actionable latency, in cycles.
LATENCY_TARGET = 4
#: docs/pipeline.md, "The fast path": receive path, the fast trigger's register, the first beat's.
FAST_PATH_LATENCY = 4

BASE_STRATEGY = {
    "instruments": {"lead": "LEAD", "target": "TGT"},
    "strategy": {"kind": "snipe", "edge": "0.01", "order_size": 100},
    "risk": {"max_qty": 500, "max_notional": "1000000", "collar": "1.00", "max_long": 100_000,
             "max_short": 100_000, "max_outstanding": 100_000, "rate_burst": 100_000},
    "order": {"tcp_seq": 4_294_967_000, "token_counter": 0xFFFF_FFF0, "firm": "ABCD",
              "dst_mac": "02:12:34:56:78:9a", "src_mac": "02:aa:bb:cc:dd:ee",
              "src_ip": "192.168.7.1", "dst_ip": "198.51.100.9", "src_port": 51234, "dst_port": 15001},
}


def strategy_with(**sections):
    """The base strategy with some fields changed: strategy_with(risk={"kill": True})."""
    data = copy.deepcopy(BASE_STRATEGY)
    for section, fields in sections.items():
        data.setdefault(section, {}).update(fields)
    return parse_strategy(data)


#: The serial backend (host/serial_device.py) over a pseudo-terminal to a simulated board: the
#: pipeline behind the board link's UART, as a board build has it (sim/simulated_board.py); or, with
#: pytest's --board (make test-board), to a board.
BOARD = "board"
#: The marks of a test on a board: selected by `make test-board`, one board test at a time.
ON_A_BOARD = (pytest.mark.board, pytest.mark.xdist_group("simulated_board"))


def _simulator(request):
    reason = available_simulators()[request.param]
    if reason:
        pytest.skip(reason)
    return request.param


def _device(request):
    """The device string of a simulator, or of a board (conftest.py: a simulated one, or ``--board``)."""
    if request.param == BOARD:
        return request.getfixturevalue("board")
    return _simulator(request)


#: Every backend of the device interface that has timing: the same tests pass on each. (The tests
#: of simulated boards run one after another on one pytest-xdist worker: see conftest.py.)
@pytest.fixture(params=["verilator", "icarus", pytest.param(BOARD, marks=ON_A_BOARD)])
def device(request):
    return _device(request)


#: Icarus runs the pipeline about 8 times slower than Verilator, and the board's serial link about
#: 30 ms a frame: their long runs are in `make test-all`.
@pytest.fixture(params=["verilator", pytest.param("icarus", marks=pytest.mark.slow),
                        pytest.param(BOARD, marks=[pytest.mark.slow, *ON_A_BOARD])])
def device_long(request):
    return _device(request)


#: Simulators only: options a board does not have (tx not always ready), and runs too long for its serial link.
@pytest.fixture(params=["verilator", pytest.param("icarus", marks=pytest.mark.slow)])
def simulator_long(request):
    return _simulator(request)


def snipe_frames(seed, messages, **faults):
    config = FeedConfig(seed=seed, messages=messages, instruments=("LEAD", "TGT", "ALFA"), scenario="snipe",
                        end_of_session=False, **faults)
    return [RxFrame(record.data) for record in generate_feed(config)]


def run_both(device, strategy, frames, **options):
    """(gateware result, golden model device) for ``frames``."""
    directory = stock_directory(frames)
    resolve_instruments(strategy, directory)
    golden = ModelPipelineDevice(strategy, directory=directory)
    want = golden.run(frames)
    got = open_pipeline_device(device, strategy).run(frames, **options)
    return got, want, golden.model


def assert_same_orders(got, want):
    sent = [frame.data for frame in got.frames if not frame.aborted]
    expected = [frame.data for frame in want.frames]
    for index, (a, b) in enumerate(zip(sent, expected)):
        assert a == b, f"order {index}: gateware {a.hex()} != model {b.hex()}"
    assert len(sent) == len(expected), f"gateware sent {len(sent)} orders, model {len(expected)}"


def ones_complement(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def check_with_independent_decoder(frame: bytes):
    """The frame as dpkt sees it, checksums recomputed here; the OUCH Enter Order's fields."""
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.type == dpkt.ethernet.ETH_TYPE_IP
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP) and ip.p == dpkt.ip.IP_PROTO_TCP and ip.hl == 5
    assert ip.len == len(frame) - 14
    assert ones_complement(frame[14:34]) == 0xFFFF, "IPv4 header checksum"
    tcp = ip.data
    segment = frame[34:]
    pseudo = frame[26:34] + bytes([0, 6]) + len(segment).to_bytes(2, "big")
    assert ones_complement(pseudo + segment) == 0xFFFF, "TCP checksum"
    assert tcp.flags == dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    payload = bytes(tcp.data)
    length, packet_type = struct.unpack("!HB", payload[:3])
    assert (length, packet_type) == (50, ord("U")) and len(payload) == 52
    ouch = payload[3:]
    assert ouch[0:1] == b"O" and ouch[15:16] in (b"B", b"S")
    assert struct.unpack("!I", ouch[32:36])[0] == 0  # immediate-or-cancel
    return {"seq": tcp.seq, "token": ouch[1:15].decode(), "side": ouch[15:16].decode(),
            "shares": struct.unpack("!I", ouch[16:20])[0], "stock": ouch[20:28].decode().rstrip(),
            "price": struct.unpack("!I", ouch[28:32])[0]}


# --- a large market -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def market_frames():
    return snipe_frames(2026, 100_000)


def test_market_makes_stale_quotes(market_frames):
    """The market is what the tests need: many orders, both sides, every trigger message type."""
    strategy = strategy_with()
    directory = stock_directory(market_frames)
    resolve_instruments(strategy, directory)
    device = ModelPipelineDevice(strategy, directory=directory)
    device.run(market_frames)
    model = device.model
    assert model.rx.counters["msgs"] >= 100_000
    assert len(model.orders) >= 200
    assert {order.request.side.name for order in model.orders} == {"BID", "ASK"}


def test_market_matches_golden_model(simulator_long, market_frames):
    strategy = strategy_with()
    got, want, model = run_both(simulator_long, strategy, market_frames, idle_probability=0.05, seed=7)
    assert_same_orders(got, want)
    # The only aborted frames are the fast path's that the exact path did not confirm; on this market
    # there are none (an abort is safe, but here it would mean a wrong prediction or a quiet count too
    # short for what it waits for: with the counts shortened, frames are aborted).
    assert sum(frame.aborted for frame in got.frames) == got.fast_path["fast_aborted"]
    assert got.fast_path["fast_aborted"] == 0
    assert got.fast_path["fast_confirmed"] > 0
    assert min(actionable_latencies(market_frames, got, model.orders)) == FAST_PATH_LATENCY
    assert got.counters == want.counters
    assert got.state == want.state
    decoded = [check_with_independent_decoder(frame.data) for frame in got.frames]
    assert len({order["token"] for order in decoded}) == len(decoded), "tokens are unique"
    for order, model_order in zip(decoded, model.orders):
        request = model_order.request
        assert (order["price"], order["shares"]) == (request.price, request.shares)
        assert order["stock"] == "TGT"

    # The latency probes of the last orders agree with what the testbench saw: the first beat's
    # cycle, and the cycle the triggering message's last byte was at rx.
    sent = [frame for frame in got.frames if not frame.aborted]
    for order, frame in zip(model.orders[-PROBE_DEPTH:], sent[-PROBE_DEPTH:]):
        trigger_cycle, tx_cycle = got.probes[order.token_counter % PROBE_DEPTH]
        assert tx_cycle == frame.cycle
        spans = {seq: start for seq, _type, start in message_spans(market_frames[order.source_frame].data)}
        length = int.from_bytes(market_frames[order.source_frame].data[spans[order.trigger_seq] - 2:
                                                                     spans[order.trigger_seq]], "big")
        last_byte = spans[order.trigger_seq] + length - 1
        assert trigger_cycle == got.beat_cycles[order.source_frame][last_byte // 8]


@pytest.mark.xfail(strict=True, reason="not met yet on every order: the fast path sends most orders in 4 "
                                       "cycles, the exact path the others in 17 or more (docs/pipeline.md, "
                                       "'Latency'); this fails loudly (XPASS) once the target is reached")
def test_actionable_latency_target(simulator_long):
    """The issue's bound, on every order: at most 4 cycles from the trigger field's last byte at rx."""
    frames = snipe_frames(21, 6_000)
    got, want, model = run_both(simulator_long, strategy_with(), frames, idle_probability=0.05, seed=2)
    assert_same_orders(got, want)
    latencies = actionable_latencies(frames, got, model.orders)
    assert max(latencies) <= LATENCY_TARGET, f"actionable latency {min(latencies)}..{max(latencies)} cycles"


def test_small_market_matches_golden_model(device):
    """A shorter market, so that the second simulator and the board run the whole comparison in
    `make test` too."""
    frames = snipe_frames(17, 3_000)
    got, want, _model = run_both(device, strategy_with(), frames, idle_probability=0.2, seed=5)
    assert len(want.frames) >= 20
    assert_same_orders(got, want)
    assert got.counters == want.counters and got.state == want.state
    for frame in got.frames:
        check_with_independent_decoder(frame.data)


@pytest.mark.board
@pytest.mark.xdist_group("simulated_board")
def test_a_board_serves_run_after_run(board):
    """Each run restarts the board: a second market on the same board (its sequence numbers from 1
    again, its orders in a book the first run left full) equals the golden model's run from scratch."""
    for seed, messages in ((17, 1_500), (18, 1_500)):
        frames = snipe_frames(seed, messages)
        got, want, _model = run_both(board, strategy_with(), frames, idle_probability=0.2,
                                     seed=5)
        assert len(want.frames) >= 5
        assert_same_orders(got, want)
        assert got.counters == want.counters and got.state == want.state


# --- risk: every reason -------------------------------------------------------------------

RISK_CASES = {
    RejectReason.KILL: {"kill": True},
    RejectReason.MAX_QTY: {"max_qty": 99},
    RejectReason.MAX_NOTIONAL: {"max_notional": "500"},
    RejectReason.COLLAR: {"collar": "0.02"},
    RejectReason.POSITION: {"position": 950, "max_long": 1000, "max_short": 0},
    RejectReason.OUTSTANDING: {"max_outstanding": 5},
    RejectReason.RATE: {"rate_burst": 3},
}


@pytest.mark.parametrize("reason", RISK_CASES, ids=lambda reason: reason.name.lower())
def test_risk_rejections(device_long, reason):
    frames = snipe_frames(11, 2_000)
    got, want, _model = run_both(device_long, strategy_with(risk=RISK_CASES[reason]), frames)
    assert want.counters[f"reject_{reason.name.lower()}"] > 0, "the case exercises its reason"
    assert_same_orders(got, want)
    assert got.counters == want.counters


def test_busy_when_tx_is_slow(simulator_long):
    """The order queue fills when tx is rarely ready: rejected as busy, the rest still exact frames."""
    frames = snipe_frames(12, 6_000)
    strategy = strategy_with(strategy={"edge": "0"})
    got, want, _model = run_both(simulator_long, strategy, frames, tx_ready_probability=0.02)
    assert got.counters["reject_busy"] > 0
    for frame in got.frames:
        check_with_independent_decoder(frame.data)
    sent = [frame.data for frame in got.frames if not frame.aborted]
    expected = [frame.data for frame in want.frames]
    assert len(sent) + got.counters["reject_busy"] == len(expected)


# --- bad input never trades ----------------------------------------------------------------

def test_bad_input_never_produces_an_order(device_long):
    frames = snipe_frames(13, 8_000, corrupt_probability=0.1, gap_probability=0.01,
                          duplicate_probability=0.01, reorder_probability=0.01)
    got, want, _model = run_both(device_long, strategy_with(), frames, idle_probability=0.1, seed=3)
    assert_same_orders(got, want)
    assert got.counters == want.counters
    assert want.counters["packets_bad"] > 0 and want.counters["book_gap"] > 0


def test_amaranth_backend_is_refused_with_a_clear_error():
    with pytest.raises(DeviceError, match="no Amaranth-simulator backend"):
        open_pipeline_device("amaranth", strategy_with())
