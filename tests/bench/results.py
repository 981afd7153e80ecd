"""Synthetic benchmark results: what a run would have measured, built without running anything.

The suite's verdicts, ratios and report are pure functions of these objects, so the tests can put
exact figures in and check exactly what comes out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.harness import (
    Contender,
    ContenderRuns,
    HashBound,
    HttpComparison,
    HttpOutcome,
    StormComparison,
    StormOutcome,
)
from bench.probe import ProbeResult
from bench.servers import PeakRss, ServerSpec
from bench.stats import Spread
from bench.suite import LOGIN_STORM, SuiteConfig, SuiteResult
from bench.targets import MIB
from bench.wrk import LoadSpec, WrkResult


def wrk(rate: float, *, p99_ms: float = 5.0, socket_errors: int = 0, bad_status: int = 0) -> WrkResult:
    """A 5-second wrk run at ``rate`` requests/s."""
    return WrkResult(
        requests=round(rate * 5),
        duration_s=5.0,
        p50_ms=p99_ms / 3,
        p90_ms=p99_ms / 2,
        p99_ms=p99_ms,
        p999_ms=p99_ms * 2,
        max_ms=p99_ms * 3,
        socket_errors=socket_errors,
        bad_status=bad_status,
    )


def spec(name: str) -> ServerSpec:
    return ServerSpec(name=name, argv=[sys.executable, "-c", "pass"], ready_path="/")


def rss(mib: float) -> PeakRss:
    return PeakRss({1: ("python", round(mib * MIB))})


def http_outcome(
    key: str,
    baseline_rates: Sequence[float],
    candidate_rates: Sequence[float],
    *,
    baseline_server: str = "ceiling-uvicorn",
    candidate_server: str = "guarded-es256-uvicorn",
    candidate_rss_mib: float = 50.0,
    candidate_failures: int = 0,
) -> HttpOutcome:
    """One A/B comparison whose rounds ran at the given rates."""
    comparison = HttpComparison(
        key=key,
        group="guard",
        title=key,
        baseline=Contender("baseline", spec(baseline_server), LoadSpec("/")),
        candidate=Contender("candidate", spec(candidate_server), LoadSpec("/")),
    )
    candidate_runs = [wrk(rate) for rate in candidate_rates]
    if candidate_failures:
        candidate_runs[-1] = wrk(candidate_rates[-1], bad_status=candidate_failures)
    return HttpOutcome(
        comparison,
        ContenderRuns("baseline", baseline_server, [wrk(rate) for rate in baseline_rates], rss(34.0), None),
        ContenderRuns("candidate", candidate_server, candidate_runs, rss(candidate_rss_mib), None),
    )


def probe_result(p99_ms: float, *, failures: int = 0) -> ProbeResult:
    """A probe whose latencies put its p99 at ``p99_ms``."""
    return ProbeResult([p99_ms / 2] * 98 + [p99_ms] * 2, answered=100, unanswered=0, failures=failures)


def login_storm(
    alone_rates: Sequence[float],
    limits: Sequence[float],
    all_cores: Sequence[float | None],
    *,
    idle_p99_ms: float = 2.0,
    storm_p99_ms: float = 8.0,
    server: str = "keyturn-login",
    rss_mib: float = 110.0,
) -> StormOutcome:
    """A login storm whose runs alone reached ``alone_rates`` against the bounds measured around them."""
    comparison = StormComparison(
        key=LOGIN_STORM,
        group="logins",
        title="keyturn login",
        server=spec(server),
        probe_path="/healthz",
        storm=LoadSpec("/auth/login"),
        hash_bound=lambda: HashBound(100.0),
    )
    bounds = [HashBound(limit, cores) for limit, cores in zip(limits, all_cores, strict=True)]
    rounds = len(alone_rates)
    return StormOutcome(
        comparison,
        idle=[probe_result(idle_p99_ms) for _ in range(rounds)],
        stormy=[probe_result(storm_p99_ms) for _ in range(rounds)],
        storm=[wrk(rate * 0.95) for rate in alone_rates],
        rss=rss(rss_mib),
        bounds=bounds,
        alone=[wrk(rate) for rate in alone_rates],
        alone_bounds=bounds,
    )


def suite_result(http: Sequence[HttpOutcome] = (), storms: Sequence[StormOutcome] = ()) -> SuiteResult:
    return SuiteResult(SuiteConfig(runtimes=("uvicorn",)), http=list(http), storms=list(storms))


def triple(spread: Spread | None) -> tuple[float, float, float]:
    """A spread as (median, low, high), to compare with ``pytest.approx``."""
    assert spread is not None
    return spread.median, spread.low, spread.high
