"""The orders examples, in process, with keyturn.testing's tokens: FastAPI and Flask answer alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from examples import orders_api, orders_flask
from keyturn.guard import Guard
from keyturn.testing import TokenFactory

pytestmark = pytest.mark.anyio

Answer = tuple[int, dict[str, Any]]
Call = Callable[..., Awaitable[Answer]]
USER_SCOPES = ["orders:read", "orders:write"]


@asynccontextmanager
async def serve(kind: str, guard: Guard) -> AsyncIterator[Call]:
    """``call(method, path, headers=..., json=...)`` against the FastAPI or the Flask example."""
    if kind == "flask":
        client = orders_flask.create_app(guard).test_client()

        async def call_flask(method: str, path: str, **kwargs: Any) -> Answer:
            response = client.open(path, method=method, **kwargs)
            return response.status_code, response.get_json()

        yield call_flask
        return
    app = orders_api.create_app(guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders.test") as client_:

        async def call_fastapi(method: str, path: str, **kwargs: Any) -> Answer:
            response = await client_.request(method, path, **kwargs)
            return response.status_code, response.json()

        yield call_fastapi


@pytest.fixture(params=["fastapi", "flask"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each test runs against both examples."""
    return str(request.param)


def user(factory: TokenFactory, sub: str, *roles: str, scopes: list[str] = USER_SCOPES) -> dict[str, str]:
    return factory.headers(sub, roles=list(roles or ["user"]), scopes=scopes)


async def test_users_see_their_own_orders_and_admins_see_all(kind: str, keyturn_tokens: TokenFactory) -> None:
    """Alice and Bob each see one order; the admin sees both."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        status, placed = await call(
            "POST", "/api/orders", headers=user(keyturn_tokens, "alice"), json={"item": "tea", "qty": 2}
        )
        assert status == 201
        order = placed["data"]["order"]
        assert set(order) == {"id", "item", "qty", "owner", "created_at"}
        assert (order["item"], order["qty"], order["owner"]) == ("tea", 2, "alice")
        assert order["created_at"].endswith("Z")
        await call("POST", "/api/orders", headers=user(keyturn_tokens, "bob"), json={"item": "jam", "qty": 1})

        _, alice = await call("GET", "/api/orders", headers=user(keyturn_tokens, "alice"))
        _, admin = await call("GET", "/api/orders", headers=user(keyturn_tokens, "root", "admin"))
    assert alice == {"success": True, "data": {"orders": [order]}}
    assert sorted(o["owner"] for o in admin["data"]["orders"]) == ["alice", "bob"]


async def test_only_admins_delete(kind: str, keyturn_tokens: TokenFactory) -> None:
    """DELETE needs the admin role: the owner gets FORBIDDEN, the admin removes it, then NOT_FOUND."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        _, placed = await call(
            "POST", "/api/orders", headers=user(keyturn_tokens, "alice"), json={"item": "tea", "qty": 1}
        )
        path = f"/api/orders/{placed['data']['order']['id']}"
        status, body = await call("DELETE", path, headers=user(keyturn_tokens, "alice"))
        assert (status, body["error"]["code"]) == (403, "FORBIDDEN")
        status, body = await call("DELETE", path, headers=user(keyturn_tokens, "root", "admin", scopes=[]))
        assert (status, body["data"]["order"]["owner"]) == (200, "alice")
        status, body = await call("DELETE", path, headers=user(keyturn_tokens, "root", "admin", scopes=[]))
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
        _, left = await call("GET", "/api/orders", headers=user(keyturn_tokens, "root", "admin"))
    assert left["data"]["orders"] == []


@pytest.mark.parametrize(
    ("method", "scopes", "status", "code"),
    [
        ("GET", ["orders:write"], 403, "FORBIDDEN"),
        ("POST", ["orders:read"], 403, "FORBIDDEN"),
        ("GET", ["orders:read"], 200, None),
        ("POST", ["orders:write"], 201, None),
    ],
    ids=["read-needs-orders-read", "write-needs-orders-write", "read-ok", "write-ok"],
)
async def test_scopes_guard_each_route(
    kind: str, keyturn_tokens: TokenFactory, method: str, scopes: list[str], *, status: int, code: str | None
) -> None:
    """GET needs orders:read and POST orders:write, whatever the roles."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        got, body = await call(
            method, "/api/orders", headers=user(keyturn_tokens, "a", scopes=scopes), json={"item": "x", "qty": 1}
        )
    assert got == status
    assert body["success"] is (code is None)
    if code is not None:
        assert body["error"]["code"] == code


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (lambda f: {}, "UNAUTHORIZED"),
        (lambda f: {"Authorization": "Bearer x.y.z"}, "TOKEN_INVALID"),
        (lambda f: f.headers(scopes=USER_SCOPES, expired=True), "TOKEN_EXPIRED"),
        (lambda f: TokenFactory().headers(scopes=USER_SCOPES), "TOKEN_INVALID"),
    ],
    ids=["missing", "garbage", "expired", "foreign-key"],
)
async def test_refusals_use_the_contract(
    kind: str, keyturn_tokens: TokenFactory, headers: Callable[[TokenFactory], dict[str, str]], code: str
) -> None:
    """Missing, malformed, expired or foreign tokens are 401 with the contract's code."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        status, body = await call("GET", "/api/orders", headers=headers(keyturn_tokens))
    assert (status, body["success"], body["error"]["code"]) == (401, False, code)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"item": "", "qty": 1}, {"item"}),
        ({"item": "   ", "qty": 1}, {"item"}),
        ({"item": "x" * 201, "qty": 1}, {"item"}),
        ({"item": "tea", "qty": 0}, {"qty"}),
        ({"item": "tea", "qty": "2"}, {"qty"}),
        ({"item": "tea", "qty": True}, {"qty"}),
        ({"item": "tea"}, {"qty"}),
        ({"item": "tea", "qty": 1, "owner": "mallory"}, {"owner"}),
    ],
    ids=["empty-item", "blank-item", "long-item", "zero-qty", "string-qty", "bool-qty", "no-qty", "extra-field"],
)
async def test_bad_order_bodies_are_validation_errors(
    kind: str, keyturn_tokens: TokenFactory, body: dict[str, Any], fields: set[str]
) -> None:
    """A malformed order is VALIDATION_ERROR naming the field, and nothing is stored."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        status, answer = await call("POST", "/api/orders", headers=user(keyturn_tokens, "a"), json=body)
        _, listed = await call("GET", "/api/orders", headers=user(keyturn_tokens, "a"))
    assert (status, answer["error"]["code"]) == (422, "VALIDATION_ERROR")
    assert set(answer["error"]["fields"]) == fields
    assert listed["data"]["orders"] == []


async def test_api_key_callers_are_served(kind: str, keyturn_tokens: TokenFactory) -> None:
    """X-API-Key is exchanged by the guard; the key's scopes decide what it may do."""
    key = keyturn_tokens.api_key("svc", roles=["user"], scopes=["orders:read"])
    async with serve(kind, keyturn_tokens.guard()) as call:
        read, _ = await call("GET", "/api/orders", headers={"X-API-Key": key})
        write, body = await call("POST", "/api/orders", headers={"X-API-Key": key}, json={"item": "x", "qty": 1})
    assert read == 200
    assert (write, body["error"]["code"]) == (403, "FORBIDDEN")


async def test_health_is_public(kind: str, keyturn_tokens: TokenFactory) -> None:
    """/healthz answers without credentials, in the envelope."""
    async with serve(kind, keyturn_tokens.guard()) as call:
        assert await call("GET", "/healthz") == (200, {"success": True, "data": {"status": "ok"}})


def test_app_is_built_from_keyturn_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    """`module:app` builds the app on first access from KEYTURN_ISSUER alone."""
    monkeypatch.setenv("KEYTURN_ISSUER", "http://127.0.0.1:8000")
    try:
        assert orders_api.app.title.startswith("orders")
        assert orders_flask.app.name == "examples.orders_flask"
        assert orders_api.app is orders_api.app
    finally:
        vars(orders_api).pop("app", None)
        vars(orders_flask).pop("app", None)
    with pytest.raises(AttributeError):
        _ = orders_api.nothing_here
