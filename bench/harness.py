"""A/B interleaved HTTP measurements.

Why interleaved: on a shared 2-core machine throughput drifts by several percent over a minute
(thermal state, other tenants, the page cache). Running A, B, B, A, A, B, ... and taking the ratio
round by round puts both contenders under the same drift, so the *ratio* stays meaningful even when
the absolute numbers wander. Both servers of a comparison are started once, warmed up (a run that is
thrown away: JITs, caches, lazy imports), then measured alternately; their peak RSS is read at the
end, before they stop.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.servers import LOOPBACK, PeakRss, RunningServer, ServerSpec, peak_rss, running
from bench.stats import Spread, ratios
from bench.wrk import LoadSettings, LoadSpec, WrkResult, finish_wrk, run_wrk, start_wrk

LoadFactory = Callable[[RunningServer], LoadSpec]
"""Builds a contender's load once its server is up (e.g. logs in to obtain a token)."""

SmokeCheck = Callable[[RunningServer, LoadSpec], None]
"""Raises if the server does not answer the load the way it should (run before any timing)."""


@dataclass(frozen=True)
class Settings:
    """Knobs shared by every HTTP measurement of a suite run."""

    load: LoadSettings = field(default_factory=LoadSettings)
    rounds: int = 3
    warmup_s: float = 2.0
    work_dir: Path = Path("bench/results/work")

    @property
    def log_dir(self) -> Path:
        """Where server logs go (inspect them when a server misbehaves)."""
        return self.work_dir / "logs"


# --- smoke checks ----------------------------------------------------------------------------


def http_request(
    server: RunningServer, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    """One plain HTTP request to a running server (stdlib only: no client library to measure)."""
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def expect_success(server: RunningServer, load: LoadSpec) -> None:
    """Send the load's first request once and insist on a 2xx: a wrk run full of 401s is worthless."""
    headers = dict(load.headers)
    body = load.body_file.read_bytes() if load.body_file is not None else None
    if load.tokens_file is not None:
        first = load.tokens_file.read_text().split("\n", 1)[0]
        if body is not None and b"{{token}}" in body:
            body = body.replace(b"{{token}}", first.encode(), 1)
        else:
            headers[load.token_header] = load.token_prefix + first
    if body is not None:
        headers["Content-Type"] = "application/json"
    status, content = http_request(server, load.method, load.path, headers, body)
    if not 200 <= status < 300:
        raise AssertionError(f"{server.spec.name} {load.method} {load.path} -> {status}: {content[:200]!r}")


def login_token(server: RunningServer, email: str, password: str, path: str = "/auth/login") -> str:
    """Log in the way the tutorials' client does and return the access token it was given.

    Understands the tutorials' envelope ``{"data": {"token": ...}}`` and a plain ``access_token``.
    """
    body = json.dumps({"email": email, "password": password}).encode()
    status, content = http_request(server, "POST", path, {"Content-Type": "application/json"}, body)
    if status != 200:
        raise AssertionError(f"login on {server.spec.name} -> {status}: {content[:200]!r}")
    document = json.loads(content)
    data = document.get("data", document)
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str):
        raise AssertionError(f"no token in login answer of {server.spec.name}: {content[:200]!r}")
    return token


# --- A/B comparisons -------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One side of an A/B comparison: a server and the load it receives."""

    label: str
    server: ServerSpec
    load: LoadSpec | LoadFactory
    check: SmokeCheck = expect_success

    def resolve_load(self, server: RunningServer) -> LoadSpec:
        """The concrete load, built now that the server is up when it depends on it."""
        return self.load if isinstance(self.load, LoadSpec) else self.load(server)


@dataclass(frozen=True)
class HttpComparison:
    """Candidate vs baseline; ratios are candidate / baseline (so > 1 means the candidate is higher)."""

    key: str
    group: str
    title: str
    baseline: Contender
    candidate: Contender
    note: str = ""


@dataclass(frozen=True)
class ContenderRuns:
    """Every measured run of one contender, and its server's peak memory."""

    label: str
    server: str
    runs: Sequence[WrkResult]
    rss: PeakRss
    token_count: int | None

    @property
    def throughput(self) -> Spread:
        """req/s over the rounds."""
        return Spread.of([run.requests_per_s for run in self.runs])

    @property
    def p99_ms(self) -> Spread:
        """p99 latency over the rounds."""
        return Spread.of([run.p99_ms for run in self.runs])

    @property
    def failures(self) -> int:
        """Socket errors and non-2xx answers over all rounds (should be 0)."""
        return sum(run.socket_errors + run.bad_status for run in self.runs)

    @property
    def token_reuse(self) -> float | None:
        """How many times each unique token was sent, at most (1.0 means never reused)."""
        if not self.token_count:
            return None
        return max(run.requests for run in self.runs) / self.token_count


@dataclass(frozen=True)
class HttpOutcome:
    """The measured comparison: both contenders' runs and the per-round ratios."""

    comparison: HttpComparison
    baseline: ContenderRuns
    candidate: ContenderRuns

    @property
    def throughput_ratio(self) -> Spread:
        """candidate req/s ÷ baseline req/s, round by round."""
        return ratios([r.requests_per_s for r in self.candidate.runs], [r.requests_per_s for r in self.baseline.runs])

    @property
    def p99_ratio(self) -> Spread:
        """candidate p99 ÷ baseline p99, round by round."""
        return ratios([r.p99_ms for r in self.candidate.runs], [r.p99_ms for r in self.baseline.runs])

    @property
    def valid(self) -> bool:
        """False when any request failed: the numbers would describe error handling, not the path."""
        return self.baseline.failures == 0 and self.candidate.failures == 0


def round_order(round_index: int) -> tuple[int, int]:
    """ABBA order: A first in even rounds, B first in odd ones, so neither always runs first."""
    return (0, 1) if round_index % 2 == 0 else (1, 0)


def _token_count(load: LoadSpec) -> int | None:
    if load.tokens_file is None:
        return None
    return sum(1 for line in load.tokens_file.read_text().splitlines() if line)


def _url(server: RunningServer, load: LoadSpec) -> str:
    return server.base_url + load.path


def _warm_up(server: RunningServer, load: LoadSpec, settings: Settings) -> None:
    if settings.warmup_s > 0:
        run_wrk(_url(server, load), load, replace(settings.load, duration_s=settings.warmup_s))


def run_comparison(
    comparison: HttpComparison, settings: Settings, progress: Callable[[str], None] = print
) -> HttpOutcome:
    """Start both servers, smoke-check and warm them up, then measure them in ABBA order."""
    contenders = (comparison.baseline, comparison.candidate)
    with ExitStack() as stack:
        servers = [stack.enter_context(running(c.server, settings.log_dir)) for c in contenders]
        loads = [c.resolve_load(s) for c, s in zip(contenders, servers, strict=True)]
        for contender, server, load in zip(contenders, servers, loads, strict=True):
            contender.check(server, load)
            _warm_up(server, load, settings)
        runs: list[list[WrkResult]] = [[], []]
        for round_index in range(settings.rounds):
            for side in round_order(round_index):
                result = run_wrk(_url(servers[side], loads[side]), loads[side], settings.load)
                runs[side].append(result)
                progress(
                    f"  {comparison.key} round {round_index + 1} {contenders[side].label}: "
                    f"{result.requests_per_s:,.0f} req/s p99 {result.p99_ms:.2f} ms"
                )
        measured = [
            ContenderRuns(c.label, s.spec.name, r, peak_rss(s.process.pid), _token_count(load))
            for c, s, r, load in zip(contenders, servers, runs, loads, strict=True)
        ]
    return HttpOutcome(comparison, measured[0], measured[1])


# --- latency of a cheap endpoint during a storm ----------------------------------------------


@dataclass(frozen=True)
class StormComparison:
    """p99 of ``probe`` on an idle server vs the same while ``storm`` (e.g. logins) saturates it.

    The probe is a single closed-loop connection so it adds little load; the storm uses the
    suite's connection count. ``hash_bound_per_s`` is the theoretical ceiling of storm requests/s
    (cores ÷ time of one password verification), when known.
    """

    key: str
    group: str
    title: str
    server: ServerSpec
    probe: LoadSpec | LoadFactory
    storm: LoadSpec | LoadFactory
    hash_bound_per_s: float | None = None
    hash_bound_note: str = ""
    probe_connections: int = 1


@dataclass(frozen=True)
class StormOutcome:
    """Idle and under-storm probe runs, and the storm's own runs, round by round."""

    comparison: StormComparison
    idle: Sequence[WrkResult]
    stormy: Sequence[WrkResult]
    storm: Sequence[WrkResult]
    rss: PeakRss

    @property
    def storm_throughput(self) -> Spread:
        """Storm requests/s (logins/s for a login storm)."""
        return Spread.of([run.requests_per_s for run in self.storm])

    @property
    def p99_ratio(self) -> Spread:
        """Probe p99 during the storm ÷ probe p99 idle, round by round."""
        return ratios([r.p99_ms for r in self.stormy], [r.p99_ms for r in self.idle])

    @property
    def bound_ratio(self) -> Spread | None:
        """Storm requests/s ÷ the hash-bound limit."""
        bound = self.comparison.hash_bound_per_s
        if not bound:
            return None
        return Spread.of([run.requests_per_s / bound for run in self.storm])

    @property
    def valid(self) -> bool:
        """False when any probe or storm request failed."""
        return all(run.ok for run in (*self.idle, *self.stormy, *self.storm))


def _resolve(load: LoadSpec | LoadFactory, server: RunningServer) -> LoadSpec:
    return load if isinstance(load, LoadSpec) else load(server)


def run_storm(
    comparison: StormComparison,
    settings: Settings,
    progress: Callable[[str], None] = print,
    storm_connections: int | None = None,
) -> StormOutcome:
    """Alternate idle-probe and probe-during-storm runs (ABBA) on one server.

    ``storm_connections`` caps the storm's concurrency: with hash-bound requests, 64 connections
    would only queue requests for seconds and push wrk into its timeouts.
    """
    probe_settings = replace(settings.load, connections=comparison.probe_connections, threads=1)
    storm_settings = replace(settings.load, connections=storm_connections or settings.load.connections)
    with running(comparison.server, settings.log_dir) as server:
        probe, storm = _resolve(comparison.probe, server), _resolve(comparison.storm, server)
        expect_success(server, probe)
        expect_success(server, storm)
        _warm_up(server, probe, settings)
        _warm_up(server, storm, replace(settings, load=storm_settings))
        idle: list[WrkResult] = []
        stormy: list[WrkResult] = []
        storms: list[WrkResult] = []
        for round_index in range(settings.rounds):
            for side in round_order(round_index):
                if side == 0:
                    idle.append(run_wrk(server.base_url + probe.path, probe, probe_settings))
                    progress(f"  {comparison.key} round {round_index + 1} idle: p99 {idle[-1].p99_ms:.2f} ms")
                    continue
                storm_process = start_wrk(server.base_url + storm.path, storm, storm_settings)
                try:
                    stormy.append(run_wrk(server.base_url + probe.path, probe, probe_settings))
                finally:
                    storms.append(finish_wrk(storm_process, storm_settings))
                progress(
                    f"  {comparison.key} round {round_index + 1} storm: {storms[-1].requests_per_s:,.1f}/s, "
                    f"probe p99 {stormy[-1].p99_ms:.2f} ms"
                )
        rss = peak_rss(server.process.pid)
    return StormOutcome(comparison, idle, stormy, storms, rss)
