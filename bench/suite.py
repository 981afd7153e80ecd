"""The suite's plan: which comparisons exist, built from the peers that are available.

Measurements whose keyturn peer is not plugged in yet (see :mod:`bench.keyturn_peers`) are listed
as skipped in the report instead of failing the run, so the suite works at every stage of the
project. Keys are generated once per run and shared by every server of a comparison.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from bench import keyturn_peers
from bench.floor import ALGORITHMS, DEFAULT_CONTENDERS, FloorSettings, OpOutcome, TokenContender, run_floor
from bench.harness import (
    Contender,
    HashBound,
    HttpComparison,
    HttpOutcome,
    Settings,
    StormComparison,
    StormOutcome,
    expect_success,
    login_token,
    run_comparison,
    run_storm,
)
from bench.servers import EXPRESS_DIR, RunningServer, Runtime, ceiling_server, express_server, layered_server
from bench.tokens import (
    ClaimsFactory,
    HttpAlgorithm,
    HttpKey,
    make_key,
    mint,
    tutorial_claims,
    write_login_body,
    write_tokens,
)
from bench.wrk import LoadSpec

Part = Literal["http", "storm", "floor"]
PARTS: Sequence[Part] = ("http", "storm", "floor")
ShapeName = Literal["repeated", "unique"]

#: Comparison keys the targets read (``bench.targets``), spelled once: a key written twice could drift,
#: and the target would read "not measured" for good.
LOGINS_VS_EXPRESS: Final = "logins-keyturn-vs-express"
REFRESH_DATABASES: Final = "refresh-postgresql-vs-sqlite"
LOGIN_STORM: Final = "keyturn-login-storm"


def guard_key(runtime: str, algorithm: str, shape: str) -> str:
    """A guard-overhead row's key, e.g. ``guard-uvicorn-es256-repeated``."""
    return f"guard-{runtime}-{algorithm.lower()}-{shape}"


def guarded_vs_express_key(algorithm: str) -> str:
    """The keyturn guard ÷ Express protect row's key, e.g. ``guarded-vs-express-es256``."""
    return f"guarded-vs-express-{algorithm.lower()}"


EXPRESS_EMAIL = "alice@example.com"
EXPRESS_PASSWORD = "correct horse battery staple"
PROTECTED_PATH = "/api/protected"


@dataclass(frozen=True)
class SuiteConfig:
    """What to run and how long; the defaults keep a full run well under 15 minutes on 2 cores."""

    settings: Settings = field(default_factory=Settings)
    floor: FloorSettings = field(default_factory=FloorSettings)
    parts: Sequence[Part] = PARTS
    runtimes: Sequence[Runtime] = ("uvicorn", "granian")
    unique_tokens: int = 60_000
    storm_connections: int = 16
    #: Glob patterns of comparison keys to run (``guard-*``, ``refresh-*``...); empty runs them all.
    match: Sequence[str] = ()
    floor_algorithms: Sequence[str] = ALGORITHMS

    def wanted(self, key: str) -> bool:
        """Whether the comparison or storm named ``key`` is selected by ``match``."""
        return not self.match or any(fnmatch.fnmatchcase(key, pattern) for pattern in self.match)


@dataclass
class SuiteResult:
    """Everything measured in one run, plus what was skipped and why."""

    config: SuiteConfig
    http: list[HttpOutcome] = field(default_factory=list)
    storms: list[StormOutcome] = field(default_factory=list)
    floor: list[OpOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Context:
    """Per-run resources: keys per algorithm and token files, made once and shared."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.work_dir = config.settings.work_dir
        self._keys: dict[HttpAlgorithm, HttpKey] = {}
        self._token_files: dict[tuple[HttpAlgorithm, str], Path] = {}
        self._tokens: dict[tuple[HttpAlgorithm, str], str] = {}

    def key(self, algorithm: HttpAlgorithm) -> HttpKey:
        """The run's key for ``algorithm`` (generated on first use)."""
        if algorithm not in self._keys:
            self._keys[algorithm] = make_key(algorithm, self.work_dir / "keys" / algorithm.lower())
        return self._keys[algorithm]

    def load(
        self,
        algorithm: HttpAlgorithm,
        shape: ShapeName,
        path: str = PROTECTED_PATH,
        claims: ClaimsFactory = tutorial_claims,
        claims_name: str = "tutorial",
        *,
        header: Mapping[str, str] | None = None,
    ) -> LoadSpec:
        """A GET load on ``path`` carrying one repeated token or rotating unique tokens.

        The same (algorithm, claims_name) always gives the same token or list, so both sides of a
        comparison receive byte-identical requests; ``header`` adds JOSE header members (``kid``).
        """
        key = self.key(algorithm)
        cache_key = (algorithm, claims_name)
        if shape == "repeated":
            if cache_key not in self._tokens:
                self._tokens[cache_key] = mint(key, claims(0), header)
            return LoadSpec(path, headers={"Authorization": f"Bearer {self._tokens[cache_key]}"})
        if cache_key not in self._token_files:
            target = self.work_dir / "tokens" / f"{algorithm.lower()}-{claims_name}.txt"
            self._token_files[cache_key] = write_tokens(key, self.config.unique_tokens, target, claims, header)
        return LoadSpec(path, tokens_file=self._token_files[cache_key])

    def express(self, algorithm: HttpAlgorithm) -> Contender:
        """The tutorials' Express app trusting the run's key, with a real login as smoke test."""
        key = self.key(algorithm)
        server = express_server(
            algorithm, key_file=key.pem_file, secret=key.secret, email=EXPRESS_EMAIL, password=EXPRESS_PASSWORD
        )
        return Contender(f"Express protect {algorithm}", server, self.load(algorithm, "repeated"), check=_express_check)


def _express_check(server: RunningServer, load: LoadSpec) -> None:
    """Log in like the tutorials' client, call the protected route with that token, then with the load's."""
    token = login_token(server, EXPRESS_EMAIL, EXPRESS_PASSWORD)
    expect_success(server, LoadSpec(load.path, headers={"Authorization": f"Bearer {token}"}))
    expect_success(server, load)


# --- the plan --------------------------------------------------------------------------------


def http_comparisons(ctx: Context) -> tuple[list[HttpComparison], list[str]]:
    """Every A/B HTTP comparison that can run now, and notes on those that cannot."""
    comparisons = [express_vs_ceiling(ctx, "ES256")] if ctx.config.wanted("express-es256-vs-ceiling") else []
    skipped: list[str] = []
    for builder in (guard_overhead, guarded_vs_express, logins_vs_express, refresh_sqlite_vs_postgresql):
        found, missing = builder(ctx)
        comparisons += found
        skipped += missing
    return comparisons, skipped


def express_vs_ceiling(ctx: Context, algorithm: HttpAlgorithm) -> HttpComparison:
    """How far the tutorials' stack is from a Python endpoint that does no auth at all."""
    load = ctx.load(algorithm, "repeated")
    return HttpComparison(
        key=f"express-{algorithm.lower()}-vs-ceiling",
        group="Reference: Express protect vs Starlette ceiling",
        title=f"Express protect ({algorithm}) ÷ Starlette ceiling (uvicorn, no auth)",
        baseline=Contender("ceiling (uvicorn)", ceiling_server("uvicorn"), load),
        candidate=ctx.express(algorithm),
        note="Both receive the same Authorization header; the ceiling ignores it.",
    )


def guard_overhead(ctx: Context) -> tuple[list[HttpComparison], list[str]]:
    """(1) unguarded vs guarded, per runtime, algorithm and token shape; and each runtime's control."""
    found: list[HttpComparison] = []
    for runtime in ctx.config.runtimes:
        peers: dict[HttpAlgorithm, keyturn_peers.GuardedPeer] = {}
        for algorithm in ("ES256", "HS256"):
            peer = keyturn_peers.guarded_server(runtime, ctx.key(algorithm), ctx.work_dir)
            if peer is None:
                return [], ["guard overhead (keyturn_peers.guarded_server not plugged in)"]
            peers[algorithm] = peer
            for shape in ("repeated", "unique"):
                key = guard_key(runtime, algorithm, shape)
                if not ctx.config.wanted(key):
                    continue  # a unique-token list is 60,000 signatures: made only for a row that runs
                load = ctx.load(algorithm, shape, peer.path, peer.claims, "guarded", header=peer.header)
                guarded = Contender(f"keyturn guard ({runtime})", peer.server, load)
                found.append(_beside_ceiling(key, runtime, f"{runtime}, {algorithm}, {shape} token", guarded, load))
        key = f"guard-{runtime}-control-layer"
        if ctx.config.wanted(key):
            # The ES256 repeated rows' very requests: ctx.load mints that token once and keeps it.
            es256 = peers["ES256"]
            load = ctx.load("ES256", "repeated", es256.path, es256.claims, "guarded", header=es256.header)
            layered = Contender(f"ceiling + pass-through layer ({runtime})", layered_server(runtime), load)
            title = f"{runtime}, control: a do-nothing middleware, no auth"
            note = (
                "What any ASGI middleware costs on this host (bench/apps/layered.py); "
                "the guard rows' ratio divided by this one is the guard's own work."
            )
            found.append(_beside_ceiling(key, runtime, title, layered, load, note=note))
    return found, []


def _beside_ceiling(
    key: str, runtime: Runtime, title: str, candidate: Contender, load: LoadSpec, *, note: str = ""
) -> HttpComparison:
    """A guard-overhead row: ``candidate`` against the ceiling served by the same ``runtime``, same load."""
    return HttpComparison(
        key=key,
        group="Guard overhead: guarded ÷ unguarded",
        title=title,
        baseline=Contender(f"ceiling ({runtime})", ceiling_server(runtime), load),
        candidate=candidate,
        note=note,
    )


def guarded_vs_express(ctx: Context) -> tuple[list[HttpComparison], list[str]]:
    """(3) keyturn's guarded endpoint vs Express protect, same key, same token."""
    found: list[HttpComparison] = []
    for algorithm in ("ES256", "HS256"):
        peer = keyturn_peers.guarded_server("uvicorn", ctx.key(algorithm), ctx.work_dir)
        if peer is None:
            return [], ["guarded vs Express protect (keyturn_peers.guarded_server not plugged in)"]
        if not ctx.config.wanted(guarded_vs_express_key(algorithm)):
            continue
        express = ctx.express(algorithm)
        load = ctx.load(algorithm, "repeated", peer.path, peer.claims, "guarded", header=peer.header)
        found.append(
            HttpComparison(
                key=guarded_vs_express_key(algorithm),
                group="keyturn guard ÷ Express protect",
                title=f"{algorithm}, repeated token, uvicorn vs node",
                baseline=Contender(
                    express.label, express.server, LoadSpec(PROTECTED_PATH, headers=load.headers), check=express.check
                ),
                candidate=Contender("keyturn guard (uvicorn)", peer.server, load),
                note="Express accepts the keyturn-shaped token: same key, extra claims are ignored by jsonwebtoken.",
            )
        )
    return found, []


def logins_vs_express(ctx: Context) -> tuple[list[HttpComparison], list[str]]:
    """(4) logins/s: keyturn's login vs the tutorials' Express + bcryptjs login, A/B interleaved.

    Both get the storm's connection count (16): with hash-bound requests, more connections only
    lengthen queues. Express's hash-bound limit is one core, keyturn's every core: that difference
    is the point of the comparison.
    """
    key = LOGINS_VS_EXPRESS
    if not ctx.config.wanted(key):
        return [], []
    peer = keyturn_peers.login_peer("uvicorn", ctx.work_dir / "logins")
    if peer is None:
        return [], ["logins/s vs Express (keyturn_peers.login_peer not plugged in)"]
    express = express_login_storm(ctx)
    comparison = HttpComparison(
        key=key,
        group="Logins: keyturn ÷ Express + bcryptjs",
        title="logins/s, keyturn (argon2id OWASP, uvicorn) ÷ Express + bcryptjs (cost 10)",
        baseline=Contender("Express + bcryptjs login", express.server, express.storm),
        candidate=Contender("keyturn login (uvicorn)", peer.server, peer.storm),
        note="Same connection count for both (the storm's); every login succeeds (checked before timing).",
        connections=ctx.config.storm_connections,
    )
    return [comparison], []


def refresh_sqlite_vs_postgresql(ctx: Context) -> tuple[list[HttpComparison], list[str]]:
    """(5) refresh/s on SQLite (baseline) and PostgreSQL."""
    if not ctx.config.wanted(REFRESH_DATABASES):
        return [], []
    sqlite = keyturn_peers.refresh_peer("sqlite", "uvicorn", ctx.work_dir)
    try:
        postgresql = keyturn_peers.refresh_peer("postgresql", "uvicorn", ctx.work_dir)
    except OSError as error:
        return [], [f"refresh/s on PostgreSQL (no PostgreSQL on 127.0.0.1:5432: {error})"]
    if sqlite is None or postgresql is None:
        return [], ["refresh/s on SQLite and PostgreSQL (keyturn_peers.refresh_peer not plugged in)"]
    return [
        HttpComparison(
            key=REFRESH_DATABASES,
            group="Refresh",
            title="refresh/s: PostgreSQL ÷ SQLite",
            baseline=sqlite,
            candidate=postgresql,
        )
    ], []


def storm_comparisons(ctx: Context) -> tuple[list[StormComparison], list[str]]:
    """(4) login storms: Express + bcryptjs always, keyturn when its login peer exists."""
    storms = [express_login_storm(ctx)] if ctx.config.wanted("express-login-storm") else []
    if not ctx.config.wanted(LOGIN_STORM):
        return storms, []
    peer = keyturn_peers.login_peer("uvicorn", ctx.work_dir / "storm")
    if peer is None:
        return storms, ["keyturn login storm (keyturn_peers.login_peer not plugged in)"]
    storms.append(
        StormComparison(
            key=LOGIN_STORM,
            group="Login storm",
            title="keyturn login (uvicorn)",
            server=peer.server,
            probe_path=peer.probe_path,
            storm=peer.storm,
            hash_bound=peer.hash_bound,
            hash_bound_note=peer.hash_bound_note,
        )
    )
    return storms, []


def express_login_storm(ctx: Context) -> StormComparison:
    """Logins/s of the tutorials' login and /health's p99 during the storm vs idle."""
    key = ctx.key("ES256")
    body = write_login_body(ctx.work_dir / "bodies" / "express-login.json", EXPRESS_EMAIL, EXPRESS_PASSWORD)
    try:
        express_hash_bound()  # once up front: a missing node or bcryptjs leaves the bound out, not the run
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as error:
        bound, note = None, f"bcryptjs timing failed: {error}"
    else:
        bound = express_hash_bound
        note = "1 core (Node's event loop) ÷ one bcryptjs compare (cost 10), before and after each run"
    return StormComparison(
        key="express-login-storm",
        group="Login storm",
        title="Express + bcryptjs login (ES256)",
        server=express_server("ES256", key_file=key.pem_file, email=EXPRESS_EMAIL, password=EXPRESS_PASSWORD),
        probe_path="/health",
        storm=LoadSpec("/auth/login", body_file=body),
        hash_bound=bound,
        hash_bound_note=note,
    )


def express_hash_bound() -> HashBound:
    """1 ÷ one bcryptjs compare (cost 10): Node runs the compare on its only thread, so 1 core."""
    process = subprocess.run(
        ["node", "hash-time.js"], cwd=EXPRESS_DIR, capture_output=True, text=True, timeout=60, check=True
    )
    return HashBound(1000 / float(json.loads(process.stdout)["median_ms"]))


def floor_contenders() -> tuple[dict[str, TokenContender], list[str]]:
    """floor, joserfc and, once plugged in, keyturn."""
    contenders = dict(DEFAULT_CONTENDERS)
    keyturn = keyturn_peers.token_contender()
    if keyturn is None:
        return contenders, ["keyturn in the floor table (keyturn_peers.token_contender not plugged in)"]
    contenders["keyturn"] = keyturn
    return contenders, []


# --- running ---------------------------------------------------------------------------------


def run_suite(config: SuiteConfig, progress: Callable[[str], None] = print) -> SuiteResult:
    """Run the selected parts in order: floor (no servers), HTTP comparisons, storms."""
    result = SuiteResult(config)
    ctx = Context(config)
    result.notes.append(_load_note("at start"))
    if "floor" in config.parts:
        contenders, skipped = floor_contenders()
        result.skipped += skipped
        progress(f"floor: {', '.join(contenders)}")
        result.floor = run_floor(contenders, config.floor, config.floor_algorithms, progress=progress)
    if "http" in config.parts:
        comparisons, skipped = http_comparisons(ctx)
        result.skipped += skipped
        for comparison in comparisons:
            progress(f"http: {comparison.title}")
            result.http.append(run_comparison(comparison, config.settings, progress))
    if "storm" in config.parts:
        storms, skipped = storm_comparisons(ctx)
        result.skipped += skipped
        for storm in storms:
            progress(f"storm: {storm.title}")
            result.storms.append(run_storm(storm, config.settings, progress, config.storm_connections))
    result.notes.append(_load_note("at end"))
    return result


def _load_note(when: str) -> str:
    """Other work on the machine widens the spreads: say how busy it was, next to the figures."""
    one, five, _ = os.getloadavg()
    return f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
