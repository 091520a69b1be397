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

What it predicts (the rest goes the exact way): an A or F of the lead
instrument that improves the lead's best price on its side (or gives an
empty side its first price, as when a market maker replaces its quote by a
cancel and an add), while the other side's price is known, the snipe is the
active strategy and the pipeline is ``quiet`` (no message, request or order
in flight that the registered state does not show yet: the ``Pipeline``
works that out). Such an add at ``p`` makes the sum ``S`` of the lead's
quotes ``p`` plus the other side's price, so each of the strategy's
conditions on ``S`` (``hdl/trigger.py``: buy when ``2 (target ask + edge +
1) <= S``, sell when ``2 (target bid - edge) > S``) is a threshold on ``p``,
worked out ahead for an add on either side. A side fires only if its
condition did not hold before (in a quiet state a condition that held has
fired or was disarmed by its quote, which has not changed; with a lead side
empty, none held); a buy before a sell, as the strategy sends them (the
sell then goes the exact way). The order is the one the strategy makes: the
target's quote on that side, ``min(order_size, its shares)``, fair value
``S >> 1``. It goes out only if the risk gate's forecast for that order
(``risk_ok``: every check but the collar, from the gate's state) and the
collar against the new fair value (one more threshold) pass, so that the
gate would accept it.

Timing: the thresholds are registered from ``tops`` and the registers (two
cycles, settled within ``quiet``); in the cycle a message is at
``messages``, one compare per threshold and the request is registered: it
is at ``fast`` in the next cycle, with the message's stamp.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import ItchMessage
from .order_types import PRICE_WIDTH, SHARES_WIDTH, OrderRequest, Side, Stamp, book_tops
from .risk_gate import ForecastOrder
from .stream import rx_stream
from .trigger import StrategyKind, _check_slots, _slot_shape

__all__ = ["FastTrigger", "FAST_LATENCY", "FAST_SETTLE_CYCLES"]

#: Cycles from a message at ``messages`` to its predicted order at ``fast``.
FAST_LATENCY = 1
#: Cycles ``tops`` and the registers must hold still before a message is judged on them.
FAST_SETTLE_CYCLES = 2

_ADD_TYPES = (ord("A"), ord("F"))
#: Wide enough for 2 (price + limit + 1) - price with 32-bit operands, signed.
_THRESHOLD = signed(PRICE_WIDTH + 3)


class _Candidate(data.Struct):
    """The order one side would make if a lead move fired it."""
    price: PRICE_WIDTH
    shares: SHARES_WIDTH
    formable: 1  # the target's quote is valid and the target reliable
    holds: 1     # the condition holds already (it cannot fire on a lead move)


class FastTrigger(wiring.Component):
    """Predicts the snipe's order on a lead A or F that improves the lead's best price; see the module docstring.

    Parameters
    ----------
    slots : int
        Tracked instruments.

    Interface attributes
    --------------------
    messages : In(ItchMessage stream)
        Decoded messages, as the book sees them.
    stamp : In(Stamp)
        Stamp of the message at ``messages``.
    tops : In(book_tops(slots))
        The book's registered tops.
    locates : In(ArrayLayout(16, slots))
        Each slot's stock locate.
    strategy, lead_slot, target_slot, edge, order_size : In
        The strategy registers.
    collar : In(32)
        The risk gate's collar register.
    forecast_orders : Out(ArrayLayout(ForecastOrder, 2))
        The buy (index 0) and the sell (1) a lead move would make, for the risk
        gate's forecast.
    risk_ok : In(2)
        The risk gate's forecast for those two orders: every check but the
        collar passes.
    quiet : In(1)
        Nothing is in flight that ``tops`` and ``risk_ok`` do not show yet, and
        they have held still for ``FAST_SETTLE_CYCLES``.
    fast : Out(OrderRequest stream, no backpressure)
        The predicted order, registered, ``FAST_LATENCY`` after its message.
    """

    def __init__(self, *, slots=2):
        _check_slots(slots)
        self.slots = slots
        slot = _slot_shape(slots)
        super().__init__({
            "messages": In(rx_stream(ItchMessage)),
            "stamp": In(Stamp),
            "tops": In(book_tops(slots)),
            "locates": In(data.ArrayLayout(16, slots)),
            "strategy": In(StrategyKind),
            "lead_slot": In(slot),
            "target_slot": In(slot),
            "edge": In(PRICE_WIDTH),
            "order_size": In(32),
            "collar": In(PRICE_WIDTH),
            "risk_ok": In(2),
            "quiet": In(1),
            "forecast_orders": Out(data.ArrayLayout(ForecastOrder, 2)),
            "fast": Out(rx_stream(OrderRequest)),
        })

    def elaborate(self, platform):
        m = Module()
        lead = self.tops[self.lead_slot]
        target = self.tops[self.target_slot]

        # First cycle: the registers, the quotes, the lead's sum.
        lead_bid = Signal(PRICE_WIDTH)
        lead_ask = Signal(PRICE_WIDTH)
        lead_sum = Signal(PRICE_WIDTH + 1)
        # Per side of the lead: an add there can fire (the other side known, the lead reliable, the
        # snipe active, and the side itself known or empty: an add to an empty side makes it known).
        lead_ready = {side: Signal(name=f"lead_{side.name.lower()}_ready") for side in Side}
        fair_valid = Signal()  # the lead's mid is known now
        lead_locate = Signal(16)
        target_slot = Signal.like(self.target_slot)
        quotes = {side: Signal(data.StructLayout({"price": PRICE_WIDTH, "shares": SHARES_WIDTH, "formable": 1}),
                               name=f"{side.name.lower()}_quote")
                  for side in Side}  # the quote each order takes: a buy (BID) takes the target's ask
        edge = Signal.like(self.edge)
        collar = Signal.like(self.collar)
        order_size = Signal.like(self.order_size)
        m.d.sync += [
            lead_bid.eq(lead.bid.price),
            lead_ask.eq(lead.ask.price),
            lead_sum.eq(lead.bid.price + lead.ask.price),
            fair_valid.eq(lead.bid.valid & lead.ask.valid),
            lead_locate.eq(self.locates[self.lead_slot]),
            target_slot.eq(self.target_slot),
            edge.eq(self.edge), collar.eq(self.collar), order_size.eq(self.order_size),
        ]
        for side, quote in ((Side.BID, target.ask), (Side.ASK, target.bid)):
            m.d.sync += [quotes[side].price.eq(quote.price), quotes[side].shares.eq(quote.shares),
                         quotes[side].formable.eq(quote.valid & ~target.unreliable)]
        snipe = self.strategy == StrategyKind.SNIPE
        lead_known = {side: Signal(name=f"lead_{side.name.lower()}_known") for side in Side}
        for side, own, other in ((Side.BID, lead.bid, lead.ask), (Side.ASK, lead.ask, lead.bid)):
            m.d.sync += [lead_ready[side].eq(snipe & ~lead.unreliable & other.valid & (own.valid | ~own.unknown)),
                         lead_known[side].eq(own.valid)]

        # Second cycle: each side's candidate order and the thresholds of the lead price. On the
        # lead's sum S after the add: a buy fires from 2 (ask + edge + 1) on and fails the collar
        # from 2 (ask + collar + 1) on; a sell fires below 2 (bid - edge) and fails the collar at
        # 2 (bid - collar) - 1 and below. An add at p on one side makes S = p + the other side's
        # price, so each limit less that price is a threshold for p, for an add on either side.
        candidates = {side: Signal(_Candidate, name=f"{side.name.lower()}_candidate") for side in Side}
        limits = {
            Side.BID: (2 * (quotes[Side.BID].price + edge + 1), 2 * (quotes[Side.BID].price + collar + 1)),
            Side.ASK: (2 * (quotes[Side.ASK].price - edge), 2 * (quotes[Side.ASK].price - collar) - 1),
        }
        other_price = {Side.BID: lead_ask, Side.ASK: lead_bid}  # for an add on each side of the lead
        thresholds = {}  # (side added to, candidate) -> (fires from, collar from)
        for side, candidate in candidates.items():
            quote = quotes[side]
            fires_limit, collar_limit = limits[side]
            holds = fires_limit <= lead_sum if side is Side.BID else fires_limit > lead_sum
            m.d.comb += [self.forecast_orders[side.value].price.eq(candidate.price),
                         self.forecast_orders[side.value].shares.eq(candidate.shares)]
            m.d.sync += [
                candidate.price.eq(quote.price),
                candidate.shares.eq(Mux(quote.shares < order_size, quote.shares, order_size)),
                candidate.formable.eq(quote.formable),
                candidate.holds.eq(fair_valid & holds),
            ]
            for added in Side:
                pair = (Signal(_THRESHOLD, name=f"{added.name.lower()}_add_{side.name.lower()}_fires_from"),
                        Signal(_THRESHOLD, name=f"{added.name.lower()}_add_{side.name.lower()}_collar_from"))
                m.d.sync += [pair[0].eq(fires_limit - other_price[added]),
                             pair[1].eq(collar_limit - other_price[added])]
                thresholds[added, side] = pair
        # The lead state of the candidates, registered along with them.
        ready = {side: Signal(name=f"{side.name.lower()}_ready") for side in Side}
        known = {side: Signal(name=f"{side.name.lower()}_known") for side in Side}
        held_bid = Signal.like(lead_bid)
        held_ask = Signal.like(lead_ask)
        held_locate = Signal.like(lead_locate)
        held_slot = Signal.like(target_slot)
        m.d.sync += [*(ready[side].eq(lead_ready[side]) for side in Side),
                     *(known[side].eq(lead_known[side]) for side in Side), held_bid.eq(lead_bid),
                     held_ask.eq(lead_ask), held_locate.eq(lead_locate), held_slot.eq(target_slot)]

        # The message: a lead A or F, compared with the thresholds of its side. Its fields are taken
        # from the A view of the body (an F's are at the same places), not from the decoded ones,
        # which pass through a multiplexer by type; each compare is made for an add on either side,
        # and the side picks the results.
        message = self.messages.p
        price = message.fields.A.price
        ask_side = message.fields.A.side == ord("S")
        # The add changes the lead's price on its side: a better one, or the first.
        improves = Mux(ask_side, ~known[Side.ASK] | (price < held_ask), ~known[Side.BID] | (price > held_bid))
        lead_add = (self.messages.valid & self.quiet & ~message.gap & improves
                    & Mux(ask_side, ready[Side.ASK], ready[Side.BID])
                    & ((message.type == _ADD_TYPES[0]) | (message.type == _ADD_TYPES[1]))
                    & (message.locate == held_locate) & (held_locate != 0))
        fire = {}
        for side, candidate in candidates.items():
            passes = {}  # by the side added to: the condition fires and the collar passes
            for added in Side:
                fires_from, collar_from = thresholds[added, side]
                if side is Side.BID:
                    passes[added] = (price >= fires_from) & (price < collar_from)
                else:
                    passes[added] = (price < fires_from) & (price > collar_from)
            fire[side] = (lead_add & Mux(ask_side, passes[Side.ASK], passes[Side.BID]) & ~candidate.holds
                          & candidate.formable & self.risk_ok[side.value])
        new_sum = Mux(ask_side, held_bid + price, price + held_ask)
        buy, sell = candidates[Side.BID], candidates[Side.ASK]
        request = self.fast.p
        m.d.sync += self.fast.valid.eq(fire[Side.BID] | fire[Side.ASK])
        with m.If(fire[Side.BID] | fire[Side.ASK]):  # a buy first, as the strategy sends them
            m.d.sync += [
                request.slot.eq(held_slot),
                request.side.eq(Mux(fire[Side.BID], Side.BID, Side.ASK)),
                request.price.eq(Mux(fire[Side.BID], buy.price, sell.price)),
                request.shares.eq(Mux(fire[Side.BID], buy.shares, sell.shares)),
                request.fair_value.eq(new_sum >> 1),
                request.fair_valid.eq(1),
                request.stamp.eq(self.stamp),
            ]
        return m
