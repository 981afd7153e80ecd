"""Where keyturn plugs into the suite.

The suite asks these functions for keyturn's peers and skips (and says so in the report) every
measurement whose peer is ``None``. Each function receives what the harness owns (the key, the
runtime, the scratch directory) and returns a description the harness knows how to run, so keyturn
never needs to know about wrk, ports or rounds:

* :func:`guarded_server` -- the same Starlette endpoint as ``bench/apps/ceiling.py``, behind
  keyturn's guard (``bench/apps/guarded.py``), accepting tokens signed with the harness's key
  (guard overhead, Express comparison, RSS).
* :func:`login_peer` -- the real ``keyturn serve`` (OWASP argon2id profile, SQLite) with storm
  accounts, its login load and its hash-bound limit (logins/s, p99 during a login storm).
* :func:`refresh_peer` -- the real ``keyturn serve`` on SQLite or on a throwaway PostgreSQL
  database, with tens of thousands of sessions already open (refresh/s).
* :func:`token_contender` -- ``keyturn.crypto.access_tokens`` issue/verify as a floor contender.

Auth-server peers run with keyturn's defaults except where a benchmark from one client address
would trip a production limit: the refresh limit per client (120/minute) is lifted for the refresh
runs, and the login storm spreads its logins over enough accounts that the per-account limit (5
attempts in flight or failed per window) is never reached -- no limit is loosened for logins.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from joserfc.jwk import import_key

from bench import seed
from bench.apps.guarded_config import AUDIENCE, ISSUER, JWKS_PATH, trusted_key
from bench.floor import KeyMaterial, Ops, TokenContender
from bench.harness import Contender, HashBound, LoadFactory
from bench.servers import LOOPBACK, Runtime, ServerSpec, asgi_server
from bench.tokens import TUTORIAL_CLAIMS, ClaimsFactory, HttpKey
from bench.wrk import LoadSpec
from keyturn.crypto.access_tokens import VerifyOptions, issue_access_token, verify_access_token
from keyturn.crypto.keys import ALGORITHMS, HMAC_ALGORITHMS, KeyRing, SigningKey, hmac_signing_key
from keyturn.crypto.passwords import OWASP, PasswordHasher

#: A password keyturn's policy accepts (long, not a common one).
BENCH_PASSWORD: Final = "plover-anchor-velvet-1987-quartz"
#: Accounts the login storm rotates over: more than the storm's connections, so no account ever
#: has more than one login in flight (keyturn reserves a per-account slot before hashing).
STORM_ACCOUNTS: Final = 48
#: Refresh tokens minted per database before its server starts (``BENCH_REFRESH_TOKENS``). Each can
#: be refreshed once: a run of the suite's default length (2 s warm-up + 3 x 5 s) needs about 17 x
#: refresh/s of them, so this covers ~1,400 refresh/s. A faster server gets more between runs
#: (:func:`seed.more_sessions`, sized from its fastest run so far); a run that still outruns its
#: slice is marked invalid: tokens are never replayed silently.
REFRESH_TOKENS: Final = int(os.environ.get("BENCH_REFRESH_TOKENS", "24000"))
#: Worker processes of the refresh servers (``BENCH_REFRESH_WORKERS``): one per core, as deployed
#: (docs/deploy.md). Refreshing is CPU work in Python around database round trips, so one process
#: would leave the second core to PostgreSQL and wrk alone. The login storm keeps one worker: its
#: hashing already runs on one thread per core.
REFRESH_WORKERS: Final = int(os.environ.get("BENCH_REFRESH_WORKERS", str(os.cpu_count() or 1)))
SUBJECT: Final = str(TUTORIAL_CLAIMS["id"])


@dataclass(frozen=True)
class GuardedPeer:
    """keyturn's guarded endpoint: the server, the path it guards, and the tokens it accepts.

    ``claims`` builds the i-th token's claims and ``header`` the JOSE header members keyturn
    demands beyond ``alg`` (``typ: at+jwt`` and the ``kid``); the harness signs them with the key it
    passed in.
    """

    server: ServerSpec
    path: str
    claims: ClaimsFactory
    header: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoginPeer:
    """keyturn's login endpoint under a login storm, and a cheap GET endpoint on the same server."""

    server: ServerSpec
    storm: LoadSpec | LoadFactory
    probe_path: str
    #: Measures the hash-bound limit and all cores hashing (:func:`hash_bound`), around each storm run.
    hash_bound: Callable[[], HashBound]
    hash_bound_note: str


# --- (1) (3) the guard ---------------------------------------------------------------------------


def guarded_claims(index: int, lifetime_s: int = 3600) -> dict[str, object]:
    """keyturn's access-token claims (CONTRACT.md §3), plus the tutorials' ``id``/``role``.

    The tutorial members let Express's ``protect`` find its user with the very same token, so both
    sides of "keyturn vs Express" do their whole job on identical requests.
    """
    now = int(time.time())
    return {
        **TUTORIAL_CLAIMS,
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": f"{index}-{uuid.uuid4().hex[:12]}",
        "sid": "bench-session",
        "client_id": "keyturn",
        "roles": ["admin"],
        "scope": "",
    }


def guarded_server(runtime: Runtime, key: HttpKey, work_dir: Path, workers: int = 1) -> GuardedPeer | None:
    """keyturn's guarded Starlette endpoint under ``runtime``, trusting ``key``.

    ES256: the app serves the key as a JWK Set on ``{port}`` and the guard fetches it from there
    (once; then cached). HS256: ``Guard(secret=...)``.
    """
    trusted = trusted_key(key.algorithm, key.pem_file, key.secret)
    env = {
        "BENCH_JWT_ALG": key.algorithm,
        "BENCH_JWT_KEY_FILE": str(key.pem_file or ""),
        "BENCH_JWT_SECRET": key.secret or "",
        "BENCH_JWKS_URL": f"http://{LOOPBACK}:{{port}}{JWKS_PATH}",
    }
    server = asgi_server(
        f"guarded-{key.algorithm.lower()}", "bench.apps.guarded:app", runtime, workers=workers, env=env
    )
    return GuardedPeer(server, "/api/protected", guarded_claims, {"typ": "at+jwt", "kid": trusted.kid})


# --- the auth server ------------------------------------------------------------------------------


def auth_server(name: str, runtime: Runtime, env: Mapping[str, str], workers: int = 1) -> ServerSpec:
    """keyturn's auth server: ``keyturn serve`` (uvicorn), or its app factory under granian."""
    if runtime == "uvicorn":
        argv = [str(Path(sys.executable).with_name("keyturn")), "serve", "--host", LOOPBACK, "--port", "{port}"]
        argv += ["--workers", str(workers)]
        return ServerSpec(name=f"{name}-uvicorn", argv=argv, ready_path="/healthz", env=dict(env), ready_timeout_s=60)
    spec = asgi_server(name, "keyturn.server.app:create_app", runtime, workers=workers, env=env, ready_path="/healthz")
    return ServerSpec(
        name=spec.name, argv=[*spec.argv[:-1], "--factory", spec.argv[-1]], ready_path="/healthz", env=spec.env
    )


def server_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """keyturn's settings for a peer: a private data dir, the given database, quiet logs."""
    return {
        "KEYTURN_DATA_DIR": str(data_dir),
        "KEYTURN_DATABASE_URL": database_url,
        "KEYTURN_ISSUER": f"http://{LOOPBACK}:{{port}}",
        "KEYTURN_LOG_LEVEL": "warning",
        "KEYTURN_SHUTDOWN_TIMEOUT": "2",
        **extra,
    }


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --- (4) logins -----------------------------------------------------------------------------------


#: Verifications timed one after the other for the hash-bound limit (their median counts):
#: ~0.4 s, long enough to average over the second-to-second drift of a shared host.
VERIFY_SAMPLES: Final = 25
#: Verifications per core queued at once to measure all cores hashing (~0.4 s).
ALL_CORES_PER_CORE: Final = 24


def password_verify_seconds(samples: int = VERIFY_SAMPLES) -> float:
    """Median time of one argon2id verification with keyturn's production hasher (OWASP profile)."""
    hasher = PasswordHasher(OWASP, max_concurrency=1)
    stored = hasher.hash_sync(BENCH_PASSWORD)

    async def timed() -> list[float]:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            await hasher.verify(stored, BENCH_PASSWORD)
            times.append(time.perf_counter() - start)
        return times

    return statistics.median(asyncio.run(timed()))


def password_verify_all_cores_per_s(per_core: int = ALL_CORES_PER_CORE) -> float:
    """Verifications/s of keyturn's hasher with all its threads busy (one per core), nothing else running.

    The hash-bound limit assumes n cores hash n times as fast as one. They do not quite:
    two argon2id hashes at once share caches and memory bandwidth (m = 7 MiB each). This is
    the same hasher a login uses, fed ``per_core`` verifications per core at once, so its
    rate is the most a login storm could reach if the server cost nothing besides hashing.
    """
    cores = os.cpu_count() or 1
    hasher = PasswordHasher(OWASP, max_concurrency=cores)
    stored = hasher.hash_sync(BENCH_PASSWORD)

    async def burst() -> float:
        await asyncio.gather(*(hasher.verify(stored, BENCH_PASSWORD) for _ in range(cores)))  # threads warm
        start = time.perf_counter()
        await asyncio.gather(*(hasher.verify(stored, BENCH_PASSWORD) for _ in range(cores * per_core)))
        return cores * per_core / (time.perf_counter() - start)

    try:
        return asyncio.run(burst())
    finally:
        hasher.close()


def login_storm_setup(home: Path, **extra_env: str) -> tuple[dict[str, str], LoadSpec]:
    """A SQLite ``keyturn serve`` environment in ``home`` with the storm's accounts, and its login load.

    :data:`STORM_ACCOUNTS` accounts, seeded with keyturn's own services; the load rotates
    over their e-mails, one per request, all with :data:`BENCH_PASSWORD`.
    """
    env = server_env(home, f"sqlite:///{home / 'keyturn.db'}", **extra_env)
    emails = [f"storm-{index:03d}@example.com" for index in range(STORM_ACCOUNTS)]
    seed.seed(env, [(email, BENCH_PASSWORD) for email in emails])
    body = home / "login.json"
    body.write_text(json.dumps({"email": "{{token}}", "password": BENCH_PASSWORD}))
    return env, LoadSpec("/auth/login", body_file=body, tokens_file=seed.write_lines(home / "emails.txt", emails))


def hash_bound() -> HashBound:
    """The hash-bound limit (cores ÷ one verification) and all cores hashing, measured now.

    Both with keyturn's own hasher and the production (OWASP) profile, in this process,
    nothing else running: the suite calls it with the server idle, before and after each storm run.
    """
    cores = os.cpu_count() or 1
    return HashBound(cores / password_verify_seconds(), password_verify_all_cores_per_s())


def login_peer(runtime: Runtime, work_dir: Path) -> LoginPeer | None:
    """``keyturn serve`` (OWASP argon2id, SQLite) with storm accounts; the storm rotates over them."""
    home = _fresh_dir(work_dir / "keyturn-login")
    env, storm = login_storm_setup(home)
    cores = os.cpu_count() or 1
    note = (
        f"{cores} cores ÷ the median time of one argon2id verification (OWASP: m={OWASP.memory_cost} KiB, "
        f"t={OWASP.time_cost}, p={OWASP.parallelism}; keyturn's hasher, {VERIFY_SAMPLES} in a row), and all {cores} "
        f"cores hashing at once ({cores * ALL_CORES_PER_CORE} verifications), both measured just before and just "
        "after each storm run with the server idle (their mean)"
    )
    server = auth_server("keyturn-login", runtime, env)
    return LoginPeer(server, storm, "/healthz", hash_bound, note)


# --- (5) refresh ----------------------------------------------------------------------------------


def refresh_peer(database: Literal["sqlite", "postgresql"], runtime: Runtime, work_dir: Path) -> Contender | None:
    """``keyturn serve`` on ``database`` with :data:`REFRESH_TOKENS` sessions already open.

    PostgreSQL: a fresh database on 127.0.0.1:5432, dropped when the benchmark process exits.
    The per-client refresh limit is lifted (every request comes from 127.0.0.1). Each refresh
    token is sent once (``single_use``): a second send would be a replay, not a refresh.
    """
    home = _fresh_dir(work_dir / f"keyturn-refresh-{database}")
    if database == "sqlite":
        url = f"sqlite:///{home / 'keyturn.db'}"
    else:
        url = seed.create_database()
        atexit.register(seed.drop_database, url)
    env = server_env(home, url, KEYTURN_RATE_LIMIT_REFRESH="1000000/minute")
    email = "refresh@example.com"
    tokens = seed.seed(env, [(email, BENCH_PASSWORD)], sessions=REFRESH_TOKENS)
    body = home / "refresh.json"
    body.write_text(json.dumps({"refresh_token": "{{token}}"}))
    load = LoadSpec("/auth/refresh", body_file=body, tokens_file=seed.write_lines(home / "tokens.txt", tokens))
    server = auth_server(f"keyturn-refresh-{database}", runtime, env, workers=REFRESH_WORKERS)
    mint = functools.partial(seed.more_sessions, env, email)
    return Contender(f"keyturn refresh ({database})", server, load, single_use=True, mint=mint)


# --- (2) token operations -------------------------------------------------------------------------


def _keyturn_keys(material: KeyMaterial) -> tuple[SigningKey, KeyRing]:
    """The signing key and a verification ring holding only its public half (as a guard holds it)."""
    alg = material.algorithm
    if alg in HMAC_ALGORITHMS:
        if material.secret is None:
            raise ValueError(f"{alg} needs a secret")
        key = hmac_signing_key(material.secret, alg)
        return key, KeyRing([key])
    private = import_key(dict(material.private_jwk))  # type: ignore[arg-type]
    public = import_key(dict(material.public_jwk))  # type: ignore[arg-type]
    kid = public.thumbprint()
    return SigningKey(kid=kid, alg=alg, key=private), KeyRing([SigningKey(kid=kid, alg=alg, key=public)])


def keyturn_ops(material: KeyMaterial) -> Ops | None:
    """``issue_access_token`` / ``verify_access_token`` with keys parsed once, outside the timed calls."""
    if material.algorithm not in ALGORITHMS:
        return None
    signing, ring = _keyturn_keys(material)
    iat = int(str(material.claims["iat"]))
    options = VerifyOptions(issuer=ISSUER, audience=AUDIENCE)

    def sign() -> str:
        return issue_access_token(
            signing,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=SUBJECT,
            ttl=900,
            now=iat,
            session_id="bench-session",
            email=str(material.claims["email"]),
            roles=["admin"],
        ).token

    token = sign()
    return Ops(sign=sign, verify=lambda: verify_access_token(token, ring, options, now=iat + 1))


def token_contender() -> TokenContender | None:
    """keyturn's ``keyturn.crypto.access_tokens`` issue/verify as a floor contender."""
    return keyturn_ops
