"""The strategy file: which instruments, which strategy, its risk limits and its order template.

A TOML file (``examples/strategy.toml`` documents every field) read into the
settings the golden model and the gateware's registers both take, so that
``tick2trade model run`` and ``tick2trade sim run`` configure the same thing
from the same file. Every field is checked; a bad one raises
``StrategyError`` naming it (``risk.max_qty: ...``), and unknown fields are
errors too, so that a typo cannot silently leave a limit at its default.

Prices and money are written in dollars (``100.25``, or a string
``"100.25"`` to avoid binary floats) and kept in ITCH/OUCH price units of
1/10000 dollar; a notional is price units times shares.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .files import read_toml
from .order_tx_model import OrderTemplate
from .order_types import Side
from .risk_model import RiskLimits
from .trigger_model import Strategy, StrategyConfig, WatchSource

__all__ = ["StrategyError", "InstrumentRef", "StrategyFile", "load_strategy", "parse_strategy",
           "LEAD_SLOT", "TARGET_SLOT", "SLOTS", "resolve_instruments"]

#: The book slots the strategy file's instruments go to.
LEAD_SLOT, TARGET_SLOT = 0, 1
SLOTS = 2
PRICE_SCALE = 10_000
U32 = 2 ** 32 - 1
U64 = 2 ** 64 - 1


class StrategyError(ValueError):
    """The strategy file is missing, not TOML, or a field is wrong; the message names it."""


@dataclass(frozen=True)
class InstrumentRef:
    """An instrument as the file names it: by symbol, by stock locate, or both."""
    symbol: str | None = None
    locate: int | None = None


@dataclass
class StrategyFile:
    """Everything a strategy file configures."""
    strategy: StrategyConfig
    risk: RiskLimits
    template: OrderTemplate
    instruments: dict[str, InstrumentRef]
    tcp_seq: int = 0
    token_counter: int = 0
    book_capacity: int = 4096
    book_levels: int = 4
    source: str = "<defaults>"
    resolved: dict[str, tuple[int, str]] = field(default_factory=dict)


class _Table:
    """One TOML table being read: typed getters that name the field on error and track what was used."""

    def __init__(self, data, name):
        if not isinstance(data, dict):
            raise StrategyError(f"{name}: must be a table")
        self.data, self.name, self.used = data, name, set()

    def _get(self, key, default):
        self.used.add(key)
        return self.data.get(key, default)

    def fail(self, key, problem):
        raise StrategyError(f"{self.name}.{key}: {problem}")

    def integer(self, key, default, low, high):
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def boolean(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {value!r}")
        return value

    def choice(self, key, default, choices):
        value = self._get(key, default)
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return choices[value] if isinstance(choices, dict) else value

    def dollars(self, key, default, high):
        """A price or an amount in dollars, as an integer number of 1/10000 dollar."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.fail(key, f"must be a dollar amount such as 100.25, not {value!r}")
        try:
            units = Decimal(str(value)) * PRICE_SCALE
        except InvalidOperation:
            self.fail(key, f"must be a dollar amount such as 100.25, not {value!r}")
        if units != units.to_integral_value():
            self.fail(key, f"{value} has more than 4 decimals")
        if not 0 <= units <= high:
            self.fail(key, f"{value} is out of range (0 to {Decimal(high) / PRICE_SCALE})")
        return int(units)

    def text(self, key, default, length, *, exact=False):
        value = self._get(key, default)
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            self.fail(key, f"must be printable ASCII text, not {value!r}")
        if len(value) > length or (exact and len(value) != length) or (not exact and not value):
            self.fail(key, f"must be {'exactly' if exact else '1 to'} {length} characters, not {value!r}")
        return value

    def mac(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", value):
            self.fail(key, f"must be a MAC address such as 02:00:00:00:00:01, not {value!r}")
        return bytes.fromhex(value.replace(":", ""))

    def ipv4(self, key, default):
        value = self._get(key, default)
        try:
            return ipaddress.IPv4Address(value).packed
        except (ipaddress.AddressValueError, ValueError):
            self.fail(key, f"must be an IPv4 address such as 10.0.0.1, not {value!r}")

    def instrument(self, key):
        value = self._get(key, None)
        if value is None:
            self.fail(key, "is required (a symbol such as \"LEAD\", or a stock locate number)")
        if isinstance(value, bool):
            self.fail(key, f"must be a symbol or a stock locate, not {value!r}")
        if isinstance(value, int):
            if not 1 <= value <= 0xFFFF:
                self.fail(key, f"stock locate must be 1 to 65535, not {value}")
            return InstrumentRef(locate=value)
        if isinstance(value, str) and value.isascii() and value.isprintable() and 1 <= len(value) <= 8 \
                and value == value.strip():
            return InstrumentRef(symbol=value)
        self.fail(key, f"must be a symbol of 1 to 8 characters or a stock locate, not {value!r}")

    def table(self, key):
        return _Table(self._get(key, {}), f"{self.name}.{key}" if self.name else key)

    def finish(self):
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            where = f"{self.name}." if self.name else ""
            raise StrategyError(f"{where}{unknown[0]}: unknown field")


_STRATEGIES = {"off": Strategy.OFF, "snipe": Strategy.SNIPE, "threshold": Strategy.THRESHOLD}
_SOURCES = {"trades": WatchSource.TRADES, "bid": WatchSource.BID, "ask": WatchSource.ASK}
_SIDES = {"buy": Side.BID, "sell": Side.ASK}
_SLOTS = {"lead": LEAD_SLOT, "target": TARGET_SLOT}


def parse_strategy(data: dict, source: str = "<string>") -> StrategyFile:
    """A StrategyFile from parsed TOML ``data``; raises StrategyError naming the first bad field."""
    top = _Table(data, "")
    instruments_table = top.table("instruments")
    instruments = {"lead": instruments_table.instrument("lead"),
                   "target": instruments_table.instrument("target")}
    instruments_table.finish()

    strategy_table = top.table("strategy")
    kind = strategy_table.choice("kind", "snipe", _STRATEGIES)
    config = StrategyConfig(
        strategy=kind, lead_slot=LEAD_SLOT, target_slot=TARGET_SLOT,
        edge=strategy_table.dollars("edge", 0, U32),
        order_size=strategy_table.integer("order_size", 100, 1, U32),
    )
    threshold_table = strategy_table.table("threshold")
    if kind is Strategy.THRESHOLD or threshold_table.data:
        config.watch_slot = threshold_table.choice("watch", "lead", _SLOTS)
        config.watch_source = threshold_table.choice("source", "trades", _SOURCES)
        config.threshold = threshold_table.dollars("level", 0, U32)
        config.threshold_above = threshold_table.choice("direction", "above", {"above": True, "below": False})
        config.threshold_side = threshold_table.choice("side", "buy", _SIDES)
        threshold_table.finish()
    strategy_table.finish()

    risk_table = top.table("risk")
    risk = RiskLimits(
        kill=risk_table.boolean("kill", False),
        max_qty=risk_table.integer("max_qty", 0, 0, U32),
        max_notional=risk_table.dollars("max_notional", 0, U64),
        collar=risk_table.dollars("collar", 0, U32),
        position=risk_table.integer("position", 0, -2 ** 31, 2 ** 31 - 1),
        max_long=risk_table.integer("max_long", 0, 0, U32),
        max_short=risk_table.integer("max_short", 0, 0, U32),
        max_outstanding=risk_table.integer("max_outstanding", 0, 0, U32),
        rate_burst=risk_table.integer("rate_burst", 0, 0, U32),
        rate_period=risk_table.integer("rate_period", 0, 0, U32),
    )
    risk_table.finish()

    order_table = top.table("order")
    template = OrderTemplate(
        dst_mac=order_table.mac("dst_mac", "02:00:00:00:00:02"),
        src_mac=order_table.mac("src_mac", "02:00:00:00:00:01"),
        src_ip=order_table.ipv4("src_ip", "10.0.0.1"),
        dst_ip=order_table.ipv4("dst_ip", "10.0.0.2"),
        src_port=order_table.integer("src_port", 40000, 0, 0xFFFF),
        dst_port=order_table.integer("dst_port", 15000, 0, 0xFFFF),
        tcp_ack=order_table.integer("tcp_ack", 0, 0, U32),
        tcp_window=order_table.integer("tcp_window", 65535, 0, 0xFFFF),
        ip_ttl=order_table.integer("ip_ttl", 64, 1, 255),
        token_prefix=order_table.text("token_prefix", "T2T000", 6, exact=True),
        firm=order_table.text("firm", "T2T", 4),
        display=order_table.text("display", "Y", 1, exact=True),
        capacity=order_table.text("capacity", "P", 1, exact=True),
        customer_type=order_table.text("customer_type", "R", 1, exact=True),
    )
    tcp_seq = order_table.integer("tcp_seq", 0, 0, U32)
    token_counter = order_table.integer("token_counter", 0, 0, U32)
    order_table.finish()

    book_table = top.table("book")
    capacity = book_table.integer("capacity", 4096, 2, 2 ** 20)
    if capacity & (capacity - 1):
        book_table.fail("capacity", f"must be a power of two, not {capacity}")
    levels = book_table.integer("levels", 4, 1, 16)
    book_table.finish()
    top.finish()
    return StrategyFile(strategy=config, risk=risk, template=template, instruments=instruments,
                        tcp_seq=tcp_seq, token_counter=token_counter, book_capacity=capacity,
                        book_levels=levels, source=source)


def load_strategy(path) -> StrategyFile:
    """Read and check the strategy file at ``path``."""
    path = Path(path)
    data = read_toml(path, StrategyError)
    try:
        return parse_strategy(data, str(path))
    except StrategyError as error:
        raise StrategyError(f"{path}: {error}") from None


def resolve_instruments(strategy: StrategyFile, directory: dict[str, int]) -> dict[str, tuple[int, str]]:
    """Each role's (stock locate, symbol), completing the file's references from a Stock Directory.

    ``directory`` maps symbol -> locate, as the feed's 'R' messages give it.
    The result is also kept in ``strategy.resolved``.
    """
    by_locate = {locate: symbol for symbol, locate in directory.items()}
    resolved = {}
    for role, ref in strategy.instruments.items():
        if ref.symbol is not None:
            if ref.symbol not in directory:
                raise StrategyError(f"instruments.{role}: symbol {ref.symbol!r} is not in the feed's "
                                    "Stock Directory messages")
            resolved[role] = (directory[ref.symbol], ref.symbol)
        elif ref.locate in by_locate:
            resolved[role] = (ref.locate, by_locate[ref.locate])
        else:
            raise StrategyError(f"instruments.{role}: stock locate {ref.locate} is not in the feed's "
                                "Stock Directory messages")
    if resolved["lead"][0] == resolved["target"][0]:
        raise StrategyError("instruments: lead and target are the same instrument")
    strategy.resolved = resolved
    return resolved
