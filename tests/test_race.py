"""The race: engine causality and ties, a hand-worked race each way, P&L that adds up, scenarios checked field by field.

The tiny scenario has no takers and one scripted lead jump, so every time,
price and P&L is worked out by hand in the comments (prices in 1/10000
dollar). The P&L of a seeded race is recomputed here from its fills and fair
values by independent code. Expected values never come from the code under
test.
"""

import dataclasses
import random
from pathlib import Path

import pytest

from tick2trade.host.race import (COUNTERFACTUAL_BATCH_INTERVAL_NS, DEFAULT_SCENARIO_DATA, MARKOUT_HORIZONS_NS,
                                  PNL_SAMPLES, RUNNER_PACKETS, CausalityError, EventQueue, RaceScenarioError,
                                  SweepPoint, counterfactual_scenario, latency_sweep, load_scenario, parse_scenario,
                                  race_and_sweep, run_race, sweep_latencies)
from tick2trade.host.sniper import ModelSniper

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# One jump of +10 ticks at 1 ms; the maker's feed, entry and decision legs are 1000 ns each (its answers take
# 1500 ns, so that they never reach it at the same ns as a frame), its quotes 100 shares.
TINY = {"duration_s": 0.01, "lead": {"moves": [[1_000_000, 10]]}, "takers": {"rate_per_s": 0},
        "maker": {"inventory_skew_enabled": False},
        "legs": {"maker": {"feed_ns": 1000, "entry_ns": 1000, "response_ns": 1500, "decision": 1000}}}


def tiny(**sniper_legs):
    data = dict(TINY, legs={**TINY["legs"], "sniper": sniper_legs})
    return parse_scenario(data)


# --- the engine ---------------------------------------------------------------------------------


def test_an_event_scheduled_before_the_last_one_handled_raises():
    queue = EventQueue(random.Random(1))
    queue.schedule(10, "a")
    queue.schedule(10, "b")
    assert queue.pop()[0] == 10
    queue.schedule(10, "c")  # the same time is not the past
    with pytest.raises(CausalityError, match="before 10 ns"):
        queue.schedule(9, "d")


def test_ties_follow_a_key_drawn_per_event_then_the_scheduling_order():
    events = [f"e{i}" for i in range(20)]

    def popped(seed):
        queue = EventQueue(random.Random(seed))
        queue.schedule(7, "late")
        for event in events:
            queue.schedule(5, event)
        return [queue.pop()[1] for _ in range(21)]

    keys = random.Random(3)
    keys.random()  # "late" drew the first key
    want = [event for _key, _order, event in sorted((keys.random(), order, event)
                                                    for order, event in enumerate(events))] + ["late"]
    assert popped(3) == want == popped(3)
    assert popped(4) != want


def test_a_sniper_that_answers_after_its_window_breaks_causality():
    scenario = tiny()  # answer_window_ns 10000; this sniper answers after 50000
    with pytest.raises(CausalityError, match="answer_window_ns"):
        run_race(scenario, sniper_factory=lambda s, directory: ModelSniper(s.sniper, directory, latency_ns=50_000))


# --- the hand-worked race -------------------------------------------------------------------------
#
# t=0: the exchange opens and the lead desk quotes 99.99/100.01 (fair 100.00 = 1_000_000), two frames. The
# maker gets both at 1000: it decides on the first (the open) until 2000, then on the second (and the open's
# answer, waiting since 1500) until 3000; its quotes reach the exchange at 4000 (tick-to-trade 4000): bid
# floor(1_000_000 x 0.9995) = 999_500, ask ceil(1_000_000 x 1.0005) = 1_000_500.
# t=1_000_000: the lead jumps to 100.09/100.11 (fair 1_001_000). The sniper sees it at 1_000_241 and buys the
# stale ask (1_000_500 + 100 < 1_001_000): its order leaves after its latency and travels its entry leg. The
# maker sees the jump at 1_001_000 and its cancels arrive at 1_003_000 (tick-to-trade 3000).


def test_the_faster_sniper_takes_the_stale_quote_and_the_makers_cancel_is_too_late():
    result = run_race(tiny())  # sniper: 241 + 26 + 176 = 443 ns
    races = result.races
    assert (races.count, races.sniper_wins, races.maker_wins, races.uncontested) == (1, 1, 0, 0)
    assert races.duration.values == (1_003_000 - 1_000_443,)
    assert result.stale_quotes_taken == 1
    assert result.late_cancels == 1  # the maker's cancel of its ask came after the sniper filled it
    assert result.sniper.tick_to_trade_latency.values == (443,)
    assert result.sniper.decision_latency.values == (26,)
    assert result.maker.tick_to_trade_latency.values == (4000, 3000)
    assert result.maker.decision_latency.values == (1000, 1000)
    # the maker sold 100 at 1_000_500 with fair 1_001_000, which stays to the end
    pnl = result.maker.pnl
    assert (pnl.spread_capture, pnl.adverse_selection, pnl.inventory, pnl.total) == (-50_000, 0, 0, -50_000)
    assert pnl.spread_capture_by_counterparty == {"sniper": -50_000}
    assert (pnl.position, pnl.cash) == (-100, 100 * 1_000_500)
    assert result.sniper.pnl.total == 50_000
    assert result.sniper.counts["fills"] == 1 and result.sniper.counts["missed"] == 0
    assert result.maker_fills == ((1_000_443, -1, 1_000_500, 100, 1_001_000),)
    assert result.fair_value == ((0, 1_000_000), (1_000_000, 1_001_000))
    assert result.measured == ()


@pytest.mark.parametrize("legs, tick_to_trade", [
    ({"model_latency_ns": 5000}, 241 + 5000 + 176),  # a slower device
    ({"entry_ns": 5000}, 241 + 26 + 5000),  # a slower line to the exchange
])
def test_the_slower_sniper_loses_the_race_to_the_makers_cancel(legs, tick_to_trade):
    result = run_race(tiny(**legs))  # the maker's tick-to-trade is 3000 ns
    races = result.races
    assert (races.count, races.sniper_wins, races.maker_wins) == (1, 0, 1)
    assert races.duration.values == (1_000_000 + tick_to_trade - 1_003_000,)
    assert (result.stale_quotes_taken, result.late_cancels) == (0, 0)
    if "entry_ns" in legs:  # a device slower than the gap to its next frame has no trigger known from times alone
        assert result.sniper.tick_to_trade_latency.values == (tick_to_trade,)
    assert result.sniper.counts["missed"] == 1  # its IOC found the ask gone
    assert result.maker.pnl.total == 0 and result.maker_fills == ()


# In a frequent batch auction of 400 us, the same jump: the lead desk's new quotes wait for the batch at 1_200_000
# (fair 1_001_000 from then). The sniper's IOC buy at the stale ask arrives at 1_200_443, the maker's cancels at
# 1_203_000: both in the batch ending at 1_600_000, which takes the cancels first. The maker's quotes rested in the
# batch at 800_000 (the lead's first quotes came out at 400_000, the maker's reached the exchange at 403_000).


def test_in_a_batch_auction_the_makers_cancel_beats_the_faster_sniper():
    result = run_race(parse_scenario(dict(TINY, exchange={"batch_interval_ms": 0.4})))
    races = result.races
    assert (races.count, races.sniper_wins, races.maker_wins, races.uncontested) == (1, 0, 1, 0)
    assert races.duration.values == (1_203_000 - 1_200_443,)  # the arrivals' gap, though the batch decides
    assert (result.stale_quotes_taken, result.late_cancels) == (0, 0)
    assert result.sniper.tick_to_trade_latency.values == (443,)
    assert result.maker.tick_to_trade_latency.values == (3000, 3000)
    assert result.sniper.counts["missed"] == 1 and result.sniper.counts["fills"] == 0
    assert result.maker.pnl.total == 0 and result.maker_fills == ()
    assert result.fair_value == ((400_000, 1_000_000), (1_200_000, 1_001_000))
    # the open, then the batches at 0.4, 0.8, 1.2 and 1.6 ms; the other 21 have nothing to publish
    assert result.market["feed_frames"] == 5


def test_latency_sweep_runs_one_race_per_constant_maker_latency():
    # 500_000 ns: the maker decides on the open until 501_000 and on the lead's quotes until 1_001_000, so its
    # quotes reach the exchange at 1_002_000, after the jump: the sniper sees the stale ask at 1_002_241 and
    # takes it at 1_002_443; the maker, seeing the jump at 1_001_000, cancels it at 1_502_000, too late.
    assert latency_sweep(tiny(), [1000, 500_000]) == [SweepPoint(1000, -50_000, 1, 1),
                                                      SweepPoint(500_000, -50_000, 1, 1)]
    assert sweep_latencies(26) == [10**9, 10**8, 10**7, 10**6, 10**5, 10**4, 1000, 100, 26]


# --- seeded races -----------------------------------------------------------------------------------


def short(seconds, **changes):
    return dataclasses.replace(load_scenario("default"), duration_ns=int(seconds * 10**9), **changes)


def fair_at(history, time_ns):
    """The last fair value set at or before `time_ns` (a linear scan)."""
    value = None
    for at, fair in history:
        if at > time_ns:
            break
        value = fair
    return value


def test_pnl_parts_add_up_to_the_total():
    result = run_race(short(5, maker_decision_ns=50_000), seed=7)
    fills, history, end = result.maker_fills, result.fair_value, result.scenario.duration_ns
    assert len(fills) > 20
    final = fair_at(history, end)
    for time_ns, _side, _price, _shares, fair in fills:
        assert fair == fair_at(history, time_ns)
    spread = sum(side * (fair - price) * shares for _t, side, price, shares, fair in fills)
    markouts = {name: sum(side * (fair_at(history, min(t + horizon, end)) - fair) * shares
                          for t, side, _price, shares, fair in fills)
                for name, horizon in MARKOUT_HORIZONS_NS.items()}
    held = sum(side * (final - fair_at(history, min(t + 10**9, end))) * shares for t, side, _p, shares, _f in fills)
    total = sum(side * (final - price) * shares for _t, side, price, shares, _fair in fills)
    pnl = result.maker.pnl
    assert (pnl.spread_capture, pnl.adverse_selection, pnl.inventory, pnl.total) == \
        (spread, markouts["1s"], held, total)
    assert pnl.spread_capture + pnl.adverse_selection + pnl.inventory == pnl.total
    assert pnl.markouts == markouts
    assert sum(pnl.spread_capture_by_counterparty.values()) == spread
    assert pnl.cash + pnl.position * pnl.final_fair == pnl.total
    assert len(result.maker.pnl_over_time) == PNL_SAMPLES + 1
    assert result.maker.pnl_over_time[-1] == (end, total)


def test_a_short_default_race_on_the_golden_model():
    progress = []
    result = run_race(short(4), progress=lambda done, total: progress.append((done, total)))
    assert result.races.count > 0 and result.races.sniper_wins > 0
    assert result.maker.counts["fills"] > 0 and result.sniper.counts["fills"] > 0
    assert result.stale_quotes_taken > 0
    assert result.maker.decision_latency.count > 0 and result.maker.decision == "measured"
    assert "agents.maker.decision_latency_ns" in result.measured
    assert result.advantage["p50_ratio"] > 1 and result.advantage["p99_ratio"] > 1
    assert result.sniper.counters["orders_sent"] == result.sniper.counts["orders"]
    # more orders than max_outstanding (8) went out: the host's orders_done writes brought the count back down
    assert result.sniper.counts["orders"] > 8 and result.sniper.counters["reject_outstanding"] == 0
    assert progress[-1] == (4 * 10**9, 4 * 10**9) and len(progress) > 50
    report = result.to_dict()
    assert report["mm_pnl"]["total"] == result.maker.pnl.total
    assert set(report["agents"]) == {"maker", "sniper"}


def test_the_batch_auction_counterfactual_has_fewer_sniper_wins_on_the_default_seed():
    scenario = short(2, maker_decision_ns=50_000)
    result, sweep = race_and_sweep(scenario, sweep=False, runners=False)
    assert sweep is None and result.implementations is None
    counterfactual = result.counterfactual
    assert counterfactual.batch_interval_ns == COUNTERFACTUAL_BATCH_INTERVAL_NS == 100_000_000
    assert counterfactual.result.scenario.batch_interval_ns == 100_000_000
    assert counterfactual.result.seed == result.seed == 1
    continuous, batched = result.races, counterfactual.result.races
    assert continuous.sniper_wins > 0 and batched.count > 0
    assert batched.sniper_wins < continuous.sniper_wins  # the point of the counterfactual
    assert counterfactual.result.stale_quotes_taken < result.stale_quotes_taken
    report = result.to_dict()["counterfactual"]
    assert report["batch_interval_ns"] == 100_000_000 and report["races"] == batched.to_dict()
    pnl = report["mm_pnl"]
    assert pnl["spread_capture"] + pnl["adverse_selection"] + pnl["inventory"] == pnl["total"]
    assert run_race(scenario).to_dict() == {key: value for key, value in result.to_dict().items()
                                            if key != "counterfactual"}  # the race itself is unchanged


def test_the_counterfactual_is_the_other_market_design():
    continuous = short(1)
    assert counterfactual_scenario(continuous, 40).batch_interval_ns == 100_000_000
    assert counterfactual_scenario(continuous, 40).sniper_model_latency_ns == 40
    batched = dataclasses.replace(continuous, batch_interval_ns=10**6)
    assert counterfactual_scenario(batched, 40).batch_interval_ns is None
    assert counterfactual_scenario(dataclasses.replace(continuous, counterfactual_batch_interval_ns=None), 40) is None
    scenario = parse_scenario({"exchange": {"batch_interval_ms": 2.5, "counterfactual_batch_interval_ms": 0}})
    assert (scenario.batch_interval_ns, scenario.counterfactual_batch_interval_ns) == (2_500_000, None)


def test_both_runners_of_the_maker_are_measured_on_the_races_feed():
    result, _sweep = race_and_sweep(short(1), sweep=False, counterfactual=False)
    packets = len(result.feed_packets)
    assert result.counterfactual is None and packets == min(RUNNER_PACKETS, result.market["feed_frames"]) > 100
    assert set(result.implementations) == {"asyncio", "blocking"}
    assert "agents.maker.implementations" in result.measured
    maker = result.to_dict()["agents"]["maker"]
    for name, runner in maker["implementations"].items():
        assert runner["error"] is None and runner["packets"] == packets
        assert runner["orders_match_core"] is True  # the runner sent exactly the core's bytes
        latencies = {key for key in runner if "latency" in key}
        assert latencies == {"round_trip_latency_ns", "socket_latency_ns", "decision_latency_ns"}
        assert runner["round_trip_latency_ns"]["count"] == runner["decision_latency_ns"]["count"] > 10
        assert all(value > 0 for key in ("round_trip_latency_ns", "decision_latency_ns")
                   for value in runner[key]["values"])
        assert runner["round_trip_latency_ns"]["p50"] > runner["decision_latency_ns"]["min"]


def test_constant_legs_give_identical_results():
    scenario = short(3, maker_decision_ns=80_000)
    first, second = run_race(scenario).to_dict(), run_race(scenario).to_dict()
    assert first == second and first["measured"] == []
    assert run_race(scenario, seed=2).to_dict() != first


# --- scenarios ------------------------------------------------------------------------------------


def test_the_example_file_is_the_default_scenario():
    example = load_scenario(EXAMPLES / "race.toml")
    default = load_scenario("default")
    assert dataclasses.replace(example, source=default.source) == default


def test_a_scenario_overrides_the_default_field_by_field(tmp_path):
    strategy = tmp_path / "sniper.toml"
    strategy.write_text((EXAMPLES / "strategy.toml").read_text(encoding="utf-8"))
    path = tmp_path / "race.toml"
    path.write_text('duration_s = 0.5\nsniper = "sniper.toml"\n[legs.maker]\ndecision = 1000\n')
    scenario = load_scenario(path)
    assert (scenario.duration_ns, scenario.maker_decision_ns, scenario.maker_legs.feed_ns) == (500_000_000, 1000,
                                                                                                 50_000)
    assert scenario.sniper.source == str(strategy) and scenario.sniper.risk.max_qty == 500


@pytest.mark.parametrize("data, field", [
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": "10"}, "duration_s"),
    ({"seed": -1}, "seed"),
    ({"bogus": 1}, "bogus: unknown field"),
    ({"instruments": {"lead": "NINECHARS"}}, "instruments.lead"),
    ({"instruments": {"target": "LEAD"}}, "instruments.target"),
    ({"instruments": {"start_price": "100.005"}}, "instruments.start_price"),
    ({"instruments": {"start_price": "0.01"}}, "instruments.start_price"),
    ({"lead": {"jump_probability": 1.5}}, "lead.jump_probability"),
    ({"lead": {"move_rate_per_s": -1}}, "lead.move_rate_per_s"),
    ({"lead": {"jump_ticks": 0}}, "lead.jump_ticks"),
    ({"lead": {"moves": [[5, 0]]}}, "lead.moves"),
    ({"lead": {"moves": [[5, 1], [4, 1]]}}, "lead.moves"),
    ({"lead": {"moves": "up"}}, "lead.moves"),
    ({"lead": {"sise": 10}}, "lead.sise: unknown field"),
    ({"takers": {"min_shares": 50, "max_shares": 10}}, "takers.max_shares"),
    ({"takers": 3}, "takers: must be a table"),
    ({"maker": {"bid_spread": 2}}, "maker.bid_spread"),
    ({"maker": {"order_amount": 0}}, "maker.order_amount"),
    ({"maker": {"token_prefix": "X"}}, "maker.token_prefix: unknown field"),
    ({"sniper": {"risk": {"max_qty": -1}}}, "sniper.risk.max_qty"),
    ({"sniper": {"strategy": {"edge": "x"}}}, "sniper.strategy.edge"),
    ({"sniper": {"instruments": {"lead": "OTHER"}}}, "sniper.instruments.lead"),
    ({"sniper": 5}, "sniper: must be"),
    ({"legs": {"maker": {"decision": "fast"}}}, "legs.maker.decision"),
    ({"legs": {"maker": {"feed_ns": -1}}}, "legs.maker.feed_ns"),
    ({"legs": {"sniper": {"entry_ns": 0, "feed_ns": 0}}}, "legs.sniper.entry_ns"),
    ({"legs": {"sniper": {"answer_window_ns": 10}}}, "legs.sniper.answer_window_ns"),
    ({"legs": {"taker": {}}}, "legs.taker: unknown field"),
    ({"exchange": {"batch_interval_ms": -1}}, "exchange.batch_interval_ms"),
    ({"exchange": {"batch_interval_ms": 1e-9}}, "exchange.batch_interval_ms"),
    ({"exchange": {"counterfactual_batch_interval_ms": "100"}}, "exchange.counterfactual_batch_interval_ms"),
    ({"exchange": {"batch": 1}}, "exchange.batch: unknown field"),
])
def test_bad_fields_give_an_error_naming_the_field(data, field):
    with pytest.raises(RaceScenarioError, match="^" + field.replace(".", r"\.")):
        parse_scenario(data)


def test_bad_scenario_files_name_the_file(tmp_path):
    with pytest.raises(RaceScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("duration_s = \n")
    with pytest.raises(RaceScenarioError, match="broken.toml: not valid TOML"):
        load_scenario(broken)
    bad = tmp_path / "bad.toml"
    bad.write_text("[takers]\nrate_per_s = -3\n")
    with pytest.raises(RaceScenarioError, match=r"bad.toml: takers\.rate_per_s"):
        load_scenario(bad)
    missing_strategy = tmp_path / "sniper.toml"
    missing_strategy.write_text('sniper = "nowhere.toml"\n')
    with pytest.raises(RaceScenarioError, match="sniper: .*nowhere.toml: no such file"):
        load_scenario(missing_strategy)


def test_the_default_data_is_not_changed_by_parsing():
    before = repr(DEFAULT_SCENARIO_DATA)
    parse_scenario({"lead": {"moves": [[1, 1]]}, "sniper": {"risk": {"max_qty": 5}}})
    assert repr(DEFAULT_SCENARIO_DATA) == before
