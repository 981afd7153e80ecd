"""The pure ASGI middleware, without any framework: scope keys, exempt paths, WebSockets, lifespan."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from keyturn.guard import GuardMiddleware, Unauthorized, principal_of
from keyturn.guard.asgi import PRINCIPAL_SCOPE_KEY
from keyturn.testing import TokenFactory

pytestmark = pytest.mark.anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class Echo:
    """A bare ASGI app answering with the principal's subject (or "anonymous")."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] != "http":
            return
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        body = (principal.sub if principal else "anonymous").encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


async def test_principal_is_on_the_scope_and_in_state(keyturn_tokens: TokenFactory) -> None:
    """A verified request reaches the app with the principal under both scope keys."""
    echo = Echo()
    app = GuardMiddleware(echo, keyturn_tokens.guard())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        response = await client.get("/x", headers=keyturn_tokens.headers("alice", roles=["user"]))
    assert response.text == "alice"
    scope = echo.scopes[0]
    assert principal_of(scope) is scope["state"]["principal"]
    assert principal_of(scope).roles == frozenset({"user"})


async def test_exempt_paths_pass_without_credentials(keyturn_tokens: TokenFactory) -> None:
    """Exactly the exempt paths are public; a path that merely starts like one is not."""
    app = GuardMiddleware(Echo(), keyturn_tokens.guard(), exempt=["/healthz"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        public = await client.get("/healthz")
        lookalike = await client.get("/healthz-admin")
    assert (public.status_code, public.text) == (200, "anonymous")
    assert lookalike.status_code == 401
    assert lookalike.headers["content-type"] == "application/json"


async def test_websocket_handshake_without_token_is_closed_with_policy_violation(keyturn_tokens: TokenFactory) -> None:
    """A WebSocket without credentials is refused with close code 1008 and never reaches the app."""
    echo = Echo()
    app = GuardMiddleware(echo, keyturn_tokens.guard())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert echo.scopes == []


async def test_websocket_with_token_reaches_the_app(keyturn_tokens: TokenFactory) -> None:
    """A WebSocket handshake carrying a valid token is passed through with its principal."""
    echo = Echo()
    app = GuardMiddleware(echo, keyturn_tokens.guard())
    token = keyturn_tokens.mint("bob")
    scope = {"type": "websocket", "path": "/ws", "headers": [(b"authorization", f"Bearer {token}".encode())]}

    async def nothing() -> Message:
        return {}

    async def ignore(_: Message) -> None:
        return None

    await app(scope, nothing, ignore)
    assert principal_of(echo.scopes[0]).sub == "bob"


@pytest.mark.parametrize(
    ("name", "scheme"),
    [
        (b"authorization", "Bearer"),
        (b"Authorization", "Bearer"),
        (b"AUTHORIZATION", "bearer"),
        (b"authorization", "BEARER"),
    ],
    ids=["lowercase", "capitalised-name", "uppercase-name", "uppercase-scheme"],
)
async def test_header_name_and_scheme_case_do_not_matter_on_a_cache_hit_either(
    keyturn_tokens: TokenFactory, name: bytes, scheme: str
) -> None:
    """ASGI servers lowercase header names but the spec does not insist: the fast path must not depend on it."""
    echo = Echo()
    app = GuardMiddleware(echo, keyturn_tokens.guard())
    token = keyturn_tokens.mint("carol")

    async def nothing() -> Message:
        return {}

    async def ignore(_: Message) -> None:
        return None

    for _ in range(2):  # the first request verifies the token, the second is answered from the cache
        await app({"type": "http", "path": "/", "headers": [(name, f"{scheme} {token}".encode())]}, nothing, ignore)
    assert [principal_of(scope).sub for scope in echo.scopes] == ["carol", "carol"]


async def test_lifespan_passes_through_untouched(keyturn_tokens: TokenFactory) -> None:
    """Lifespan events are not HTTP: the middleware does not look at them."""
    echo = Echo()
    app = GuardMiddleware(echo, keyturn_tokens.guard())

    async def nothing() -> Message:
        return {}

    async def ignore(_: Message) -> None:
        return None

    await app({"type": "lifespan"}, nothing, ignore)
    assert echo.scopes == [{"type": "lifespan"}]


def test_principal_of_a_scope_that_skipped_the_middleware_is_unauthorized() -> None:
    """Reading the principal where none was verified raises Unauthorized, not a KeyError."""
    with pytest.raises(Unauthorized):
        principal_of({"type": "http"})
