# amaranth: UnusedElaboratable=no
"""FastTrigger (with the risk gate's forecast) in the Amaranth simulator against the exact path's golden models.

Each case sets a random quiet state (the book's tops and depths, the
strategy and risk registers), then one message. What the fast path must
send is what the exact path would: the book's new top, ``TriggerModel``
evaluated on the state before (its steady state; cases where that state
itself would fire are not quiet and are drawn again) and after the message,
each request checked by a fresh ``RiskModel``. For a message the fast path
predicts (a lead add; a lead delete or replace of its side's best level's
only order; a target's add that improves its side, where the risk limits
let the order the gate forecasts for it through) the fast trigger must send
the exact path's request one cycle after the message (the fair value too,
and the message's stamp; the first, where it sends two), or nothing where
the exact path sends none; for any other message (a removal of a deeper or
shared order, an unknown reference, a target's add the limits might stop)
nothing.

Adds: the lead's quotes are drawn (one side may be empty or unknown) and the
add is taken by hand (a better price becomes the best level). Deletes and
replaces: the book is built order by order in ``BookModel`` (several levels
a side, the best often one order, sometimes orders beyond the known levels)
and the message applied to it, so the depths and the new tops are the
model's. Prices are drawn at random and at the boundaries of the snipe's
conditions and of the collar (an add's or a replace's price, a removal's
next level); the limits at random and at the boundaries of the likely
order's quantity, notional and position.

Chains: two to four lead messages a few cycles apart, before the book shows
them (moves of the best prices; a requote away from the book then removals;
messages behind the best prices, then one that may move them). What the
fast path sends on a later message must be the exact path's order on the
state the messages before left; the directed chains (``KEPT_CHAINS``) also
require it to send every order there, one chain per rule of the kept state.
"""

import dataclasses
import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from stage_harness import layout_fields, pack_fields

from tick2trade.hdl.fast_trigger import FAST_LATENCY, FAST_SETTLE_CYCLES, TARGET_KEPT_CYCLES, FastTrigger
from tick2trade.hdl.order_types import OrderRequest as RequestLayout
from tick2trade.hdl.order_types import REFS_WIDTH, Stamp
from tick2trade.hdl.risk_gate import FORECAST_LATENCY, RiskGate
from tick2trade.hdl.trigger import StrategyKind
from tick2trade.host.book_model import BookModel, order_index
from tick2trade.host.order_types import InstrumentDepth, InstrumentTop, OrderRequest, Quote, Side
from tick2trade.host.risk_model import RiskLimits, RiskModel
from tick2trade.host.trigger_model import Strategy, StrategyConfig, TriggerModel

LEAD_LOCATE, TARGET_LOCATE = 7, 9
REFS_MASK = (1 << REFS_WIDTH) - 1
RISK_PORTS = ("kill", "max_qty", "max_notional", "collar", "position", "max_long", "max_short", "max_outstanding")


class FastPair(wiring.Component):
    """The fast trigger with the risk gate whose forecast it reads, as the Pipeline connects them."""

    def __init__(self, levels=4):
        self.fast_trigger = FastTrigger(slots=2, levels=levels)
        self.risk_gate = RiskGate()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fast_trigger = fast = self.fast_trigger
        m.submodules.risk_gate = risk = self.risk_gate
        m.d.comb += [risk.forecast_orders.eq(fast.forecast_orders), fast.risk_ok.eq(risk.forecast),
                     fast.collar.eq(risk.collar)]
        return m


def random_case(rng, *, of_target=False):
    """A quiet state and one add (the lead's, one in ten the target's; ``of_target``: the target's, at
    the boundaries of its conditions), or None if the state is not quiet."""
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
    config = random_config(rng)
    limits = random_limits(rng, config, target)
    side = rng.choice("BS")
    if of_target:
        return target_add_case(rng, lead, target, config, side)
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
              "side": side, "price": max(0, price), "shares": rng.randint(1, 100),
              "order_ref": rng.getrandbits(64)}
    model = TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    if model.evaluate([lead, target]):
        return None  # this state fires by itself: not quiet
    tops = [lead, target]
    return Case(tops, [InstrumentDepth()] * 2, config, limits, [record], [exact_orders(tops, limits, record, model)])


def target_add_case(rng, lead, target, config, side):
    """A target's add on ``side`` ("S": a new ask, for a buy) at a boundary of the snipe's condition or
    of the collar on the lead's sum, or near the target's quote; limits often at a boundary of the
    order the gate forecasts for it (``target_bound_order``)."""
    lead_sum = lead.bid.price + lead.ask.price
    limits = random_limits(rng, config, target)
    if rng.random() < 0.5:
        limits = random_limits(rng, config, target, order=target_bound_order(lead, config, limits, side))
    if rng.random() < 0.7:
        limit = rng.choice([config.edge, limits.collar])
        price = (lead_sum - 2 * (limit + 1)) // 2 if side == "S" else (lead_sum + 2 * limit) // 2
        price += rng.randint(-1, 1)
    else:
        quote = target.ask if side == "S" else target.bid
        price = quote.price + rng.randint(-3, 3)
    record = {"type": rng.choice("AF"), "locate": TARGET_LOCATE, "side": side, "price": max(0, price),
              "shares": rng.randint(1, 300), "order_ref": rng.getrandbits(64)}
    model = TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    if model.evaluate([lead, target]):
        return None
    tops = [lead, target]
    return Case(tops, [InstrumentDepth()] * 2, config, limits, [record], [exact_orders(tops, limits, record, model)])


def target_bound_order(lead, config, limits, side):
    """(price, shares) of the order the gate forecasts for a target's add on ``side``: ``order_size`` at
    the highest price a buy fires at (fair - edge - 1) or a sell passes the collar at (fair + collar)."""
    fair = (lead.bid.price + lead.ask.price) // 2
    price = max(0, fair - config.edge - 1) if side == "S" else min(fair + limits.collar, 2 ** 32 - 1)
    return price, config.order_size


def random_config(rng):
    return StrategyConfig(strategy=Strategy.SNIPE if rng.random() < 0.95 else Strategy.OFF,
                          lead_slot=0, target_slot=1, edge=rng.randint(0, 10), order_size=rng.randint(1, 200))


def random_limits(rng, config, target, order=None):
    """Risk limits, often one at a boundary of an order on ``target``'s quote (or of ``order``, a price and
    shares)."""
    if order is None:
        shares = min(config.order_size, rng.choice([target.bid.shares, target.ask.shares]))
        price = rng.choice([target.bid.price, target.ask.price])
    else:
        price, shares = order
    limits = {"max_qty": 10_000, "max_notional": 2 ** 63, "collar": 1_000, "position": rng.randint(-300, 300),
              "max_long": 10_000, "max_short": 10_000, "max_outstanding": 5, "rate_burst": 3}
    if rng.random() < 0.6:  # one limit at a boundary of a likely order
        tight = rng.choice(["kill", "max_qty", "max_notional", "collar", "max_long", "max_short",
                            "max_outstanding", "rate_burst"])
        limits[tight] = {
            "kill": True, "max_qty": max(0, shares - rng.randint(0, 1)),
            "max_notional": max(0, price * shares - rng.randint(0, 1)),
            "collar": rng.randint(0, 30), "max_long": max(0, limits["position"] + shares - rng.randint(0, 1)),
            "max_short": max(0, shares - limits["position"] - rng.randint(0, 1)), "max_outstanding": 0,
            "rate_burst": 0,
        }[tight]
    return RiskLimits(**limits)


def exact_orders(tops, limits, record, model):
    """The requests the exact path sends after an add ``record``: the book's new top, the trigger, the risk gate."""
    slots = {LEAD_LOCATE: 0, TARGET_LOCATE: 1}
    tops = list(tops)
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


# --- deletes and replaces, on books built by the golden BookModel ------------------------


def add_record(locate, ref, side, price, shares):
    return {"type": "A", "locate": locate, "order_ref": ref, "side": side, "price": price, "shares": shares,
            "stock": "", "timestamp": 0, "tracking": 0}


@dataclass
class LeadBook:
    """A quiet state built order by order in ``BookModel``, and what the test needs to make messages on it."""
    book: BookModel
    config: StrategyConfig
    limits: RiskLimits
    target: dict          # "bid"/"ask" -> the target's Quote
    mid: int
    live: dict            # the lead's live orders: reference -> side ("bid"/"ask")
    refs: object          # fresh references, each in a bucket of its own


def lead_book(rng, *, deeper_at_boundary, empty_side, boundary_level=1, alone=0.5):
    """Target quotes and lead levels (the best often one order alone, a deeper level with the chance
    ``alone``, sometimes orders beyond the known levels, the price of level ``boundary_level`` (1: the
    second) at a boundary of a condition or of the collar with the chance ``deeper_at_boundary``, a side
    empty with the chance ``empty_side``); None if the state fires by itself (it is not quiet)."""
    book = BookModel(slots=2, capacity=4096, levels=4, locates=[LEAD_LOCATE, TARGET_LOCATE])
    refs = iter(rng.sample(range(1, 4096), 80))  # distinct buckets: no collisions
    base = rng.choice([100, 10_000, 2 ** 31])
    spread = rng.randint(1, 40)
    fair = base + spread // 2
    target = {}
    for side, code in (("bid", "B"), ("ask", "S")):
        if rng.random() < 0.95:
            price, shares = fair + rng.randint(-20, 20), rng.randint(1, 300)
            book.apply(add_record(TARGET_LOCATE, next(refs) << rng.choice([0, 32]), code, price, shares))
            target[side] = Quote(valid=True, price=price, shares=shares)
        else:
            target[side] = Quote()
    config = random_config(rng)
    limits = random_limits(rng, config, InstrumentTop(**target))
    live = {}
    for side, code, sign in (("bid", "B", -1), ("ask", "S", 1)):
        if rng.random() < empty_side:
            continue  # an empty side (a market maker replacing its quote by a cancel and an add)
        best = base if side == "bid" else base + spread
        prices = [best]
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
            prices.append(prices[-1] + sign * rng.randint(1, 6))
        if len(prices) > boundary_level and rng.random() < deeper_at_boundary:
            other_best = base + spread if side == "bid" else base
            if side == "bid":  # a deeper bid lowers the sum across a sell's limit
                limit = 2 * (target["bid"].price - rng.choice([config.edge, limits.collar]))
            else:              # a deeper ask raises it across a buy's
                limit = 2 * (target["ask"].price + rng.choice([config.edge, limits.collar]) + 1)
            deeper = limit - other_best + rng.randint(-2, 1)
            above = prices[boundary_level - 1]
            if (deeper < above) if side == "bid" else (deeper > above):
                prices[boundary_level] = deeper
                prices[boundary_level + 1:] = [p for p in sorted(prices[boundary_level + 1:], reverse=side == "bid")
                                               if ((p < deeper) if side == "bid" else (p > deeper))]
        for level, price in enumerate(prices):
            for _ in range(1 if rng.random() < (0.8 if level == 0 else alone) else 2):
                ref = next(refs) | rng.getrandbits(32) << 32
                book.apply(add_record(LEAD_LOCATE, ref, code, max(0, price), rng.randint(1, 500)))
                live[ref] = side
    if rng.random() < 0.05:
        book.unreliable[0] = True
    if TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE]).evaluate(book.tops()):
        return None
    return LeadBook(book, config, limits, target, fair, live, refs)


def lead_message(rng, state, types, at_boundary, *, best_only=False):
    """A lead message of one of ``types`` on ``state`` (whose live orders it updates): a D or U mostly of a
    best order (``best_only``: always), an A; prices near the book, or (with the chance ``at_boundary``)
    across the boundaries of the conditions and the collar."""
    type_ = rng.choice(types)
    lead = state.book.tops()[0]
    if type_ in "DU":
        best = [ref for ref, side in state.live.items()
                if getattr(lead, side).valid and state.book.table[order_index(ref, 4096)].price
                == getattr(lead, side).price]
        choice = rng.random()
        ref = (rng.choice(best) if (choice < 0.8 or best_only) and best else
               rng.choice(list(state.live)) if choice < 0.95 and state.live else next(state.refs))
        side = state.live.pop(ref, "bid")
    else:  # (settling: an empty side first)
        empty = [side for side in ("bid", "ask") if not getattr(lead, side).valid]
        side = rng.choice(empty if best_only and empty else ["bid", "ask"])
    if type_ == "D":
        return {"type": "D", "locate": LEAD_LOCATE, "order_ref": ref}
    levels, _ = state.book.side_levels(0, Side.BID if side == "bid" else Side.ASK)
    near = [state.mid + rng.randint(-30, 30)] + [price + rng.randint(-1, 1) for price, _, _ in levels[:2]]
    boundaries = crossing_prices(rng, state, side)
    new_ref = next(state.refs) | rng.getrandbits(32) << 32
    state.live[new_ref] = side
    own = getattr(lead, side)
    if best_only and type_ == "A" and own.valid:  # an add at a better price: the fast path keeps it
        near = [own.price + (1 if side == "bid" else -1) * rng.randint(1, 3)]
    price, shares = max(0, rng.choice(boundaries if rng.random() < at_boundary else near)), rng.randint(1, 500)
    if type_ == "A":
        return add_record(LEAD_LOCATE, new_ref, "B" if side == "bid" else "S", price, shares)
    return {"type": "U", "locate": LEAD_LOCATE, "original_order_ref": ref, "new_order_ref": new_ref,
            "price": price, "shares": shares}


def worse_replace(rng, state):
    """A market maker's requote away from the book: a U of a side's best order, alone at its level, to a
    price worse than the second level (at it, between it and the third, at the third, or beyond); None
    if no side has such an order."""
    depths, lead = state.book.depths()[0], state.book.tops()[0]
    sides = [side for side in ("bid", "ask") if getattr(depths, side).alone and getattr(depths, side).next.valid]
    if not sides:
        return None
    side = rng.choice(sides)
    ref = next(ref for ref, own in state.live.items() if own == side
               and state.book.table[order_index(ref, 4096)].price == getattr(lead, side).price)
    levels, _ = state.book.side_levels(0, Side.BID if side == "bid" else Side.ASK)
    worse = -1 if side == "bid" else 1
    prices = [levels[1][0], levels[1][0] + worse * rng.randint(1, 8)]
    if len(levels) > 2:
        prices += [levels[2][0], (levels[1][0] + levels[2][0]) // 2, levels[2][0] + worse * rng.randint(1, 3)]
    prices += [price for price in crossing_prices(rng, state, side) if (price - levels[1][0]) * worse > 0] * 2
    new_ref = next(state.refs) | rng.getrandbits(32) << 32
    del state.live[ref]
    state.live[new_ref] = side
    return {"type": "U", "locate": LEAD_LOCATE, "original_order_ref": ref, "new_order_ref": new_ref,
            "price": max(0, rng.choice(prices)), "shares": rng.randint(1, 500)}


def crossing_prices(rng, state, side):
    """Prices of a lead ``side`` (near) where the sum crosses a buy's or a sell's condition or collar."""
    lead = state.book.tops()[0]
    other = (lead.ask if side == "bid" else lead.bid).price
    prices = []
    for limit in (state.config.edge, state.limits.collar):
        prices.append(2 * (state.target["ask"].price + limit + 1) - other + rng.randint(-2, 1))
        prices.append(2 * (state.target["bid"].price - limit) - other + rng.randint(-2, 1))
    return prices


def behind_message(rng, state):
    """A lead message that leaves the best prices as they are: an add behind a side's best (at it, at or
    between the levels beneath, beyond them, or where a removal of the levels above would make the sum
    cross a boundary), or a delete of the second level's only order; None if the side has no best."""
    depths, lead = state.book.depths()[0], state.book.tops()[0]
    side = rng.choice(["bid", "ask"])
    if not getattr(lead, side).valid:
        return None
    depth = getattr(depths, side)
    if depth.next_alone and rng.random() < 0.3:
        ref = next(ref for ref in state.live if ref & REFS_MASK == depth.next_refs)
        del state.live[ref]
        return {"type": "D", "locate": LEAD_LOCATE, "order_ref": ref}
    levels, _ = state.book.side_levels(0, Side.BID if side == "bid" else Side.ASK)
    worse = -1 if side == "bid" else 1
    prices = [price for price, _, _ in levels] + [price + worse * rng.randint(1, 3) for price, _, _ in levels]
    prices += [price for price in crossing_prices(rng, state, side) if (price - levels[0][0]) * worse >= 0] * 3
    new_ref = next(state.refs) | rng.getrandbits(32) << 32
    state.live[new_ref] = side
    return add_record(LEAD_LOCATE, new_ref, "B" if side == "bid" else "S", max(0, rng.choice(prices)),
                      rng.randint(1, 500))


def lead_case(rng, types, length, *, settle=False, first=None, gaps=(2, 5), **book):
    """A quiet state, then ``length`` lead messages of ``types``, ``gaps`` cycles apart; None if the state is
    not quiet. The exact path's orders: the models applied message by message. ``settle``: the messages
    before the last mostly move the lead's prices without crossing a boundary, and the last one is at
    one. ``first(rng, state)``, if given, makes the first message (None: no case); ``book`` are further
    keyword arguments of ``lead_book``."""
    state = lead_book(rng, **{"deeper_at_boundary": 0.2 if settle else 0.8, "empty_side": 0.1 if settle else 0.05,
                              **book})
    if state is None:
        return None
    tops, depths = state.book.tops(), state.book.depths()
    model = TriggerModel(state.config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    model.evaluate(tops)
    risk = RiskModel(state.limits)
    records, orders = [], []
    for index in range(length):
        settling = settle and index < length - 1
        if index == 0 and first is not None:
            record = first(rng, state)
            if record is None:
                return None
        else:
            record = lead_message(rng, state, types, 0.1 if settling else 0.9, best_only=settling)
        state.book.apply(record)
        state.live = {ref: side for ref, side in state.live.items()  # an unknown reference's replace adds nothing
                      if getattr(state.book.table.get(order_index(ref, 4096)), "order_ref", None) == ref}
        records.append(record)
        orders.append([request for request in model.evaluate(state.book.tops(), record)
                       if risk.check(request) is None])
    return Case(tops, depths, state.config, state.limits, records, orders,
                gaps=[rng.randint(*gaps) for _ in records[1:]])


def removal_case(rng):
    return lead_case(rng, "DU", 1)


@dataclass
class TargetBook:
    """A quiet state whose target has several levels a side, and what the test needs to make its messages."""
    book: BookModel
    config: StrategyConfig
    limits: RiskLimits
    model: TriggerModel   # evaluated on the state until it is quiet
    live: dict            # the target's live orders: reference -> side ("bid"/"ask")
    refs: object          # fresh references, each in a bucket of its own
    lead_sum: int


def target_book(rng):
    """A quiet state whose target has several levels a side (the best often one order alone, the second
    often at a boundary of the snipe's conditions or of the collar). The state may have fired at the best
    quotes (each side fires once a quote): the strategy is run on it until it is quiet."""
    book = BookModel(slots=2, capacity=4096, levels=4, locates=[LEAD_LOCATE, TARGET_LOCATE])
    refs = iter(rng.sample(range(1, 4096), 60))  # distinct buckets: no collisions
    base, spread = rng.choice([100, 10_000, 2 ** 31]), rng.randint(1, 40)
    book.apply(add_record(LEAD_LOCATE, next(refs), "B", base, rng.randint(1, 500)))
    book.apply(add_record(LEAD_LOCATE, next(refs), "S", base + spread, rng.randint(1, 500)))
    lead_sum = 2 * base + spread
    config = random_config(rng)
    collar = rng.randint(0, 30) if rng.random() < 0.5 else 1_000
    live = {}
    for side, code, sign in (("bid", "B", -1), ("ask", "S", 1)):
        price = lead_sum // 2 + rng.randint(-20, 20)
        if rng.random() < 0.6:  # the second level at a boundary, the best a little better
            price = target_boundary(rng, lead_sum, side, rng.choice([config.edge, collar])) + sign * rng.randint(1, 4)
        for level in range(rng.choice([1, 2, 2, 3, 5])):
            for _ in range(1 if rng.random() < (0.8 if level == 0 else 0.5) else 2):
                ref = next(refs) | rng.getrandbits(32) << 32
                book.apply(add_record(TARGET_LOCATE, ref, code, max(0, price), rng.randint(1, 300)))
                live[ref] = side
            price += sign * rng.randint(1, 6)
    if rng.random() < 0.05:
        book.unreliable[1] = True
    target = book.tops()[1]
    limits = dataclasses.replace(random_limits(rng, config, target), collar=collar)
    if rng.random() < 0.5:  # a limit at a boundary of the order the gate forecasts
        order = target_bound_order(book.tops()[0], config, limits, rng.choice("BS"))
        limits = dataclasses.replace(random_limits(rng, config, target, order=order), collar=collar)
    model = TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    for _ in range(3):  # a buy, then a sell: then disarmed at those quotes
        if not model.evaluate(book.tops()):
            break
    return TargetBook(book, config, limits, model, live, refs, lead_sum)


def target_boundary(rng, lead_sum, side, limit):
    """A target price of ``side`` near where the snipe's condition (``limit`` the edge) or the collar
    (the collar) on the lead's sum ``lead_sum`` starts to hold for the order on it."""
    boundary = (lead_sum - 2 * (limit + 1)) // 2 if side == "ask" else (lead_sum + 2 * limit) // 2
    return boundary + rng.randint(-1, 1)


def target_removal(rng, state):
    """A D or U of the target on ``state`` (whose live orders it updates): mostly of a best order, a U's
    price at a boundary of the conditions or of the collar, at or near the next level, or the old price."""
    target = state.book.tops()[1]
    best = [ref for ref, side in state.live.items()
            if getattr(target, side).valid and state.book.table[order_index(ref, 4096)].price
            == getattr(target, side).price]
    choice = rng.random()
    ref = (rng.choice(best) if choice < 0.8 and best else
           rng.choice(list(state.live)) if choice < 0.95 and state.live else next(state.refs))
    side = state.live.pop(ref, "bid")
    if rng.random() < 0.5:
        return {"type": "D", "locate": TARGET_LOCATE, "order_ref": ref}
    levels, _ = state.book.side_levels(1, Side.BID if side == "bid" else Side.ASK)
    prices = [target_boundary(rng, state.lead_sum, side, rng.choice([state.config.edge, state.limits.collar])),
              getattr(target, side).price]
    prices += [price + rng.randint(-1, 1) for price, _, _ in levels[1:3]]
    new_ref = next(state.refs) | rng.getrandbits(32) << 32
    state.live[new_ref] = side
    return {"type": "U", "locate": TARGET_LOCATE, "original_order_ref": ref, "new_order_ref": new_ref,
            "price": max(0, rng.choice(prices)), "shares": rng.randint(1, 300)}


def random_target_add(rng, state):
    """A target's add on ``state``: on a side at a boundary, or a little better or worse than its best."""
    side = rng.choice(["bid", "ask"])
    quote = getattr(state.book.tops()[1], side)
    better = 1 if side == "bid" else -1
    prices = [target_boundary(rng, state.lead_sum, side, rng.choice([state.config.edge, state.limits.collar]))]
    if quote.valid:
        prices += [quote.price + better * rng.randint(1, 3), quote.price, quote.price - better * rng.randint(1, 3)]
    new_ref = next(state.refs) | rng.getrandbits(32) << 32
    state.live[new_ref] = side
    return add_record(TARGET_LOCATE, new_ref, "B" if side == "bid" else "S", max(0, rng.choice(prices)),
                      rng.randint(1, 300))


def target_messages_case(rng, length):
    """A quiet state (``target_book``), then ``length`` target messages (removals, and adds after the first)
    2 to 5 cycles apart; the exact path's orders: the models applied message by message."""
    state = target_book(rng)
    tops, depths = state.book.tops(), state.book.depths()
    risk = RiskModel(state.limits)
    records, orders = [], []
    for index in range(length):
        record = random_target_add(rng, state) if index and rng.random() < 0.4 else target_removal(rng, state)
        state.book.apply(record)
        state.live = {ref: side for ref, side in state.live.items()  # an unknown reference's replace adds nothing
                      if getattr(state.book.table.get(order_index(ref, 4096)), "order_ref", None) == ref}
        records.append(record)
        orders.append([request for request in state.model.evaluate(state.book.tops(), record)
                       if risk.check(request) is None])
    return Case(tops, depths, state.config, state.limits, records, orders,
                gaps=[rng.randint(2, 5) for _ in records[1:]])


def target_removal_case(rng):
    """A quiet state whose target has several levels a side, then a D or U of the target (``target_removal``)."""
    return target_messages_case(rng, 1)


def target_chain_case(rng):
    return target_messages_case(rng, rng.randint(2, 3))


def chain_case(rng):
    return lead_case(rng, "DUUA", rng.randint(2, 4), settle=True)


def behind_case(rng):
    """Messages behind the best prices, then one that may move them (the levels beneath at a boundary)."""
    return lead_case(rng, "DDUA", rng.randint(2, 3), settle=True, first=behind_message, deeper_at_boundary=0.8,
                     boundary_level=rng.choice([1, 2]), alone=0.9)


def target_add_message(rng, state):
    """A target's add near its quote on one side: behind it (the lead's next moves are judged on the state
    as it is), at it, before it, or on an empty side (the quote moves: the lead's next moves are not).
    ``state.target`` stays the quote before, so that the lead's moves cross its boundaries."""
    side = rng.choice(["bid", "ask"])
    quote = state.target[side]
    worse = -1 if side == "bid" else 1
    price = (quote.price + worse * rng.choice([1, 1, 2, 5, 0, -1]) if quote.valid else state.mid + rng.randint(-20, 20))
    return add_record(TARGET_LOCATE, next(state.refs) | rng.getrandbits(32) << 32, "B" if side == "bid" else "S",
                      max(0, price), rng.randint(1, 300))


def target_first_case(rng):
    """A target's add (``target_add_message``), then lead moves 2 to 8 cycles apart, the last one at a
    boundary."""
    return lead_case(rng, "DUUA", rng.randint(2, 3), settle=True, first=target_add_message, gaps=(2, 8))


def requote_case(rng):
    """A requote away from the book, then removals, mostly of the level it leaves best (alone, as the
    background orders of the snipe's market often are), the level beneath it at a boundary."""
    return lead_case(rng, "DDU", rng.randint(2, 3), settle=True, first=worse_replace,
                     deeper_at_boundary=0.8, boundary_level=2, alone=0.9)


# --- the bench -----------------------------------------------------------------------


@dataclass
class Case:
    """A quiet state (the book's tops and depths, the registers), messages a few cycles apart (``gaps``
    before each but the first), and per message the exact path's orders."""
    tops: list
    depths: list
    config: StrategyConfig
    limits: RiskLimits
    records: list
    orders: list
    gaps: list = field(default_factory=list)


def set_quote(ctx, port, quote):
    for name in ("valid", "unknown", "price", "shares"):
        ctx.set(getattr(port, name), int(getattr(quote, name)))


def set_message(ctx, message, record):
    """The message's type, locate and its own fields, where ItchDecode's views put them."""
    ctx.set(message.as_value(), 0)
    ctx.set(message.type, ord(record["type"]))
    ctx.set(message.locate, record["locate"])
    view = getattr(message.fields, record["type"])
    add = ("order_ref", "side", "price", "shares")
    names = {"A": add, "F": add, "D": ("order_ref",),
             "U": ("original_order_ref", "new_order_ref", "price", "shares")}[record["type"]]
    for name in names:
        value = record[name]
        ctx.set(getattr(view, name), ord(value) if name == "side" else value)


def run_cases(cases, levels=4):
    """Per case, per message: the fast trigger's request (as the tuple ``expected`` gives), None, or "held"."""
    dut = FastPair(levels)
    fast, risk = dut.fast_trigger, dut.risk_gate
    results = []

    async def bench(ctx):
        for number, case in enumerate(cases):
            ctx.set(fast.target_quiet, 0)
            ctx.set(fast.lead_quiet, 0)
            ctx.set(fast.disturbed, 1)  # the registers are written
            for slot, (top, depth) in enumerate(zip(case.tops, case.depths)):
                for side in ("bid", "ask"):
                    set_quote(ctx, getattr(fast.tops[slot], side), getattr(top, side))
                    side_depth, port = getattr(depth, side), getattr(fast.depths[slot], side)
                    for name in ("alone", "best_refs", "next_alone", "next_refs"):
                        ctx.set(getattr(port, name), int(getattr(side_depth, name)))
                    set_quote(ctx, port.next, side_depth.next)
                    set_quote(ctx, port.third, side_depth.third)
                ctx.set(fast.tops[slot].unreliable, top.unreliable)
            ctx.set(fast.locates[0], LEAD_LOCATE)
            ctx.set(fast.locates[1], TARGET_LOCATE)
            config, limits = case.config, case.limits
            ctx.set(fast.strategy, StrategyKind.SNIPE if config.strategy == Strategy.SNIPE else StrategyKind.OFF)
            for name in ("lead_slot", "target_slot", "edge", "order_size"):
                ctx.set(getattr(fast, name), getattr(config, name))
            for name in RISK_PORTS:
                ctx.set(getattr(risk, name), int(getattr(limits, name)))
            ctx.set(risk.rate_burst, limits.rate_burst)
            ctx.set(risk.rate_burst_write, 1)
            await ctx.tick()
            ctx.set(risk.rate_burst_write, 0)
            ctx.set(fast.disturbed, 0)
            await ctx.tick().repeat(FAST_SETTLE_CYCLES + FORECAST_LATENCY + 8)
            ctx.set(fast.target_quiet, 1)
            ctx.set(fast.lead_quiet, 1)
            outputs = []
            # The book keeps its tops (it shows the messages only later); as in the Pipeline, being quiet
            # drops after the first message (for the lead, not after a target's add behind its quotes, and
            # only for TARGET_KEPT_CYCLES after a target's message the fast path kept), and an order's
            # frame on tx disturbs the state.
            # The cycle the lead is quiet from (None: not again in this case), and the cycles counted.
            clock = {"now": 0, "lead_quiet_from": 0}

            async def tick():
                await ctx.tick()
                clock["now"] += 1
                ctx.set(fast.lead_quiet, clock["lead_quiet_from"] is not None
                        and clock["now"] >= clock["lead_quiet_from"])

            for index, record in enumerate(case.records):
                for _ in range(case.gaps[index - 1] - 2 if index else 0):  # two ticks went below
                    await tick()
                set_message(ctx, fast.messages.p, record)
                ctx.set(fast.stamp.as_value(), pack_fields(Stamp, cycle=number * 16 + index, packet=number & 0xFF))
                ctx.set(fast.messages.valid, 1)
                ctx.set(fast.tracked, 1)
                quiet_from = clock["lead_quiet_from"]
                if ctx.get(fast.target_kept) and quiet_from is not None:
                    clock["lead_quiet_from"] = max(quiet_from, clock["now"] + TARGET_KEPT_CYCLES)
                elif not ctx.get(fast.target_still):
                    clock["lead_quiet_from"] = None
                await tick()
                ctx.set(fast.messages.valid, 0)
                ctx.set(fast.tracked, 0)
                ctx.set(fast.target_quiet, 0)
                for _ in range(FAST_LATENCY - 1):
                    await tick()
                if ctx.get(fast.fast.valid):
                    fields = layout_fields(RequestLayout, ctx.get(fast.fast.p.as_value()))
                    stamp = layout_fields(Stamp, fields["stamp"])
                    outputs.append((fields["slot"], fields["side"], fields["price"], fields["shares"],
                                    fields["fair_value"], fields["fair_valid"], stamp["cycle"]))
                    ctx.set(fast.disturbed, 1)
                    clock["lead_quiet_from"] = None
                    ctx.set(fast.lead_quiet, 0)
                else:
                    outputs.append(None)
                await tick()
                if ctx.get(fast.fast.valid):
                    outputs[-1] = "held"  # one request per message, for one cycle
            results.append(outputs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def predicted(case):
    """Whether the first message is one the fast path predicts: a lead add, or a lead delete or replace of
    the only order of its side's best level that leaves the side a known price; or a target's add that
    becomes its side's best quote, on a reliable lead with both sides priced, whose bound order
    (``target_bound_order``) the risk limits let through."""
    record = case.records[0]
    if record["locate"] == TARGET_LOCATE:
        return target_predicted(case, record)
    if record["locate"] != LEAD_LOCATE:
        return False
    if record["type"] in "AF":
        return True
    ref = record["order_ref"] if record["type"] == "D" else record["original_order_ref"]
    depth = next((depth for depth in (case.depths[0].bid, case.depths[0].ask)
                  if depth.alone and depth.best_refs == ref & REFS_MASK), None)
    if depth is None:
        return False
    return depth.next.valid if record["type"] == "D" else not depth.next.unknown


def target_predicted(case, record):
    """A target's add that improves its side, or a delete or replace of the only order of its best level
    (a replace: not to the old price or to the next level's, nor with orders beyond the known levels)."""
    lead, target = case.tops
    if lead.unreliable or target.unreliable or not (lead.bid.valid and lead.ask.valid):
        return False
    if record["type"] in "AF":
        side = Side.BID if record["side"] == "S" else Side.ASK  # the order a new ask makes is a buy
        quote = target.ask if side is Side.BID else target.bid
        better = record["price"] < quote.price if side is Side.BID else record["price"] > quote.price
        if not (quote.valid and better or not quote.valid and not quote.unknown):
            return False
    else:
        ref = (record["order_ref"] if record["type"] == "D" else record["original_order_ref"]) & REFS_MASK
        sides = [side for side in (Side.BID, Side.ASK)  # the order each side's quote makes
                 if (depth := getattr(case.depths[1], "ask" if side is Side.BID else "bid")).alone
                 and depth.best_refs == ref]
        if not sides:
            return False
        side = sides[0]
        depth = getattr(case.depths[1], "ask" if side is Side.BID else "bid")
        quote = target.ask if side is Side.BID else target.bid
        if record["type"] == "U" and (depth.next.unknown or record["price"] == quote.price
                                      or depth.next.valid and record["price"] == depth.next.price):
            return False
    price, shares = target_bound_order(lead, case.config, case.limits, "S" if side is Side.BID else "B")
    bound = OrderRequest(slot=1, side=side, price=price, shares=shares, fair_value=price, fair_valid=True)
    return RiskModel(case.limits).check(bound) is None


def as_output(order, stamp):
    return (order.slot, order.side.value, order.price, order.shares, order.fair_value, int(order.fair_valid), stamp)


def expected(case, number):
    """The exact path's order for a first message the fast path predicts; for the others none (they go the
    exact way)."""
    if not predicted(case) or not case.orders[0]:
        return None
    return as_output(case.orders[0][0], number * 16)  # a second (a sell after a buy) goes the exact way


def make_cases(make_case, rng, count):
    cases = []
    while len(cases) < count:
        case = make_case(rng)
        if case is not None:
            cases.append(case)
    return cases


def check_cases(make_case, rng, count):
    cases = make_cases(make_case, rng, count)
    wanted = [expected(case, number) for number, case in enumerate(cases)]
    got = run_cases(cases)
    for number, (want, have) in enumerate(zip(wanted, got)):
        assert have[0] == want, f"case {number} {cases[number].records[0]}: fast {have[0]}, exact path {want}"
    return cases, wanted


@pytest.mark.parametrize("seed", range(3))
def test_lead_adds_match_the_exact_path(seed):
    _, wanted = check_cases(random_case, random.Random(f"fast_trigger/{seed}"), 300)
    assert sum(w is not None for w in wanted) >= 20, "the cases reach orders"


@pytest.mark.parametrize("seed", range(3))
def test_target_adds_match_the_exact_path(seed):
    """A target's add that makes its quote stale is sent as the exact path sends it (price, shares, fair
    value), and nothing where the exact path sends nothing."""
    _, wanted = check_cases(lambda rng: random_case(rng, of_target=True), random.Random(f"fast_trigger/target/{seed}"),
                            300)
    assert sum(w is not None for w in wanted) >= 20, "the cases reach orders"


@pytest.mark.parametrize("seed", range(3))
def test_target_deletes_and_replaces_match_the_exact_path(seed):
    """A target's delete or replace of its best level's only order, which leaves the next level (or the
    replace's price) as its quote, is sent as the exact path sends it."""
    _, wanted = check_cases(target_removal_case, random.Random(f"fast_trigger/target_removal/{seed}"), 300)
    assert sum(w is not None for w in wanted) >= 20, "the cases reach orders"


@pytest.mark.parametrize("seed", range(3))
def test_lead_deletes_and_replaces_match_the_exact_path(seed):
    cases, wanted = check_cases(removal_case, random.Random(f"fast_trigger/removal/{seed}"), 400)
    fired = {type_: sum(w is not None for w, case in zip(wanted, cases) if case.records[0]["type"] == type_)
             for type_ in "DU"}
    assert min(fired.values()) >= 10, f"the cases reach orders: {fired}"


@pytest.mark.parametrize("seed", range(3))
def test_back_to_back_lead_messages_never_send_another_order(seed):
    """Messages 2 to 5 cycles apart, before the book shows them: the first is judged as alone; on a later
    one the fast path may stay silent (it keeps only what it predicted), but what it sends is the exact
    path's order for that message, on the state the messages before it left."""
    later = check_chains(make_cases(chain_case, random.Random(f"fast_trigger/chain/{seed}"), 500))
    assert later >= 5, f"orders on later messages: {later}"


@pytest.mark.parametrize("seed", range(2))
def test_removals_after_a_requote_away_from_the_book_match_the_exact_path(seed):
    """A replace of a side's only best order to a worse price leaves the second level best: the deletes
    and replaces of its order, and of the level beneath, are judged on what the book showed of them
    (the replace's order placed among them)."""
    later = check_chains(make_cases(requote_case, random.Random(f"fast_trigger/requote/{seed}"), 1000))
    assert later >= 25, f"orders after the requote: {later}"


@pytest.mark.parametrize("seed", range(2))
def test_messages_behind_the_best_prices_keep_the_state(seed):
    """An add behind a side's best price, or a delete of its second level's only order, leaves the best
    prices as they are: the fast path keeps the levels beneath as it moves them, and what it sends on
    a later message is the exact path's order."""
    later = check_chains(make_cases(behind_case, random.Random(f"fast_trigger/behind/{seed}"), 1000))
    assert later >= 25, f"orders after a message behind the best: {later}"


@pytest.mark.parametrize("seed", range(2))
def test_lead_moves_after_a_target_add_match_the_exact_path(seed):
    """A target's add behind its quote leaves the quotes the lead's orders take as they are: a lead move
    after it is judged (the Pipeline's count for the lead goes on); an add before the quote on which
    nothing fires is kept, and a lead move ``TARGET_KEPT_CYCLES`` or more after it is judged on the
    quote it left; what the fast path sends is the exact path's order."""
    later = check_chains(make_cases(target_first_case, random.Random(f"fast_trigger/target_first/{seed}"), 1000))
    assert later >= 25, f"orders after a target's add: {later}"


@pytest.mark.parametrize("seed", range(2))
def test_back_to_back_target_messages_match_the_exact_path(seed):
    """A target's message the fast path predicts and on which nothing fires is kept: the next target
    message, three cycles or more later, is judged on the quote it left (its price over the old best, or
    the next level over the third); what the fast path sends on it is the exact path's order."""
    later = check_chains(make_cases(target_chain_case, random.Random(f"fast_trigger/target_chain/{seed}"), 1000))
    assert later >= 15, f"orders on later target messages: {later}"


def check_chains(cases):
    """Runs ``cases`` (chains of messages): the first message is judged as alone, and what the fast path
    sends on a later one is the exact path's order for it, on the state the messages before it left.
    Returns how many orders it sent on later messages."""
    got = run_cases(cases)
    later = 0
    for number, (case, outputs) in enumerate(zip(cases, got)):
        assert outputs[0] == expected(case, number), f"case {number}, first message {case.records[0]}"
        for index in range(1, len(outputs)):
            if outputs[index] is None:
                continue
            want = case.orders[index][0] if case.orders[index] else None
            assert want is not None and outputs[index] == as_output(want, number * 16 + index), \
                f"case {number}, message {index} {case.records[index]}: fast {outputs[index]}, exact path {want}"
            assert not any(case.orders[:index]), "only after messages on which the exact path sent nothing"
            later += 1
    return later


def directed_chain(lead_orders, records, target=(100, 102), levels=4, gap=3):
    """The fast trigger's output per message, and the exact path's orders, for ``records`` sent ``gap``
    cycles apart on a quiet book: the target's bid and ask ``target`` and ``lead_orders`` ((reference, "B" or
    "S", price)), 50 shares each; the snipe with edge 0 and size 10, limits that pass every order; a book
    of ``levels`` levels a side."""
    book = BookModel(slots=2, capacity=4096, levels=levels, locates=[LEAD_LOCATE, TARGET_LOCATE])
    for locate, ref, side, price in ((TARGET_LOCATE, 1, "B", target[0]), (TARGET_LOCATE, 2, "S", target[1]),
                                     *((LEAD_LOCATE, *order) for order in lead_orders)):
        book.apply(add_record(locate, ref, side, price, 50))
    config = StrategyConfig(strategy=Strategy.SNIPE, lead_slot=0, target_slot=1, edge=0, order_size=10)
    limits = RiskLimits(max_qty=10_000, max_notional=2 ** 63, collar=1_000, max_long=10_000, max_short=10_000,
                        max_outstanding=5, rate_burst=3)
    tops, depths = book.tops(), book.depths()
    model = TriggerModel(config, slots=2, locates=[LEAD_LOCATE, TARGET_LOCATE])
    assert not model.evaluate(tops), "the state is quiet"
    orders = []
    for record in records:
        book.apply(record)
        orders.append(model.evaluate(book.tops(), record))
    got = run_cases([Case(tops, depths, config, limits, records, orders, gaps=[gap] * (len(records) - 1))], levels)
    return got[0], orders


def test_add_to_an_empty_side_then_its_delete_leaves_the_side_empty():
    """A kept add to an empty lead side has nothing beneath it: deleting it leaves the side without a
    price, so the sell the lead's lower sum would make (were the side's old price 0 taken) is not sent."""
    got, orders = directed_chain([(3, "S", 110)], [add_record(LEAD_LOCATE, 4, "B", 100, 50), delete(4)],
                                 target=(100, 110))
    assert orders == [[], []] and got == [None, None]


def delete(ref):
    return {"type": "D", "locate": LEAD_LOCATE, "order_ref": ref}


def replace(ref, new_ref, price):
    return {"type": "U", "locate": LEAD_LOCATE, "original_order_ref": ref, "new_order_ref": new_ref,
            "price": price, "shares": 50}


def add_bid(ref, price):
    return add_record(LEAD_LOCATE, ref, "B", price, 50)


def add_ask(ref, price):
    return add_record(LEAD_LOCATE, ref, "S", price, 50)


def target_add(ref, side, price):
    return add_record(TARGET_LOCATE, ref, side, price, 50)


#: Chains on a lead whose best ask is 102 (reference 4) and the target's quotes 100 and 102: a lead bid
#: below 98 fires the sell, a lead ask above 105 the buy. Per case: the lead's orders, the messages, and
#: on which the exact path fires. The fast path must send every one of those orders (the state the
#: messages before left is known), and nothing else.
KEPT_CHAINS = {
    # the market maker's requote: its best offer replaced by a worse one (at the third level, beyond
    # it), then the delete of the background offer it left best
    "requote to the third level": ([(3, "B", 100), (4, "S", 102), (5, "S", 104), (6, "S", 106)],
                                   [replace(4, 7, 106), delete(5)], [False, True]),
    "requote beyond the levels": ([(3, "B", 100), (4, "S", 102), (5, "S", 104), (6, "S", 106)],
                                  [replace(4, 7, 108), delete(5)], [False, True]),
    # adds behind the best bid, then deletes that make them best
    "add behind a lone best": ([(3, "B", 100), (4, "S", 102)], [add_bid(5, 97), delete(3)], [False, True]),
    "add joins the best": ([(3, "B", 100), (6, "B", 96), (4, "S", 102)], [add_bid(5, 100), delete(3)],
                           [False, False]),
    "add joins the second": ([(3, "B", 100), (6, "B", 99), (7, "B", 95), (4, "S", 102)],
                             [add_bid(5, 99), delete(3), delete(6)], [False, False, False]),
    "add between the best two": ([(3, "B", 100), (6, "B", 97), (4, "S", 102)],
                                 [add_bid(5, 98), delete(3), delete(5)], [False, False, True]),
    "add becomes the third": ([(3, "B", 100), (6, "B", 99), (4, "S", 102)],
                              [add_bid(5, 96), delete(3), delete(6)], [False, False, True]),
    "add over the third": ([(3, "B", 100), (6, "B", 99), (7, "B", 90), (4, "S", 102)],
                           [add_bid(5, 96), delete(3), delete(6)], [False, False, True]),
    # the delete of the second level's only order, then the best's
    "delete of the second": ([(3, "B", 100), (6, "B", 99), (7, "B", 96), (4, "S", 102)],
                             [delete(6), delete(3)], [False, True]),
    # the ask side empty (nothing fires without a fair value): the bid moves, then an ask comes; a bid
    # of 100 would make the buy on an ask of 106 (a sum of 206), 98 not
    "adds to an empty book": ([], [add_bid(5, 100), add_ask(8, 106)], [False, True]),
    "a bid improved, no ask": ([(3, "B", 98)], [add_bid(5, 100), add_ask(8, 106)], [False, True]),
    "a lone best bid replaced, no ask": ([(3, "B", 100), (6, "B", 97)], [replace(3, 7, 101), add_ask(8, 106)],
                                         [False, True]),
    "a lone best bid deleted, no ask": ([(3, "B", 100), (6, "B", 98)], [delete(3), add_ask(8, 106)],
                                        [False, False]),
    "a lone best bid deleted, no ask, then a higher ask": ([(3, "B", 100), (6, "B", 98)],
                                                           [delete(3), add_ask(8, 108)], [False, True]),
    # a target's add behind its quotes leaves them as they are: the lead's move after it is judged
    "a target offer behind its best, then the lead's ask up": ([(3, "B", 100), (4, "S", 102)],
                                                               [target_add(9, "S", 104), replace(4, 7, 106)],
                                                               [False, True]),
    "a target bid behind its best, then the lead's bid down": ([(3, "B", 100), (4, "S", 102)],
                                                               [target_add(9, "B", 99), replace(3, 7, 97)],
                                                               [False, True]),
}


@pytest.mark.parametrize("name", KEPT_CHAINS)
def test_kept_chains_send_the_exact_paths_orders(name):
    lead_orders, records, fires = KEPT_CHAINS[name]
    got, orders = directed_chain(lead_orders, records)
    assert [bool(order) for order in orders] == fires
    assert got == [as_output(order[0], index) if order else None for index, order in enumerate(orders)]


@pytest.mark.parametrize("side, lead_move", [("S", replace(4, 7, 106)), ("B", replace(3, 7, 97))])
def test_a_lead_move_after_a_kept_target_add_takes_its_quote(side, lead_move):
    """A target's add at a better price on which nothing fires is kept: ``TARGET_KEPT_CYCLES`` later a
    lead move is judged on the quote it left (a buy at 101, not at the ask of 102 before; a sell at 101,
    not at the bid of 100)."""
    got, orders = directed_chain([(3, "B", 100), (4, "S", 102)], [target_add(9, side, 101), lead_move],
                                 gap=TARGET_KEPT_CYCLES)
    assert not orders[0] and orders[1][0].price == 101
    assert got == [None, as_output(orders[1][0], 1)]


@pytest.mark.parametrize("side, lead_move", [("S", replace(4, 7, 106)), ("B", replace(3, 7, 97))])
def test_a_target_add_before_its_quote_is_not_taken_as_behind(side, lead_move):
    """A target's add at a better price than its quote is the quote the lead's move then fires on (a buy at
    101, not at the ask of 102 before; a sell at 101, not at the bid of 100): the fast path sends that
    order or none."""
    got, orders = directed_chain([(3, "B", 100), (4, "S", 102)], [target_add(9, side, 101), lead_move])
    assert not orders[0] and orders[1] and orders[1][0].price == 101
    assert got[0] is None and got[1] in (None, as_output(orders[1][0], 1))


@pytest.mark.parametrize("levels, fires", [(1, [False, False, False]), (2, [False, False, False]),
                                           (3, [False, False, True])])
def test_kept_states_show_no_level_beyond_the_books(levels, fires):
    """With fewer levels a side, an add behind the best two goes beyond the book's levels: once those two
    are deleted the side is unknown and nothing fires (with 3 levels, the add is the third: the sell)."""
    got, orders = directed_chain([(3, "B", 100), (6, "B", 99), (4, "S", 102)], [add_bid(5, 96), delete(3), delete(6)],
                                 levels=levels)
    assert [bool(order) for order in orders] == fires
    assert got == [as_output(order[0], index) if order else None for index, order in enumerate(orders)]


@pytest.mark.parametrize("slots", [0, 257, "2"])
def test_bad_slots_are_refused(slots):
    with pytest.raises(ValueError, match="slots must be"):
        FastTrigger(slots=slots)


@pytest.mark.parametrize("levels", [0, "4"])
def test_bad_levels_are_refused(levels):
    with pytest.raises(ValueError, match="levels must be"):
        FastTrigger(levels=levels)
