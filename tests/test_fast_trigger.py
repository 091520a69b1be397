# amaranth: UnusedElaboratable=no
"""FastTrigger (with the risk gate's forecast) in the Amaranth simulator against the exact path's golden models.

Each case sets a random quiet state (the lead's and the target's quotes,
the strategy and risk registers), then one lead A or F. What the fast path
must send is what the exact path would: the book's new top (the add taken
by hand: a better price becomes the best level), ``TriggerModel`` evaluated
on the state before (its steady state; cases where that state itself would
fire are not quiet and are drawn again; one lead side may be empty or
unknown) and after the message, each request
checked by a fresh ``RiskModel``. Where the exact path sends an order for a
lead add the fast trigger must send the same request one cycle after the
message (the fair value too, and the message's stamp; the first, where it
sends two); where it sends none,
nothing; on the target's adds (which it leaves to the exact path), nothing. The
prices are drawn at random and at the boundaries of the snipe's conditions
and of the collar; the limits at random and at the boundaries of the likely
order's quantity, notional and position.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from stage_harness import layout_fields, pack_fields

from tick2trade.hdl.fast_trigger import FAST_LATENCY, FAST_SETTLE_CYCLES, FastTrigger
from tick2trade.hdl.order_types import OrderRequest as RequestLayout
from tick2trade.hdl.order_types import Stamp
from tick2trade.hdl.risk_gate import FORECAST_LATENCY, RiskGate
from tick2trade.hdl.trigger import StrategyKind
from tick2trade.host.order_types import InstrumentTop, Quote
from tick2trade.host.risk_model import RiskLimits, RiskModel
from tick2trade.host.trigger_model import Strategy, StrategyConfig, TriggerModel

LEAD_LOCATE, TARGET_LOCATE = 7, 9
RISK_PORTS = ("kill", "max_qty", "max_notional", "collar", "position", "max_long", "max_short", "max_outstanding")


class FastPair(wiring.Component):
    """The fast trigger with the risk gate whose forecast it reads, as the Pipeline connects them."""

    def __init__(self):
        self.fast_trigger = FastTrigger(slots=2)
        self.risk_gate = RiskGate()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fast_trigger = fast = self.fast_trigger
        m.submodules.risk_gate = risk = self.risk_gate
        m.d.comb += [risk.forecast_orders.eq(fast.forecast_orders), fast.risk_ok.eq(risk.forecast),
                     fast.collar.eq(risk.collar)]
        return m


def random_case(rng):
    """(lead, target, strategy config, limits, message record) of a quiet state, or None if not quiet."""
    base = rng.choice([50, 10_000, 2 ** 31])
    spread = rng.randint(1, 40)
    lead_quotes = {"bid": Quote(valid=True, price=base, shares=rng.randint(1, 500)),
                   "ask": Quote(valid=True, price=base + spread, shares=rng.randint(1, 500))}
    if rng.random() < 0.3:  # one side empty (a quote being replaced), or with orders beyond the levels
        lead_quotes[rng.choice(["bid", "ask"])] = Quote(valid=False, unknown=rng.random() < 0.3)
    lead = InstrumentTop(**lead_quotes, unreliable=rng.random() < 0.05)
    fair = (2 * base + spread) // 2
    target = InstrumentTop(
        bid=Quote(valid=rng.random() < 0.95, price=fair + rng.randint(-20, 20), shares=rng.randint(1, 300)),
        ask=Quote(valid=rng.random() < 0.95, price=fair + rng.randint(-20, 20), shares=rng.randint(1, 300)),
        unreliable=rng.random() < 0.05)
    config = StrategyConfig(strategy=Strategy.SNIPE if rng.random() < 0.95 else Strategy.OFF,
                            lead_slot=0, target_slot=1, edge=rng.randint(0, 10), order_size=rng.randint(1, 200))
    shares = min(config.order_size, rng.choice([target.bid.shares, target.ask.shares]))
    price = rng.choice([target.bid.price, target.ask.price])
    limits = {"max_qty": 10_000, "max_notional": 2 ** 63, "collar": 1_000, "position": rng.randint(-300, 300),
              "max_long": 10_000, "max_short": 10_000, "max_outstanding": 5, "rate_burst": 3}
    if rng.random() < 0.6:  # one limit at a boundary of a likely order
        tight = rng.choice(["kill", "max_qty", "max_notional", "collar", "max_long", "max_short",
                            "max_outstanding", "rate_burst"])
        limits[tight] = {
            "kill": True, "max_qty": shares - rng.randint(0, 1), "max_notional": price * shares - rng.randint(0, 1),
            "collar": rng.randint(0, 30), "max_long": max(0, limits["position"] + shares - rng.randint(0, 1)),
            "max_short": max(0, shares - limits["position"] - rng.randint(0, 1)), "max_outstanding": 0,
            "rate_burst": 0,
        }[tight]
    limits = RiskLimits(**limits)
    side = rng.choice("BS")
    if rng.random() < 0.5:  # around a boundary: the buy or sell condition, or the collar
        if side == "B":
            quote_price, limit = target.ask.price, rng.choice([config.edge, limits.collar])
            price = 2 * (quote_price + limit + 1) - lead.ask.price + rng.randint(-1, 1)
        else:
            quote_price, limit = target.bid.price, rng.choice([config.edge, limits.collar])
            price = 2 * (quote_price - limit) - lead.bid.price + rng.randint(-2, 1)
    else:
        move = rng.randint(-5, 60)
        price = base + move if side == "B" else base + spread - move
    record = {"type": rng.choice("AAAF"), "locate": LEAD_LOCATE if rng.random() < 0.9 else TARGET_LOCATE,
              "side": side, "price": max(0, price), "shares": rng.randint(1, 100)}
    model = TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    if model.evaluate([lead, target]):
        return None  # this state fires by itself: not quiet
    return lead, target, config, limits, record, model


def exact_orders(lead, target, limits, record, model):
    """The requests the exact path sends after ``record``: the book's new top, the trigger, the risk gate."""
    slots = {LEAD_LOCATE: 0, TARGET_LOCATE: 1}
    tops = [lead, target]
    top = tops[slots[record["locate"]]]
    side = "ask" if record["side"] == "S" else "bid"
    quote = getattr(top, side)
    better = record["price"] > quote.price if side == "bid" else record["price"] < quote.price
    if not quote.valid:  # an empty side gets its first level; one with orders beyond the levels stays unknown
        new = quote if quote.unknown else Quote(valid=True, price=record["price"], shares=record["shares"])
    elif better:
        new = Quote(valid=True, price=record["price"], shares=record["shares"])
    elif record["price"] == quote.price:
        new = Quote(valid=True, price=quote.price, shares=quote.shares + record["shares"])
    else:
        new = quote
    tops[slots[record["locate"]]] = InstrumentTop(**{**vars(top), side: new})
    risk = RiskModel(limits)
    return [request for request in model.evaluate(tops, record) if risk.check(request) is None]


def run_cases(cases):
    dut = FastPair()
    fast, risk = dut.fast_trigger, dut.risk_gate
    results = []

    async def bench(ctx):
        for number, (lead, target, config, limits, record, _model) in enumerate(cases):
            ctx.set(fast.quiet, 0)
            for slot, top in enumerate((lead, target)):
                for side in ("bid", "ask"):
                    quote = getattr(top, side)
                    port = getattr(fast.tops[slot], side)
                    ctx.set(port.valid, quote.valid)
                    ctx.set(port.unknown, quote.unknown)
                    ctx.set(port.price, quote.price)
                    ctx.set(port.shares, quote.shares)
                ctx.set(fast.tops[slot].unreliable, top.unreliable)
            ctx.set(fast.locates[0], LEAD_LOCATE)
            ctx.set(fast.locates[1], TARGET_LOCATE)
            ctx.set(fast.strategy, StrategyKind.SNIPE if config.strategy == Strategy.SNIPE else StrategyKind.OFF)
            for name in ("lead_slot", "target_slot", "edge", "order_size"):
                ctx.set(getattr(fast, name), getattr(config, name))
            for name in RISK_PORTS:
                ctx.set(getattr(risk, name), int(getattr(limits, name)))
            ctx.set(risk.rate_burst, limits.rate_burst)
            ctx.set(risk.rate_burst_write, 1)
            await ctx.tick()
            ctx.set(risk.rate_burst_write, 0)
            await ctx.tick().repeat(FAST_SETTLE_CYCLES + FORECAST_LATENCY + 8)
            ctx.set(fast.quiet, 1)
            message = fast.messages.p
            ctx.set(message.type, ord(record["type"]))
            ctx.set(message.locate, record["locate"])
            add = message.fields.A  # as ItchDecode passes the body on (an F's fields are at the same places)
            ctx.set(add.side, ord(record["side"]))
            ctx.set(add.price, record["price"])
            ctx.set(add.shares, record["shares"])
            ctx.set(fast.stamp.as_value(), pack_fields(Stamp, cycle=number, packet=number & 0xFF))
            ctx.set(fast.messages.valid, 1)
            await ctx.tick()
            ctx.set(fast.messages.valid, 0)
            for _ in range(FAST_LATENCY - 1):
                await ctx.tick()
            if ctx.get(fast.fast.valid):
                fields = layout_fields(RequestLayout, ctx.get(fast.fast.p.as_value()))
                stamp = layout_fields(Stamp, fields["stamp"])
                results.append((fields["slot"], fields["side"], fields["price"], fields["shares"],
                                fields["fair_value"], fields["fair_valid"], stamp["cycle"]))
            else:
                results.append(None)
            await ctx.tick()
            if ctx.get(fast.fast.valid):
                results[-1] = "held"  # one request per message, for one cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def expected(case, number):
    """The exact path's order for a lead add; for the target's, none (the fast path leaves them to it)."""
    lead, target, config, limits, record, model = case
    orders = exact_orders(lead, target, limits, record, model)
    if record["locate"] != LEAD_LOCATE:
        return None
    if not orders:
        return None
    order = orders[0]  # a second (a sell after a buy, on a crossed target) goes the exact way
    return (order.slot, order.side.value, order.price, order.shares, order.fair_value, int(order.fair_valid), number)


@pytest.mark.parametrize("seed", range(3))
def test_lead_adds_match_the_exact_path(seed):
    rng = random.Random(f"fast_trigger/{seed}")
    cases = []
    while len(cases) < 300:
        case = random_case(rng)
        if case is not None:
            cases.append(case)
    wanted = [expected(case, number) for number, case in enumerate(cases)]
    got = run_cases(cases)
    assert sum(w is not None for w in wanted) >= 20, "the cases reach orders"
    for number, (want, have) in enumerate(zip(wanted, got)):
        assert have == want, f"case {number} {cases[number][4]}: fast {have}, exact path {want}"


@pytest.mark.parametrize("slots", [0, 257, "2"])
def test_bad_slots_are_refused(slots):
    with pytest.raises(ValueError, match="slots must be"):
        FastTrigger(slots=slots)
