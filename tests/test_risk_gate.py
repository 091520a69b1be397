"""RiskGate alone in the Amaranth simulator against RiskModel, request by request, bit for bit.

The model alone first: every rule of docs/pipeline.md's risk table, its
order, the boundaries, outstanding and the token bucket (cycles included).

Then the gateware. A test is a list of cycles (`Step`): the request at
``requests`` (if any), a write of every limit (with the ``rate_burst_write``
strobe), a position write, an ``orders_done`` amount, ``orders.ready``. The
expected run replays them into RiskModel in the gate's documented order
(hdl/risk_gate.py): in cycle c, first the writes of c, then the request of
c, given the cycle c so that the bucket refills as the gateware's does. A
request's event must come ``DECISION_LATENCY`` cycles after it, with
``outstanding`` and ``tokens`` equal to the model's just before its check.
The queue in front of ``orders`` is tracked here, independently of the
gateware: a request the model accepts while the tracked queue holds
``ORDER_QUEUE_DEPTH`` orders must be rejected busy (and is not given to the
model), ``orders.valid`` must be high exactly when the tracked queue is not
empty, and the orders that leave must be the accepted requests, in order,
bit for bit. Limits (other than the bucket's) are written only while no
request is inside the gate, as the gateware's docstring asks.
"""

import copy
import random
from dataclasses import dataclass, replace

import pytest
from amaranth.sim import Simulator
from stage_harness import layout_fields, pack_fields

from tick2trade.hdl.order_types import OrderRequest as OrderRequestLayout
from tick2trade.hdl.risk_gate import (DECISION_LATENCY, LIMITS_LATENCY, ORDER_QUEUE_DEPTH, RISK_LATENCY,
                                      RiskEvents, RiskGate)
from tick2trade.host.order_types import OrderRequest, RejectReason, Side
from tick2trade.host.risk_model import COUNTER_NAMES, REASON_COUNTER, RiskLimits, RiskModel

WORD = 1 << 32
BUSY = RejectReason.BUSY
#: Limits that let every ordinary order through.
OPEN = RiskLimits(max_qty=WORD - 1, max_notional=(1 << 64) - 1, collar=WORD - 1, max_long=WORD - 1,
                  max_short=WORD - 1, max_outstanding=WORD - 1, rate_burst=WORD - 1)


def order(side=Side.BID, price=100, shares=10, fair_value=None, fair_valid=True, slot=0):
    return OrderRequest(slot=slot, side=side, price=price, shares=shares,
                        fair_value=price if fair_value is None else fair_value, fair_valid=fair_valid)


# --- the model alone, from the doc's table ---------------------------------------------


@pytest.mark.parametrize("limits, request_, reason", [
    (replace(OPEN, kill=True), order(), RejectReason.KILL),
    (replace(OPEN, kill=True, max_qty=0), order(), RejectReason.KILL),          # kill comes first
    (replace(OPEN, max_qty=10), order(shares=10), None),
    (replace(OPEN, max_qty=10), order(shares=11), RejectReason.MAX_QTY),
    (replace(OPEN, max_qty=10, max_notional=0), order(shares=11), RejectReason.MAX_QTY),
    (replace(OPEN, max_notional=1000), order(price=100, shares=10), None),
    (replace(OPEN, max_notional=999), order(price=100, shares=10), RejectReason.MAX_NOTIONAL),
    (replace(OPEN, max_notional=(WORD - 1) ** 2), order(price=WORD - 1, shares=WORD - 1), None),
    (replace(OPEN, max_notional=(WORD - 1) ** 2 - 1), order(price=WORD - 1, shares=WORD - 1),
     RejectReason.MAX_NOTIONAL),
    (replace(OPEN, max_notional=0), order(price=0, shares=5), None),
    (replace(OPEN, max_notional=0, collar=0), order(fair_valid=False), RejectReason.MAX_NOTIONAL),
    (replace(OPEN, collar=5), order(price=100, fair_value=105), None),
    (replace(OPEN, collar=5), order(price=100, fair_value=106), RejectReason.COLLAR),
    (replace(OPEN, collar=5), order(price=106, fair_value=100), RejectReason.COLLAR),
    (replace(OPEN, collar=5), order(price=105, fair_value=100), None),
    (OPEN, order(fair_valid=False), RejectReason.COLLAR),
    (replace(OPEN, collar=0, max_long=0), order(price=7, fair_value=8), RejectReason.COLLAR),
    (replace(OPEN, position=-20, max_long=10), order(side=Side.BID, shares=30), None),
    (replace(OPEN, position=-20, max_long=10), order(side=Side.BID, shares=31), RejectReason.POSITION),
    (replace(OPEN, position=-20, max_short=30), order(side=Side.ASK, shares=10), None),
    (replace(OPEN, position=-20, max_short=30), order(side=Side.ASK, shares=11), RejectReason.POSITION),
    (replace(OPEN, position=5, max_long=0), order(side=Side.ASK, shares=5), None),
    (replace(OPEN, position=-(1 << 31), max_short=WORD - 1), order(side=Side.ASK, shares=WORD - 1),
     RejectReason.POSITION),
    (replace(OPEN, position=(1 << 31) - 1, max_long=WORD - 1), order(side=Side.BID, shares=WORD - 1),
     RejectReason.POSITION),
    (replace(OPEN, position=(1 << 31) - 1, max_long=WORD - 1), order(side=Side.BID, shares=(1 << 31)), None),
    (replace(OPEN, max_outstanding=0), order(), RejectReason.OUTSTANDING),
    (replace(OPEN, max_outstanding=0, position=0, max_long=0), order(), RejectReason.POSITION),
    (replace(OPEN, rate_burst=0), order(), RejectReason.RATE),
    (replace(OPEN, rate_burst=0, max_outstanding=0), order(), RejectReason.OUTSTANDING),
    (RiskLimits(), order(), RejectReason.MAX_QTY),                              # reset: nothing passes
    (RiskLimits(max_qty=10), order(), RejectReason.MAX_NOTIONAL),
])
def test_model_rules(limits, request_, reason):
    model = RiskModel(limits)
    assert model.check(request_) == reason
    assert model.counters == {name: int(name == (REASON_COUNTER[reason] if reason else "orders_accepted"))
                              for name in COUNTER_NAMES}
    assert model.outstanding == (reason is None)
    assert model.tokens == limits.rate_burst - (reason is None)


def test_model_outstanding():
    model = RiskModel(replace(OPEN, max_outstanding=2))
    assert [model.check(order()) for _ in range(3)] == [None, None, RejectReason.OUTSTANDING]
    model.orders_done(1)
    assert model.outstanding == 1
    assert model.check(order()) is None
    model.orders_done(5)  # saturates at 0
    assert model.outstanding == 0
    assert [model.check(order()) for _ in range(3)] == [None, None, RejectReason.OUTSTANDING]
    assert model.counters["orders_accepted"] == 5 and model.counters["reject_outstanding"] == 2
    model.orders_done(0)
    assert model.outstanding == 2
    with pytest.raises(ValueError):
        model.orders_done(WORD)


def test_model_bucket_without_cycles():
    model = RiskModel(replace(OPEN, rate_burst=2, rate_period=1))
    assert [model.check(order()) for _ in range(3)] == [None, None, RejectReason.RATE]
    assert model.tokens == 0
    model.set_limits(replace(OPEN, rate_burst=3, rate_period=1))  # writing rate_burst refills
    assert model.tokens == 3
    model.set_position(-7)  # not a write of rate_burst
    assert model.tokens == 3 and model.limits.position == -7


def test_model_bucket_cycles():
    # period 4: refills at the ends of cycles 0, 4, 8, ... (the timer is at 0 at reset)
    model = RiskModel(replace(OPEN, rate_burst=2, rate_period=4))
    assert model.check(order(), cycle=0) is None
    assert model.check(order(), cycle=1) is None                # the refill at the end of 0
    assert model.check(order(), cycle=2) is None
    assert model.check(order(), cycle=4) == RejectReason.RATE   # the refill at the end of 4 not yet
    assert model.check(order(), cycle=5) is None                # ... now it is there
    assert model.check(order(), cycle=12) is None               # the refill at the end of 8
    assert model.tokens == 0                                     # (the end of 12's comes after)
    assert model.check(order(), cycle=13) is None
    assert model.check(order(), cycle=100) is None               # capped at the burst (2)
    assert model.check(order(), cycle=100) is None
    assert model.check(order(), cycle=100) == RejectReason.RATE
    # a take in the cycle of a refill with the bucket full: the take first, so the refill counts
    model = RiskModel(replace(OPEN, rate_burst=1, rate_period=4))
    assert model.check(order(), cycle=4) is None
    assert model.check(order(), cycle=5) is None
    # a new period is taken when the timer restarts
    model = RiskModel(replace(OPEN, rate_burst=1, rate_period=10))
    assert model.check(order(), cycle=0) is None                # next refills: ends of 0, 10
    model.set_limits(replace(OPEN, rate_burst=1, rate_period=2), cycle=3)
    assert model.tokens == 1                                     # writing rate_burst refills
    assert model.check(order(), cycle=3) is None
    assert model.check(order(), cycle=10) == RejectReason.RATE
    assert model.check(order(), cycle=11) is None               # end of 10, then every 2 cycles
    assert model.check(order(), cycle=12) == RejectReason.RATE
    assert model.check(order(), cycle=13) is None
    # period 0: never a refill; a period set later starts at the end of the cycle it is set in
    model = RiskModel(replace(OPEN, rate_burst=1, rate_period=0))
    assert model.check(order(), cycle=0) is None
    model.set_limits(replace(OPEN, rate_burst=1, rate_period=3), cycle=50)
    assert model.check(order(), cycle=50) is None
    assert model.check(order(), cycle=51) is None               # end of 50
    assert model.check(order(), cycle=53) == RejectReason.RATE
    assert model.check(order(), cycle=54) is None               # end of 53
    with pytest.raises(ValueError):
        model.check(order(), cycle=52)


def test_model_limits_checked():
    for change in [dict(max_qty=WORD), dict(max_notional=1 << 64), dict(position=1 << 31),
                   dict(position=-(1 << 31) - 1), dict(rate_period=-1), dict(kill=2)]:
        with pytest.raises(ValueError):
            replace(OPEN, **change)
    with pytest.raises(ValueError):
        RiskModel(OPEN).check(order(price=WORD))


# --- the gateware against the model ------------------------------------------------------


@dataclass
class Step:
    """What the testbench does in one cycle."""
    request: OrderRequest | None = None
    stamp: int = 0                    # the request's Stamp, packed
    limits: RiskLimits | None = None  # every limit written, with the rate_burst_write strobe
    position: int | None = None       # the position register written
    done: int = 0                     # orders_done amount
    ready: bool = True                # orders.ready


_LIMIT_PORTS = ["kill", "max_qty", "max_notional", "collar", "position", "max_long", "max_short",
                "max_outstanding", "rate_burst", "rate_period"]


def pack_request(request: OrderRequest, stamp: int) -> int:
    return pack_fields(OrderRequestLayout, slot=request.slot, side=request.side.value, price=request.price,
                       shares=request.shares, fair_value=request.fair_value,
                       fair_valid=int(request.fair_valid), stamp=stamp)


def run_gate(steps, drain=DECISION_LATENCY + ORDER_QUEUE_DEPTH + 2):
    """Per cycle: (events, orders.valid, orders.payload, outstanding, tokens), inputs set as ``steps`` say."""
    dut = RiskGate()
    steps = steps + [Step()] * drain
    samples = []

    async def bench(ctx):
        for step in steps:
            ctx.set(dut.requests.valid, step.request is not None)
            if step.request is not None:
                ctx.set(dut.requests.p.as_value(), pack_request(step.request, step.stamp))
            if step.limits is not None:
                for name in _LIMIT_PORTS:
                    ctx.set(getattr(dut, name), int(getattr(step.limits, name)))
            if step.position is not None:
                ctx.set(dut.position, step.position)
            ctx.set(dut.rate_burst_write, step.limits is not None)
            ctx.set(dut.orders_done, step.done)
            ctx.set(dut.orders.ready, step.ready)
            samples.append((ctx.get(dut.events.as_value()), ctx.get(dut.orders.valid), ctx.get(dut.orders.p.as_value()),
                            ctx.get(dut.outstanding), ctx.get(dut.tokens)))
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return steps, samples


def compare_with_model(steps, samples):
    """Check the gateware's run against the model's replay; the outcome of every request, in order."""
    model = RiskModel()  # the gateware's reset state: every limit 0, no token
    mismatches = []
    outcomes = []
    queue = []           # the tracked order queue: packed accepted requests not yet read
    expected_orders, got_orders = [], []
    for cycle, (events, valid, payload, outstanding, tokens) in enumerate(samples):
        fired = [name for name, bit in layout_fields(RiskEvents, events).items() if bit]
        arrival = cycle - DECISION_LATENCY
        step = steps[arrival] if arrival >= 0 else Step()
        if step.limits is not None:
            model.set_limits(step.limits, cycle=arrival)
        if step.position is not None:
            model.set_position(step.position)
        model.orders_done(step.done)
        write = False
        if step.request is None:
            if fired:
                mismatches.append(f"cycle {cycle}: no request at {arrival}, events {fired}")
        else:
            trial = copy.deepcopy(model)
            reason = trial.check(step.request, cycle=arrival)
            trial_before = (trial.outstanding - (reason is None), trial.tokens + (reason is None))
            if reason is None and len(queue) == ORDER_QUEUE_DEPTH:
                reason = BUSY  # the model is not told: it never rejects busy
            else:
                model = trial
            expected_event = "orders_accepted" if reason is None else REASON_COUNTER[reason]
            outcomes.append(reason)
            where = f"request at cycle {arrival} {step.request}"
            if fired != [expected_event]:
                mismatches.append(f"{where}: events {fired} at cycle {cycle}, model {expected_event}")
            if (outstanding, tokens) != trial_before:
                mismatches.append(f"{where}: outstanding, tokens {(outstanding, tokens)} at its decision, "
                                  f"model {trial_before}")
            if reason is None:
                write = True
                expected_orders.append(pack_request(step.request, step.stamp))
        if valid != bool(queue):
            mismatches.append(f"cycle {cycle}: orders.valid {valid}, tracked queue holds {len(queue)}")
        ready = steps[cycle].ready
        if valid and ready:
            got_orders.append(payload)
        if queue and ready:
            queue.pop(0)
        if write:
            queue.append(expected_orders[-1])
    assert not mismatches, "\n".join(mismatches[:10])
    assert got_orders == expected_orders
    assert not queue
    return outcomes


def random_limits(rng):
    big = rng.random() < 0.3
    return RiskLimits(
        kill=rng.random() < 0.08,
        max_qty=rng.choice([rng.randrange(1, 3000), rng.randrange(WORD), WORD - 1, 0 if rng.random() < 0.2 else 50]),
        max_notional=rng.choice([rng.randrange(1 << 64), (1 << 64) - 1, rng.randrange(10 ** 5, 10 ** 9),
                                 rng.randrange(WORD - 10, WORD + 10)]),
        collar=rng.choice([rng.randrange(500), 0, WORD - 1, rng.randrange(WORD)]),
        position=rng.choice([rng.randrange(-2000, 2000), rng.randrange(-(1 << 31), 1 << 31), -(1 << 31),
                             (1 << 31) - 1]),
        max_long=rng.choice([rng.randrange(3000), rng.randrange(WORD), 0, WORD - 1]),
        max_short=rng.choice([rng.randrange(3000), rng.randrange(WORD), 0, WORD - 1]),
        max_outstanding=rng.randrange(12) if not big else rng.choice([WORD - 1, rng.randrange(WORD)]),
        rate_burst=rng.randrange(6) if not big else rng.choice([WORD - 1, rng.randrange(20)]),
        rate_period=rng.choice([0, 1, 2, rng.randrange(3, 40), rng.randrange(WORD)]),
    )


def random_request(rng, limits):
    """A request near one boundary of ``limits`` (or anywhere), so that every check decides some."""
    side = rng.choice([Side.BID, Side.ASK])
    aim = rng.choice(["qty", "notional", "collar", "position", "anywhere", "inside"])
    shares = rng.randrange(min(limits.max_qty, 5000) + 1)
    price = rng.randrange(1, 200_000)
    if aim == "anywhere":
        shares, price = rng.randrange(WORD), rng.randrange(WORD)
    elif aim == "qty" and limits.max_qty < WORD - 1:
        shares = limits.max_qty + rng.randrange(2)
    elif aim == "position":
        room = limits.max_long - limits.position if side is Side.BID else limits.position + limits.max_short
        shares = min(max(room + rng.randrange(-1, 2), 0), WORD - 1)
    if aim == "notional" and shares:
        price = min(limits.max_notional // shares + rng.randrange(-1, 2), WORD - 1)
        price = max(price, 0)
    elif aim == "inside" and shares:
        price = min(price, limits.max_notional // shares)
    reach = limits.collar + rng.randrange(2) if aim == "collar" else rng.randrange(min(limits.collar, 1000) + 1)
    fair = min(max(price + rng.choice([-1, 1]) * reach, 0), WORD - 1)
    return OrderRequest(slot=rng.randrange(256), side=side, price=price, shares=shares, fair_value=fair,
                        fair_valid=rng.random() < 0.95)


def random_steps(rng, bursts, requests_per_burst, *, ready_low=0.0):
    """Bursts of requests (some back to back), each after a write of fresh random limits."""
    steps = []
    stamp = 0
    for _ in range(bursts):
        limits = random_limits(rng)
        steps += [Step() for _ in range(DECISION_LATENCY + 1)]  # nothing inside the gate at the write
        steps.append(Step(limits=limits))
        steps += [Step() for _ in range(LIMITS_LATENCY - 1)]
        if rng.random() < 0.3:
            position = rng.randrange(-3000, 3000)
            limits = replace(limits, position=position)
            steps += [Step() for _ in range(DECISION_LATENCY + 1)] + [Step(position=position)]
            steps += [Step() for _ in range(LIMITS_LATENCY - 1)]
        for _ in range(requests_per_burst):
            stamp += 1
            steps.append(Step(request=random_request(rng, limits), stamp=stamp << 8 | rng.randrange(256)))
            steps += [Step() for _ in range(rng.choice([0, 0, 0, 1, 2, rng.randrange(3, 30)]))]
    for step in steps:
        if rng.random() < 0.08:
            step.done = rng.choice([1, 1, 2, 3, rng.randrange(WORD)])
    low_from = None
    for index, step in enumerate(steps):
        if low_from is None and rng.random() < ready_low:
            low_from = index
        if low_from is not None:
            step.ready = False
            if index - low_from > 40 and rng.random() < 0.1:
                low_from = None
    return steps


def test_gate_against_model_random():
    rng = random.Random("risk_gate/1")
    outcomes = compare_with_model(*run_gate(random_steps(rng, 150, 40, ready_low=0.02)))
    counts = {reason: outcomes.count(reason) for reason in [*RejectReason, None]}
    assert all(count >= 20 for count in counts.values()), counts


def test_gate_busy():
    """The queue filled with ``orders.ready`` low: busy exactly when the tracked queue is full."""
    rng = random.Random("risk_gate/busy")
    steps = [Step(limits=OPEN)] + [Step() for _ in range(LIMITS_LATENCY)]
    for burst in range(12):
        low = rng.randrange(3, 40)
        for index in range(rng.randrange(5, 25)):
            steps.append(Step(request=order(side=rng.choice(list(Side)), price=rng.randrange(1, WORD),
                                            shares=rng.randrange(1, WORD)),
                              stamp=burst << 16 | index, ready=index >= low,
                              done=rng.choice([0, 0, 0, 1])))
            steps += [Step(ready=index >= low) for _ in range(rng.choice([0, 0, 1, 3]))]
        steps += [Step() for _ in range(rng.randrange(ORDER_QUEUE_DEPTH))]  # drained, or not quite
    outcomes = compare_with_model(*run_gate(steps))
    assert outcomes.count(BUSY) >= 30 and outcomes.count(None) >= 100


def test_gate_back_to_back_limits():
    """Back-to-back requests against outstanding and rate limits of 1..3, with orders_done between."""
    steps = []
    for limit in (1, 2, 3):
        limits = replace(OPEN, max_outstanding=limit, rate_burst=limit + 1, rate_period=5)
        steps += [Step() for _ in range(RISK_LATENCY)] + [Step(limits=limits)]
        steps += [Step(request=order(shares=n + 1), stamp=n) for n in range(6)]
        steps += [Step(done=1), Step(request=order()), Step(request=order(), done=2), Step(request=order()),
                  Step(request=order()), Step(done=WORD - 1)] + [Step(request=order()) for _ in range(12)]
    outcomes = compare_with_model(*run_gate(steps))
    assert RejectReason.OUTSTANDING in outcomes and RejectReason.RATE in outcomes


def test_gate_boundaries():
    """The doc's boundaries, each request in the cycle after the one before (expected from the spec)."""
    top = WORD - 1
    cases = [
        (replace(OPEN, max_qty=10), order(shares=10), None),
        (replace(OPEN, max_qty=10), order(shares=11), RejectReason.MAX_QTY),
        (replace(OPEN, max_qty=top), order(shares=top), None),
        (replace(OPEN, kill=True), order(), RejectReason.KILL),
        (replace(OPEN, max_notional=top * top), order(price=top, shares=top), None),
        (replace(OPEN, max_notional=top * top - 1), order(price=top, shares=top), RejectReason.MAX_NOTIONAL),
        (replace(OPEN, max_notional=(1 << 64) - 1), order(price=top, shares=top), None),
        (replace(OPEN, max_notional=(1 << 32)), order(price=1 << 16, shares=1 << 16), None),
        (replace(OPEN, max_notional=(1 << 32) - 1), order(price=1 << 16, shares=1 << 16),
         RejectReason.MAX_NOTIONAL),
        (replace(OPEN, max_notional=(1 << 48) - (1 << 16)), order(price=(1 << 32) - 1, shares=1 << 16), None),
        (replace(OPEN, max_notional=(1 << 48) - (1 << 16) - 1), order(price=(1 << 32) - 1, shares=1 << 16),
         RejectReason.MAX_NOTIONAL),
        (replace(OPEN, max_notional=0xFFFF_0000), order(price=0xFFFF, shares=0x10000), None),
        (replace(OPEN, max_notional=0xFFFE_FFFF), order(price=0xFFFF, shares=0x10000), RejectReason.MAX_NOTIONAL),
        (replace(OPEN, collar=0), order(price=5, fair_value=5), None),
        (replace(OPEN, collar=0), order(price=5, fair_value=6), RejectReason.COLLAR),
        (replace(OPEN, collar=0), order(price=6, fair_value=5), RejectReason.COLLAR),
        (replace(OPEN, collar=top), order(price=0, fair_value=top), None),
        (replace(OPEN, collar=top - 1), order(price=top, fair_value=0), RejectReason.COLLAR),
        (OPEN, order(fair_valid=False), RejectReason.COLLAR),
        (replace(OPEN, position=-100, max_long=50), order(side=Side.BID, shares=150), None),
        (replace(OPEN, position=-100, max_long=50), order(side=Side.BID, shares=151), RejectReason.POSITION),
        (replace(OPEN, position=-100, max_short=150), order(side=Side.ASK, shares=50), None),
        (replace(OPEN, position=-100, max_short=150), order(side=Side.ASK, shares=51), RejectReason.POSITION),
        (replace(OPEN, position=-100, max_short=50), order(side=Side.ASK, shares=0), RejectReason.POSITION),
        (replace(OPEN, position=(1 << 31) - 1, max_long=top), order(side=Side.BID, shares=1 << 31), None),
        (replace(OPEN, position=(1 << 31) - 1, max_long=top), order(side=Side.BID, shares=(1 << 31) + 1),
         RejectReason.POSITION),
        (replace(OPEN, position=-(1 << 31), max_short=top), order(side=Side.ASK, shares=(1 << 31) - 1), None),
        (replace(OPEN, position=-(1 << 31), max_short=top), order(side=Side.ASK, shares=1 << 31),
         RejectReason.POSITION),
        (replace(OPEN, position=-(1 << 31), max_long=0), order(side=Side.BID, shares=1 << 31), None),
        (replace(OPEN, max_outstanding=0), order(), RejectReason.OUTSTANDING),
        (replace(OPEN, rate_burst=0), order(), RejectReason.RATE),
        (RiskLimits(), order(), RejectReason.MAX_QTY),
    ]
    steps = []
    for limits, request, _ in cases:
        steps += [Step() for _ in range(RISK_LATENCY)] + [Step(limits=limits)]
        steps += [Step() for _ in range(LIMITS_LATENCY - 1)] + [Step(request=request)]
    assert compare_with_model(*run_gate(steps)) == [reason for _, _, reason in cases]


def test_gate_latency_and_bucket_timing():
    """An order into an empty queue is valid RISK_LATENCY cycles after its request; refills on time."""
    limits = replace(OPEN, rate_burst=1, rate_period=7)
    steps = [Step(limits=limits)] + [Step() for _ in range(LIMITS_LATENCY - 1)]
    start = len(steps)
    steps += [Step(request=order(), stamp=5)] + [Step(request=order()) for _ in range(20)]
    steps, samples = run_gate(steps)
    valid_cycles = [cycle for cycle, sample in enumerate(samples) if sample[1]]
    # the written token at once, then one every 7 cycles (refills at the ends of 0, 7, 14, 21: the
    # first with the bucket full)
    accepted = [cycle - RISK_LATENCY for cycle in valid_cycles]
    assert accepted == [start, 8, 15]
    assert compare_with_model(steps, samples).count(None) == len(accepted)
