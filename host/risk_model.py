"""Golden model of the risk gate, exactly as docs/pipeline.md ("Risk gate") specifies it.

Every order request passes the checks of the doc's table in the table's
order; the first that fails names the `RejectReason` and counts
``reject_<reason>``; a request that passes them all is accepted: it adds 1 to
``outstanding``, takes a token and counts ``orders_accepted``. The model
never rejects ``busy`` (that depends on the transmitter's timing), but keeps
the counter so that its counters have the gateware's names.

The token bucket refills only when the caller gives cycles. Its cycle rules,
which the gateware (``hdl/risk_gate.py``) follows, are these; "cycle" is the
cycle a request is at the gate's ``requests`` input:

- a refill timer counts down the cycles to the next refill. At the end of
  a cycle that finds it at 0, a token is added if ``rate_period`` is not 0
  and ``tokens < rate_burst``, and the timer restarts from
  ``rate_period - 1`` (from 0 if ``rate_period`` is 0: nothing is ever
  added then); at the end of any other cycle it counts 1 down. It is at 0
  at reset (cycle 0), so a refill comes at the end of every
  ``rate_period``-th cycle; a new period is taken at the next restart;
- a request at cycle ``c`` sees every token added at the end of the cycles
  before ``c`` and the takes of every earlier request (a take at cycle ``c``
  comes before the refill at the end of ``c``);
- ``set_limits(limits, cycle=w)`` applies the limits from cycle ``w`` on:
  the timer counts the ends of cycles before ``w`` with the old period, and
  the bucket is refilled to ``rate_burst`` before the request at ``w``
  (``set_limits`` writes every register, ``rate_burst`` included, and writing
  ``rate_burst`` sets ``tokens`` to it). Writing a limit does not restart
  the timer.

Without cycles (``cycle=None``) no token is ever added, so end-to-end
comparisons without cycles use ``rate_period = 0``.

``orders_done`` and ``set_position`` apply at once: to the gateware's
requests that arrive in the same cycle as the write, or later.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .order_types import OrderRequest, RejectReason, Side

__all__ = ["RiskLimits", "RiskModel", "COUNTER_NAMES", "REASON_COUNTER"]

#: The risk gate's counters, in the doc's order (one per rejection reason, then acceptances).
COUNTER_NAMES = ("reject_kill", "reject_max_qty", "reject_max_notional", "reject_collar", "reject_position",
                 "reject_outstanding", "reject_rate", "reject_busy", "orders_accepted")
#: The counter that a rejection reason counts.
REASON_COUNTER = {reason: f"reject_{reason.name.lower()}" for reason in RejectReason}

_WORD = 1 << 32
#: Registers that are not unsigned 32 bits: name -> (lowest value, highest value + 1).
_LIMIT_RANGES = {
    "kill": (0, 2),
    "max_notional": (0, 1 << 64),
    "position": (-(1 << 31), 1 << 31),
}


@dataclass(frozen=True)
class RiskLimits:
    """The risk registers. All 0 at reset: no order passes (``max_qty`` 0) until the host sets them.

    ``max_notional`` is 64 bits, ``position`` signed 32 bits, ``kill`` one
    bit, every other register unsigned 32 bits.
    """
    kill: bool = False
    max_qty: int = 0
    max_notional: int = 0
    collar: int = 0
    position: int = 0
    max_long: int = 0
    max_short: int = 0
    max_outstanding: int = 0
    rate_burst: int = 0
    rate_period: int = 0

    def __post_init__(self):
        for field in fields(self):
            value = int(getattr(self, field.name))
            low, high = _LIMIT_RANGES.get(field.name, (0, _WORD))
            if not low <= value < high:
                raise ValueError(f"RiskLimits.{field.name} = {value} is outside its register ({low} .. {high - 1})")


class RiskModel:
    """The risk gate: `check` each order request in turn (see the module docstring for cycles).

    Attributes: ``limits`` (the registers, `RiskLimits`), ``outstanding``
    (accepted orders not yet reported done), ``tokens`` (the rate bucket),
    ``counters`` (counter name -> count, names as `COUNTER_NAMES`).
    """

    def __init__(self, limits: RiskLimits = RiskLimits()):
        self.limits = limits
        self.outstanding = 0
        self.tokens = limits.rate_burst
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._cycle = 0     # the bucket is brought up to the start of this cycle
        self._countdown = 0  # cycle ends before the next refill

    def set_limits(self, limits: RiskLimits, cycle: int | None = None) -> None:
        """Write every risk register (from ``cycle`` on, if given); refills the bucket to ``rate_burst``."""
        if cycle is not None:
            self._advance(cycle)
        self.limits = limits
        self.tokens = limits.rate_burst

    def set_position(self, position: int) -> None:
        """The host writes the position register (from its executions)."""
        self.limits = replace(self.limits, position=position)

    def orders_done(self, count: int) -> None:
        """The host reports ``count`` orders finished: ``outstanding`` goes down, not below 0."""
        if not 0 <= count < _WORD:
            raise ValueError(f"orders_done count {count} is not a 32-bit amount")
        self.outstanding = max(0, self.outstanding - count)

    def check(self, request: OrderRequest, cycle: int | None = None) -> RejectReason | None:
        """The first failing check of ``request`` (None: accepted), counted; ``cycle`` refills the bucket."""
        for name in ("price", "shares", "fair_value"):
            if not 0 <= getattr(request, name) < _WORD:
                raise ValueError(f"order request {name} {getattr(request, name)} is not a 32-bit value")
        if cycle is not None:
            self._advance(cycle)
        reason = self._first_failure(request)
        if reason is None:
            self.outstanding += 1
            self.tokens -= 1
            self.counters["orders_accepted"] += 1
        else:
            self.counters[REASON_COUNTER[reason]] += 1
        return reason

    def _first_failure(self, request: OrderRequest) -> RejectReason | None:
        limits = self.limits
        if limits.kill:
            return RejectReason.KILL
        if request.shares > limits.max_qty:
            return RejectReason.MAX_QTY
        if request.price * request.shares > limits.max_notional:
            return RejectReason.MAX_NOTIONAL
        if not request.fair_valid or abs(request.price - request.fair_value) > limits.collar:
            return RejectReason.COLLAR
        if request.side is Side.BID:
            over = limits.position + request.shares > limits.max_long
        else:
            over = limits.position - request.shares < -limits.max_short
        if over:
            return RejectReason.POSITION
        if self.outstanding >= limits.max_outstanding:
            return RejectReason.OUTSTANDING
        if self.tokens == 0:
            return RejectReason.RATE
        return None

    def _advance(self, cycle: int) -> None:
        """Run the refill timer over the ends of the cycles before ``cycle``."""
        if cycle < self._cycle:
            raise ValueError(f"cycle {cycle} is before cycle {self._cycle}, already reached")
        cycles, self._cycle = cycle - self._cycle, cycle
        period = self.limits.rate_period
        if cycles <= self._countdown:
            self._countdown -= cycles
            return
        if period == 0:
            self._countdown = 0
            return
        # a refill at the end of cycle countdown + 1 from here, then one every period cycles
        after_first = cycles - self._countdown - 1
        refills = 1 + after_first // period
        self._countdown = period - 1 - after_first % period
        if self.tokens < self.limits.rate_burst:
            self.tokens = min(self.limits.rate_burst, self.tokens + refills)
