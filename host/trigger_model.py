"""Golden model of the strategies (docs/pipeline.md, "Strategies (Trigger)"): book tops in, order requests out.

Written from the contract alone, in plain Python, so that the gateware
(``hdl/trigger.py``) can be checked against it bit for bit. The model has no
clock: ``evaluate`` is called after every message the book has seen, with
the tops after it and the message's JSON record (a P trade message of the
watched locate sets the watched trade price first), and after every host
write (``record=None``); each call returns the order requests that state
fires, a buy before a sell.

Details the contract leaves to the implementation, fixed here and in the
gateware alike:

- a quote that is not ``valid`` has no price: the condition may read its
  price field, but the quote never forms an order and always "differs from
  the price last fired at" (a disarmed side re-arms on it);
- a request made while ``fair_valid`` is 0 carries ``fair_value`` 0;
- a trade is watched when it is a P message whose locate equals the watch
  slot's configured locate, and that locate is not 0 (an unused slot
  watches nothing); the latest such price is kept across configuration
  changes;
- an unknown ``watch_source`` watches nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .order_types import InstrumentTop, OrderRequest, Quote, Side

__all__ = ["Strategy", "WatchSource", "StrategyConfig", "TriggerModel", "fair_value", "MAX_SLOTS"]

PRICE_LIMIT = 1 << 32
#: The order request's slot field is 8 bits wide.
MAX_SLOTS = 256


class Strategy(enum.IntEnum):
    """The ``strategy`` register: which strategy is active."""
    OFF = 0
    SNIPE = 1
    THRESHOLD = 2


class WatchSource(enum.IntEnum):
    """The ``watch_source`` register: which price the price threshold watches."""
    TRADES = 0
    BID = 1
    ASK = 2


@dataclass
class StrategyConfig:
    """The strategy registers (docs/pipeline.md): every field, whichever strategy uses it."""
    strategy: Strategy = Strategy.OFF
    lead_slot: int = 0
    target_slot: int = 1
    edge: int = 0
    order_size: int = 0
    watch_slot: int = 0
    watch_source: WatchSource = WatchSource.TRADES
    threshold: int = 0
    threshold_above: bool = True
    threshold_side: Side = Side.BID


def fair_value(lead: InstrumentTop) -> int | None:
    """The lead's mid, rounded down, or None when it is not known (a quote not valid, the lead unreliable)."""
    if not (lead.bid.valid and lead.ask.valid) or lead.unreliable:
        return None
    return (lead.bid.price + lead.ask.price) >> 1


class TriggerModel:
    """The active strategy with its per-side ``armed`` flags, evaluated state by state."""

    def __init__(self, config: StrategyConfig, *, slots: int = 2, locates=()):
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1 to {MAX_SLOTS}, not {slots}")
        locates = list(locates)
        if len(locates) > slots:
            raise ValueError(f"{len(locates)} locates for {slots} slots")
        if any(not 0 <= locate < 1 << 16 for locate in locates):
            raise ValueError(f"locates must be 16-bit values, not {locates}")
        self.slots = slots
        self.locates = locates + [0] * (slots - len(locates))
        #: The latest watched trade price, None until one has been seen.
        self.trade_price: int | None = None
        self.set_config(config)

    def set_config(self, config: StrategyConfig) -> None:
        """A write of the strategy registers: takes ``config`` and re-arms both sides."""
        for name in ("lead_slot", "target_slot", "watch_slot"):
            if not 0 <= getattr(config, name) < self.slots:
                raise ValueError(f"{name} must be below slots ({self.slots}), not {getattr(config, name)}")
        for name in ("edge", "order_size", "threshold"):
            if not 0 <= getattr(config, name) < PRICE_LIMIT:
                raise ValueError(f"{name} must be a 32-bit value, not {getattr(config, name)}")
        self.config = config
        self.rearm()

    def rearm(self) -> None:
        """The host's ``rearm`` strobe: both sides armed."""
        self.armed = {Side.BID: True, Side.ASK: True}
        self.fired_price = {Side.BID: 0, Side.ASK: 0}

    def evaluate(self, tops: list[InstrumentTop], record: dict | None = None) -> list[OrderRequest]:
        """The order requests fired on the state ``tops`` after the message ``record`` (None after a host write)."""
        if len(tops) != self.slots:
            raise ValueError(f"{len(tops)} tops for {self.slots} slots")
        if record is not None and record["type"] == "P":
            watched_locate = self.locates[self.config.watch_slot]
            if watched_locate != 0 and record["locate"] == watched_locate:
                self.trade_price = record["price"]
        conditions = self._conditions(tops)
        target = tops[self.config.target_slot]
        fair = fair_value(tops[self.config.lead_slot])
        requests = []
        for side in (Side.BID, Side.ASK):  # a buy takes the target's ask, a sell its bid
            quote = target.ask if side is Side.BID else target.bid
            condition = conditions[side]
            same_quote = quote.valid and quote.price == self.fired_price[side]
            if not condition or not same_quote:
                self.armed[side] = True
            if self.armed[side] and condition and quote.valid and not target.unreliable:
                self.armed[side] = False
                self.fired_price[side] = quote.price
                requests.append(self._request(side, quote, fair))
        return requests

    def _conditions(self, tops: list[InstrumentTop]) -> dict[Side, bool]:
        """Per side (BID: buy, ASK: sell), whether the active strategy's condition holds."""
        config = self.config
        if config.strategy == Strategy.SNIPE:
            fair = fair_value(tops[config.lead_slot])
            target = tops[config.target_slot]
            if fair is None:
                return {Side.BID: False, Side.ASK: False}
            return {Side.BID: target.ask.price + config.edge < fair,
                    Side.ASK: target.bid.price > fair + config.edge}
        if config.strategy == Strategy.THRESHOLD:
            price = self._watched_price(tops)
            holds = price is not None and (price >= config.threshold if config.threshold_above
                                           else price <= config.threshold)
            return {Side.BID: holds and config.threshold_side is Side.BID,
                    Side.ASK: holds and config.threshold_side is Side.ASK}
        return {Side.BID: False, Side.ASK: False}

    def _watched_price(self, tops: list[InstrumentTop]) -> int | None:
        """The price the threshold watches, None while it does not exist."""
        source = self.config.watch_source
        if source == WatchSource.TRADES:
            return self.trade_price
        watched = tops[self.config.watch_slot]
        quote = {WatchSource.BID: watched.bid, WatchSource.ASK: watched.ask}.get(source, Quote())
        return quote.price if quote.valid and not watched.unreliable else None

    def _request(self, side: Side, quote: Quote, fair: int | None) -> OrderRequest:
        return OrderRequest(slot=self.config.target_slot, side=side, price=quote.price,
                            shares=min(self.config.order_size, quote.shares),
                            fair_value=0 if fair is None else fair, fair_valid=fair is not None)
