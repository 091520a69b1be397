# amaranth: UnusedElaboratable=no
"""The strategies: TriggerModel against docs/pipeline.md, and Trigger in the Amaranth simulator against TriggerModel.

Directed tests check the model rule by rule (docs/pipeline.md, "Strategies
(Trigger)"): the snipe's buy and sell conditions at the exact boundary, the
fair value and its validity, the quote an order takes and its size, the
price threshold's sources and both directions, firing once, re-arming (on
the condition clearing, on another price, on ``rearm``, on a register
write), an invalid or unreliable target (no order, still armed), and both
sides firing on one state (buy first).

The gateware test drives ``Trigger`` with seeded random sequences of steps
and compares its requests, cycle by cycle, with the model's: new tops
states (lead and target quotes moving about the snipe's boundaries and the
threshold, quotes turning invalid, unknown or unreliable, prices near 0 and
2**32-1, edges 0 to 2**32-1), P trade messages of the watched locate and of
others (and other message types, which must be ignored), ``rearm`` strobes
and register writes switching strategy, source and everything else. Each
step's effect is held for at least two cycles (often longer), as the book
guarantees. Every request the model makes after a step must leave at
``requests`` exactly ``TRIGGER_LATENCY`` cycles after the step reached the
trigger's first step (a sell fired together with a buy one cycle later),
with the stamp of the state that fired it: the tops' stamp, or for a
trade-watching threshold the P message's if it came after the last tops
change. ``events.trigger_fired`` must strobe with every request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator
from stage_harness import layout_fields, pack_fields

from tick2trade.hdl.itch_decode import ItchMessage
from tick2trade.hdl.order_types import InstrumentTop as TopLayout
from tick2trade.hdl.order_types import OrderRequest as RequestLayout
from tick2trade.hdl.order_types import Stamp
from tick2trade.hdl.trigger import (HOST_WRITE_LATENCY, MAX_SLOTS, TRADE_DELAY, TRADE_LATENCY, TRIGGER_LATENCY,
                                    PriceThreshold, StaleQuoteSnipe, Trigger)
from tick2trade.host.synth import SynthWrapper
from tick2trade.host.order_types import InstrumentTop, OrderRequest, Quote, Side
from tick2trade.host.trigger_model import Strategy, StrategyConfig, TriggerModel, WatchSource

TOP = 2 ** 32 - 1
BUY, SELL = Side.BID, Side.ASK


def quote(price, shares=100, *, valid=True, unknown=False):
    return Quote(valid=valid, unknown=unknown, price=price, shares=shares)


def top(bid=None, ask=None, *, unreliable=False):
    return InstrumentTop(bid=bid or Quote(), ask=ask or Quote(), unreliable=unreliable)


def snipe(**fields):
    return StrategyConfig(strategy=Strategy.SNIPE, lead_slot=0, target_slot=1, order_size=50, **fields)


def threshold(**fields):
    fields = {"watch_slot": 0, "target_slot": 1, "order_size": 50, **fields}
    return StrategyConfig(strategy=Strategy.THRESHOLD, **fields)


def trade(locate, price):
    return {"type": "P", "locate": locate, "price": price}


BOOK_RECORD = {"type": "A", "locate": 1, "price": 0}
LEAD = top(quote(1000), quote(1010))  # fair value 1005


# --- the model against the contract -----------------------------------------------------------


def test_snipe_buy_boundary():
    for ask, fires in ((994, True), (995, False)):  # ask + edge < 1005 with edge 10
        model = TriggerModel(snipe(edge=10), locates=[1, 2])
        requests = model.evaluate([LEAD, top(quote(900), quote(ask, 70))], BOOK_RECORD)
        expected = [OrderRequest(1, BUY, ask, 50, fair_value=1005, fair_valid=True)] if fires else []
        assert requests == expected


def test_snipe_sell_boundary():
    for bid, fires in ((1016, True), (1015, False)):  # bid > 1005 + 10
        model = TriggerModel(snipe(edge=10), locates=[1, 2])
        requests = model.evaluate([LEAD, top(quote(bid, 30), quote(1100))], BOOK_RECORD)
        expected = [OrderRequest(1, SELL, bid, 30, fair_value=1005, fair_valid=True)] if fires else []
        assert requests == expected


def test_fair_value_rounds_down_and_needs_both_lead_quotes_reliable():
    model = TriggerModel(snipe(edge=0))
    odd_lead = top(quote(1000), quote(1011))  # mid 1005.5 -> 1005
    assert model.evaluate([odd_lead, top(ask=quote(1004))]) == [
        OrderRequest(1, BUY, 1004, 50, fair_value=1005, fair_valid=True)]
    model = TriggerModel(snipe(edge=0))
    assert model.evaluate([odd_lead, top(ask=quote(1005))]) == []
    for lead in (top(quote(1000)), top(ask=quote(1010)), top(quote(1000), quote(1010), unreliable=True),
                 top(quote(1000, valid=False), quote(1010))):
        model = TriggerModel(snipe(edge=0))
        assert model.evaluate([lead, top(quote(5000), quote(1))]) == []


def test_snipe_sums_do_not_wrap():
    lead = top(quote(TOP), quote(TOP))  # fair 2**32 - 1
    model = TriggerModel(snipe(edge=TOP))
    assert model.evaluate([lead, top(quote(TOP), quote(0))]) == []  # 0 + edge is not below fair
    model = TriggerModel(snipe(edge=TOP - 1))
    assert [r.side for r in model.evaluate([lead, top(quote(TOP), quote(0))])] == [BUY]
    model = TriggerModel(snipe(edge=1))  # fair + edge = 2**32 is above every bid
    assert model.evaluate([lead, top(quote(TOP), quote(TOP))]) == []


def test_order_size_limits_shares():
    model = TriggerModel(snipe(edge=0), locates=[1, 2])
    assert model.evaluate([LEAD, top(ask=quote(900, 20))])[0].shares == 20
    model = TriggerModel(replace(snipe(edge=0), order_size=0), locates=[1, 2])
    assert model.evaluate([LEAD, top(ask=quote(900, 20))])[0].shares == 0


def test_fires_once_per_stale_quote():
    model = TriggerModel(snipe(edge=0))
    stale = [LEAD, top(ask=quote(900))]
    assert len(model.evaluate(stale, BOOK_RECORD)) == 1
    assert model.evaluate(stale, BOOK_RECORD) == []
    assert model.evaluate([LEAD, top(ask=quote(900, shares=7))], BOOK_RECORD) == []  # same price


def test_rearms_when_condition_clears():
    model = TriggerModel(snipe(edge=0))
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1
    assert model.evaluate([LEAD, top(ask=quote(1005))]) == []  # not below fair: re-armed
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1  # the same price again fires


def test_rearms_on_another_price_and_fires_at_once():
    model = TriggerModel(snipe(edge=0))
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1
    assert [r.price for r in model.evaluate([LEAD, top(ask=quote(901))])] == [901]
    # the lead moving does not change the target's price: still disarmed
    assert model.evaluate([top(quote(1100), quote(1110)), top(ask=quote(901))]) == []


def test_rearms_when_the_quote_was_invalid_between():
    model = TriggerModel(snipe(edge=0))
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1
    assert model.evaluate([LEAD, top(ask=quote(900, valid=False))]) == []
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1


def test_rearm_strobe_and_config_write_rearm():
    model = TriggerModel(snipe(edge=0))
    stale = [LEAD, top(ask=quote(900))]
    assert len(model.evaluate(stale)) == 1
    model.rearm()
    assert len(model.evaluate(stale)) == 1
    assert model.evaluate(stale) == []
    model.set_config(snipe(edge=1))
    assert len(model.evaluate(stale)) == 1


def test_invalid_or_unreliable_target_makes_no_order_and_stays_armed():
    model = TriggerModel(snipe(edge=0))
    for target in (top(ask=quote(900, valid=False)), top(ask=quote(900, valid=False, unknown=True)),
                   top(ask=quote(900), unreliable=True)):
        assert model.evaluate([LEAD, target]) == []
    assert len(model.evaluate([LEAD, top(ask=quote(900))])) == 1


def test_both_sides_on_one_state_buy_first():
    model = TriggerModel(snipe(edge=0))
    requests = model.evaluate([LEAD, top(quote(1100, 5), quote(900, 6))])  # crossed target
    assert requests == [OrderRequest(1, BUY, 900, 6, 1005, True), OrderRequest(1, SELL, 1100, 5, 1005, True)]
    assert model.evaluate([LEAD, top(quote(1100, 5), quote(900, 6))]) == []


def test_off_makes_nothing():
    model = TriggerModel(StrategyConfig(strategy=Strategy.OFF))
    assert model.evaluate([LEAD, top(quote(5000), quote(1))]) == []


def test_threshold_on_trades():
    model = TriggerModel(threshold(threshold=2000, watch_source=WatchSource.TRADES), locates=[7, 8])
    target = top(quote(1990, 40), quote(2010, 60))
    assert model.evaluate([LEAD, target], BOOK_RECORD) == []  # no trade seen yet
    assert model.evaluate([LEAD, target], trade(8, 2500)) == []  # not the watch slot's locate
    assert model.evaluate([LEAD, target], {"type": "A", "locate": 7, "price": 2500}) == []  # not a trade
    assert model.evaluate([LEAD, target], trade(7, 1999)) == []
    assert model.evaluate([LEAD, target], trade(7, 2000)) == [OrderRequest(1, BUY, 2010, 50, 1005, True)]
    assert model.evaluate([LEAD, target], trade(7, 2001)) == []  # still holds, same quote
    assert model.evaluate([LEAD, target], None) == []
    assert model.evaluate([LEAD, target], trade(7, 1999)) == []  # clears: re-armed
    assert len(model.evaluate([LEAD, target], trade(7, 2000))) == 1


def test_threshold_below_and_sell():
    config = threshold(threshold=2000, threshold_above=False, threshold_side=SELL, watch_source=WatchSource.TRADES)
    model = TriggerModel(config, locates=[7, 8])
    target = top(quote(1990, 40), quote(2010, 60))
    assert model.evaluate([LEAD, target], trade(7, 2001)) == []
    assert model.evaluate([LEAD, target], trade(7, 2000)) == [OrderRequest(1, SELL, 1990, 40, 1005, True)]


def test_threshold_trade_of_an_unused_slot_is_not_watched():
    model = TriggerModel(threshold(threshold=0), locates=[0, 8])
    assert model.evaluate([LEAD, top(quote(1), quote(2))], trade(0, 5)) == []


@pytest.mark.parametrize("source", [WatchSource.BID, WatchSource.ASK])
def test_threshold_on_quotes(source):
    model = TriggerModel(threshold(threshold=1000, watch_source=source, watch_slot=0), locates=[7, 8])
    target = top(quote(1990), quote(2010))

    def watched(price, **options):
        q = quote(price, valid=options.pop("valid", True))
        return top(bid=q, ask=q, **options)

    assert model.evaluate([watched(999), target]) == []
    assert model.evaluate([watched(1000, valid=False), target]) == []
    assert model.evaluate([watched(1000, unreliable=True), target]) == []
    requests = model.evaluate([watched(1000), target])
    assert requests == [OrderRequest(1, BUY, 2010, 50, 1000, True)]  # slot 0 is the lead too: its mid


def test_threshold_quote_source_ignores_trades():
    model = TriggerModel(threshold(threshold=1000, watch_source=WatchSource.BID), locates=[7, 8])
    assert model.evaluate([top(quote(5)), top(quote(1990), quote(2010))], trade(7, 5000)) == []


def test_model_parameter_checks():
    with pytest.raises(ValueError, match="slots"):
        TriggerModel(StrategyConfig(), slots=0)
    with pytest.raises(ValueError, match="target_slot"):
        TriggerModel(StrategyConfig(target_slot=2), slots=2)
    with pytest.raises(ValueError, match="edge"):
        TriggerModel(snipe(edge=2 ** 32))
    with pytest.raises(ValueError, match="locates"):
        TriggerModel(StrategyConfig(), slots=2, locates=[1, 2, 3])
    with pytest.raises(ValueError, match="tops"):
        TriggerModel(StrategyConfig(target_slot=0), slots=2).evaluate([top()])


# --- the gateware against the model -----------------------------------------------------------


@dataclass(frozen=True)
class TopsStep:
    tops: tuple
    stamp: int


@dataclass(frozen=True)
class MessageStep:
    record: dict
    payload: int  # ItchMessage, with fields a trigger must ignore set too
    stamp: int


@dataclass(frozen=True)
class HostStep:
    config: StrategyConfig | None  # None: a rearm strobe alone


_TOP = data.Layout.cast(TopLayout)
_REQUEST = data.Layout.cast(RequestLayout)
CONFIG_PORTS = ("lead_slot", "target_slot", "edge", "order_size", "watch_slot", "watch_source", "threshold",
                "threshold_above", "threshold_side")


def pack_tops(tops) -> int:
    value = 0
    for slot, t in enumerate(tops):
        quotes = {name: {"valid": int(q.valid), "unknown": int(q.unknown), "price": q.price, "shares": q.shares}
                  for name, q in (("bid", t.bid), ("ask", t.ask))}
        element = _TOP.const({**quotes, "unreliable": int(t.unreliable)}).as_value().value
        value |= element << (slot * _TOP.size)
    return value


def pack_stamp(stamp: int) -> int:
    return pack_fields(Stamp, cycle=stamp >> 8, packet=stamp & 0xFF)


def request_tuple(request: OrderRequest, stamp: int) -> tuple:
    return (request.slot, request.side.value, request.price, request.shares, request.fair_value,
            int(request.fair_valid), stamp)


def decode_request(value: int) -> tuple:
    fields = layout_fields(_REQUEST, value)
    stamp = layout_fields(Stamp, fields["stamp"])
    return (fields["slot"], fields["side"], fields["price"], fields["shares"], fields["fair_value"],
            fields["fair_valid"], stamp["cycle"] << 8 | stamp["packet"])


@dataclass
class Run:
    """What the gateware test feeds Trigger: the set-up, then the steps in order."""
    slots: int
    locates: list
    initial_config: StrategyConfig
    steps: list
    seed: int = 0


class _Generator:
    """Seeded random steps that keep the active configuration's conditions toggling."""

    def __init__(self, seed: int, slots: int):
        self.rng = rng = random.Random(f"trigger/{seed}")
        self.slots = slots
        self.locates = [rng.randrange(1, 1 << 16) for _ in range(slots)]
        if slots > 1 and rng.random() < 0.5:
            self.locates[rng.randrange(slots)] = 0  # an unused slot
        self.base = rng.choice([1000, 2 ** 31, TOP - 3000, rng.randrange(TOP)])
        self.tops = [top() for _ in range(slots)]
        self.config = self.random_config()
        self.stamp = 0

    def next_stamp(self) -> int:
        self.stamp += self.rng.randrange(1, 1000)
        return self.stamp & (2 ** 40 - 1)

    def price_near(self, price: int, spread: int = 3) -> int:
        return min(max(price + self.rng.randint(-spread, spread), 0), TOP)

    def any_price(self) -> int:
        rng = self.rng
        return rng.choice([self.price_near(self.base, 50), rng.randrange(4), TOP - rng.randrange(4),
                           rng.randrange(TOP + 1)])

    def random_config(self) -> StrategyConfig:
        rng = self.rng
        slots = range(self.slots)
        return StrategyConfig(
            strategy=rng.choices(list(Strategy), weights=[1, 5, 5])[0],
            lead_slot=rng.choice(slots), target_slot=rng.choice(slots),
            edge=rng.choice([0, 0, 1, rng.randrange(20), rng.randrange(1000), 2 ** 31, TOP, rng.randrange(TOP + 1)]),
            order_size=rng.choice([0, 1, rng.randrange(200), TOP]),
            watch_slot=rng.choice(slots), watch_source=rng.choice(list(WatchSource)),
            threshold=rng.choice([self.price_near(self.base, 20), 0, TOP, rng.randrange(TOP + 1)]),
            threshold_above=rng.random() < 0.5, threshold_side=rng.choice([BUY, SELL]))

    def fair(self) -> int | None:
        lead = self.tops[self.config.lead_slot]
        if lead.bid.valid and lead.ask.valid and not lead.unreliable:
            return (lead.bid.price + lead.ask.price) >> 1
        return None

    def interesting_price(self, slot: int, side: str) -> int:
        """A price about a boundary of the active configuration for this slot's quote."""
        config, rng = self.config, self.rng
        fair = self.fair()
        if slot == config.target_slot and fair is not None and rng.random() < 0.7:
            return self.price_near(fair - config.edge if side == "ask" else fair + config.edge)
        if slot == config.watch_slot and rng.random() < 0.6:
            return self.price_near(config.threshold)
        if rng.random() < 0.5:
            return self.price_near(getattr(self.tops[slot], side).price, 2)
        return self.any_price()

    def random_quote(self, slot: int, side: str) -> Quote:
        rng = self.rng
        valid = rng.random() < 0.85
        return Quote(valid=valid, unknown=not valid and rng.random() < 0.5,
                     price=self.interesting_price(slot, side), shares=rng.choice([0, 1, rng.randrange(300), TOP]))

    def tops_step(self) -> TopsStep:
        rng = self.rng
        tops = self.tops
        choice = rng.random()
        if choice < 0.1:  # everything anew
            tops = [InstrumentTop(self.random_quote(s, "bid"), self.random_quote(s, "ask"), rng.random() < 0.1)
                    for s in range(self.slots)]
        elif choice < 0.2:  # unreliable toggles
            slot = rng.randrange(self.slots)
            tops[slot] = replace(tops[slot], unreliable=not tops[slot].unreliable)
        elif choice < 0.75:  # one quote of one slot moves, mostly one the configuration looks at
            config = self.config
            slot = rng.choice([config.target_slot, config.lead_slot, config.watch_slot, rng.randrange(self.slots)])
            side = rng.choice(["bid", "ask"])
            tops[slot] = replace(tops[slot], **{side: self.random_quote(slot, side)})
        # else: nothing visible changes (a message deep in the book)
        self.tops = list(tops)
        return TopsStep(tuple(tops), self.next_stamp())

    def message_step(self) -> MessageStep:
        rng = self.rng
        locate = rng.choice([self.locates[self.config.watch_slot]] * 4 + self.locates + [0, rng.randrange(1 << 16)])
        price = self.price_near(self.config.threshold, 2) if rng.random() < 0.7 else self.any_price()
        kind = "P" if rng.random() < 0.85 else rng.choice("AFCUS")
        noise = {"seq": rng.getrandbits(64), "length": 44, "tracking": rng.getrandbits(16),
                 "order_ref": rng.getrandbits(64), "side": ord(rng.choice("BS")), "shares": rng.getrandbits(32)}
        payload = pack_fields(ItchMessage, type=ord(kind), locate=locate, price=price, **noise)
        return MessageStep({"type": kind, "locate": locate, "price": price}, payload, self.next_stamp())

    def step(self):
        choice = self.rng.random()
        if choice < 0.62:
            return self.tops_step()
        if choice < 0.88:
            return self.message_step()
        if choice < 0.94:
            return HostStep(None)
        self.config = self.random_config()
        return HostStep(self.config)


def random_run(seed: int, slots: int, steps: int) -> Run:
    generator = _Generator(seed, slots)
    initial_config = generator.config
    return Run(slots, generator.locates, initial_config, [generator.step() for _ in range(steps)], seed)


def model_requests(run: Run):
    """Per step, the model's requests and the stamp they must carry, with the configuration after the step."""
    model = TriggerModel(run.initial_config, slots=run.slots, locates=run.locates)
    tops = [top() for _ in range(run.slots)]
    tops_stamp, trade_stamp, trade_newer = 0, 0, False
    for step in run.steps:
        if isinstance(step, TopsStep):
            tops, tops_stamp, trade_newer = list(step.tops), step.stamp, False
            requests = model.evaluate(tops, BOOK_RECORD)
        elif isinstance(step, MessageStep):
            watched = model.locates[model.config.watch_slot]
            if step.record["type"] == "P" and watched != 0 and step.record["locate"] == watched:
                trade_stamp, trade_newer = step.stamp, True
            requests = model.evaluate(tops, step.record)
        else:
            if step.config is None:
                model.rearm()
            else:
                model.set_config(step.config)
            requests = model.evaluate(tops, None)
        config = model.config
        from_trade = (config.strategy == Strategy.THRESHOLD and config.watch_source == WatchSource.TRADES
                      and trade_newer)
        yield requests, (trade_stamp if from_trade else tops_stamp), config


def expected_requests(run: Run, effects: list[int]) -> list[tuple]:
    """(cycle, request) the model makes for the run, its steps reaching the trigger's step 1 at ``effects``."""
    expected = []
    for (requests, stamp, _config), effect in zip(model_requests(run), effects):
        for k, request in enumerate(requests):  # a sell after a buy of the same state: one cycle later
            expected.append((effect + TRIGGER_LATENCY + k, request_tuple(request, stamp)))
    return expected


def run_trigger(run: Run):
    """Drive Trigger with the run; (per-step cycle it reaches step 1, (cycle, request) seen, cycles where
    ``events.trigger_fired`` differs from ``requests.valid``)."""
    rng = random.Random(f"trigger-schedule/{run.seed}")
    dut = Trigger(run.slots)
    settings: dict[int, list] = {}
    effects = []
    cycle = 2 + max(TRADE_DELAY, HOST_WRITE_LATENCY)
    strategy = run.initial_config.strategy
    for step in run.steps:
        if isinstance(step, TopsStep):
            start = cycle
        elif isinstance(step, MessageStep):
            start = cycle - TRADE_DELAY
        else:
            start = cycle - HOST_WRITE_LATENCY
        effects.append(cycle)
        at = settings.setdefault(start, [])
        after = settings.setdefault(start + 1, [])
        if isinstance(step, TopsStep):
            at += [(dut.tops, pack_tops(step.tops)), (dut.tops_stamp, pack_stamp(step.stamp))]
        elif isinstance(step, MessageStep):
            at += [(dut.messages.valid, 1), (dut.messages.payload, step.payload), (dut.stamp, pack_stamp(step.stamp))]
            after += [(dut.messages.valid, 0), (dut.stamp, rng.getrandbits(40))]
        else:
            if step.config is not None:
                at += config_settings(dut, step.config)
            if step.config is None or step.config.strategy == strategy:
                at.append((dut.rearm, 1))  # a change of ``strategy`` re-arms by itself
                after.append((dut.rearm, 0))
            if step.config is not None:
                strategy = step.config.strategy
        # each step's state held for at least two cycles, often longer
        cycle += rng.choice([2, 2, 2, 3, rng.randrange(4, 9)])
    end = cycle + TRIGGER_LATENCY + 2

    seen = []
    fired_mismatch = []

    async def bench(ctx):
        ctx.set(Value.cast(dut.locates), sum(locate << (16 * i) for i, locate in enumerate(run.locates)))
        for port, value in config_settings(dut, run.initial_config):
            ctx.set(Value.cast(port), value)
        payload = Value.cast(dut.requests.payload)
        for now in range(end):
            for port, value in settings.get(now, ()):
                ctx.set(Value.cast(port), value)
            valid, fired = ctx.get(dut.requests.valid), ctx.get(dut.events.trigger_fired)
            if valid != fired:
                fired_mismatch.append(now)
            if valid:
                seen.append((now, decode_request(ctx.get(payload))))
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return effects, seen, fired_mismatch


def config_settings(dut, config: StrategyConfig) -> list:
    values = {"lead_slot": config.lead_slot, "target_slot": config.target_slot, "edge": config.edge,
              "order_size": config.order_size, "watch_slot": config.watch_slot,
              "watch_source": int(config.watch_source), "threshold": config.threshold,
              "threshold_above": int(config.threshold_above), "threshold_side": config.threshold_side.value}
    return [(dut.strategy, int(config.strategy))] + [(getattr(dut, name), values[name]) for name in CONFIG_PORTS]


RUNS = [(1, 2, 3000), (2, 2, 3000), (3, 3, 2000), (4, 1, 1000), (5, 2, 3000)]


@pytest.mark.parametrize("seed, slots, steps", RUNS)
def test_trigger_matches_model(seed, slots, steps):
    run = random_run(seed, slots, steps)
    effects, seen, fired_mismatch = run_trigger(run)
    expected = expected_requests(run, effects)
    assert fired_mismatch == []
    for k, (want, got) in enumerate(zip(expected, seen)):
        assert got == want, f"request {k}: (cycle, (slot, side, price, shares, fair, fair_valid, stamp))"
    assert len(seen) == len(expected)


def test_random_runs_fire_with_every_strategy_source_and_side():
    """The runs above are worth something: each strategy and watch source fires both sides."""
    kinds = set()
    for seed, slots, steps in RUNS:
        for requests, _stamp, config in model_requests(random_run(seed, slots, steps)):
            source = config.watch_source if config.strategy == Strategy.THRESHOLD else None
            kinds.update((config.strategy, source, request.side) for request in requests)
    for side in (BUY, SELL):
        assert (Strategy.SNIPE, None, side) in kinds
        for source in WatchSource:
            assert (Strategy.THRESHOLD, source, side) in kinds


def test_both_sides_leave_in_consecutive_cycles():
    """Directed: a target crossed about the lead's mid fires a buy, then a sell, TRIGGER_LATENCY after the state."""
    crossed = (LEAD, top(quote(1100, 5), quote(900, 6)))
    run = Run(2, [1, 2], snipe(edge=0), [TopsStep(crossed, 0x12_3456_7801), TopsStep((LEAD, top()), 0x99)])
    effects, seen, _ = run_trigger(run)
    state = effects[0]
    assert seen == [(state + TRIGGER_LATENCY, (1, BUY.value, 900, 6, 1005, 1, 0x12_3456_7801)),
                    (state + TRIGGER_LATENCY + 1, (1, SELL.value, 1100, 5, 1005, 1, 0x12_3456_7801))]


def test_trade_fires_with_its_stamp():
    """Directed: a P trade of the watched locate fires TRADE_LATENCY after it, with its stamp."""
    config = threshold(threshold=2000, watch_source=WatchSource.TRADES)
    tops = (LEAD, top(quote(1990, 40), quote(2010, 60)))
    message = pack_fields(ItchMessage, type=ord("P"), locate=7, price=2000)
    run = Run(2, [7, 8], config, [TopsStep(tops, 0x55), MessageStep(trade(7, 2000), message, 0xAB_CDEF_0102)])
    effects, seen, _ = run_trigger(run)
    message_cycle = effects[1] - TRADE_DELAY
    assert seen == [(message_cycle + TRADE_LATENCY, (1, BUY.value, 2010, 50, 1005, 1, 0xAB_CDEF_0102))]


@pytest.mark.parametrize("component", [Trigger, StaleQuoteSnipe, PriceThreshold])
def test_parameter_checks(component):
    for slots in (0, MAX_SLOTS + 1, 2.0):
        with pytest.raises(ValueError, match="slots"):
            component(slots)


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_converts_to_rtlil(slots):
    assert "module" in rtlil.convert(SynthWrapper(Trigger(slots)))
