"""The issue's targets against a run: met, missed or not measured, with the margin the report prints."""

from __future__ import annotations

import pytest
from bench.stats import Spread
from bench.targets import RSS_BUDGET_MIB, Target, Verdict, login_host_ceiling, targets, verdicts

from tests.bench.results import http_outcome, login_storm, suite_result, triple


def _by_name(result_verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {verdict.target.name: verdict for verdict in result_verdicts}


def _target(direction: str, threshold: float) -> Target:
    return next(t for t in targets(("uvicorn",)) if t.direction == direction and t.threshold == threshold)


@pytest.mark.parametrize(
    ("median", "met", "margin"),
    [
        (0.95, True, "met by 6%"),
        (0.90, True, "met by 0.0%"),
        (0.897, False, "missed by 0.3%"),
        (0.82, False, "missed by 9%"),
    ],
)
def test_an_at_least_bound_is_judged_on_the_median(median: float, met: bool, margin: str) -> None:
    verdict = Verdict(_target("at least", 0.90), Spread(median, median - 0.05, median + 0.05))
    assert (verdict.met, verdict.margin) == (met, margin)


@pytest.mark.parametrize(("median", "met", "margin"), [(3.0, True, "met by 70%"), (12.0, False, "missed by 20%")])
def test_an_at_most_bound_is_mirrored(median: float, met: bool, margin: str) -> None:
    verdict = Verdict(_target("at most", 10.0), Spread(median, median, median))
    assert (verdict.met, verdict.margin) == (met, margin)


def test_a_target_the_run_did_not_measure_is_neither_met_nor_missed() -> None:
    verdict = Verdict(_target("at least", 0.90), None)
    assert (verdict.met, verdict.margin, verdict.rounds) == (None, "not measured", "not measured")


@pytest.mark.parametrize(
    ("low", "median", "high", "rounds"),
    [
        (0.90, 0.93, 0.97, "all"),  # the worst round is on the line: every round meets it
        (0.87, 0.94, 0.95, "some"),  # met on the median, with a round below the line
        (0.86, 0.88, 0.90, "some"),  # missed on the median, with a round on the line
        (0.86, 0.88, 0.897, "none"),
    ],
)
def test_rounds_say_whether_the_line_crosses_the_spread(low: float, median: float, high: float, rounds: str) -> None:
    assert Verdict(_target("at least", 0.90), Spread(median, low, high)).rounds == rounds


@pytest.mark.parametrize(("low", "high", "rounds"), [(3.0, 10.0, "all"), (3.0, 12.0, "some"), (10.5, 12.0, "none")])
def test_rounds_of_an_at_most_bound_are_mirrored(low: float, high: float, rounds: str) -> None:
    verdict = Verdict(_target("at most", 10.0), Spread((low + high) / 2, low, high))
    assert verdict.rounds == rounds


def test_the_guard_and_login_targets_read_their_own_comparisons() -> None:
    guard = http_outcome("guard-uvicorn-es256-repeated", [1000, 1000, 1000], [860, 870, 880])
    hs256 = http_outcome("guard-uvicorn-hs256-repeated", [1000, 1000, 1000], [950, 900, 920])
    storm = login_storm([85, 90, 80], limits=[100, 100, 100], all_cores=[95, 96, 94])
    found = _by_name(verdicts(suite_result([guard, hs256], [storm])))

    es = found["guarded ÷ unguarded, repeated token (uvicorn, ES256)"]
    assert triple(es.measured) == pytest.approx((0.87, 0.86, 0.88))
    assert es.met is False
    assert found["guarded ÷ unguarded, repeated token (uvicorn, HS256)"].met is True
    logins = found["logins/s ÷ hash-bound limit (storm alone)"]
    assert triple(logins.measured) == pytest.approx((0.85, 0.80, 0.90))
    assert logins.met is True
    p99 = found["cheap endpoint p99 during login storm ÷ idle"]
    assert triple(p99.measured) == pytest.approx((4.0, 4.0, 4.0))
    assert p99.met is True
    # Nothing else was run: those targets are reported as not measured, never as met.
    assert found["refresh/s on PostgreSQL (absolute)"].met is None
    assert found["keyturn guard ÷ Express protect, req/s (ES256)"].met is None
    assert found["first-sight verify ÷ cryptography floor (ES256)"].met is None


def test_a_comparison_with_a_failed_request_counts_as_not_measured() -> None:
    guard = http_outcome("guard-uvicorn-es256-repeated", [1000, 1000], [990, 995], candidate_failures=3)
    found = _by_name(verdicts(suite_result([guard])))
    assert found["guarded ÷ unguarded, repeated token (uvicorn, ES256)"].measured is None


def test_the_logins_ratio_divides_each_run_by_the_bound_measured_around_it() -> None:
    # The host slowed down in the second run: fewer logins, and a lower limit measured around them.
    storm = login_storm([90, 45], limits=[100, 50], all_cores=[95, 45])
    assert triple(storm.bound_ratio) == pytest.approx((0.90, 0.90, 0.90))
    assert triple(storm.all_cores_ratio) == pytest.approx(((90 / 95 + 1) / 2, 90 / 95, 1.0))
    assert triple(login_host_ceiling(suite_result(storms=[storm]))) == pytest.approx((0.925, 0.90, 0.95))


def test_without_all_cores_measured_the_host_ceiling_is_unknown() -> None:
    storm = login_storm([90, 45], limits=[100, 50], all_cores=[95, None])
    assert storm.host_ceiling_ratio is None
    assert storm.all_cores_ratio is None
    assert storm.bound_ratio is not None


def test_the_memory_target_is_the_largest_keyturn_process_and_ignores_the_peers() -> None:
    guard = http_outcome("guard-uvicorn-es256-repeated", [1000], [900], candidate_rss_mib=61.0)
    express = http_outcome(
        "guarded-vs-express-es256",
        [300],
        [1500],
        baseline_server="express-es256",
        candidate_server="guarded-es256-uvicorn",
        candidate_rss_mib=57.0,
    )
    storm = login_storm([90], limits=[100], all_cores=[95], rss_mib=111.0)
    found = _by_name(verdicts(suite_result([guard, express], [storm])))
    memory = found["peak RSS per keyturn worker under load (largest; 120 MB)"]
    assert triple(memory.measured) == pytest.approx((111.0, 57.0, 111.0))
    assert memory.met is True
    assert pytest.approx(114.44, abs=0.01) == RSS_BUDGET_MIB  # 120 MB read as 10^6 bytes

    heavy = login_storm([90], limits=[100], all_cores=[95], rss_mib=115.0)
    assert _by_name(verdicts(suite_result(storms=[heavy])))[memory.target.name].met is False
