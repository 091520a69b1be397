"""The strategy file: the shipped example parses, every field is checked and named when wrong."""

import copy
from pathlib import Path

import pytest

from tick2trade.host.order_types import Side
from tick2trade.host.strategy import (StrategyError, load_strategy, parse_strategy, resolve_instruments)
from tick2trade.host.trigger_model import Strategy, WatchSource

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "strategy.toml"
MINIMAL = {"instruments": {"lead": "LEAD", "target": "TGT"}}




def test_example_parses_to_what_its_comments_say():
    strategy = load_strategy(EXAMPLE)
    assert strategy.strategy.strategy is Strategy.SNIPE
    assert strategy.strategy.edge == 100  # "0.01" dollars in 1/10000 dollar
    assert strategy.strategy.order_size == 100
    assert strategy.risk.max_notional == 100_000 * 10_000
    assert strategy.risk.collar == 5_000
    assert strategy.template.dst_mac == bytes.fromhex("020000000002")
    assert strategy.template.src_ip == bytes([10, 0, 0, 1])
    assert strategy.template.token_prefix == "T2T000"
    assert (strategy.book_capacity, strategy.book_levels) == (4096, 4)
    assert strategy.instruments["lead"].symbol == "LEAD"


def test_defaults_reject_everything():
    """Left out, every risk limit is 0: a strategy file that forgets one sends nothing."""
    strategy = parse_strategy(MINIMAL)
    assert strategy.risk.max_qty == 0 and strategy.risk.max_outstanding == 0 and strategy.risk.rate_burst == 0


def test_threshold_section():
    data = copy.deepcopy(MINIMAL)
    data["strategy"] = {"kind": "threshold", "threshold": {
        "watch": "target", "source": "ask", "level": "101.5", "direction": "below", "side": "sell"}}
    config = parse_strategy(data).strategy
    assert config.strategy is Strategy.THRESHOLD
    assert (config.watch_slot, config.watch_source, config.threshold) == (1, WatchSource.ASK, 1_015_000)
    assert config.threshold_above is False and config.threshold_side is Side.ASK


@pytest.mark.parametrize("section, key, value, message", [
    ("risk", "max_qty", -1, r"risk\.max_qty: must be an integer from 0 to 4294967295"),
    ("risk", "max_qty", 2 ** 32, r"risk\.max_qty"),
    ("risk", "max_qty", "100", r"risk\.max_qty"),
    ("risk", "kill", 1, r"risk\.kill: must be true or false"),
    ("risk", "collar", "0.00001", r"risk\.collar: 0\.00001 has more than 4 decimals"),
    ("risk", "collar", "abc", r"risk\.collar: must be a dollar amount"),
    ("risk", "max_notional", -5, r"risk\.max_notional: -5 is out of range"),
    ("risk", "position", 2 ** 31, r"risk\.position"),
    ("risk", "max_quantity", 5, r"risk\.max_quantity: unknown field"),
    ("strategy", "kind", "arbitrage", r"strategy\.kind: must be one of 'off', 'snipe', 'threshold'"),
    ("strategy", "order_size", 0, r"strategy\.order_size"),
    ("strategy.threshold", "source", "mid", r"strategy\.threshold\.source"),
    ("order", "dst_mac", "02:00:00:00:00", r"order\.dst_mac: must be a MAC address"),
    ("order", "src_ip", "10.0.0.256", r"order\.src_ip: must be an IPv4 address"),
    ("order", "src_port", 70000, r"order\.src_port"),
    ("order", "token_prefix", "ABC", r"order\.token_prefix: must be exactly 6 characters"),
    ("order", "firm", "TOOLONG", r"order\.firm: must be 1 to 4 characters"),
    ("order", "display", "é", r"order\.display: must be printable ASCII"),
    ("book", "capacity", 1000, r"book\.capacity: must be a power of two"),
    ("book", "levels", 0, r"book\.levels"),
    ("instruments", "lead", 0, r"instruments\.lead: stock locate must be 1 to 65535"),
    ("instruments", "lead", "TOO LONG SYMBOL", r"instruments\.lead: must be a symbol"),
    ("", "extra", 1, r"^extra: unknown field"),
])
def test_bad_field_is_named(section, key, value, message):
    data = copy.deepcopy(MINIMAL)
    table = data
    for name in filter(None, section.split(".")):
        table = table.setdefault(name, {})
    table[key] = value
    with pytest.raises(StrategyError, match=message):
        parse_strategy(data)


def test_missing_instrument_is_named():
    with pytest.raises(StrategyError, match=r"instruments\.target: is required"):
        parse_strategy({"instruments": {"lead": "LEAD"}})


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("[risk\nmax_qty = 1", "not valid TOML"),
    ("[risk]\nmax_qty = -1\n[instruments]\nlead='A'\ntarget='B'\n", r"risk\.max_qty"),
])
def test_file_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "strategy.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(StrategyError, match=message) as error:
        load_strategy(path)
    assert str(path) in str(error.value)


def test_instruments_resolve_from_the_stock_directory():
    strategy = parse_strategy({"instruments": {"lead": "LEAD", "target": 7}})
    assert resolve_instruments(strategy, {"LEAD": 1, "TGT": 7}) == {"lead": (1, "LEAD"), "target": (7, "TGT")}
    with pytest.raises(StrategyError, match=r"instruments\.lead: symbol 'LEAD' is not in the feed"):
        resolve_instruments(strategy, {"TGT": 7})
    with pytest.raises(StrategyError, match=r"instruments\.target: stock locate 7 is not in the feed"):
        resolve_instruments(strategy, {"LEAD": 1})
    same = parse_strategy({"instruments": {"lead": "LEAD", "target": 1}})
    with pytest.raises(StrategyError, match="the same instrument"):
        resolve_instruments(same, {"LEAD": 1})
