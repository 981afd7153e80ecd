"""Test a service protected by keyturn's guard without running a keyturn server.

:class:`TokenFactory` holds a throwaway signing key (ES256 unless told otherwise),
mints access tokens with any roles, scopes, expiry or extra claims, and builds a
:class:`~keyturn.guard.Guard` that trusts it. That guard is the real one — discovery,
JWKS cache, verifier, API-key exchange — talking to an in-memory issuer over
:class:`httpx.MockTransport`: no network, no database, no server process.

    from keyturn.testing import keyturn_tokens   # in conftest.py: registers the fixture

    def test_orders(keyturn_tokens):
        app = create_app(guard=keyturn_tokens.guard())
        headers = keyturn_tokens.headers(roles=["user"], scopes=["orders:read"])

Or ``pytest_plugins = ["keyturn.testing"]`` in the top-level ``conftest.py``. Tokens
from another factory (another key) are the natural "invalid token" case;
``mint(expired=True)`` the expired one.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any, Final

import httpx
from joserfc import jws
from joserfc.errors import SecurityWarning

from keyturn.clock import Clock, SystemClock
from keyturn.crypto.access_tokens import TOKEN_TYPE
from keyturn.crypto.keys import KeyRing, SigningKey, generate_signing_key
from keyturn.guard.api_keys import token_endpoint
from keyturn.guard.jwks import discovery_url
from keyturn.guard.verifier import Guard

__all__ = ["DEFAULT_TEST_ISSUER", "TokenFactory", "keyturn_tokens"]

#: An issuer nobody can reach: the factory's guard only ever talks to the mock transport.
DEFAULT_TEST_ISSUER: Final = "https://keyturn.test"
_TEST_CLIENT_ID: Final = "keyturn-testing"


@dataclass(frozen=True, slots=True)
class _ApiKey:
    sub: str
    claims: Mapping[str, Any]


class TokenFactory:
    """Mints access tokens from a throwaway key, and guards that trust exactly that key."""

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_TEST_ISSUER,
        audience: str = "keyturn",
        algorithm: str = "ES256",
        clock: Clock | None = None,
        access_ttl: int = 900,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.clock: Clock = clock or SystemClock()
        self.access_ttl = access_ttl
        self.key: SigningKey = generate_signing_key(algorithm, now=self.clock.now())
        self._api_keys: dict[str, _ApiKey] = {}
        #: Requests the in-memory issuer answered, for tests of the guard's caching.
        self.requests: list[httpx.Request] = []

    # --- tokens -----------------------------------------------------------------

    def mint(
        self,
        sub: str = "user-1",
        *,
        email: str | None = None,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        expires_in: int | None = None,
        expired: bool = False,
        **claims: Any,
    ) -> str:
        """A signed access token for ``sub``; ``claims`` add to or override the standard ones.

        ``expired=True`` gives a token an hour past its ``exp``, beyond any leeway.
        """
        now = int(self.clock.now())
        lifetime = -3600 if expired else (self.access_ttl if expires_in is None else expires_in)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now if lifetime > 0 else now + lifetime - 60,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
            "client_id": _TEST_CLIENT_ID,
            "roles": list(roles),
            "scope": " ".join(scopes),
        }
        if email is not None:
            payload["email"] = email
        payload.update(claims)
        header = {"alg": self.key.alg, "typ": TOKEN_TYPE, "kid": self.key.kid}
        body = json.dumps(payload, separators=(",", ":"))
        with warnings.catch_warnings():
            # joserfc flags the name EdDSA (RFC 9864); keyturn publishes it on purpose, like its server.
            warnings.simplefilter("ignore", SecurityWarning)
            return jws.serialize_compact(header, body, self.key.key, algorithms=[self.key.alg])

    def headers(self, sub: str = "user-1", **mint_options: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for a freshly minted token."""
        return {"Authorization": f"Bearer {self.mint(sub, **mint_options)}"}

    def api_key(self, sub: str = "user-1", **mint_options: Any) -> str:
        """An API key the factory's guards exchange for a token minted with these options."""
        key = "ktk_test_" + secrets.token_urlsafe(24)
        self._api_keys[key] = _ApiKey(sub=sub, claims=mint_options)
        return key

    def jwks(self) -> dict[str, Any]:
        """The JWK Set publishing the factory's public key, as keyturn's server would."""
        return KeyRing([self.key]).jwks(self.clock.now())

    # --- the in-memory issuer and the guard -------------------------------------------

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if request.method == "GET" and url == discovery_url(self.issuer):
            jwks_uri = self.issuer.rstrip("/") + "/.well-known/jwks.json"
            return httpx.Response(200, json={"issuer": self.issuer, "jwks_uri": jwks_uri})
        if request.method == "GET" and url.endswith("/.well-known/jwks.json"):
            return httpx.Response(200, json=self.jwks(), headers={"Cache-Control": "public, max-age=300"})
        if request.method == "POST" and url == token_endpoint(self.issuer):
            return self._exchange(request)
        return httpx.Response(404, json={"success": False, "error": {"code": "NOT_FOUND", "message": "Not found."}})

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        presented = json.loads(request.content or b"{}").get("api_key")
        known = self._api_keys.get(presented) if isinstance(presented, str) else None
        if known is None:
            error = {"code": "TOKEN_INVALID", "message": "The API key is not valid."}
            return httpx.Response(401, json={"success": False, "error": error})
        token = self.mint(known.sub, **known.claims)
        data = {"access_token": token, "token_type": "Bearer", "expires_in": self.access_ttl, "scope": ""}
        return httpx.Response(200, json={"success": True, "data": data})

    @property
    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering as the issuer would: discovery, JWKS, ``POST /auth/token``."""
        return httpx.MockTransport(self._answer)

    def guard(self, **options: Any) -> Guard:
        """A :class:`Guard` trusting this factory's key (leeway 0 unless given), wired to the mock issuer."""
        options.setdefault("leeway", 0)
        return Guard(
            issuer=self.issuer,
            audience=self.audience,
            clock=self.clock,
            http_client=httpx.Client(transport=self.transport),
            async_http_client=httpx.AsyncClient(transport=self.transport),
            **options,
        )


def _keyturn_tokens() -> TokenFactory:
    """A fresh :class:`TokenFactory` per test."""
    return TokenFactory()


#: The pytest fixture ``keyturn_tokens`` (a plain factory function when pytest is absent).
keyturn_tokens: Any = _keyturn_tokens
if find_spec("pytest") is not None:
    import pytest

    keyturn_tokens = pytest.fixture(name="keyturn_tokens")(_keyturn_tokens)
