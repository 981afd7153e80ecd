"""Security-suite fixtures: one real auth server per algorithm and module, and the attacker's server.

The attacker's server is a real HTTP server on loopback (``http.server`` in a thread)
serving a JWK Set and a certificate of the attacker's key; it records every request
it receives, and the suite asserts it never receives any.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from keyturn.clock import FrozenClock
from keyturn.server.app import create_app
from keyturn.settings import load_settings
from tests.conftest import PASSWORD, login, register
from tests.security.attacks import AttackerKey, Forge, attacker_key, raw_sign

ISSUER = "https://auth.keyturn.test"
AUDIENCE = "orders-api"
#: The server algorithms the corpus runs against: one per key family, and the HMAC mode.
SERVER_ALGORITHMS = ("ES256", "RS256", "EdDSA", "HS256")
HMAC_SECRET = "s" * 48


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like a JWKS host would, and writes down who asked."""

    server: _LureServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path.endswith("jwks.json"):
            body = json.dumps({"keys": [self.server.key.public_jwk]}).encode()
        else:
            body = self.server.key.certificate_der
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _LureServer(http.server.ThreadingHTTPServer):
    def __init__(self, key: AttackerKey) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.key = key
        self.requests: list[str] = []


@dataclass
class Lure:
    """The attacker's server: its base URL, its key, and every path requested from it."""

    url: str
    key: AttackerKey
    requests: list[str]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def lure() -> Iterator[Lure]:
    """A live attacker's HTTP server on loopback, for the module."""
    server = _LureServer(attacker_key())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Lure(f"http://127.0.0.1:{server.server_address[1]}", server.key, server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Issuer:
    """A running auth server, a client for it, and the forge its attacks are built from."""

    alg: str
    app: FastAPI
    client: httpx.AsyncClient
    clock: FrozenClock
    forge: Forge
    user_id: str


def settings_for(alg: str, data_dir: Path, **overrides: Any) -> Any:
    """Settings of a security-suite server: SQLite in ``data_dir``, the cheap test hash."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'keyturn.db'}",
        "password_profile": "test-only-cheap",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithm": alg,
    }
    if alg.startswith("HS"):
        values["secret"] = HMAC_SECRET
    values.update(overrides)
    return load_settings(**values)


@asynccontextmanager
async def running_issuer(alg: str, data_dir: Path, lure: Lure, **overrides: Any) -> AsyncIterator[Issuer]:
    """Start the auth server for ``alg``, register and log in the attacker's own account."""
    clock = FrozenClock(1_800_000_000.0)
    app = create_app(settings_for(alg, data_dir, **overrides), clock=clock)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)), base_url="http://keyturn.test"
        ) as client,
    ):
        user = await register(client, "mallory@example.com")
        genuine = (await login(client, "mallory@example.com", PASSWORD))["access_token"]
        jwks = (await client.get("/.well-known/jwks.json")).json()
        signing = app.state.services.keys.ring.signing_key

        def sign(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes) -> str:
            return raw_sign(signing.alg, signing.key, header, payload)

        forge = Forge(
            issuer=ISSUER,
            audience=AUDIENCE,
            now=clock.now(),
            jwks=jwks,
            genuine=genuine,
            sign=sign,
            attacker_url=lure.url,
            attacker=lure.key,
        )
        yield Issuer(alg, app, client, clock, forge, user["id"])


@pytest.fixture(scope="module", params=SERVER_ALGORITHMS)
async def issuer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, lure: Lure
) -> AsyncIterator[Issuer]:
    """One auth server per algorithm, shared by the module's tests (the corpus is read-only)."""
    alg = str(request.param)
    async with running_issuer(alg, tmp_path_factory.mktemp(f"issuer-{alg}"), lure) as running:
        yield running


def bearer_bytes(token: str) -> dict[bytes, bytes]:
    """An Authorization header that carries any token, even one with non-ASCII bytes."""
    return {b"Authorization": b"Bearer " + token.encode("utf-8")}


__all__ = ["AUDIENCE", "HMAC_SECRET", "ISSUER", "Issuer", "Lure", "bearer_bytes", "running_issuer", "settings_for"]
