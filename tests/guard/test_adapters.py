"""Every adapter answers the same way: FastAPI dependency, ASGI middleware (Starlette), Flask decorator.

One table of cases — allowed, missing, invalid, expired, wrong role, wrong scope, and
their variants — runs against each adapter, each guarding a route that needs the
role ``staff`` and the scope ``orders:read``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
from keyturn.guard.responses import http_error_response
from keyturn.testing import TokenFactory

pytestmark = pytest.mark.anyio

ROLES = ["staff"]
SCOPES = ["orders:read"]
Answer = tuple[int, dict[str, str], dict[str, Any]]
Caller = Callable[[dict[str, str]], Awaitable[Answer]]


def fastapi_app(guard: Guard) -> httpx.AsyncClient:
    app = install_fastapi(FastAPI())

    @app.get("/protected")
    async def protected(principal: Principal = Depends(guard.require(roles=ROLES, scopes=SCOPES))) -> dict[str, Any]:  # noqa: B008
        return {"sub": principal.sub, "scopes": sorted(principal.scopes)}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def starlette_app(guard: Guard) -> httpx.AsyncClient:
    async def protected(request: Request) -> JSONResponse:
        principal: Principal = request.state.principal
        return JSONResponse({"sub": principal.sub, "scopes": sorted(principal.scopes)})

    app = Starlette(
        routes=[Route("/protected", protected)],
        middleware=[Middleware(GuardMiddleware, guard=guard, roles=ROLES, scopes=SCOPES)],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def flask_app(guard: Guard) -> flask.testing.FlaskClient:
    app = install_flask(flask.Flask(__name__))

    @app.get("/protected")
    @guard.flask_required(roles=ROLES, scopes=SCOPES)
    def protected() -> dict[str, Any]:
        principal = current_principal()
        assert flask.g.principal is principal
        return {"sub": principal.sub, "scopes": sorted(principal.scopes)}

    return app.test_client()


def make_caller(adapter: str, guard: Guard) -> Caller:
    """A function sending GET /protected with some headers to ``adapter``'s app."""
    if adapter == "flask":
        client = flask_app(guard)

        async def call_flask(headers: dict[str, str]) -> Answer:
            response = client.get("/protected", headers=headers)
            return response.status_code, dict(response.headers), response.get_json()

        return call_flask
    build = fastapi_app if adapter == "fastapi" else starlette_app

    async def call_asgi(headers: dict[str, str]) -> Answer:
        async with build(guard) as client:
            response = await client.get("/protected", headers=headers)
        return response.status_code, dict(response.headers), response.json()

    return call_asgi


@dataclass(frozen=True)
class Case:
    headers: Callable[[TokenFactory], dict[str, str]]
    status: int
    code: str | None = None


def _stranger(_: TokenFactory) -> dict[str, str]:
    return TokenFactory().headers(roles=ROLES, scopes=SCOPES)


CASES = {
    "allowed": Case(lambda f: f.headers(roles=ROLES, scopes=SCOPES), 200),
    "allowed-with-more-roles-and-scopes": Case(
        lambda f: f.headers(roles=["staff", "admin"], scopes=["orders:read", "orders:write"]), 200
    ),
    "missing": Case(lambda f: {}, 401, "UNAUTHORIZED"),
    "other-scheme": Case(lambda f: {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "UNAUTHORIZED"),
    "empty-bearer": Case(lambda f: {"Authorization": "Bearer "}, 401, "UNAUTHORIZED"),
    "invalid-garbage": Case(lambda f: {"Authorization": "Bearer not.a.jwt"}, 401, "TOKEN_INVALID"),
    "invalid-other-key": Case(_stranger, 401, "TOKEN_INVALID"),
    "invalid-audience": Case(lambda f: f.headers(roles=ROLES, scopes=SCOPES, aud="other-api"), 401, "TOKEN_INVALID"),
    "expired": Case(lambda f: f.headers(roles=ROLES, scopes=SCOPES, expired=True), 401, "TOKEN_EXPIRED"),
    "wrong-role": Case(lambda f: f.headers(roles=["user"], scopes=SCOPES), 403, "FORBIDDEN"),
    "wrong-scope": Case(lambda f: f.headers(roles=ROLES, scopes=["orders:write"]), 403, "FORBIDDEN"),
    "api-key": Case(lambda f: {"X-API-Key": f.api_key(roles=ROLES, scopes=SCOPES)}, 200),
    "api-key-unknown": Case(lambda f: {"X-API-Key": "ktk_nobody_knows_this_one"}, 401, "TOKEN_INVALID"),
    "api-key-wrong-scope": Case(lambda f: {"X-API-Key": f.api_key(roles=ROLES)}, 403, "FORBIDDEN"),
}
ADAPTERS = ["fastapi", "asgi-starlette", "flask"]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_adapter_answers_in_the_contract_envelope(adapter: str, case: Case, keyturn_tokens: TokenFactory) -> None:
    """Each adapter admits or refuses with the contract's status, code and headers."""
    call = make_caller(adapter, keyturn_tokens.guard())
    status, headers, body = await call(case.headers(keyturn_tokens))
    assert status == case.status, body
    if case.code is None:
        assert body == {"sub": "user-1", "scopes": sorted(body["scopes"])}
        assert set(SCOPES) <= set(body["scopes"])
        return
    assert body == {"success": False, "error": {"code": case.code, "message": body["error"]["message"]}}
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["cache-control"] == "no-store"
    if status == 401:
        challenge = lowered["www-authenticate"]
        assert challenge.startswith('Bearer realm="keyturn"')
        assert ('error="invalid_token"' in challenge) == (case.code != "UNAUTHORIZED")


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_adapter_answers_503_when_the_issuer_is_unreachable(adapter: str, keyturn_tokens: TokenFactory) -> None:
    """With no keys to be had, a valid-looking token gets SERVICE_UNAVAILABLE, not a 401."""
    transport = httpx.MockTransport(lambda request: httpx.Response(502))
    guard = Guard(
        issuer=keyturn_tokens.issuer,
        audience=keyturn_tokens.audience,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )
    status, headers, body = await make_caller(adapter, guard)(keyturn_tokens.headers(roles=ROLES, scopes=SCOPES))
    assert (status, body["error"]["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "1"


async def test_fastapi_dependency_without_api_keys_ignores_x_api_key(keyturn_tokens: TokenFactory) -> None:
    """With api_key_exchange=False an X-API-Key is no credential, and /docs does not offer it."""
    guard = keyturn_tokens.guard(api_key_exchange=False)
    call = make_caller("fastapi", guard)
    status, _, body = await call({"X-API-Key": keyturn_tokens.api_key(roles=ROLES, scopes=SCOPES)})
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")
    app = install_fastapi(FastAPI())

    @app.get("/p")
    async def p(_: Principal = Depends(guard.require())) -> None:  # noqa: B008
        return None

    schemes = app.openapi()["components"]["securitySchemes"]
    assert set(schemes) == {"HTTPBearer"}


async def test_fastapi_openapi_offers_bearer_and_api_key(keyturn_tokens: TokenFactory) -> None:
    """The dependency declares both security schemes, so /docs has an Authorize button for each."""
    guard = keyturn_tokens.guard()
    app = FastAPI()

    @app.get("/p")
    async def p(_: Principal = Depends(guard.require())) -> None:  # noqa: B008
        return None

    schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


async def test_fastapi_install_answers_framework_errors_in_the_envelope(keyturn_tokens: TokenFactory) -> None:
    """Unknown routes, wrong methods and bad bodies answer in the envelope once install() ran."""
    app = install_fastapi(FastAPI())

    @app.post("/items")
    async def items(qty: int) -> dict[str, int]:
        return {"qty": qty}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        missing = await client.get("/nope")
        method = await client.get("/items")
        invalid = await client.post("/items?qty=many")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert (method.status_code, method.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert method.headers["allow"] == "POST"
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (422, "VALIDATION_ERROR")
    assert set(invalid.json()["error"]["fields"]) == {"qty"}


def test_flask_install_answers_framework_errors_in_the_envelope() -> None:
    """Unknown routes and wrong methods answer in the envelope once install() ran."""
    app = install_flask(flask.Flask(__name__))

    @app.post("/items")
    def items() -> dict[str, int]:
        return {}

    client = app.test_client()
    missing, method = client.get("/nope"), client.get("/items")
    assert (missing.status_code, missing.get_json()["error"]["code"]) == (404, "NOT_FOUND")
    assert (method.status_code, method.get_json()["error"]["code"]) == (404, "NOT_FOUND")
    assert "POST" in method.headers["allow"]


def test_flask_current_principal_outside_a_guarded_view_is_unauthorized() -> None:
    """current_principal() in a view without the decorator answers 401, not a crash."""
    app = install_flask(flask.Flask(__name__))

    @app.get("/open")
    def open_view() -> dict[str, str]:
        return {"sub": current_principal().sub}

    response = app.test_client().get("/open")
    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (400, 422, "VALIDATION_ERROR"),
        (401, 401, "UNAUTHORIZED"),
        (403, 403, "FORBIDDEN"),
        (404, 404, "NOT_FOUND"),
        (405, 404, "NOT_FOUND"),
        (413, 413, "PAYLOAD_TOO_LARGE"),
        (415, 422, "VALIDATION_ERROR"),
        (500, 500, "INTERNAL_ERROR"),
    ],
    ids=str,
)
def test_framework_errors_map_to_the_servers_codes(status: int, answer: int, code: str) -> None:
    """A framework's HTTP error becomes the code the auth server uses for it (docs/api.md)."""
    got, headers, body = http_error_response(status, allow="GET")
    assert (got, body["error"]["code"]) == (answer, code)
    assert ("Allow" in headers) == (status == 405)
