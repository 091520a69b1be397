"""The strategies (docs/pipeline.md, "Strategies (Trigger)"): top of book and trades in, order requests out.

Two strategies, one component each with the same signature
(``strategy_signature``), so that another can be added beside them:
``StaleQuoteSnipe`` (the target's quote is stale against the lead's mid) and
``PriceThreshold`` (a watched price crosses a threshold). Both share what
the contract says of every strategy (``TriggerStrategy``): the fair value,
which quote an order takes, and the per-side ``armed`` flags that make each
stale quote fire once. ``Trigger`` holds both, lets the one the ``strategy``
register selects through, and registers its requests.

Timing: three pipeline steps, each within what one 156 MHz cycle of an
ECP5 holds (a slot multiplexer and a carry chain; a carry chain; a few
LUTs with the fan-out to the payload). Two would not do: picking the
slots, the sum of the lead's quotes, its comparison with the target's,
and choosing the request by that comparison (buy or sell, some seventy
payload bits) measured 106 MHz in two cycles.

1. In the cycle a state shows at ``tops``: pick the slots' quotes and
   register them and the sums the conditions need, each one carry chain.
   The snipe never forms ``fair`` on the decision path: with
   ``S = lead bid + lead ask`` (33 bits, ``fair = S >> 1``),
   ``ask + edge < fair`` is ``2 (ask + edge + 1) <= S`` and
   ``bid > fair + edge`` is ``2 (bid - edge) > S``, so it registers ``S``,
   ``ask + edge + 1`` and ``bid - edge`` (33 and 34 bits: no wrap-around).
2. Each condition as one comparison (the sign of a difference) of those
   registers; the fair value, ``min(order_size, shares)`` of both candidate
   orders, and whether each side's quote is the one it last fired at.
3. The armed flags, and which request goes out; ``Trigger`` registers it.

Tops change at most once every two cycles, so step 1 sees each state at
least twice: a buy and a sell fired by one state leave in consecutive
cycles. ``TRIGGER_LATENCY`` = 3 from a change of ``tops`` to the request.
Host writes (the registers, ``rearm``) are registered on the way in and
reach step 1 one cycle after they are set. A watched trade message's
price reaches step 1 ``TRADE_DELAY`` cycles after the message, as long as
the book takes to show a message's effect at ``tops``, so that trades and
book updates keep their order (messages are at least two cycles apart, so
a book latency one cycle off still does); ``TRADE_LATENCY`` to its request.
"""

from amaranth.hdl import Module, Mux, Shape, Signal, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from .itch_decode import ItchMessage
from .order_book import BOOK_LATENCY
from .order_types import PRICE_WIDTH, SHARES_WIDTH, OrderRequest, Side, Stamp, book_tops
from .stream import rx_stream

__all__ = ["StrategyKind", "WatchSource", "strategy_registers", "strategy_signature", "TriggerEvents",
           "TriggerStrategy", "StaleQuoteSnipe", "PriceThreshold", "Trigger",
           "TRIGGER_LATENCY", "TRADE_DELAY", "TRADE_LATENCY", "HOST_WRITE_LATENCY", "MAX_SLOTS"]

#: Cycles from a change of ``tops`` to the request it fires at ``requests``.
TRIGGER_LATENCY = 3
#: Cycles from a watched P message at ``messages`` to its price reaching step 1: the book's
#: ``BOOK_LATENCY``, so that trades and the book's updates reach the strategies in message order.
TRADE_DELAY = BOOK_LATENCY
#: Cycles from a watched P message at ``messages`` to the request its price fires.
TRADE_LATENCY = TRADE_DELAY + TRIGGER_LATENCY
#: Cycles from a register write (or ``rearm``) at the inputs to the first state evaluated with it
#: (step 1); its requests come ``TRIGGER_LATENCY`` cycles later.
HOST_WRITE_LATENCY = 1
#: OrderRequest's slot field is 8 bits.
MAX_SLOTS = 256

_TRADE_TYPE = ord("P")


def _at_least(a, b):
    """``a >= b`` as the sign of ``a - b``, so that it maps to one carry chain."""
    return ~(a - b)[-1]


def _pipelined(m, value, steps, name):
    """``value`` delayed by ``steps`` cycles (registers named ``name_<k>``)."""
    for step in range(steps):
        delayed = Signal.like(value, name=f"{name}_{step + 1}")
        m.d.sync += delayed.eq(value)
        value = delayed
    return value


class StrategyKind(enum.Enum, shape=2):
    """The ``strategy`` register."""
    OFF = 0
    SNIPE = 1
    THRESHOLD = 2


class WatchSource(enum.Enum, shape=2):
    """The ``watch_source`` register: the price a threshold watches (3 watches nothing)."""
    TRADES = 0  # the latest P message of the watch slot's locate
    BID = 1     # the watch slot's best bid
    ASK = 2     # the watch slot's best ask


def _slot_shape(slots):
    return Shape.cast(range(slots))


def strategy_registers(slots):
    """The strategy registers of docs/pipeline.md (every strategy's, whichever is active)."""
    slot = _slot_shape(slots)
    return data.StructLayout({
        "lead_slot": slot,
        "target_slot": slot,
        "edge": PRICE_WIDTH,
        "order_size": 32,
        "watch_slot": slot,
        "watch_source": WatchSource,
        "threshold": PRICE_WIDTH,
        "threshold_above": 1,
        "threshold_side": Side,
    })


def strategy_signature(slots):
    """What every strategy component has: the book's state and the messages in, order requests out.

    ``requests`` of a strategy is combinational (``Trigger`` registers it);
    ``config`` and ``rearm`` come straight from the host's registers.
    """
    return wiring.Signature({
        "messages": In(rx_stream(ItchMessage)),
        "stamp": In(Stamp),
        "tops": In(book_tops(slots)),
        "tops_stamp": In(Stamp),
        "locates": In(data.ArrayLayout(16, slots)),
        "config": In(strategy_registers(slots)),
        "rearm": In(1),
        "requests": Out(rx_stream(OrderRequest)),
    })


def _check_slots(slots):
    if not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
        raise ValueError(f"slots must be an integer from 1 to {MAX_SLOTS}, not {slots!r}")


class TriggerEvents(data.Struct):
    """One strobe per counter the trigger keeps."""
    trigger_fired: 1  # an order request left at ``requests``


class _Candidate(data.Struct):
    """The order one side of a state would make."""
    price: PRICE_WIDTH
    shares: SHARES_WIDTH  # the quote's (step 1), then the order's (step 2)
    valid: 1     # the quote is valid
    formable: 1  # ... and the target reliable


class _SideState:
    """One side (buy or sell): its candidate order (steps 1, 2), firing decision and ``armed`` flag (step 3).

    ``order_size`` is the register as step 2 sees it, ``condition`` and
    ``rearm`` as step 3 does.
    """

    def __init__(self, m, name, quote, target_unreliable, order_size, condition, rearm):
        quoted = Signal(_Candidate, name=f"{name}_quoted")
        m.d.sync += [
            quoted.price.eq(quote.price),
            quoted.shares.eq(quote.shares),
            quoted.valid.eq(quote.valid),
            quoted.formable.eq(quote.valid & ~target_unreliable),
        ]
        self.candidate = Signal(_Candidate, name=f"{name}_candidate")
        m.d.sync += [
            self.candidate.eq(quoted),
            self.candidate.shares.eq(Mux(quoted.shares < order_size, quoted.shares, order_size)),
        ]
        self.armed = Signal(init=1, name=f"{name}_armed")
        self.fired_price = Signal(PRICE_WIDTH, name=f"{name}_fired_price")
        self.emitted = Signal(name=f"{name}_emitted")
        # Whether the quote is the valid one this side last fired at, for step 3; while step 3
        # fires, ``fired_price`` is not yet written, so step 2 compares with the price going out.
        same_quote = Signal(name=f"{name}_same_quote")
        last_price = Mux(self.emitted, quoted.price == self.candidate.price, quoted.price == self.fired_price)
        m.d.sync += same_quote.eq(quoted.valid & last_price)
        # Re-armed by the host, when the condition does not hold, or when the quote is another one.
        self.armed_now = Signal(name=f"{name}_armed_now")
        m.d.comb += self.armed_now.eq(self.armed | rearm | ~condition | ~same_quote)
        self.fire = Signal(name=f"{name}_fire")
        m.d.comb += self.fire.eq(self.armed_now & condition & self.candidate.formable)

    def emit(self, m, emitted):
        """``emitted``: this side's request goes out now; it disarms and remembers its price."""
        m.d.comb += self.emitted.eq(emitted)
        m.d.sync += self.armed.eq(self.armed_now & ~emitted)
        with m.If(emitted):
            m.d.sync += self.fired_price.eq(self.candidate.price)


class TriggerStrategy(wiring.Component):
    """What every strategy shares: fair value, the quote an order takes, firing once per stale quote.

    A subclass gives ``conditions``. A buy takes the target's best ask for
    ``min(order_size, ask.shares)``, a sell its best bid; a side fires when
    its condition holds, that quote is ``valid`` and the target reliable,
    and it is armed (or re-armed now: by ``rearm``, by its condition not
    holding, by its quote not being the valid price it last fired at). When
    both sides fire, the buy goes out and the sell stays armed, so it goes
    out in the next cycle. Evaluation takes the three steps of the module
    docstring; ``config`` and ``rearm`` are registered on the way in.

    Interface attributes
    --------------------
    messages : In(ItchMessage stream)
        Decoded messages (no backpressure).
    stamp : In(Stamp)
        Stamp of the message at ``messages``.
    tops : In(book_tops(slots))
        Every slot's top of book, from the book's registers; changes at most
        once every two cycles.
    tops_stamp : In(Stamp)
        Stamp of the last message whose effect ``tops`` shows.
    locates : In(ArrayLayout(16, slots))
        Each slot's stock locate (0: unused).
    config : In(strategy_registers(slots))
        The strategy registers.
    rearm : In(1)
        Strobe: arm both sides.
    requests : Out(OrderRequest stream)
        Combinational (step 3): a request fired by the state that was at
        ``tops`` two cycles before.
    """

    def __init__(self, slots=2):
        _check_slots(slots)
        self.slots = slots
        super().__init__(strategy_signature(slots))

    def conditions(self, m, config, target, lead_sum, fair_valid):
        """This strategy's steps 1 and 2: (buy condition, sell condition, stamp), registered, for step 3.

        ``config`` and ``target`` (the target slot's top) are what step 1
        sees now; ``lead_sum`` (the lead's bid plus ask, 33 bits) and
        ``fair_valid`` are registered by step 1, of the state it saw in the
        previous cycle. The returned values must be of the state step 1 saw
        two cycles before, from registers the strategy loads in steps 1 and 2.
        """
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        config = Signal(strategy_registers(self.slots))  # as step 1 sees them
        m.d.sync += config.eq(self.config)
        # The strobe as step 3 sees it, with the first state step 1 evaluated under the new registers.
        rearm = _pipelined(m, self.rearm, 3, "rearm")

        lead = self.tops[config.lead_slot]
        target = self.tops[config.target_slot]
        lead_sum = Signal(PRICE_WIDTH + 1)
        fair_valid = Signal()
        m.d.sync += [
            lead_sum.eq(lead.bid.price + lead.ask.price),
            fair_valid.eq(lead.bid.valid & lead.ask.valid & ~lead.unreliable),
        ]
        fair_value = Signal(PRICE_WIDTH)
        m.d.sync += fair_value.eq(Mux(fair_valid, lead_sum >> 1, 0))
        buy_condition, sell_condition, stamp = self.conditions(m, config, target, lead_sum, fair_valid)

        order_size = _pipelined(m, config.order_size, 1, "order_size")
        buy = _SideState(m, "buy", target.ask, target.unreliable, order_size, buy_condition, rearm)
        sell = _SideState(m, "sell", target.bid, target.unreliable, order_size, sell_condition, rearm)
        buy.emit(m, buy.fire)
        sell.emit(m, sell.fire & ~buy.fire)

        request = self.requests.p
        m.d.comb += [
            self.requests.valid.eq(buy.fire | sell.fire),
            request.slot.eq(_pipelined(m, config.target_slot, 2, "slot")),
            request.side.eq(Mux(buy.fire, Side.BID, Side.ASK)),
            request.price.eq(Mux(buy.fire, buy.candidate.price, sell.candidate.price)),
            request.shares.eq(Mux(buy.fire, buy.candidate.shares, sell.candidate.shares)),
            request.fair_value.eq(fair_value),
            request.fair_valid.eq(_pipelined(m, fair_valid, 1, "fair_valid")),
            request.stamp.eq(stamp),
        ]
        return m


class StaleQuoteSnipe(TriggerStrategy):
    """Strategy 1: take the target's quote when it is stale against the lead's mid by more than ``edge``.

    Buy when ``ask + edge < fair``, sell when ``bid > fair + edge``, both only
    while ``fair_valid``: step 1 registers ``S = lead bid + lead ask``,
    ``ask + edge + 1`` and ``bid - edge``; step 2 compares
    ``2 (ask + edge + 1) <= S`` and ``2 (bid - edge) > S`` (module
    docstring). The state's stamp is ``tops_stamp``.

    Interface attributes: those of ``TriggerStrategy``.
    """

    def conditions(self, m, config, target, lead_sum, fair_valid):
        # Step 1: the target's limits.
        buy_limit = Signal(PRICE_WIDTH + 1)           # ask + edge + 1 <= 2**33 - 1
        sell_limit = Signal(signed(PRICE_WIDTH + 2))  # bid - edge, may be negative
        m.d.sync += [
            buy_limit.eq(target.ask.price + config.edge + 1),
            sell_limit.eq(target.bid.price - config.edge),
        ]
        # Step 2: the comparisons with the lead's sum.
        buy = Signal()
        sell = Signal()
        m.d.sync += [
            buy.eq(fair_valid & _at_least(lead_sum, buy_limit << 1)),
            sell.eq(fair_valid & ~_at_least(lead_sum, sell_limit << 1)),
        ]
        return buy, sell, _pipelined(m, self.tops_stamp, 2, "stamp")


class PriceThreshold(TriggerStrategy):
    """Strategy 2: one side fires while a watched price is at or beyond ``threshold``.

    The watched price is, by ``watch_source``, the latest P trade of the
    watch slot's locate (once one has been seen; a locate of 0 watches
    nothing), or the watch slot's best bid or ask (while ``valid`` and the
    slot reliable). The condition is ``price >= threshold`` when
    ``threshold_above``, else ``price <= threshold`` (step 1 complements
    both for the latter, so that step 2 always compares ``>=``); it fires a
    buy when ``threshold_side`` is BID, a sell when ASK. The state's stamp is
    ``tops_stamp``, or when watching trades that of the watched P message if
    it came after the last change of ``tops_stamp``.

    Interface attributes: those of ``TriggerStrategy``.
    """

    def conditions(self, m, config, target, lead_sum, fair_valid):
        # The watched trade: the message is delayed, recognised (a P trade of the watch slot's
        # locate; a locate of 0 watches nothing) under the registers as step 1 sees them two
        # cycles before the price is due, and its price kept ``TRADE_DELAY`` cycles after the
        # message.
        watched_locate = Signal(16)
        watching = Signal()
        m.d.sync += [watched_locate.eq(self.locates[self.config.watch_slot]),
                     watching.eq(self.locates[self.config.watch_slot] != 0)]
        message = self.messages.p
        delay = TRADE_DELAY - 2
        delayed_trade = _pipelined(m, self.messages.valid & (message.type == _TRADE_TYPE), delay, "delayed_trade")
        delayed_locate = _pipelined(m, message.locate, delay, "delayed_locate")
        delayed_price = _pipelined(m, message.price, delay, "delayed_price")
        delayed_stamp = _pipelined(m, self.stamp, delay, "delayed_stamp")
        trade_due = Signal()
        due_price = Signal(PRICE_WIDTH)
        due_stamp = Signal(Stamp)
        m.d.sync += [
            trade_due.eq(delayed_trade & (delayed_locate == watched_locate) & watching),
            due_price.eq(delayed_price),
            due_stamp.eq(delayed_stamp),
        ]
        trade_price = Signal(PRICE_WIDTH)
        trade_seen = Signal()
        trade_stamp = Signal(Stamp)
        # The trade is newer than the state of ``tops`` until ``tops_stamp`` changes.
        trade_newer = Signal()
        last_tops_stamp = Signal(Stamp)
        tops_changed = Signal()
        m.d.comb += tops_changed.eq(self.tops_stamp.as_value() != last_tops_stamp.as_value())
        m.d.sync += last_tops_stamp.eq(self.tops_stamp)
        with m.If(trade_due):
            m.d.sync += [trade_price.eq(due_price), trade_seen.eq(1), trade_stamp.eq(due_stamp),
                         trade_newer.eq(1)]
        with m.Elif(tops_changed):
            m.d.sync += trade_newer.eq(0)

        watched = self.tops[config.watch_slot]
        price = Signal(PRICE_WIDTH)
        exists = Signal()
        with m.Switch(config.watch_source):
            with m.Case(WatchSource.TRADES):
                m.d.comb += [price.eq(trade_price), exists.eq(trade_seen)]
            with m.Case(WatchSource.BID):
                m.d.comb += [price.eq(watched.bid.price), exists.eq(watched.bid.valid & ~watched.unreliable)]
            with m.Case(WatchSource.ASK):
                m.d.comb += [price.eq(watched.ask.price), exists.eq(watched.ask.valid & ~watched.unreliable)]

        # Step 1: the watched price and the threshold, ordered so that step 2 compares ``>=``,
        # and both stamps.
        below = (~config.threshold_above).replicate(PRICE_WIDTH)  # x <= t is ~x >= ~t
        ordered_price = Signal(PRICE_WIDTH)
        ordered_threshold = Signal(PRICE_WIDTH)
        price_exists = Signal()
        side = Signal(Side)
        from_trade = Signal()
        state_trade_stamp = Signal(Stamp)
        state_tops_stamp = Signal(Stamp)
        m.d.sync += [
            ordered_price.eq(price ^ below),
            ordered_threshold.eq(config.threshold ^ below),
            price_exists.eq(exists),
            side.eq(config.threshold_side),
            from_trade.eq((config.watch_source == WatchSource.TRADES) & trade_newer & ~tops_changed),
            state_trade_stamp.eq(trade_stamp),
            state_tops_stamp.eq(self.tops_stamp),
        ]
        # Step 2: the comparison, the stamp.
        buy = Signal()
        sell = Signal()
        stamp = Signal(Stamp)
        holds = price_exists & _at_least(ordered_price, ordered_threshold)
        m.d.sync += [
            buy.eq(holds & (side == Side.BID)),
            sell.eq(holds & (side == Side.ASK)),
            stamp.eq(Mux(from_trade, state_trade_stamp, state_tops_stamp)),
        ]
        return buy, sell, stamp


class Trigger(wiring.Component):
    """The strategies behind the ``strategy`` register, with a registered request output.

    Holds a ``StaleQuoteSnipe`` and a ``PriceThreshold``, both evaluating
    all the time; the one ``strategy`` selects (none when OFF) has its
    requests registered to ``requests``. A change of ``strategy`` re-arms
    both sides, as ``rearm`` does; the register block should also strobe
    ``rearm`` when ``strategy`` is written with the value it holds (the
    contract re-arms on every write). Latencies: ``TRIGGER_LATENCY`` from
    ``tops``, ``TRADE_LATENCY`` from a watched trade at ``messages``,
    ``HOST_WRITE_LATENCY`` + ``TRIGGER_LATENCY`` from a register write.
    It relies on ``tops`` changing at most once every two cycles, as the
    book guarantees, and on the same spacing between a change of ``tops``,
    a watched trade and a host write reaching step 1: a buy and a sell
    fired by one state leave in consecutive cycles.

    Interface attributes
    --------------------
    messages : In(ItchMessage stream)
        Decoded messages (no backpressure); only P trades are looked at.
    stamp : In(Stamp)
        Stamp of the message at ``messages``.
    tops : In(book_tops(slots))
        The book's top of every slot (registered there).
    tops_stamp : In(Stamp)
        Stamp of the last message whose effect ``tops`` shows.
    locates : In(ArrayLayout(16, slots))
        Each slot's stock locate.
    strategy : In(StrategyKind)
        0 off, 1 stale-quote snipe, 2 price threshold.
    lead_slot, target_slot, watch_slot : In(range(slots))
    edge, order_size, threshold : In(32)
    watch_source : In(WatchSource)
    threshold_above : In(1)
    threshold_side : In(Side)
        The strategy registers (docs/pipeline.md).
    rearm : In(1)
        Strobe from the host: arm both sides.
    requests : Out(OrderRequest stream)
        Order requests, registered, at most one per cycle, no backpressure.
    events : Out(TriggerEvents)
        ``trigger_fired`` with every request.
    """

    def __init__(self, slots=2):
        _check_slots(slots)
        self.slots = slots
        slot = _slot_shape(slots)
        super().__init__({
            "messages": In(rx_stream(ItchMessage)),
            "stamp": In(Stamp),
            "tops": In(book_tops(slots)),
            "tops_stamp": In(Stamp),
            "locates": In(data.ArrayLayout(16, slots)),
            "strategy": In(StrategyKind),
            "lead_slot": In(slot),
            "target_slot": In(slot),
            "watch_slot": In(slot),
            "edge": In(PRICE_WIDTH),
            "order_size": In(32),
            "watch_source": In(WatchSource),
            "threshold": In(PRICE_WIDTH),
            "threshold_above": In(1),
            "threshold_side": In(Side),
            "rearm": In(1),
            "requests": Out(rx_stream(OrderRequest)),
            "events": Out(TriggerEvents),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.stale_quote_snipe = snipe = StaleQuoteSnipe(self.slots)
        m.submodules.price_threshold = threshold = PriceThreshold(self.slots)
        strategies = {StrategyKind.SNIPE: snipe, StrategyKind.THRESHOLD: threshold}

        # The strategy register as the strategies' step 1 sees it, and as their step 3 does.
        active_ahead = _pipelined(m, self.strategy, 1, "active")
        active = _pipelined(m, active_ahead, 2, "active")
        rearm = self.rearm | (self.strategy != active_ahead)
        for strategy in strategies.values():
            m.d.comb += [
                strategy.messages.valid.eq(self.messages.valid),
                strategy.messages.payload.eq(self.messages.payload),
                strategy.stamp.eq(self.stamp),
                strategy.tops.eq(self.tops),
                strategy.tops_stamp.eq(self.tops_stamp),
                strategy.locates.eq(self.locates),
                strategy.rearm.eq(rearm),
            ]
            for name, _field in strategy.config.shape():
                m.d.comb += strategy.config[name].eq(getattr(self, name))

        m.d.sync += [
            self.requests.valid.eq(0),
            self.requests.payload.eq(Mux(active == StrategyKind.THRESHOLD, threshold.requests.payload,
                                         snipe.requests.payload)),
        ]
        with m.Switch(active):
            for kind, strategy in strategies.items():
                with m.Case(kind):
                    m.d.sync += self.requests.valid.eq(strategy.requests.valid)
        m.d.comb += self.events.trigger_fired.eq(self.requests.valid)
        return m
