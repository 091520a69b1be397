"""Risk gate: every check of docs/pipeline.md on each order request, then a queue of accepted orders.

The checks on the request alone (kill, max_qty, max_notional, collar,
position) are pipelined over four cycles, since the notional is a 32x32
multiply compared with 64 bits; the checks on state the previous request
changes (outstanding, rate) and the queue's room are made in the fifth, the
decision cycle, from flags prepared in the cycle before, so that back-to-back
requests each see the effect of the one before. Everything but the request is
slow-changing, so its arithmetic (limit minus position, notional limit plus
one, ...) is done ahead, in registers, and every compare is unsigned with
nothing after its carry chain but a register or one LUT.

Cycles, for a request at ``requests`` in cycle c:

- c: the max_qty and position compares, the collar sums, the multipliers'
  operands registered;
- c+1: the four 16x16 partial products of ``price * shares`` (DSP
  multipliers, which are slow and have no registers of their own here, so
  they get a cycle to themselves), the position check, the collar compares;
- c+2: the partial products summed into a high word and the carries of the
  low half added to the limit's complement;
- c+3: the notional compare;
- c+4: the decision (outstanding, rate, queue room), its event strobe, the
  accepted order written into the queue, outstanding and tokens updated
  (shown at the outputs from c+5): ``DECISION_LATENCY``;
- c+5: the accepted order valid at ``orders`` (queue empty): ``RISK_LATENCY``.

Exact timing of the host's writes (the golden model ``host/risk_model.py``
follows it when given cycles): an ``orders_done`` amount in cycle c counts
after the requests that arrived before c and before those from c on; a
``rate_burst_write`` in cycle w refills the bucket likewise (after the
request of w - 1, before that of w), to the ``rate_burst`` value of cycle w;
the refill timer counts down the cycles requests arrive in and restarts with
the ``rate_period`` of the cycle it restarts in (see ``host/risk_model.py``).
The other limits apply to every request that arrives ``LIMITS_LATENCY``
cycles or more after their write; a request already inside the gate may be
checked with old and new values mixed.
``rate_burst`` must change only with ``rate_burst_write`` (the bucket never
holds more than ``rate_burst`` tokens).

For the fast path (``hdl/fast_trigger.py``) the gate also forecasts, for
``FORECAST_ORDERS`` orders (the two a lead move would make, and a bound on
each of the two a target's message would make), whether a request for each
would pass every check but the collar (which depends on the fair value the
move makes, and is the fast trigger's to check): the same checks, from the
state as it stands, ``FORECAST_LATENCY`` cycles after their inputs (the
limits one more), by the same notional pipeline as a request.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .order_types import PRICE_WIDTH, SHARES_WIDTH, OrderRequest, RejectReason, Side
from .stream import rx_stream

__all__ = ["RiskGate", "RiskEvents", "ForecastOrder", "FORECAST_ORDERS", "FORECAST_LATENCY", "ORDER_QUEUE_DEPTH",
           "RISK_LATENCY", "DECISION_LATENCY", "LIMITS_LATENCY"]

#: Accepted orders the queue in front of the transmitter holds; a request finding it full is rejected busy.
ORDER_QUEUE_DEPTH = 8
#: Cycles from a request at ``requests`` to its event strobe (and its write into the queue).
DECISION_LATENCY = 4
#: Cycles from a request at ``requests`` to the accepted order valid at ``orders`` (queue empty, ready high).
RISK_LATENCY = DECISION_LATENCY + 1
#: Cycles from the operands of the notional check to its result (`RiskGate._notional_over`).
NOTIONAL_CYCLES = 2
#: Orders the gate forecasts for the fast path, a buy at each even index and a sell at each odd one.
FORECAST_ORDERS = 4
#: Cycles from ``forecast_orders`` (and the state; a limit one more) to ``forecast`` showing them.
FORECAST_LATENCY = NOTIONAL_CYCLES + 1
#: Cycles from a write of a limit (other than the bucket's) to the first request sure to see it.
LIMITS_LATENCY = 1

_HALF = 16  # operand halves of the 16x16 partial products


class ForecastOrder(data.Struct):
    """An order the fast path may send, for the gate's forecast."""
    price: PRICE_WIDTH
    shares: SHARES_WIDTH


class RiskEvents(data.Struct):
    """One strobe per counter this stage keeps; exactly one is high per request, in its decision cycle."""
    reject_kill: 1
    reject_max_qty: 1
    reject_max_notional: 1
    reject_collar: 1
    reject_position: 1
    reject_outstanding: 1
    reject_rate: 1
    reject_busy: 1
    orders_accepted: 1


class _Limits(data.Struct):
    """The limits in the form the checks compare with (`RiskGate._limits`)."""
    long_room: signed(34)    # position + shares > max_long  <=>  shares > max_long - position
    short_room: signed(34)   # position - shares < -max_short  <=>  shares > position + max_short
    notional_low: 32
    notional_high_floor: data.ArrayLayout(33, 4)


class _RequestChecks(data.Struct):
    """The checks decided from the request and the limits alone: 1 = failed."""
    kill: 1
    max_qty: 1
    max_notional: 1
    collar: 1
    position: 1


class _Compares(data.Struct):
    """Compares made in one cycle and combined in the next, so that no carry chain has logic after it."""
    long_over: 1           # shares > max_long - position (taken as unsigned)
    long_negative: 1       # max_long - position < 0
    short_over: 1          # shares > position + max_short (taken as unsigned)
    short_negative: 1      # position + max_short < 0
    price_above: 1         # price > fair + collar
    fair_above: 1          # fair > price + collar


#: The checks of `_RequestChecks`, in the doc's order, with their reasons.
_REQUEST_CHECKS = [("kill", RejectReason.KILL), ("max_qty", RejectReason.MAX_QTY),
                   ("max_notional", RejectReason.MAX_NOTIONAL), ("collar", RejectReason.COLLAR),
                   ("position", RejectReason.POSITION)]


def _event_name(reason):
    return f"reject_{reason.name.lower()}"


def _carry_save(a, b, c):
    """Two numbers with the sum of three, in one LUT level (a full adder per bit, no carry chain)."""
    return a ^ b ^ c, ((a & b) | (a & c) | (b & c)) << 1


def _sum(*operands):
    """The sum of three or four numbers as a single carry chain, after carry-save steps."""
    while len(operands) > 2:
        operands = (*_carry_save(*operands[:3]), *operands[3:])
    return operands[0] + operands[1]


def _delayed(m, value, cycles, name):
    """The stages of a shift register of ``cycles`` registers fed with ``value`` (the last is the oldest)."""
    stages = [Signal(len(value), name=f"{name}_s{stage}") for stage in range(1, cycles + 1)]
    m.d.sync += [stage.eq(before) for stage, before in zip(stages, [value, *stages])]
    return stages


class RiskGate(wiring.Component):
    """The risk gate (docs/pipeline.md, "Risk gate"), ``RISK_LATENCY`` (5) cycles.

    See the module docstring for the pipeline and the exact timing of writes.

    Interface attributes
    --------------------
    requests : In(OrderRequest stream, no backpressure)
        Order requests from the strategy, at most one per cycle, possibly in
        consecutive cycles.
    orders : Out(OrderRequest stream, with ready)
        Accepted orders, from a queue of ``ORDER_QUEUE_DEPTH``; ``payload``
        is the accepted request unchanged.
    kill, max_qty, max_notional, collar, position, max_long, max_short, max_outstanding : In
        The risk limits (1, 32, 64, 32, signed 32, 32, 32, 32 bits).
    rate_burst, rate_period : In(32)
        The token bucket: its size and the cycles between refills (0: none).
    rate_burst_write : In(1)
        Strobe: the host wrote ``rate_burst``; the bucket is refilled to it.
    orders_done : In(32)
        Strobe-valued: a nonzero value subtracts that many from ``outstanding`` (not below 0).
    forecast_orders : In(ArrayLayout(ForecastOrder, FORECAST_ORDERS))
        Orders the fast path may send (index modulo 2: the Side, a buy at 0).
    forecast : Out(FORECAST_ORDERS)
        Per order of ``forecast_orders``: a request for it (any fair value) would
        pass every check but the collar, and the queue would take it if it is
        empty. Registered, ``FORECAST_LATENCY`` cycles after its inputs (one
        more after a limit).
    outstanding : Out(32)
        Accepted orders the host has not reported done.
    tokens : Out(32)
        Tokens in the bucket.
    events : Out(RiskEvents)
        One strobe per counted event.
    """

    ORDER_QUEUE_DEPTH = ORDER_QUEUE_DEPTH
    RISK_LATENCY = RISK_LATENCY

    def __init__(self):
        super().__init__({
            "requests": In(rx_stream(OrderRequest)),
            "orders": Out(stream.Signature(OrderRequest)),
            "kill": In(1),
            "max_qty": In(SHARES_WIDTH),
            "max_notional": In(PRICE_WIDTH + SHARES_WIDTH),
            "collar": In(PRICE_WIDTH),
            "position": In(signed(32)),
            "max_long": In(32),
            "max_short": In(32),
            "max_outstanding": In(32),
            "rate_burst": In(32),
            "rate_burst_write": In(1),
            "rate_period": In(32),
            "orders_done": In(32),
            "forecast_orders": In(data.ArrayLayout(ForecastOrder, FORECAST_ORDERS)),
            "forecast": Out(FORECAST_ORDERS),
            "outstanding": Out(32),
            "tokens": Out(32),
            "events": Out(RiskEvents),
        })

    def elaborate(self, platform):
        m = Module()
        limits = self._limits(m)
        outstanding_full, bucket_empty = self._request_checks(m, limits)
        self._forecast(m, limits, outstanding_full, bucket_empty)
        return m

    def _limits(self, m):
        """Limits worked out ahead (registered), so that every compare of a check is unsigned.

        The room of a buy and of a sell for the position check (a negative
        room fails every order), and the least high word of the product that
        fails the notional check, for each count of carries from the low half
        (see `_notional_over`).
        """
        limits = Signal(_Limits, init={"notional_high_floor": [1, 0, 0, 0]})  # as for max_notional 0
        m.d.sync += [
            limits.long_room.eq(self.max_long - self.position),
            limits.short_room.eq(self.position + self.max_short),
            limits.notional_low.eq(self.max_notional[:32]),
        ]
        for carries in range(4):  # max(limit[63:32] + 1 - carries, 0)
            floor = self.max_notional[32:] + (1 - carries)
            m.d.sync += limits.notional_high_floor[carries].eq(Mux(floor < 0, 0, floor))
        return limits

    def _notional_over(self, m, limits, price, shares, name):
        """Whether ``price * shares`` exceeds ``max_notional``, ``NOTIONAL_CYCLES`` after the operands.

        Cycle 1: the partial products of price = ph:pl by shares = sh:sl, in
        DSP multipliers (a cycle of their own: they are slow, and have no
        registers of their own here). Cycle 2: price * shares = high * 2**32 +
        low, where high = ph*sh + (pl*sh + ph*sl)[31:16] (below 2**32, since
        the product is below 2**64) and low = pl*sl + (pl*sh + ph*sl)[15:0] <<
        16 (below 3 * 2**32). It exceeds the limit N when the 64-bit sum
        product + ~N carries out, that is when high + carries > N[63:32], with
        carries = (low + ~N[31:0]) >> 32 (0..3): the low half's carries are
        summed in this cycle; the result (combinational, for the caller to
        register) compares high with N[63:32] + 1 - carries for each possible
        count, and the count picks one.
        """
        products = Signal(data.ArrayLayout(2 * _HALF, 4), name=f"{name}_products")  # pl*sl, pl*sh, ph*sl, ph*sh
        price_half = [price[:_HALF], price[_HALF:]]
        shares_half = [shares[:_HALF], shares[_HALF:]]
        for index, (price_part, shares_part) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            m.d.sync += products[index].eq(price_half[price_part] * shares_half[shares_part])
        low_carries = Signal(2, name=f"{name}_low_carries")
        high_part = Signal(2 * _HALF, name=f"{name}_high_part")
        low_product, cross_a, cross_b, high_product = products
        m.d.sync += [
            low_carries.eq(_sum(low_product, cross_a[:_HALF] << _HALF, cross_b[:_HALF] << _HALF,
                                ~limits.notional_low)[32:]),
            high_part.eq(_sum(high_product, cross_a[_HALF:], cross_b[_HALF:])),
        ]
        high_over = Cat(high_part >= limits.notional_high_floor[carries] for carries in range(4))
        return high_over.bit_select(low_carries, 1)

    def _forecast(self, m, limits, outstanding_full, bucket_empty):
        """``forecast``: the checks but the collar on ``forecast_orders``, from the state as it is.

        The same checks as a request gets, by the same notional pipeline, made
        on slowly changing inputs, so that the fast path sends only orders the
        gate will accept.
        """
        for index in range(FORECAST_ORDERS):
            side = Side(index % 2)
            order = self.forecast_orders[index]
            name = f"forecast_{index}_{side.name.lower()}"
            room = limits.long_room if side is Side.BID else limits.short_room
            # The checks but the notional, along with its pipeline.
            passes = _delayed(m, ~self.kill & (order.shares <= self.max_qty) & ~room[-1] & (order.shares <= room[:-1])
                              & ~outstanding_full & ~bucket_empty, NOTIONAL_CYCLES, f"{name}_passes")
            over = self._notional_over(m, limits, order.price, order.shares, name)
            m.d.sync += self.forecast[index].eq(passes[-1] & ~over)

    def _request_checks(self, m, limits):
        """Cycles c .. c+3: the checks on the request alone; then the decision (`_decide`), whose flags it returns."""
        request = self.requests.p
        long_room, short_room = limits.long_room, limits.short_room

        # Cycle c: the compares on the request alone, the collar sums.
        received = Signal(OrderRequest)
        received_valid = Signal()
        received_checks = Signal(_RequestChecks)
        received_compares = Signal(_Compares)
        fair_plus_collar = Signal(PRICE_WIDTH + 1)
        price_plus_collar = Signal(PRICE_WIDTH + 1)
        m.d.sync += [
            received.eq(request),
            received_valid.eq(self.requests.valid),
            received_checks.kill.eq(self.kill),
            received_checks.max_qty.eq(request.shares > self.max_qty),
            received_compares.long_over.eq(request.shares > long_room[:-1]),
            received_compares.long_negative.eq(long_room[-1]),
            received_compares.short_over.eq(request.shares > short_room[:-1]),
            received_compares.short_negative.eq(short_room[-1]),
            fair_plus_collar.eq(request.fair_value + self.collar),
            price_plus_collar.eq(request.price + self.collar),
        ]
        # The multipliers' operands, in registers that drive nothing else (so they sit next to them).
        price_operand = Signal(PRICE_WIDTH)
        shares_operand = Signal(SHARES_WIDTH)
        m.d.sync += [price_operand.eq(request.price), shares_operand.eq(request.shares)]

        # Cycle c+1: the notional's partial products (`_notional_over`), the position check, and
        # the collar compares (their result is combined in the next cycle):
        # |price - fair| > collar  <=>  price > fair + collar  or  fair > price + collar.
        multiplied = Signal(OrderRequest)
        multiplied_valid = Signal()
        multiplied_checks = Signal(_RequestChecks)
        multiplied_compares = Signal(_Compares)
        m.d.sync += [
            multiplied.eq(received),
            multiplied_valid.eq(received_valid),
            multiplied_checks.eq(received_checks),
            multiplied_checks.position.eq(Mux(received.side == Side.BID,
                                              received_compares.long_negative | received_compares.long_over,
                                              received_compares.short_negative | received_compares.short_over)),
            multiplied_compares.price_above.eq(received.price > fair_plus_collar),
            multiplied_compares.fair_above.eq(received.fair_value > price_plus_collar),
        ]
        notional_over = self._notional_over(m, limits, price_operand, shares_operand, "request")

        # Cycle c+2: the notional's sums.
        summed = Signal(OrderRequest)
        summed_valid = Signal()
        summed_checks = Signal(_RequestChecks)
        m.d.sync += [
            summed.eq(multiplied),
            summed_valid.eq(multiplied_valid),
            summed_checks.eq(multiplied_checks),
            summed_checks.collar.eq(~multiplied.fair_valid | multiplied_compares.price_above
                                    | multiplied_compares.fair_above),
        ]

        # Cycle c+3: the notional compare.
        checked = Signal(OrderRequest)
        checked_checks = Signal(_RequestChecks)
        checked_valid = Signal()
        checked_pass = Signal()  # a request is here and passed the checks before and after the notional one
        m.d.sync += [
            checked.eq(summed),
            checked_valid.eq(summed_valid),
            checked_checks.eq(summed_checks),
            checked_checks.max_notional.eq(notional_over),
            checked_pass.eq(summed_valid & ~summed_checks.as_value().any()),
        ]
        return self._decide(m, checked, checked_valid, checked_checks, checked_pass)

    def _decide(self, m, checked, checked_valid, checked_checks, checked_pass):
        """Cycle c+4: outstanding, rate and queue room; the accepted order into the queue."""
        m.submodules.queue = queue = SyncFIFO(width=data.Layout.cast(OrderRequest).size, depth=ORDER_QUEUE_DEPTH)
        m.d.comb += [
            self.orders.valid.eq(queue.r_rdy),
            self.orders.p.eq(queue.r_data),
            queue.r_en.eq(self.orders.ready),
        ]
        # Flags for the request deciding now, prepared in the cycle before.
        outstanding_full = Signal(init=1)   # outstanding >= max_outstanding
        bucket_empty = Signal(init=1)       # tokens == 0
        accept = Signal()
        m.d.comb += [
            accept.eq(checked_pass & ~checked_checks.max_notional & ~outstanding_full & ~bucket_empty
                      & queue.w_rdy),
            queue.w_en.eq(accept),
            queue.w_data.eq(checked),
        ]

        # The event: the first failing check, in the doc's order (busy last), else accepted.
        priority = [(checked_checks[check], _event_name(reason)) for check, reason in _REQUEST_CHECKS]
        priority += [(outstanding_full, "reject_outstanding"), (bucket_empty, "reject_rate"),
                     (~queue.w_rdy, "reject_busy"), (1, "orders_accepted")]
        with m.If(checked_valid):
            for index, (failed, event) in enumerate(priority):
                with (m.If if index == 0 else m.Elif)(failed):
                    m.d.comb += self.events[event].eq(1)

        self._outstanding(m, accept, outstanding_full)
        self._bucket(m, accept, bucket_empty)
        return outstanding_full, bucket_empty

    def _outstanding(self, m, accept, outstanding_full):
        """``outstanding`` and its flag: an accept adds 1, then an ``orders_done`` amount subtracts.

        The amount goes through ``DECISION_LATENCY - 1`` registers, so that it meets the decision
        of the request that arrived in the cycle before it; on the way, max_outstanding + amount
        (and - 1) is worked out for the flag: after this cycle, outstanding >= max_outstanding
        <=>  max_outstanding == 0  or  outstanding + accept >= max_outstanding + amount (whether
        or not the subtraction saturates at 0).
        """
        outstanding = self.outstanding
        done = _delayed(m, self.orders_done, DECISION_LATENCY - 1, "done")
        done_less_1 = [Signal(signed(33), name=f"done_less_1_{stage}", init=-1) for stage in ("early", "late")]
        limit_plus_done = Signal(33)
        limit_plus_done_less_1 = Signal(33)  # at least 0: max_outstanding == 0 is apart
        limit_zero = Signal(init=1)
        less_1 = self.max_outstanding + done_less_1[0]
        m.d.sync += [
            done_less_1[0].eq(done[-3] - 1),  # along with done[-2]
            done_less_1[1].eq(done_less_1[0]),
            limit_plus_done.eq(self.max_outstanding + done[-2]),
            limit_plus_done_less_1.eq(Mux(less_1 < 0, 0, less_1)),
            limit_zero.eq(self.max_outstanding == 0),
        ]
        idle_left = outstanding - done[-1]            # outstanding - amount
        accept_left = outstanding - done_less_1[1]    # outstanding + 1 - amount
        m.d.sync += [
            outstanding.eq(Mux(accept, Mux(accept_left < 0, 0, accept_left), Mux(idle_left < 0, 0, idle_left))),
            outstanding_full.eq(limit_zero | Mux(accept, outstanding >= limit_plus_done_less_1,
                                                 outstanding >= limit_plus_done)),
        ]

    def _bucket(self, m, accept, bucket_empty):
        """The token bucket: a refill timer on the cycles requests arrive in, and ``tokens``.

        A refill at the end of cycle x and a ``rate_burst_write`` of cycle x + 1 reach the decision
        stage with the request of cycle x (``DECISION_LATENCY`` and one less registers on), and
        apply after it. The ``rate_burst`` value goes along with the write, so that the refill and
        the write use the value of their own cycle.
        """
        # Timer: a countdown to the next refill; `count` means something only while `waiting`.
        # At the end of a cycle that finds it at 0, the refill (unless the period is 0) and a
        # restart with the period of that cycle.
        waiting = Signal()
        count = Signal(32)
        m.d.sync += [
            waiting.eq(Mux(waiting, count != 1, self.rate_period > 1)),
            count.eq(Mux(waiting, count - 1, self.rate_period - 1)),
        ]
        refill_due = ~waiting & (self.rate_period != 0)
        refill = _delayed(m, refill_due, DECISION_LATENCY, "refill")
        write = _delayed(m, self.rate_burst_write, DECISION_LATENCY - 1, "burst_write")
        burst = _delayed(m, self.rate_burst, DECISION_LATENCY - 1, "burst")
        burst_less_1 = Signal(32)  # at least 0: tokens < burst - 1 is then false
        burst_zero = Signal(init=1)
        m.d.sync += [  # along with burst[-1]
            burst_less_1.eq(Mux(burst[-2] == 0, 0, burst[-2] - 1)),
            burst_zero.eq(burst[-2] == 0),
        ]

        # tokens, with the flags the next cycle needs: bucket_empty and below_burst (tokens < burst).
        tokens = self.tokens
        below_burst = Signal()
        # After an accept: the take, then the refill (the bucket is below the burst after a take).
        after_accept = [Mux(refill[-1], tokens, tokens - 1),
                        Mux(refill[-1], bucket_empty, tokens == 1),
                        Mux(refill[-1], tokens < burst[-1], 1)]
        idle_refilled = refill[-1] & below_burst
        after_idle = [Mux(idle_refilled, tokens + 1, tokens),
                      Mux(idle_refilled, 0, bucket_empty),
                      Mux(idle_refilled, tokens < burst_less_1, tokens < burst[-1])]
        after_write = [burst[-1], burst_zero, Const(0)]
        for register, written, accepted, idle in zip([tokens, bucket_empty, below_burst],
                                                     after_write, after_accept, after_idle):
            m.d.sync += register.eq(Mux(write[-1], written, Mux(accept, accepted, idle)))
