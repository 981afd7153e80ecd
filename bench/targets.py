"""The issue's performance targets, checked against one run's figures.

Each target is a ratio measured in the run (the one exception, refresh/s on PostgreSQL, is an
absolute rate the issue states as such). The report lists every target with the measured median,
its spread, and by how much it is met or missed; nothing here fails the run -- the suite measures,
people judge (docs/performance.md says what bounds each miss).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bench.harness import HttpOutcome, StormOutcome
from bench.stats import Spread
from bench.suite import (
    LOGIN_STORM,
    LOGINS_VS_EXPRESS,
    REFRESH_DATABASES,
    SuiteResult,
    guard_key,
    guarded_vs_express_key,
)

Direction = Literal["at least", "at most"]

#: Servers that are keyturn's (the RSS target is theirs), by name prefix.
KEYTURN_SERVERS = ("guarded-", "keyturn-")
MIB = 1024
#: The issue's memory budget, "120 MB per worker", read as megabytes (10^6 bytes): 114.4 MiB.
RSS_BUDGET_MIB = 120e6 / 2**20


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets: what is measured, the bound, and the direction."""

    name: str
    threshold: float
    direction: Direction
    unit: str
    measure: Callable[[SuiteResult], Spread | None]


@dataclass(frozen=True)
class Verdict:
    """A target against the run: the measured spread (``None`` when not measured) and the margin."""

    target: Target
    measured: Spread | None

    @property
    def met(self) -> bool | None:
        """True/False on the median; ``None`` when the run did not measure it."""
        if self.measured is None:
            return None
        return self._meets(self.measured.median)

    @property
    def margin(self) -> str:
        """``+12%`` above an "at least" bound, ``-30%`` below it (and the mirror for "at most")."""
        if self.measured is None:
            return "not measured"
        relative = self.measured.median / self.target.threshold - 1
        if self.target.direction == "at most":
            relative = -relative
        word = "met by" if relative >= 0 else "missed by"
        percent = abs(relative) * 100
        return f"{word} {percent:.1f}%" if percent < 1 else f"{word} {percent:.0f}%"  # 0.897x: "missed by 0.3%"

    @property
    def rounds(self) -> str:
        """Whether ``all``, ``some`` or ``none`` of the run's rounds are on the bound's good side.

        The verdict is the median's; this says whether it held round after round or the line ran
        through the rounds' range, where another run of the same code can give the other verdict.
        Read from the spread's ends, so for the memory target (a spread over keyturn's servers, not
        rounds) it says whether every server stayed within the budget.
        """
        if self.measured is None:
            return "not measured"
        worst, best = self.measured.low, self.measured.high
        if self.target.direction == "at most":
            worst, best = best, worst
        if self._meets(worst):
            return "all"
        return "some" if self._meets(best) else "none"

    def _meets(self, value: float) -> bool:
        if self.target.direction == "at least":
            return value >= self.target.threshold
        return value <= self.target.threshold


def _http(key: str, pick: Callable[[HttpOutcome], Spread]) -> Callable[[SuiteResult], Spread | None]:
    def measure(result: SuiteResult) -> Spread | None:
        found = [o for o in result.http if o.comparison.key == key and o.valid]
        return pick(found[0]) if found else None

    return measure


def _storm(key: str, pick: Callable[[StormOutcome], Spread | None]) -> Callable[[SuiteResult], Spread | None]:
    def measure(result: SuiteResult) -> Spread | None:
        found = [o for o in result.storms if o.comparison.key == key and o.valid]
        return pick(found[0]) if found else None

    return measure


def _floor(algorithm: str, operation: str) -> Callable[[SuiteResult], Spread | None]:
    def measure(result: SuiteResult) -> Spread | None:
        found = [
            o for o in result.floor if (o.algorithm, o.operation, o.contender) == (algorithm, operation, "keyturn")
        ]
        return found[0].ratio if found else None

    return measure


def _keyturn_rss(result: SuiteResult) -> Spread | None:
    """Largest single keyturn process (a worker), in MiB, over every keyturn server of the run."""
    peaks = [
        side.rss.max_process_kib / MIB
        for outcome in result.http
        for side in (outcome.baseline, outcome.candidate)
        if side.server.startswith(KEYTURN_SERVERS)
    ]
    peaks += [
        o.rss.max_process_kib / MIB for o in result.storms if o.comparison.server.name.startswith(KEYTURN_SERVERS)
    ]
    # The verdict is on the worst server: "median" here is the maximum, the spread min-max over servers.
    return Spread(max(peaks), min(peaks), max(peaks)) if peaks else None


def _guard_targets(runtimes: Sequence[str]) -> list[Target]:
    return [
        Target(
            f"guarded ÷ unguarded, repeated token ({runtime}, {algorithm})",
            0.90,
            "at least",
            "x",
            _http(guard_key(runtime, algorithm, "repeated"), lambda o: o.throughput_ratio),
        )
        for runtime in runtimes
        for algorithm in ("ES256", "HS256")
    ]


def targets(runtimes: Sequence[str] = ("uvicorn", "granian")) -> list[Target]:
    """The issue's targets, in its order."""
    return [
        *_guard_targets(runtimes),
        Target("first-sight verify ÷ cryptography floor (ES256)", 0.70, "at least", "x", _floor("ES256", "verify")),
        Target("first-sight verify ÷ cryptography floor (EdDSA)", 0.70, "at least", "x", _floor("EdDSA", "verify")),
        Target(
            "keyturn guard ÷ Express protect, req/s (ES256)",
            2.5,
            "at least",
            "x",
            _http(guarded_vs_express_key("ES256"), lambda o: o.throughput_ratio),
        ),
        Target(
            "logins/s ÷ hash-bound limit (storm alone)",
            0.85,
            "at least",
            "x",
            _storm(LOGIN_STORM, lambda o: o.bound_ratio),
        ),
        Target(
            "logins/s ÷ Express + bcryptjs",
            5.0,
            "at least",
            "x",
            _http(LOGINS_VS_EXPRESS, lambda o: o.throughput_ratio),
        ),
        Target(
            "cheap endpoint p99 during login storm ÷ idle",
            10.0,
            "at most",
            "x",
            _storm(LOGIN_STORM, lambda o: o.p99_ratio),
        ),
        Target(
            "refresh/s on PostgreSQL (absolute)",
            800.0,
            "at least",
            "/s",
            _http(REFRESH_DATABASES, lambda o: o.candidate.throughput),
        ),
        Target(
            "peak RSS per keyturn worker under load (largest; 120 MB)", RSS_BUDGET_MIB, "at most", " MiB", _keyturn_rss
        ),
    ]


def login_host_ceiling(result: SuiteResult) -> Spread | None:
    """All cores hashing ÷ the hash-bound limit around the login storm's runs alone.

    The most of the limit any server could reach on this host (see
    :attr:`StormOutcome.host_ceiling_ratio`): shown beside the logins target, so that a miss the
    cores themselves impose reads as such.
    """
    return _storm(LOGIN_STORM, lambda o: o.host_ceiling_ratio)(result)


def verdicts(result: SuiteResult) -> list[Verdict]:
    """Every target against ``result``."""
    return [Verdict(target, target.measure(result)) for target in targets(result.config.runtimes)]
