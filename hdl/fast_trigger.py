"""The fast path's trigger: the stale-quote snipe's order, decided in the cycle its message is decoded.

docs/pipeline.md ("Latency", "The fast path") is the plan; this is its first
part. The exact path (book, strategy, risk gate) takes 13 cycles from a
decoded message to an order; this stage predicts the order the exact path
will make, from registered state and one compare on the message, so that
the transmitter can start the frame in the next cycle. The transmitter
then waits for the exact path's order before the frame's last beat and
aborts the frame unless it is the same (``OrderTx``, ``fast``), so a wrong
prediction never leaves as a valid order; a missed one leaves late, by the
exact path.

What it predicts (the rest goes the exact way), while the other side of the
lead has a price, the lead is reliable, the snipe is the active strategy and
the pipeline is quiet for it (``lead_quiet``: no message, request or order in
flight that the registered state does not show yet; the ``Pipeline`` works
that out):

- an A or F of the lead instrument that improves the lead's best price on
  its side (or gives an empty side its first price, as when a market maker
  replaces its quote by a cancel and an add): the side's new price is the
  message's;
- a D of the only order of the best level of a lead side (the book's
  ``depths``: a level of one order names it by its ``refs``) whose next
  level is known: the side's new price is that level's;
- a U of such an order (a replace keeps its side), unless orders beyond the
  known levels leave the side unknown: the new price is the better of the
  message's and the next level's.

And of the target, on the state the book shows (``target_quiet``) or the one
a kept target's message left (below), the lead reliable with both sides
priced:

- an A or F that improves the target's best price on its side (or gives an
  empty side its first): its order, if the snipe's condition holds on the
  new quote, takes the message's price for ``min(order_size, its shares)``;
- a D of the only order of the target's best level (the book's ``depths``
  name it, as the lead's): the next level is the quote, and its price and
  ``min(order_size, its shares)`` the order;
- a U of such an order: the better of its price and the next level's is
  the quote (not when the side has orders beyond the known levels, nor for
  a replace to the old price or to the next level's, which the exact path
  judges).

  The strategy's ``armed`` flags need no copy here: a side is disarmed only
  at the quote it last fired at, and the new quote is another price. The
  risk gate cannot check an order that comes with its message in the same
  cycle, so it forecasts a bound on it (``order_size`` at the highest price
  that fires, for a buy, or that passes the collar, for a sell), and only
  orders under a bound that passes go out fast.

A new price ``p`` on one side makes the sum ``S`` of the lead's quotes ``p``
plus the other side's price, so each of the strategy's conditions on ``S``
(``hdl/trigger.py``: buy when ``2 (target ask + edge + 1) <= S``, sell when
``2 (target bid - edge) > S``) is a threshold on ``p``, worked out ahead for
either side; for a delete the sum is known ahead, and the conditions are
worked out on it; a replace's are those of its price or of the next level
(either, or both, by the side and the direction of the condition). A side
fires only if its condition did not hold before (in a quiet state a
condition that held has fired or was disarmed by its quote, which has not
changed; with a lead side empty, none held); a buy before a sell, as the
strategy sends them (the sell then goes the exact way). The order is the one
the strategy makes: the target's quote on that side, ``min(order_size, its
shares)``, fair value ``S >> 1``. It goes out only if the risk gate's
forecast for that order (``risk_ok``: every check but the collar, from the
gate's state) and the collar against the new fair value (one more
threshold) pass, so that the gate would accept it.

Back-to-back messages: the messages of a packet come a few cycles apart,
before the book shows the one before (being quiet needs ``QUIET_CYCLES`` of
the ``Pipeline`` after each, or ``SAME_QUIET_CYCLES`` between messages of
one instrument). A message the fast path predicts and on which
nothing fires (no condition of the strategy starts to hold: the exact path
makes no request) is "kept": the lead state it leaves replaces the book's
in the first cycle's registers, and the next message of the lead, three
cycles or more later, is judged on it. That state is the side's new price
and the sum, and beneath the price what the book's ``depths`` showed
(which of the best two levels holds one order, and which; the quotes of the
second and third levels) moved as the message moves the levels: an add or
a replace that takes the best price is alone there, over the levels it
passed; after a removal that leaves the next level best, that level is
named as the second was, over the third, or over a replace's order where it
goes between (else what is below is left unknown, and the fast path judges
no removal there until the book shows it). A lead message that leaves the
best prices as they are is kept too, its state the same but beneath the
best: an add behind a side's best price (joining it, or at or between the
levels beneath), or a delete of the second level's only order. So the
market maker's requote that moves the best bid or offer away (a replace to
a worse price, then deletes of the background orders it leaves best, or
beneath them) is judged message by message. A move of one side of the lead
while its other side is empty (not unknown) cannot fire (there is no fair
value) and is kept as well, so that the empty side's first price is judged
on it (a market maker's new bid, then its new ask). The state
stays ahead of the book until ``lead_quiet`` (the book has caught up), and is
dropped by any message the fast path did not keep and by anything
``disturbed`` names, but not by a target's add behind the target's quotes
(``target_still``): what the lead's messages are judged on (the target's
quotes, the risk gate's forecast of the orders on them) does not move. (Such
an add could still collide in the book's table and make the target
unreliable, which the fast path cannot see: its order is then aborted.)

The target's messages the fast path predicts and on which the snipe's
condition does not start to hold are kept the same way, in a state of their
own (``target_held``): the quote the message moved replaces the book's in
the first cycle's registers (the message's price and shares, alone at the
best level, over the old best for an add; or the next level, named as the
second was, over the third for a delete, over what is not known for a
replace), and the next target message three cycles or more later is judged
on it, until ``target_quiet``. The lead's messages after it are judged
on it too, once the thresholds and the risk gate's forecast of their orders
have followed (``target_kept``: the ``Pipeline`` counts ``TARGET_KEPT_CYCLES``
for the lead). The kept quote stays through the lead's messages (they do not
move it) until the book has caught up, but a target message after a lead
message waits for ``target_quiet`` (the forecast of its order follows the
lead's prices). If a prediction was wrong, the exact path's orders
differ and the transmitter aborts the fast frame, as for any wrong
prediction.

Timing: the thresholds are registered from ``tops``, ``depths`` and the
registers (two cycles, settled by the time it is quiet); in the cycle a message
is at ``messages``, one compare per threshold (and the 32-bit reference
compare of a removal) and the verdict is registered: a few bits and the
message's fields. The request at ``fast`` is made of registers in the next
cycle, with the message's stamp, and so is the state a kept message leaves,
which the thresholds follow two cycles later.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import ItchMessage
from .order_types import (PRICE_WIDTH, REFS_WIDTH, SHARES_WIDTH, OrderRequest, Side, SideDepth,
                          Stamp, book_depths, book_tops)
from .risk_gate import FORECAST_LATENCY, FORECAST_ORDERS, ForecastOrder
from .stream import rx_stream
from .trigger import StrategyKind, _check_slots, _slot_shape

__all__ = ["FastTrigger", "FAST_LATENCY", "FAST_SETTLE_CYCLES", "TARGET_KEPT_CYCLES"]

#: Cycles from a message at ``messages`` to its predicted order at ``fast``.
FAST_LATENCY = 1
#: Cycles ``tops`` and the registers must hold still before a message is judged on them.
FAST_SETTLE_CYCLES = 2
#: Cycles from a kept target's message at ``messages`` to the first cycle a lead message may be judged
#: on the quote it left: the verdict, the quote in the first registers, the thresholds, and the risk
#: gate's forecast of the lead's orders on it.
TARGET_KEPT_CYCLES = FAST_LATENCY + FAST_SETTLE_CYCLES + FORECAST_LATENCY

#: Wide enough for 2 (price + limit + 1) - price with 32-bit operands, signed.
_THRESHOLD = signed(PRICE_WIDTH + 3)


class _LeadSide(data.Struct):
    """What the fast path keeps of one side of the lead."""
    price: PRICE_WIDTH
    known: 1      # the side has a price
    ready: 1      # an add there can fire: the other side known, the lead reliable, the snipe active,
                  # and the side itself known or empty (an add to an empty side makes it known)
    removable: 1  # a removal there can fire: the same but for the side's own state
    one_sided: 1  # the other side is empty (not unknown), the lead reliable, the snipe active, and this
                  # side known or empty: a move here cannot fire (there is no fair value), and is kept
    depth: SideDepth


class _LeadState(data.Struct):
    """The lead as the fast path judges a message on it: the book's, or its own prediction's."""
    bid: _LeadSide
    ask: _LeadSide
    sum: PRICE_WIDTH + 1  # bid + ask
    fair_valid: 1         # both sides known


class _TargetQuote(data.Struct):
    """The target's quote an order of one side takes (a buy: the ask), as the fast path judges a message on
    it: the book's, or its own prediction's."""
    price: PRICE_WIDTH
    shares: SHARES_WIDTH
    formable: 1  # valid, and the target reliable
    valid: 1
    open: 1      # valid, or the side empty (not unknown): an add there is its best level
    depth: SideDepth


class _Verdict(data.Struct):
    """What the fast path decided on a message, and the fields it needs of it a cycle later."""
    fire: 2           # per side (index Side): its order is sent
    target: 1         # a target's message fired it: its order takes the message's ``price`` for
                      # ``target_shares``, or (``takes_message`` of its side low) the side's next level
    takes_message: 2  # per side (index Side)
    target_shares: SHARES_WIDTH  # min(order_size, the message's shares)
    target_keep: 1    # a target's message was predicted and nothing fired on it: its quote replaces the book's
    target_buy: 1     # of those, one that moved the quote a buy takes (the target's ask)
    shares: SHARES_WIDTH  # the message's shares (an add's, a replace's)
    keep: 1           # the message was predicted and nothing fired on it: its state replaces the book's
    still: 1          # of those, one that leaves the best prices as they are (behind them)
    ask_side: 1       # the side of the lead it moved
    takes_price: 1    # that side's new best is the message's price (else the side's next level)
    is_add: 1
    is_replace: 1
    price: PRICE_WIDTH
    new_ref: REFS_WIDTH  # the order it added (an A's or F's, a U's new one), as a level's refs keep it
    stamp: Stamp


class _Candidate(data.Struct):
    """The order one side would make if a lead move fired it."""
    price: PRICE_WIDTH
    shares: SHARES_WIDTH
    formable: 1  # the target's quote is valid and the target reliable
    holds: 1     # the condition holds already (it cannot fire on a lead move)
    valid: 1     # the target's quote is valid
    open: 1      # ... or its side is empty (not unknown): an add there is its best level


class FastTrigger(wiring.Component):
    """Predicts the snipe's order on a lead message that moves the lead's best price, or a target's message
    that moves the target's; see the module docstring.

    Parameters
    ----------
    slots : int
        Tracked instruments.
    levels : int
        The price levels the book keeps per side: a kept state shows no level
        beneath the best that the book cannot hold (it would be beyond its
        levels, unknown).

    Interface attributes
    --------------------
    messages : In(ItchMessage stream)
        Decoded messages, as the book sees them.
    stamp : In(Stamp)
        Stamp of the message at ``messages``.
    tops : In(book_tops(slots))
        The book's registered tops.
    depths : In(book_depths(slots))
        What is beneath them (the book's ``depths``).
    locates : In(ArrayLayout(16, slots))
        Each slot's stock locate.
    strategy, lead_slot, target_slot, edge, order_size : In
        The strategy registers.
    collar : In(32)
        The risk gate's collar register.
    forecast_orders : Out(ArrayLayout(ForecastOrder, FORECAST_ORDERS))
        For the risk gate's forecast: the buy (index 0) and the sell (1) a
        lead move would make; a bound on the buy (2) and the sell (3) a
        target's message would make (``order_size`` at the highest price
        that passes the snipe's condition or the collar).
    risk_ok : In(FORECAST_ORDERS)
        The risk gate's forecast for those orders: every check but the
        collar passes.
    lead_quiet, target_quiet : In(1)
        A message of the lead (of the target) may be judged on the state the
        book shows: nothing is in flight that ``tops``, ``depths`` and the
        ``risk_ok`` of its orders do not show yet, and they have held still
        for ``FAST_SETTLE_CYCLES`` (the ``Pipeline`` counts this).
    tracked : In(1)
        The message at ``messages`` is of a tracked instrument (or has a gap).
    target_still : Out(1)
        The message at ``messages`` is a target's add behind its side's best
        price, on the state the book shows (``target_quiet``): the target's
        quotes stay as they are, so the ``Pipeline`` need not restart the
        lead's count for it, and a kept lead state stays.
    target_kept : Out(1)
        The message at ``messages`` is a target's message the fast path keeps
        (see the module docstring): the lead's messages may be judged on the
        quote it leaves ``TARGET_KEPT_CYCLES`` after it, when the thresholds
        and the risk gate's forecast of the lead's orders have followed.
    disturbed : In(1)
        Something other than a message moves the state: a request, an order,
        a frame on ``tx``, a bad packet's end, a register write, a book clear.
    fast : Out(OrderRequest stream, no backpressure)
        The predicted order, registered, ``FAST_LATENCY`` after its message.
    """

    def __init__(self, *, slots=2, levels=4):
        _check_slots(slots)
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be >= 1, not {levels!r}")
        self.slots = slots
        self.levels = levels
        slot = _slot_shape(slots)
        super().__init__({
            "messages": In(rx_stream(ItchMessage)),
            "stamp": In(Stamp),
            "tops": In(book_tops(slots)),
            "depths": In(book_depths(slots)),
            "locates": In(data.ArrayLayout(16, slots)),
            "strategy": In(StrategyKind),
            "lead_slot": In(slot),
            "target_slot": In(slot),
            "edge": In(PRICE_WIDTH),
            "order_size": In(32),
            "collar": In(PRICE_WIDTH),
            "risk_ok": In(FORECAST_ORDERS),
            "lead_quiet": In(1),
            "target_quiet": In(1),
            "tracked": In(1),
            "disturbed": In(1),
            "forecast_orders": Out(data.ArrayLayout(ForecastOrder, FORECAST_ORDERS)),
            "target_still": Out(1),
            "target_kept": Out(1),
            "fast": Out(rx_stream(OrderRequest)),
        })

    def elaborate(self, platform):
        m = Module()
        lead = self.tops[self.lead_slot]
        target = self.tops[self.target_slot]
        snipe = self.strategy == StrategyKind.SNIPE

        # First cycle: the registers, the quotes, and the lead's state: the book's, while it is up
        # to date, or the state the messages the fast path predicted leave (`ahead`), which the book
        # shows only some cycles later (see "Back-to-back messages" in the module docstring).
        lead_now = Signal(_LeadState)  # the book's
        depth = self.depths[self.lead_slot]
        for side, own, other, own_depth in ((Side.BID, lead.bid, lead.ask, depth.bid),
                                            (Side.ASK, lead.ask, lead.bid, depth.ask)):
            view = lead_now.bid if side is Side.BID else lead_now.ask
            m.d.comb += [view.price.eq(own.price), view.known.eq(own.valid),
                         view.ready.eq(snipe & ~lead.unreliable & other.valid & (own.valid | ~own.unknown)),
                         view.removable.eq(snipe & ~lead.unreliable & other.valid),
                         view.one_sided.eq(snipe & ~lead.unreliable & ~other.valid & ~other.unknown
                                           & (own.valid | ~own.unknown)),
                         view.depth.eq(own_depth)]
        m.d.comb += [lead_now.sum.eq(lead.bid.price + lead.ask.price),
                     lead_now.fair_valid.eq(lead.bid.valid & lead.ask.valid)]
        state = Signal(_LeadState)
        predicted = Signal(_LeadState)  # the state the message now leaves, if it is kept
        keep = Signal()     # the message now is one the fast path predicted, and nothing fires on it
        ahead = Signal()    # `state` is the prediction's, ahead of the book
        # The message's verdict, registered: a kept message's state is made from it in the next
        # cycle, and `held_state` shows it two cycles after that.
        verdict = Signal(_Verdict)
        applied = Signal()  # `state` was replaced by a prediction in the cycle before
        with m.If(verdict.keep & ahead):
            m.d.sync += state.eq(predicted)
        with m.Elif(~ahead | self.lead_quiet):
            m.d.sync += state.eq(lead_now)
        m.d.sync += [ahead.eq(~self.disturbed & Mux(self.tracked & ~self.target_still, keep,
                                                    ahead & ~self.lead_quiet)),
                     applied.eq(verdict.keep)]

        lead_locate = Signal(16)
        target_locate = Signal(16)
        target_reliable = Signal()
        target_slot = Signal.like(self.target_slot)
        # The target's quote each order takes (index Side: a buy takes the ask), the book's or, after a
        # target's message the fast path kept, its prediction (as the lead's `state`), until the book has
        # caught up (`target_quiet`).
        target_now = Signal(data.ArrayLayout(_TargetQuote, 2))
        target_book = self.depths[self.target_slot]
        for side, quote, depth_side in ((Side.BID, target.ask, target_book.ask),
                                        (Side.ASK, target.bid, target_book.bid)):
            view = target_now[side.value]
            m.d.comb += [view.price.eq(quote.price), view.shares.eq(quote.shares),
                         view.formable.eq(quote.valid & ~target.unreliable), view.valid.eq(quote.valid),
                         view.open.eq(quote.valid | ~quote.unknown), view.depth.eq(depth_side)]
        target_state = Signal.like(target_now)
        target_predicted = Signal.like(target_now)  # the state the target's message now leaves, if kept
        target_keep = Signal()     # the message now is a target's the fast path predicted, and nothing fires on it
        target_held = Signal()     # `target_state` is the prediction's, ahead of the book (a lead message
        # leaves it: it does not move the target's quotes)
        target_ahead = Signal()    # ... and only kept target messages came since: the next target
        # message may be judged on it (after a lead message, its orders wait for the forecast)
        target_applied = Signal()  # `target_state` was replaced by a prediction in the cycle before
        lead_message = Signal()    # the message now is the lead's
        with m.If(verdict.target_keep & target_held):
            m.d.sync += target_state.eq(target_predicted)
        with m.Elif(~target_held | self.target_quiet):
            m.d.sync += target_state.eq(target_now)
        m.d.sync += [target_held.eq(~self.disturbed & Mux(self.tracked & ~lead_message, target_keep,
                                                          target_held & ~self.target_quiet)),
                     target_ahead.eq(~self.disturbed & Mux(self.tracked, target_keep,
                                                           target_ahead & ~self.target_quiet)),
                     target_applied.eq(verdict.target_keep)]
        quotes = {side: target_state[side.value] for side in Side}
        edge = Signal.like(self.edge)
        collar = Signal.like(self.collar)
        order_size = Signal.like(self.order_size)
        m.d.sync += [
            lead_locate.eq(self.locates[self.lead_slot]),
            target_locate.eq(self.locates[self.target_slot]),
            target_reliable.eq(~target.unreliable), target_slot.eq(self.target_slot),
            edge.eq(self.edge), collar.eq(self.collar), order_size.eq(self.order_size),
        ]

        # Second cycle: each side's candidate order and the thresholds of the lead price. On the
        # lead's sum S after the move: a buy fires from 2 (ask + edge + 1) on and fails the collar
        # from 2 (ask + collar + 1) on; a sell fires below 2 (bid - edge) and fails the collar at
        # 2 (bid - collar) - 1 and below. A new price p on one side makes S = p + the other side's
        # price, so each limit less that price is a threshold for p, for either side moved. A
        # removal's new price, the side's next level, is known already: it is compared with the
        # thresholds here.
        def sides_of(lead_state):
            return {Side.BID: lead_state.bid, Side.ASK: lead_state.ask}

        now = sides_of(state)
        candidates = {side: Signal(_Candidate, name=f"{side.name.lower()}_candidate") for side in Side}
        limits = {
            Side.BID: (2 * (quotes[Side.BID].price + edge + 1), 2 * (quotes[Side.BID].price + collar + 1)),
            Side.ASK: (2 * (quotes[Side.ASK].price - edge), 2 * (quotes[Side.ASK].price - collar) - 1),
        }

        def judge(side, price, fires_from, collar_from):
            """Whether ``side``'s candidate fires, and passes the collar, on a new lead price ``price``."""
            if side is Side.BID:
                return price >= fires_from, price < collar_from
            return price < fires_from, price > collar_from

        other_side = {Side.BID: Side.ASK, Side.ASK: Side.BID}
        thresholds = {}  # (side moved, candidate) -> (fires from, collar from)
        # (side moved, candidate) -> the candidate fires / passes the collar with the side's next level
        next_fires, next_collar_ok = {}, {}
        for side, candidate in candidates.items():
            quote = quotes[side]
            fires_limit, collar_limit = limits[side]
            m.d.comb += [self.forecast_orders[side.value].price.eq(candidate.price),
                         self.forecast_orders[side.value].shares.eq(candidate.shares)]
            holds = fires_limit <= state.sum if side is Side.BID else fires_limit > state.sum
            m.d.sync += [
                candidate.price.eq(quote.price),
                candidate.shares.eq(Mux(quote.shares < order_size, quote.shares, order_size)),
                candidate.formable.eq(quote.formable),
                candidate.holds.eq(state.fair_valid & holds),
                candidate.valid.eq(quote.valid), candidate.open.eq(quote.open),
            ]
            for moved in Side:
                values = (fires_limit - now[other_side[moved]].price, collar_limit - now[other_side[moved]].price)
                pair = (Signal(_THRESHOLD, name=f"{moved.name.lower()}_move_{side.name.lower()}_fires_from"),
                        Signal(_THRESHOLD, name=f"{moved.name.lower()}_move_{side.name.lower()}_collar_from"))
                m.d.sync += [register.eq(value) for register, value in zip(pair, values)]
                thresholds[moved, side] = pair
                flags = (Signal(name=f"{moved.name.lower()}_next_{side.name.lower()}_fires"),
                         Signal(name=f"{moved.name.lower()}_next_{side.name.lower()}_collar_ok"))
                m.d.sync += [flag.eq(value) for flag, value in
                             zip(flags, judge(side, now[moved].depth.next.price, *values))]
                next_fires[moved, side], next_collar_ok[moved, side] = flags
        # A target's message: its new quote p (an add's price, if better or the side is empty; after a
        # removal the next level's, or a replace's price). On the lead's sum S as it is, the buy fires when 2 p <= S - 2 (edge + 1) and passes the
        # collar when 2 p > S - 2 (collar + 1); the sell fires when 2 p > S + 2 edge and passes the
        # collar when 2 p <= S + 2 collar. Its order is p for min(order_size, the quote's shares); the
        # gate forecasts a bound on it: order_size at the highest price that fires (a buy: fair -
        # edge - 1) or passes the collar (a sell: fair + collar), more than any such order.
        limit_values = {"buy_fires_to": state.sum - 2 * (edge + 1), "buy_collar_above": state.sum - 2 * (collar + 1),
                        "sell_fires_above": state.sum + 2 * edge, "sell_collar_to": state.sum + 2 * collar}
        target_limits = {name: Signal(_THRESHOLD, name=f"target_{name}") for name in limit_values}
        m.d.sync += [target_limits[name].eq(value) for name, value in limit_values.items()]

        def target_fires(side, price, limits):
            """The snipe's condition holds for ``side``'s order at the target's new ``price``."""
            twice = price << 1
            return twice <= limits["buy_fires_to"] if side is Side.BID else twice > limits["sell_fires_above"]

        def target_holds(side, price, limits):
            """The snipe's condition and the collar hold for ``side``'s order at the target's new ``price``."""
            twice = price << 1
            collar_ok = twice > limits["buy_collar_above"] if side is Side.BID else twice <= limits["sell_collar_to"]
            return target_fires(side, price, limits) & collar_ok

        # A removal of the only order of the target's best level leaves the next level best (a
        # replace, the better of it and the message's price): its verdict and order, worked out ahead.
        held_target_sides = {side: Signal(SideDepth, name=f"{side.name.lower()}_target_depth") for side in Side}
        next_holds = {side: Signal(name=f"{side.name.lower()}_target_next_holds") for side in Side}
        next_starts = {side: Signal(name=f"{side.name.lower()}_target_next_fires") for side in Side}  # no collar
        next_shares = {side: Signal(SHARES_WIDTH, name=f"{side.name.lower()}_target_next_shares") for side in Side}
        for side, quote in quotes.items():
            next_level = quote.depth.next
            m.d.sync += [held_target_sides[side].eq(quote.depth),
                         next_holds[side].eq(next_level.valid & target_holds(side, next_level.price, limit_values)),
                         next_starts[side].eq(next_level.valid & target_fires(side, next_level.price, limit_values)),
                         next_shares[side].eq(Mux(next_level.shares < order_size, next_level.shares, order_size))]
        fair_now = state.sum >> 1
        highest_buy, highest_sell = fair_now - edge - 1, fair_now + collar
        bounds = {Side.BID: Signal(PRICE_WIDTH, name="target_buy_bound"),
                  Side.ASK: Signal(PRICE_WIDTH, name="target_sell_bound")}
        m.d.sync += [bounds[Side.BID].eq(Mux(highest_buy[-1], 0, highest_buy)),
                     bounds[Side.ASK].eq(Mux(highest_sell[PRICE_WIDTH:].any(), (1 << PRICE_WIDTH) - 1, highest_sell))]
        for side, bound in bounds.items():
            m.d.comb += [self.forecast_orders[2 + side.value].price.eq(bound),
                         self.forecast_orders[2 + side.value].shares.eq(order_size)]

        # The lead state of the candidates, registered along with them, and the sum with each
        # side's next level in place of its best.
        held_state = Signal(_LeadState)
        held_next_sum = {side: Signal(PRICE_WIDTH + 1, name=f"{side.name.lower()}_next_sum") for side in Side}
        held_locate = Signal.like(lead_locate)
        held_target_locate = Signal.like(target_locate)
        held_target_reliable = Signal()
        held_slot = Signal.like(target_slot)
        m.d.sync += [held_state.eq(state), held_locate.eq(lead_locate), held_slot.eq(target_slot),
                     held_target_locate.eq(target_locate), held_target_reliable.eq(target_reliable),
                     *(held_next_sum[side].eq(now[side].depth.next.price + now[other_side[side]].price)
                       for side in Side)]
        held = sides_of(held_state)

        # The message, a lead A, F, D or U, and the side of the lead it moves: an add's own side;
        # for a delete or a replace, the side whose best level is that one order alone. Its fields
        # are taken from the views of the body (an F's at an A's places, a D's reference at a U's
        # original one), not from the decoded ones, which pass through a multiplexer by type.
        message = self.messages.p

        def better_than(side, price, than):
            return price > than if side is Side.BID else price < than

        order_ref = message.fields.D.order_ref
        removes = {side: held[side].depth.alone & (order_ref[:REFS_WIDTH] == held[side].depth.best_refs)
                   for side in Side}
        removes_second = {side: held[side].depth.next_alone & (order_ref[:REFS_WIDTH] == held[side].depth.next_refs)
                          for side in Side}
        is_add = (message.type == ord("A")) | (message.type == ord("F"))
        is_delete = message.type == ord("D")
        is_replace = message.type == ord("U")
        price = Mux(is_replace, message.fields.U.price, message.fields.A.price)  # the moved side's new order
        ask_side = Mux(is_add, message.fields.A.side == ord("S"), removes[Side.ASK] | removes_second[Side.ASK])
        # Per side moved: the message moves that side's best price, and the candidates can be judged
        # (`moves`), or nothing can fire on it, the other side being empty (`moves_alone`).
        moves, moves_alone = {}, {}
        stays = {}  # per side: the message leaves its best price as it is (an add behind it, a delete of
        # the second level's only order), and the state stays known
        for side in Side:
            better = better_than(side, price, held[side].price)
            next_level = held[side].depth.next
            for kind, add_flag, removal_flag in ((moves, held[side].ready, held[side].removable),
                                                 (moves_alone, held[side].one_sided, held[side].one_sided)):
                kind[side] = Mux(is_add, add_flag & (~held[side].known | better),
                                 removes[side] & removal_flag
                                 & Mux(is_delete, next_level.valid, is_replace & ~next_level.unknown))
            stays[side] = held[side].removable & Mux(is_add, held[side].known & ~better,
                                                     is_delete & removes_second[side])
        # `held_state` is the state this message finds: the book's, or a kept message's (three
        # cycles or more before).
        judged = self.lead_quiet | (ahead & ~verdict.keep & ~applied)
        m.d.comb += lead_message.eq(self.messages.valid & ~message.gap & (message.locate == held_locate)
                                    & (held_locate != 0))
        of_lead = lead_message & judged
        lead_move = of_lead & Mux(ask_side, moves[Side.ASK], moves[Side.BID])
        still = of_lead & Mux(ask_side, stays[Side.ASK], stays[Side.BID])
        lone_move = of_lead & Mux(ask_side, moves_alone[Side.ASK], moves_alone[Side.BID])
        # A replace's new best is the better of its price and the next level (if any); the lead's sum
        # follows. A condition on S that holds for larger S holds on the better of two prices if it
        # holds on either for the bid (the larger), on both for the ask (the smaller); the other way
        # round for a condition that holds for smaller S.
        takes_price = {}
        for side in Side:
            next_level = held[side].depth.next
            beats_next = better_than(side, price, next_level.price)
            takes_price[side] = is_add | (is_replace & (~next_level.valid | beats_next))

        def moved_to(moved, on_price, on_next, larger):
            """A condition on the sum after the move of ``moved``: ``larger`` if it holds for larger sums."""
            next_valid = held[moved].depth.next.valid
            either = (moved is Side.BID) == larger
            on_replace = on_price | (next_valid & on_next) if either else on_price & (~next_valid | on_next)
            return Mux(is_add, on_price, Mux(is_delete, on_next, on_replace))

        newly, fire = {}, {}
        for side, candidate in candidates.items():
            fires, collar_ok = {}, {}  # by the side moved: the condition holds, the collar passes
            for moved in Side:
                on_price = judge(side, price, *thresholds[moved, side])
                larger = side is Side.BID  # a buy's condition holds for larger sums, its collar for smaller
                fires[moved] = moved_to(moved, on_price[0], next_fires[moved, side], larger)
                collar_ok[moved] = moved_to(moved, on_price[1], next_collar_ok[moved, side], not larger)
            # the strategy fires on it (if the target's quote allows), and the order passes the gate
            newly[side] = lead_move & Mux(ask_side, fires[Side.ASK], fires[Side.BID]) & ~candidate.holds
            fire[side] = (newly[side] & Mux(ask_side, collar_ok[Side.ASK], collar_ok[Side.BID])
                          & candidate.formable & self.risk_ok[side.value])
        m.d.comb += keep.eq((lead_move & ~newly[Side.BID] & ~newly[Side.ASK]) | still | lone_move)

        # A target's message, on the state as the book shows it (``target_quiet``), the lead reliable and both
        # its sides priced: an add that improves its side, or a delete or a replace of the only order
        # of its best level; the quote it leaves, the condition and the collar on it, the gate's
        # forecast of the bound. A buy takes the target's ask (the BID candidate's quote).
        # (`target_state` is the book's, or a kept target message's, three cycles or more before.)
        target_judged = self.target_quiet | (target_ahead & ~verdict.target_keep & ~target_applied)
        target_message = (self.messages.valid & ~message.gap & (message.locate == held_target_locate)
                          & (held_target_locate != 0) & (held_target_locate != held_locate))
        of_target = (target_message & target_judged & (is_add | is_delete | is_replace) & held_target_reliable
                     & held_state.bid.removable & held_state.ask.removable)
        adds_ask = message.fields.A.side == ord("S")
        message_shares = Mux(is_replace, message.fields.U.shares, message.fields.A.shares)
        # (each compare on the add's and the replace's own price, chosen after: not behind `price`'s
        # multiplexer by type, which the lead's compares load already)
        add_price, replace_price = message.fields.A.price, message.fields.U.price
        target_fire, takes_message, target_moves, target_keeps = {}, {}, {}, {}
        for side, candidate in candidates.items():
            depth_side = held_target_sides[side]
            next_level = depth_side.next

            def better(price, than, side=side):  # a buy takes the ask: lower is better there
                return price < than if side is Side.BID else price > than

            adds_here = (adds_ask if side is Side.BID else ~adds_ask) & candidate.open
            removes = depth_side.alone & (order_ref[:REFS_WIDTH] == depth_side.best_refs)
            beats_next = ~next_level.valid | better(replace_price, next_level.price)
            takes_message[side] = is_add | (is_replace & beats_next)
            moves_quote = Mux(is_add, adds_here & (~candidate.valid | better(add_price, candidate.price)),
                              removes & (is_delete | (is_replace & ~next_level.unknown
                                                      & (replace_price != candidate.price)
                                                      & (beats_next | (replace_price != next_level.price)))))
            holds = Mux(is_add, target_holds(side, add_price, target_limits),
                        Mux(is_replace & beats_next, target_holds(side, replace_price, target_limits),
                            next_holds[side]))
            target_fire[side] = of_target & moves_quote & holds & self.risk_ok[2 + side.value]
            # Kept if the condition does not start to hold (the strategy makes no request), and the quote it
            # leaves is known (the next level's, if that is not unknown).
            starts = Mux(is_add, target_fires(side, add_price, target_limits),
                         Mux(is_replace & beats_next, target_fires(side, replace_price, target_limits),
                             next_starts[side]))
            target_moves[side] = of_target & moves_quote
            target_keeps[side] = target_moves[side] & ~starts & (takes_message[side] | ~next_level.unknown)
        m.d.comb += [target_keep.eq((target_keeps[Side.BID] & ~target_moves[Side.ASK])
                                    | (target_keeps[Side.ASK] & ~target_moves[Side.BID])),
                     self.target_kept.eq(target_keep)]
        # A target's add behind its side's best price leaves its quotes as they are: nothing the
        # lead's messages are judged on moves (``target_still``).
        behind_ask = adds_ask & candidates[Side.BID].valid & (add_price > candidates[Side.BID].price)
        behind_bid = ~adds_ask & candidates[Side.ASK].valid & (add_price < candidates[Side.ASK].price)
        m.d.comb += self.target_still.eq(target_message & self.target_quiet & is_add & (behind_ask | behind_bid))

        # All that is decided on the message is registered (a few bits), with its fields; the
        # request and the state a kept message leaves are made of registers in the next cycle
        # (`held_*` and the candidates hold still around a judged message).
        m.d.sync += [
            verdict.fire.eq(Cat(fire[Side.BID] | target_fire[Side.BID], fire[Side.ASK] | target_fire[Side.ASK])),
            verdict.target.eq(target_fire[Side.BID] | target_fire[Side.ASK]),
            verdict.takes_message.eq(Cat(takes_message[Side.BID], takes_message[Side.ASK])),
            verdict.target_shares.eq(Mux(message_shares < order_size, message_shares, order_size)),
            verdict.target_keep.eq(target_keep), verdict.target_buy.eq(target_moves[Side.BID]),
            verdict.shares.eq(message_shares),
            verdict.keep.eq(keep), verdict.still.eq(still),
            verdict.ask_side.eq(ask_side),
            verdict.takes_price.eq(Mux(ask_side, takes_price[Side.ASK], takes_price[Side.BID])),
            verdict.is_add.eq(is_add), verdict.is_replace.eq(is_replace), verdict.price.eq(price),
            verdict.stamp.eq(self.stamp),
            verdict.new_ref.eq(Mux(is_replace, message.fields.U.new_order_ref,
                                   message.fields.A.order_ref)[:REFS_WIDTH]),
        ]
        moved_sum = Mux(verdict.takes_price,
                        verdict.price + Mux(verdict.ask_side, held_state.bid.price, held_state.ask.price),
                        Mux(verdict.ask_side, held_next_sum[Side.ASK], held_next_sum[Side.BID]))

        # The state a kept message leaves: its side's new price, and beneath it what the levels it
        # passed show (the best two levels are named by their refs; see "Back-to-back messages").
        # (After a move with the other side empty, the sum means nothing until that side has a price.)
        m.d.comb += [predicted.eq(held_state), predicted.fair_valid.eq(predicted.bid.known & predicted.ask.known),
                     predicted.sum.eq(Mux(verdict.still, held_state.sum, moved_sum))]

        for side, view in sides_of(predicted).items():
            with m.If(verdict.ask_side == (side is Side.ASK)):
                old = held[side].depth
                other, other_view = held[other_side[side]], sides_of(predicted)[other_side[side]]
                beneath = view.depth
                with m.If(verdict.still):  # the best price stays; beneath it, an add joins or comes
                    # between the levels, a delete takes the second level's only order
                    with m.If(verdict.is_add):
                        with m.If(verdict.price == held[side].price):
                            m.d.comb += beneath.alone.eq(0)
                        with m.Elif(old.next.unknown):
                            pass  # where it goes is not known here: the second level stays unknown
                        with m.Elif(~old.next.valid | better_than(side, verdict.price, old.next.price)):
                            m.d.comb += [beneath.next.valid.eq(1), beneath.next.price.eq(verdict.price),
                                         beneath.next_alone.eq(1), beneath.next_refs.eq(verdict.new_ref),
                                         beneath.third.eq(old.next)]
                        with m.Elif(verdict.price == old.next.price):
                            m.d.comb += beneath.next_alone.eq(0)
                        with m.Elif(~old.third.valid & ~old.third.unknown):
                            m.d.comb += [beneath.third.valid.eq(1), beneath.third.price.eq(verdict.price)]
                        with m.Elif(old.third.valid & better_than(side, verdict.price, old.third.price)):
                            m.d.comb += beneath.third.price.eq(verdict.price)
                    with m.Else():
                        m.d.comb += [beneath.next.eq(old.third), beneath.next_alone.eq(0), beneath.next_refs.eq(0),
                                     beneath.third.valid.eq(0), beneath.third.unknown.eq(1)]
                with m.Else():
                    # a move is judged as before only if the other side is known; that side, if
                    # empty, can be judged now that this one has a price
                    m.d.comb += [view.price.eq(Mux(verdict.takes_price, verdict.price, old.next.price)),
                                 view.known.eq(1), view.ready.eq(other.known), view.removable.eq(other.known),
                                 other_view.ready.eq(other.ready | other.one_sided),
                                 other_view.removable.eq(other.removable | other.one_sided),
                                 other_view.one_sided.eq(0)]
                    with m.If(verdict.takes_price):  # the message's order alone at the best level
                        m.d.comb += [beneath.alone.eq(1), beneath.best_refs.eq(verdict.new_ref)]
                        with m.If(verdict.is_add):  # over the old best (none beyond an empty side); a
                            # replace that beats the next level leaves the levels beneath as they were
                            m.d.comb += [beneath.next.valid.eq(held[side].known), beneath.next.unknown.eq(0),
                                         beneath.next.price.eq(held[side].price), beneath.next_alone.eq(old.alone),
                                         beneath.next_refs.eq(old.best_refs), beneath.third.eq(old.next)]
                    with m.Else():  # the next level is best now, over the third (or a replace's order)
                        replaced_below = verdict.is_replace & (verdict.price != old.next.price)
                        third_ahead = (better_than(side, old.third.price, verdict.price)
                                       | (old.third.price == verdict.price))
                        m.d.comb += [beneath.alone.eq(old.next_alone & (~verdict.is_replace | replaced_below)),
                                     beneath.best_refs.eq(old.next_refs),
                                     beneath.next.eq(old.third), beneath.next_alone.eq(0), beneath.next_refs.eq(0),
                                     beneath.third.valid.eq(0), beneath.third.unknown.eq(1)]
                        with m.If(replaced_below & ~(old.third.valid & third_ahead) & ~old.third.unknown):
                            m.d.comb += [beneath.next.valid.eq(1), beneath.next.price.eq(verdict.price),
                                         beneath.next_alone.eq(1), beneath.next_refs.eq(verdict.new_ref)]
                self._beyond_levels(m, beneath)

        # The state a kept target's message leaves: the quote it moved is its price (an add's, or a replace's
        # that beats the next level), over the old one for an add; or the next level, over the third for
        # a delete (what is beneath a replace's order is not known here).
        m.d.comb += target_predicted.eq(target_state)
        for side in Side:
            old, new = target_state[side.value], target_predicted[side.value]
            with m.If(verdict.target_buy == (side is Side.BID)):
                with m.If(verdict.takes_message[side.value]):
                    m.d.comb += [new.price.eq(verdict.price), new.shares.eq(verdict.shares), new.valid.eq(1),
                                 new.open.eq(1), new.formable.eq(held_target_reliable),
                                 new.depth.alone.eq(1), new.depth.best_refs.eq(verdict.new_ref)]
                    with m.If(verdict.is_add):
                        m.d.comb += [new.depth.next.valid.eq(old.valid), new.depth.next.unknown.eq(0),
                                     new.depth.next.price.eq(old.price), new.depth.next.shares.eq(old.shares),
                                     new.depth.next_alone.eq(old.depth.alone),
                                     new.depth.next_refs.eq(old.depth.best_refs), new.depth.third.eq(old.depth.next)]
                with m.Else():
                    next_level = old.depth.next
                    m.d.comb += [new.price.eq(next_level.price), new.shares.eq(next_level.shares),
                                 new.valid.eq(next_level.valid), new.open.eq(next_level.valid | ~next_level.unknown),
                                 new.formable.eq(next_level.valid & held_target_reliable),
                                 new.depth.alone.eq(old.depth.next_alone), new.depth.best_refs.eq(old.depth.next_refs),
                                 new.depth.next.eq(old.depth.third), new.depth.next_alone.eq(0),
                                 new.depth.next_refs.eq(0), new.depth.third.valid.eq(0), new.depth.third.unknown.eq(1)]
                    with m.If(verdict.is_replace):
                        m.d.comb += [new.depth.next.valid.eq(0), new.depth.next.unknown.eq(1)]
                self._beyond_levels(m, new.depth)

        buy, sell = candidates[Side.BID], candidates[Side.ASK]
        bought = verdict.fire[Side.BID.value]  # a buy first, as the strategy sends them
        # A target's order, chosen now from registers: the message's price and shares, or its side's next level.
        side_takes_message = Mux(bought, verdict.takes_message[Side.BID.value], verdict.takes_message[Side.ASK.value])
        target_price = Mux(side_takes_message, verdict.price,
                           Mux(bought, held_target_sides[Side.BID].next.price, held_target_sides[Side.ASK].next.price))
        target_shares = Mux(side_takes_message, verdict.target_shares,
                            Mux(bought, next_shares[Side.BID], next_shares[Side.ASK]))
        request = self.fast.p
        m.d.comb += [
            self.fast.valid.eq(verdict.fire.any()),
            request.slot.eq(held_slot),
            request.side.eq(Mux(bought, Side.BID, Side.ASK)),
            request.price.eq(Mux(verdict.target, target_price, Mux(bought, buy.price, sell.price))),
            request.shares.eq(Mux(verdict.target, target_shares, Mux(bought, buy.shares, sell.shares))),
            request.fair_value.eq(Mux(verdict.target, held_state.sum, moved_sum) >> 1),
            request.fair_valid.eq(1),
            request.stamp.eq(verdict.stamp),
        ]
        return m

    def _beyond_levels(self, m, depth):
        """A kept state's ``depth`` shows no level the book cannot hold (beyond its levels: not known)."""
        for index, quote in ((1, depth.next), (2, depth.third)):
            if self.levels <= index:
                m.d.comb += [quote.valid.eq(0), quote.unknown.eq(1)]
        if self.levels <= 1:
            m.d.comb += depth.next_alone.eq(0)
