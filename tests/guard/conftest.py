"""Guard fixtures: the ``keyturn_tokens`` factory (as downstream services use it) and a fake issuer.

:class:`FakeIssuer` signs with the server's own :func:`issue_access_token` and answers
discovery and JWKS requests through :class:`httpx.MockTransport`, counting them, so
caching and refetch rules are checked by counting requests while a frozen clock moves.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from joserfc.jwk import OctKey

from keyturn.clock import FrozenClock
from keyturn.crypto.access_tokens import issue_access_token
from keyturn.crypto.keys import KeyRing, SigningKey, generate_signing_key
from keyturn.guard import Guard
from keyturn.testing import keyturn_tokens

__all__ = ["ISSUER", "FakeIssuer", "keyturn_tokens"]

ISSUER = "https://issuer.test"
AUDIENCE = "orders-api"


class FakeIssuer:
    """An in-memory issuer: a key ring, a JWKS endpoint with a settable Cache-Control, an off switch."""

    def __init__(self, clock: FrozenClock, *, alg: str = "ES256") -> None:
        self.clock = clock
        self.alg = alg
        self.keys: list[SigningKey] = [generate_signing_key(alg, now=clock.now())]
        self.cache_control: str | None = "public, max-age=300"
        self.extra_headers: dict[str, str] = {}
        self.down = False
        self.jwks_override: Any = None
        self.discovery: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/.well-known/jwks.json"}
        self.hits: Counter[str] = Counter()

    def rotate(self) -> SigningKey:
        """Publish and sign with a new key; the old ones stay published."""
        self.keys.append(generate_signing_key(self.alg, now=self.clock.now() + len(self.keys)))
        return self.keys[-1]

    def token(self, *, key: SigningKey | None = None, encryption_key: OctKey | None = None, **claims: Any) -> str:
        """A token as keyturn's server issues it."""
        options: dict[str, Any] = {"subject": "user-1", "ttl": 900, "roles": ["user"], "scope": "orders:read"}
        options.update(claims)
        issued = issue_access_token(
            key or self.keys[-1],
            issuer=ISSUER,
            audience=AUDIENCE,
            now=self.clock.now(),
            encryption_key=encryption_key,
            **options,
        )
        return issued.token

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] += 1
        if self.down:
            return httpx.Response(503)
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if path == "/.well-known/jwks.json":
            headers = dict(self.extra_headers)
            if self.cache_control is not None:
                headers["Cache-Control"] = self.cache_control
            body = self.jwks_override if self.jwks_override is not None else KeyRing(self.keys).jwks(self.clock.now())
            if isinstance(body, bytes):
                return httpx.Response(200, content=body, headers=headers)
            return httpx.Response(200, json=body, headers=headers)
        return httpx.Response(404)

    @property
    def jwks_fetches(self) -> int:
        return self.hits["/.well-known/jwks.json"]

    def guard(self, **options: Any) -> Guard:
        """A guard of this issuer, on the frozen clock, over the mock transport."""
        transport = httpx.MockTransport(self.handle)
        options.setdefault("audience", AUDIENCE)
        return Guard(
            issuer=ISSUER,
            clock=self.clock,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            **options,
        )


@pytest.fixture
def issuer(clock: FrozenClock) -> FakeIssuer:
    return FakeIssuer(clock)


@pytest.fixture
def no_keyturn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KEYTURN_* variable leaks into a test of the guard's environment handling."""
    for name in ("KEYTURN_ISSUER", "KEYTURN_AUDIENCE", "KEYTURN_LEEWAY"):
        monkeypatch.delenv(name, raising=False)
