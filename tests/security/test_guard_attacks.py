"""The attack corpus against every guard adapter: FastAPI dependency, ASGI middleware, Flask decorator.

Each adapter guards a small app of its framework; the guard learns the issuer's keys
from the real auth server's discovery document and JWKS (served through an httpx
mock transport that records every URL the guard asks for). Every attack must be
answered 401 with the same code as the server gives, and the guard must never ask
for anything but the issuer's discovery document and JWKS — nor reach the
attacker's server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyturn.guard import Guard, GuardMiddleware, Principal
from keyturn.guard.fastapi import install as install_fastapi
from keyturn.guard.flask import current_principal
from keyturn.guard.flask import install as install_flask
from tests.security.attacks import ATTACKS, Attack
from tests.security.conftest import AUDIENCE, HMAC_SECRET, ISSUER, Issuer, Lure

pytestmark = [
    pytest.mark.anyio,
    # The guard runs for the default (asymmetric) mode and the HMAC mode.
    pytest.mark.parametrize("issuer", ["ES256", "HS256"], indirect=True),
]

ADAPTERS = ("fastapi", "asgi-middleware", "flask")
Answer = tuple[int, dict[str, str], dict[str, Any]]


@dataclass
class GuardedApp:
    """One framework app behind a guard: a way to call it and the URLs its guard fetched."""

    adapter: str
    call: Callable[[str], Awaitable[Answer]]
    fetched: list[str]


class IssuerMirror:
    """Serves the issuer's real discovery document and JWKS to the guard, recording each URL asked for."""

    def __init__(self, discovery: dict[str, Any], jwks: dict[str, Any]) -> None:
        self.documents = {"/.well-known/openid-configuration": discovery, "/.well-known/jwks.json": jwks}
        self.fetched: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetched.append(str(request.url))
        document = self.documents.get(request.url.path) if request.url.host == "auth.keyturn.test" else None
        if document is None:
            return httpx.Response(404)
        return httpx.Response(200, json=document, headers={"Cache-Control": "public, max-age=300"})


def _fastapi(guard: Guard) -> Callable[[str], Awaitable[Answer]]:
    app = install_fastapi(FastAPI())

    @app.get("/orders")
    async def orders(principal: Principal = Depends(guard.require())) -> dict[str, str]:  # noqa: B008
        return {"sub": principal.sub}

    return _asgi_caller(app)


def _middleware(guard: Guard) -> Callable[[str], Awaitable[Answer]]:
    async def orders(request: Request) -> JSONResponse:
        principal: Principal = request.state.principal
        return JSONResponse({"sub": principal.sub})

    app = Starlette(routes=[Route("/orders", orders)], middleware=[Middleware(GuardMiddleware, guard=guard)])
    return _asgi_caller(app)


def _asgi_caller(app: Any) -> Callable[[str], Awaitable[Answer]]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")

    async def call(token: str) -> Answer:
        response = await client.get("/orders", headers={b"Authorization": b"Bearer " + token.encode("utf-8")})
        return response.status_code, dict(response.headers), response.json()

    return call


def _flask(guard: Guard) -> Callable[[str], Awaitable[Answer]]:
    app = install_flask(flask.Flask(__name__))

    @app.get("/orders")
    @guard.flask_required()
    def orders() -> dict[str, str]:
        return {"sub": current_principal().sub}

    client = app.test_client()

    async def call(token: str) -> Answer:
        # WSGI headers are latin-1 strings: a token's non-ASCII bytes arrive as such characters.
        value = "Bearer " + token.encode("utf-8").decode("latin-1")
        response = client.get("/orders", headers={"Authorization": value})
        return response.status_code, dict(response.headers), response.get_json()

    return call


@pytest.fixture(scope="module", params=ADAPTERS)
async def guarded(request: pytest.FixtureRequest, issuer: Issuer) -> AsyncIterator[GuardedApp]:
    """A guard of ``issuer`` behind one adapter, shared by the module's tests for that pair."""
    discovery = (await issuer.client.get("/.well-known/openid-configuration")).json()
    mirror = IssuerMirror(discovery, dict(issuer.forge.jwks))
    transport = httpx.MockTransport(mirror)
    options: dict[str, Any] = {"secret": HMAC_SECRET, "algorithm": issuer.alg} if issuer.alg.startswith("HS") else {}
    guard = Guard(
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=issuer.clock,
        api_key_exchange=False,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
        **options,
    )
    build = {"fastapi": _fastapi, "asgi-middleware": _middleware, "flask": _flask}[str(request.param)]
    yield GuardedApp(str(request.param), build(guard), mirror.fetched)
    await guard.aclose()


def _assert_refused(answer: Answer, code: str) -> None:
    status, headers, body = answer
    assert status == 401, body
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["www-authenticate"].startswith("Bearer")


async def test_the_genuine_token_is_accepted(guarded: GuardedApp, issuer: Issuer) -> None:
    """Control: the attacker's own, untouched token passes the guard."""
    status, _, body = await guarded.call(issuer.forge.genuine)
    assert status == 200, body
    assert body == {"sub": issuer.user_id}


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
async def test_attack_is_refused(guarded: GuardedApp, issuer: Issuer, lure: Lure, attack: Attack) -> None:
    """The attack is answered 401 with the contract code; the guard fetched only the issuer's documents."""
    _assert_refused(await guarded.call(attack.build(issuer.forge)), attack.expect)
    assert all(url.startswith(f"{ISSUER}/.well-known/") for url in guarded.fetched), guarded.fetched
    assert lure.requests == []
