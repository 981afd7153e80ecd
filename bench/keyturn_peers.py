"""Where keyturn plugs into the suite: every function here returns ``None`` until it is written.

The suite asks these functions for keyturn's peers and skips (and says so in the report) every
measurement whose peer is still ``None``. Each function receives what the harness owns (the key, the
runtime, the scratch directory) and returns a description the harness knows how to run, so keyturn
never needs to know about wrk, ports or rounds:

* :func:`guarded_server` -- the same Starlette endpoint as ``bench/apps/ceiling.py``, behind
  keyturn's guard, accepting tokens signed with the harness's key (guard overhead, Express
  comparison, RSS).
* :func:`login_peer` -- a keyturn auth server with one user, its login load and its hash-bound
  limit (logins/s, p99 during a login storm).
* :func:`refresh_peer` -- a keyturn auth server on SQLite or PostgreSQL with refresh tokens
  already issued (refresh/s).
* :func:`token_contender` -- keyturn's own issue/verify functions as a floor-table contender.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.floor import TokenContender
from bench.harness import Contender, LoadFactory
from bench.servers import Runtime, ServerSpec
from bench.tokens import ClaimsFactory, HttpKey
from bench.wrk import LoadSpec


@dataclass(frozen=True)
class GuardedPeer:
    """keyturn's guarded endpoint: the server, the path it guards, and the claims it accepts.

    ``claims`` builds the i-th token's claims when keyturn demands more than the tutorials' shape
    (``iss``, ``aud``, ``typ``...); the harness signs them with the key it passed in.
    """

    server: ServerSpec
    path: str
    claims: ClaimsFactory


@dataclass(frozen=True)
class LoginPeer:
    """keyturn's login endpoint under a login storm, and a cheap endpoint on the same server."""

    server: ServerSpec
    storm: LoadSpec | LoadFactory
    probe: LoadSpec | LoadFactory
    hash_bound_per_s: float | None
    hash_bound_note: str


def guarded_server(runtime: Runtime, key: HttpKey, work_dir: Path, workers: int = 1) -> GuardedPeer | None:
    """keyturn's guarded Starlette endpoint under ``runtime``, trusting ``key``; ``None`` until written.

    Expected shape once keyturn's guard exists (a ``bench/apps/guarded.py`` reading its key from the
    environment)::

        server = asgi_server("guarded", "bench.apps.guarded:app", runtime, workers, env={
            "BENCH_JWT_ALG": key.algorithm,
            "BENCH_JWT_KEY_FILE": str(key.pem_file or ""),
            "BENCH_JWT_SECRET": key.secret or "",
        })
        return GuardedPeer(server, "/api/protected", tutorial_claims)
    """
    return None


def login_peer(runtime: Runtime, work_dir: Path) -> LoginPeer | None:
    """keyturn's auth server with one user, for the login storm; ``None`` until written.

    ``hash_bound_per_s`` should be ``os.cpu_count() / seconds_per_password_verify`` measured with
    keyturn's own hasher settings, and ``storm`` a :class:`LoadSpec` whose ``body_file`` comes from
    :func:`bench.tokens.write_login_body`.
    """
    return None


def refresh_peer(database: Literal["sqlite", "postgresql"], runtime: Runtime, work_dir: Path) -> Contender | None:
    """keyturn's refresh endpoint on ``database`` with refresh tokens pre-issued; ``None`` until written.

    Refresh tokens are single-use, so the contender's load must rotate over at least as many tokens
    as a run can send (``LoadSpec.tokens_file``, with ``{{token}}`` in the body or a
    ``token_header="Cookie"``), and its ``check`` must not spend one of them.
    """
    return None


def token_contender() -> TokenContender | None:
    """keyturn's ``keyturn.crypto.access_tokens`` issue/verify as a floor contender; ``None`` until written.

    Build the closures from :class:`bench.floor.KeyMaterial` (keys in PEM, JWK and cryptography
    forms; ``claims``), doing key parsing outside them::

        def keyturn_ops(material: KeyMaterial) -> Ops | None:
            ...  # return None for an algorithm keyturn does not offer
            return Ops(sign=lambda: issue(...), verify=lambda: verify(token, ...))
    """
    return None
