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
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from bench.probe import ProbeResult, probe
from bench.servers import LOOPBACK, PeakRss, RunningServer, ServerSpec, cpu_seconds, peak_rss, running, wait_quiet
from bench.stats import Spread, ratios
from bench.wrk import LoadSettings, LoadSpec, WrkResult, finish_wrk, run_wrk, start_wrk

T = TypeVar("T")

LoadFactory = Callable[[RunningServer], LoadSpec]
"""Builds a contender's load once its server is up (e.g. logs in to obtain a token)."""

Mint = Callable[[int], Sequence[str]]
"""Makes ``n`` more single-use tokens for a running server (e.g. opens refresh sessions)."""

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
    #: Each token of ``load.tokens_file`` may be sent once only (refresh tokens): every run, the
    #: smoke check included, gets the tokens no earlier run can have sent.
    single_use: bool = False
    #: Makes ``n`` more single-use tokens while the server runs (between runs, untimed): a faster
    #: host than the list was sized for gets more instead of an invalid comparison.
    mint: Mint | None = None

    def resolve_load(self, server: RunningServer) -> LoadSpec:
        """The concrete load, built now that the server is up when it depends on it."""
        return self.load if isinstance(self.load, LoadSpec) else self.load(server)


#: A run is topped up to this many times the tokens the fastest earlier run of its side would
#: send over its duration: rates drift by a third between runs on a shared host.
TOKEN_HEADROOM = 1.5


class TokenCursor:
    """Hands each run a fresh slice of a single-use token list, minting more when it runs short.

    wrk counts completed requests only; up to one request per connection was sent but still in
    flight when a run stopped, so the cursor also skips ``connections`` tokens after every run.
    """

    def __init__(self, load: LoadSpec, slice_dir: Path, name: str, mint: Mint | None = None) -> None:
        if load.tokens_file is None:
            raise ValueError(f"{name}: single-use tokens need a tokens_file")
        self._load = load
        self._mint = mint
        self._tokens = [line for line in load.tokens_file.read_text().splitlines() if line]
        self._dir = slice_dir
        self._name = name
        self._next = 0
        self._runs = 0
        self._offered = 0
        #: The most any run sent of the slice it was offered (above 1.0 it wrapped around and
        #: replayed spent tokens, and :meth:`after` counted those requests as failed).
        self.most_reuse = 0.0

    def ensure(self, count: int) -> None:
        """Mint tokens until ``count`` are unspent, when a mint is known."""
        short = count - (len(self._tokens) - self._next)
        if short > 0 and self._mint is not None:
            self._tokens += self._mint(short)

    def take(self, limit: int | None = None) -> LoadSpec:
        """The load with the unspent tokens only (at most ``limit`` of them)."""
        fresh = self._tokens[self._next : None if limit is None else self._next + limit]
        if not fresh:
            raise RuntimeError(f"{self._name}: every single-use token is spent; mint more")
        self._runs += 1
        path = self._dir / f"{self._name}-{self._runs}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{token}\n" for token in fresh))
        self._offered = len(fresh)
        return replace(self._load, tokens_file=path)

    @property
    def made(self) -> int:
        """Every token this cursor had to hand out: the list it started with and what it minted."""
        return len(self._tokens)

    def spent(self, count: int) -> None:
        """Mark ``count`` more tokens as sent."""
        self._next += count

    def after(self, result: WrkResult, connections: int) -> WrkResult:
        """Mark what a wrk run may have sent: its requests, its failures, one in flight per connection.

        Returns the result with the requests that went past the end of the slice counted as bad:
        wrk wrapped around and sent spent tokens again, which a server may answer as replays (or,
        inside a grace window, as cheap retries), so such a run must not pass as valid.
        """
        self.spent(result.requests + result.socket_errors + connections)
        self.most_reuse = max(self.most_reuse, result.requests / max(self._offered, 1))
        overrun = max(0, result.requests - self._offered)
        return replace(result, bad_status=result.bad_status + overrun) if overrun else result


@dataclass(frozen=True)
class HttpComparison:
    """Candidate vs baseline; ratios are candidate / baseline (so > 1 means the candidate is higher)."""

    key: str
    group: str
    title: str
    baseline: Contender
    candidate: Contender
    note: str = ""
    #: wrk connections for this comparison when the suite's default does not suit it (slow logins).
    connections: int | None = None


@dataclass(frozen=True)
class ContenderRuns:
    """Every measured run of one contender, and its server's peak memory."""

    label: str
    server: str
    runs: Sequence[WrkResult]
    rss: PeakRss
    token_count: int | None
    #: Server CPU time (all its processes) per completed request, in µs, run by run.
    cpu_us_per_request: Sequence[float] = ()
    #: Single-use tokens: the most any run sent of the slice it was offered.
    single_use_reuse: float | None = None

    @property
    def cpu_per_request(self) -> Spread | None:
        """Server CPU µs per request over the rounds (``None`` when not recorded)."""
        return Spread.of(self.cpu_us_per_request) if self.cpu_us_per_request else None

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
        """How many times each unique token was sent, at most (1.0 or less means never reused)."""
        if self.single_use_reuse is not None:
            return self.single_use_reuse
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
    def cpu_ratio(self) -> Spread | None:
        """candidate ÷ baseline server CPU per request, round by round.

        Steadier than req/s on a shared machine: CPU time a server did not get (other tenants ran)
        is not counted against it, so this says what each request *costs* the server.
        """
        if not (self.candidate.cpu_us_per_request and self.baseline.cpu_us_per_request):
            return None
        return ratios(self.candidate.cpu_us_per_request, self.baseline.cpu_us_per_request)

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


def round_order(round_index: int, kinds: int = 2) -> tuple[int, ...]:
    """ABBA order over ``kinds`` kinds of run: forwards in even rounds, backwards in odd ones.

    So no kind always runs first (or last), and each pair of neighbours runs back to back.
    """
    order = tuple(range(kinds))
    return order if round_index % 2 == 0 else order[::-1]


def _token_count(load: LoadSpec) -> int | None:
    if load.tokens_file is None:
        return None
    return sum(1 for line in load.tokens_file.read_text().splitlines() if line)


def _url(server: RunningServer, load: LoadSpec) -> str:
    return server.base_url + load.path


def _warm_up(server: RunningServer, load: LoadSpec, settings: Settings) -> WrkResult | None:
    if settings.warmup_s <= 0:
        return None
    return run_wrk(_url(server, load), load, replace(settings.load, duration_s=settings.warmup_s))


class _Side:
    """One contender while a comparison runs: its server, its load, and its single-use tokens."""

    def __init__(self, contender: Contender, server: RunningServer, settings: Settings, load_settings: LoadSettings):
        self.contender = contender
        self.server = server
        self.load = contender.resolve_load(server)
        self.load_settings = load_settings
        self.cpu_us: list[float] = []
        self.cursor = (
            TokenCursor(self.load, settings.work_dir / "tokens" / "slices", server.spec.name, contender.mint)
            if contender.single_use
            else None
        )
        #: The fastest requests/s any run of this side reached (the warm-up included).
        self.peak_rate = 0.0

    def next_load(self) -> LoadSpec:
        return self.load if self.cursor is None else self.cursor.take()

    def top_up(self) -> None:
        """Mint the single-use tokens the next run could need, before the servers are let go quiet."""
        if self.cursor is not None:
            need = self.peak_rate * self.load_settings.duration_s * TOKEN_HEADROOM + self.load_settings.connections
            self.cursor.ensure(int(need))

    def _sent(self, result: WrkResult) -> WrkResult:
        self.peak_rate = max(self.peak_rate, result.requests_per_s)
        return result if self.cursor is None else self.cursor.after(result, self.load_settings.connections)

    def check_and_warm_up(self, settings: Settings) -> None:
        """Smoke-check (spending one single-use token), then a discarded warm-up run."""
        if self.cursor is None:
            self.contender.check(self.server, self.load)
        else:
            self.contender.check(self.server, self.cursor.take(limit=1))
            self.cursor.spent(1)
        warm = _warm_up(self.server, self.next_load(), replace(settings, load=self.load_settings))
        if warm is not None:
            self._sent(warm)

    def measure(self) -> WrkResult:
        load = self.next_load()
        before = cpu_seconds(self.server.process.pid)
        result = run_wrk(_url(self.server, load), load, self.load_settings)
        spent = cpu_seconds(self.server.process.pid) - before
        self.cpu_us.append(spent / max(result.requests, 1) * 1e6)
        return self._sent(result)

    def token_count(self) -> int | None:
        """Unique tokens: for single-use ones every token made, minted included.

        ``None`` when repeating them is the point (e.g. the logins' e-mails).
        """
        if self.cursor is not None:
            return self.cursor.made
        return None if self.load.body_file is not None else _token_count(self.load)


def run_comparison(
    comparison: HttpComparison, settings: Settings, progress: Callable[[str], None] = print
) -> HttpOutcome:
    """Start both servers, smoke-check and warm them up, then measure them in ABBA order."""
    contenders = (comparison.baseline, comparison.candidate)
    load_settings = (
        settings.load if comparison.connections is None else replace(settings.load, connections=comparison.connections)
    )
    with ExitStack() as stack:
        servers = [stack.enter_context(running(c.server, settings.log_dir)) for c in contenders]
        sides = [_Side(c, s, settings, load_settings) for c, s in zip(contenders, servers, strict=True)]
        for side in sides:
            side.check_and_warm_up(settings)
        runs: list[list[WrkResult]] = [[], []]
        for round_index in range(settings.rounds):
            for index in round_order(round_index):
                sides[index].top_up()
                wait_quiet(servers[0])
                wait_quiet(servers[1])
                result = sides[index].measure()
                runs[index].append(result)
                progress(
                    f"  {comparison.key} round {round_index + 1} {contenders[index].label}: "
                    f"{result.requests_per_s:,.0f} req/s p99 {result.p99_ms:.2f} ms"
                )
        measured = [
            ContenderRuns(
                side.contender.label,
                side.server.spec.name,
                r,
                peak_rss(side.server.process.pid),
                side.token_count(),
                side.cpu_us,
                None if side.cursor is None else side.cursor.most_reuse,
            )
            for side, r in zip(sides, runs, strict=True)
        ]
    return HttpOutcome(comparison, measured[0], measured[1])


# --- latency of a cheap endpoint during a storm ----------------------------------------------


@dataclass(frozen=True)
class HashBound:
    """What password hashing alone allows, measured with the server idle around one storm run."""

    #: Cores ÷ one verification's time: the arithmetic ceiling of storm requests/s.
    limit_per_s: float
    #: Verifications/s with every core hashing at once and nothing else running, when measured:
    #: the ceiling as the cores really deliver it.
    all_cores_per_s: float | None = None

    @staticmethod
    def around(before: HashBound, after: HashBound) -> HashBound:
        """The bound of a run measured just before and just after it: the mean of the two."""
        both = (before.all_cores_per_s, after.all_cores_per_s)
        return HashBound(
            (before.limit_per_s + after.limit_per_s) / 2,
            (both[0] + both[1]) / 2 if both[0] and both[1] else None,
        )


def bound_around(
    server: RunningServer, measure: Callable[[], HashBound] | None, run: Callable[[], T]
) -> tuple[T, HashBound | None]:
    """``run()``, with ``measure`` taken just before and just after it (the server idle) and averaged.

    The caller has let the server go quiet before; this waits again before the second
    measurement, since a login storm leaves seconds of queued hashing behind.
    """
    if measure is None:
        return run(), None
    before = measure()
    result = run()
    wait_quiet(server)
    return result, HashBound.around(before, measure())


@dataclass(frozen=True)
class StormComparison:
    """p99 of a cheap GET on an idle server vs the same while ``storm`` (e.g. logins) saturates it.

    The probe is paced and light (see :mod:`bench.probe`); the storm is closed-loop wrk.
    ``hash_bound``, when known, measures the ceiling of storm requests/s that password hashing
    allows. It is called just before and just after *every* storm run, with the server idle,
    and each run's requests/s is divided by the mean of the two: the ceiling of the same moment.
    On a shared host the hash's speed drifts from one second to the next (argon2id lives in the
    L3 cache, which neighbours share: one verification measured 14.7 to 24 ms within 17 s on
    the build machine), so a limit measured once, before all rounds, moved every round's
    ratio together.
    """

    key: str
    group: str
    title: str
    server: ServerSpec
    probe_path: str
    storm: LoadSpec | LoadFactory
    #: When set, each round also runs the storm *alone* (no probe), with the bound around it:
    #: the bound is what a login-only load could reach, so that run is what it is compared with.
    hash_bound: Callable[[], HashBound] | None = None
    #: How the bound is computed (the figures themselves are per round, in the outcome).
    hash_bound_note: str = ""


@dataclass(frozen=True)
class StormOutcome:
    """Idle and under-storm probes, the storm's wrk runs (probed and alone) and their hash bounds, by round.

    Two kinds of storm run, because they answer two questions. The *probed* runs carry the
    latency probe (one cheap request every 10 ms): what a user of the cheap endpoint waits
    during a storm. The runs *alone* carry nothing else: how close logins come to the
    hash-bound limit, which is a bound for a login-only load. The probe's ~100 requests/s
    are work the limit does not count; measured side by side they cost the storm 2-6% of
    its logins/s on a 2-core machine (server and probe client share the cores).
    """

    comparison: StormComparison
    idle: Sequence[ProbeResult]
    stormy: Sequence[ProbeResult]
    storm: Sequence[WrkResult]
    rss: PeakRss
    #: One per probed storm run, measured around it (empty when the comparison has no bound).
    bounds: Sequence[HashBound] = ()
    #: The storm run alone, and the bound measured around each (empty without a bound).
    alone: Sequence[WrkResult] = ()
    alone_bounds: Sequence[HashBound] = ()

    @property
    def storm_throughput(self) -> Spread:
        """Storm requests/s (logins/s for a login storm) while the probe ran."""
        return Spread.of([run.requests_per_s for run in self.storm])

    @property
    def alone_throughput(self) -> Spread | None:
        """Storm requests/s with nothing else running (``None`` when not measured)."""
        return Spread.of([run.requests_per_s for run in self.alone]) if self.alone else None

    @property
    def p99_ratio(self) -> Spread:
        """Probe p99 during the storm ÷ probe p99 idle, round by round."""
        return ratios([r.p99_ms for r in self.stormy], [r.p99_ms for r in self.idle])

    @property
    def hash_bound_per_s(self) -> Spread | None:
        """The hash-bound limit around each storm run, alone and probed."""
        bounds = [*self.alone_bounds, *self.bounds]
        return Spread.of([b.limit_per_s for b in bounds]) if bounds else None

    @property
    def all_cores_hashing_per_s(self) -> Spread | None:
        """All cores hashing at once, around each storm run (``None`` if not measured)."""
        rates = [b.all_cores_per_s for b in (*self.alone_bounds, *self.bounds)]
        return Spread.of([r for r in rates if r]) if rates and all(rates) else None

    @staticmethod
    def _per(runs: Sequence[WrkResult], rates: Sequence[float | None]) -> Spread | None:
        """Each run's requests/s ÷ the rate measured around it (``None`` when unknown)."""
        if not runs or len(rates) != len(runs) or not all(rates):
            return None
        return ratios([run.requests_per_s for run in runs], [r for r in rates if r])

    @property
    def bound_ratio(self) -> Spread | None:
        """The storm alone: requests/s ÷ the hash-bound limit, run by run (the target's figure)."""
        return self._per(self.alone, [b.limit_per_s for b in self.alone_bounds])

    @property
    def all_cores_ratio(self) -> Spread | None:
        """The storm alone: requests/s ÷ the measured rate of all cores hashing at once."""
        return self._per(self.alone, [b.all_cores_per_s for b in self.alone_bounds])

    @property
    def host_ceiling_ratio(self) -> Spread | None:
        """All cores hashing ÷ the hash-bound limit, around each storm run alone: how much of the
        arithmetic limit the host's cores deliver when they all hash at once and nothing else runs.

        The limit assumes each core hashes as fast as one core alone; on a host whose cores share a
        cache, memory bandwidth or a physical core, two hashes at once each run slower, and no
        server can exceed this figure in ``bound_ratio``. ``None`` when not measured.
        """
        bounds = self.alone_bounds
        if not bounds or not all(b.all_cores_per_s for b in bounds):
            return None
        return ratios([b.all_cores_per_s or 0.0 for b in bounds], [b.limit_per_s for b in bounds])

    @property
    def probed_bound_ratio(self) -> Spread | None:
        """The probed storm: requests/s ÷ the hash-bound limit (the probe's load included)."""
        return self._per(self.storm, [b.limit_per_s for b in self.bounds])

    @property
    def unanswered(self) -> int:
        """Probe requests still waiting when a storm window closed (the endpoint was starved)."""
        return sum(run.unanswered for run in self.stormy)

    @property
    def valid(self) -> bool:
        """False when any storm request failed or any probe got an error answer."""
        storms = (*self.storm, *self.alone)
        return all(run.ok for run in storms) and all(run.failures == 0 for run in (*self.idle, *self.stormy))


def _resolve(load: LoadSpec | LoadFactory, server: RunningServer) -> LoadSpec:
    return load if isinstance(load, LoadSpec) else load(server)


def _probe_window(settings: Settings) -> float:
    """The probe runs inside the storm's window, clear of wrk's ramp-up and wind-down."""
    return max(0.5, settings.load.duration_s - 0.5)


def _stormy_probe(
    server: RunningServer, comparison: StormComparison, storm: LoadSpec, settings: LoadSettings, window_s: float
) -> tuple[ProbeResult, WrkResult]:
    storm_process = start_wrk(server.base_url + storm.path, storm, settings)
    try:
        time.sleep(0.25)  # let wrk open its connections and fill the server's queue
        probed = probe(server.port, comparison.probe_path, window_s)
    finally:
        stormed = finish_wrk(storm_process, settings)
    return probed, stormed


def run_storm(
    comparison: StormComparison,
    settings: Settings,
    progress: Callable[[str], None] = print,
    storm_connections: int | None = None,
) -> StormOutcome:
    """Alternate idle probes, probes during a storm and (with a hash bound) the storm alone, on one server.

    The order turns round every other round (idle, probed, alone; then alone, probed, idle), so
    no kind of run always comes first. ``storm_connections`` caps the storm's concurrency: with
    hash-bound requests, 64 connections would only queue requests for seconds. Before every run
    the server is left to finish the work the previous storm queued, so an idle probe is really idle.
    """
    storm_settings = replace(settings.load, connections=storm_connections or settings.load.connections)
    window_s = _probe_window(settings)
    with running(comparison.server, settings.log_dir) as server:
        storm = _resolve(comparison.storm, server)
        expect_success(server, LoadSpec(comparison.probe_path))
        expect_success(server, storm)
        _warm_up(server, storm, replace(settings, load=storm_settings))
        idle: list[ProbeResult] = []
        stormy: list[ProbeResult] = []
        storms: list[WrkResult] = []
        bounds: list[HashBound] = []
        alone: list[WrkResult] = []
        alone_bounds: list[HashBound] = []
        kinds = 3 if comparison.hash_bound is not None else 2  # idle, probed storm[, storm alone]
        for round_index in range(settings.rounds):
            for side in round_order(round_index, kinds):
                wait_quiet(server)
                if side == 0:
                    idle.append(probe(server.port, comparison.probe_path, window_s))
                    progress(f"  {comparison.key} round {round_index + 1} idle: probe p99 {idle[-1].p99_ms:.2f} ms")
                    continue
                if side == 2:
                    lone, lone_bound = bound_around(
                        server,
                        comparison.hash_bound,
                        lambda: run_wrk(server.base_url + storm.path, storm, storm_settings),
                    )
                    alone.append(lone)
                    if lone_bound is not None:
                        alone_bounds.append(lone_bound)
                    progress(f"  {comparison.key} round {round_index + 1} storm alone: {lone.requests_per_s:,.1f}/s")
                    continue
                (probed, stormed), bound = bound_around(
                    server,
                    comparison.hash_bound,
                    lambda: _stormy_probe(server, comparison, storm, storm_settings, window_s),
                )
                stormy.append(probed)
                storms.append(stormed)
                if bound is not None:
                    bounds.append(bound)
                progress(
                    f"  {comparison.key} round {round_index + 1} storm: {stormed.requests_per_s:,.1f}/s, "
                    f"probe p99 {probed.p99_ms:.2f} ms ({probed.answered} answered, {probed.unanswered} starved)"
                )
        rss = peak_rss(server.process.pid)
    return StormOutcome(comparison, idle, stormy, storms, rss, bounds, alone, alone_bounds)
