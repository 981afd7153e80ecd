"""A pure ASGI middleware: every request through it carries a verified principal, or is refused.

Works with Starlette, FastAPI or any ASGI application, and imports none of them.
Refusals are answered in the contract's envelope (401 ``UNAUTHORIZED`` /
``TOKEN_INVALID`` / ``TOKEN_EXPIRED``, 403 ``FORBIDDEN``, 503 when the issuer's keys
cannot be had); a WebSocket handshake is refused with close code 1008. The principal
is put on the scope, where Starlette shows it as ``request.state.principal``.

The middleware protects everything it wraps except the exact ``exempt`` paths. For
finer control, wrap only a mounted sub-application, or use the FastAPI dependency.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from keyturn.domain.authorization import Principal, require
from keyturn.envelope import error_response
from keyturn.errors import KeyturnError, Unauthorized
from keyturn.guard.verifier import Guard

__all__ = ["PRINCIPAL_SCOPE_KEY", "GuardMiddleware", "principal_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the verified principal is kept on the ASGI scope (also ``scope["state"]["principal"]``).
PRINCIPAL_SCOPE_KEY: Final = "keyturn.principal"
_POLICY_VIOLATION: Final = 1008
_GUARDED_TYPES: Final = frozenset({"http", "websocket"})
_AUTHORIZATION_LENGTH: Final = len(b"authorization")
_API_KEY_LENGTH: Final = len(b"x-api-key")


def _credential_headers(scope: Scope) -> tuple[str | None, str | None]:
    """The first ``Authorization`` and ``X-API-Key`` header values, in one pass over the headers.

    This runs on every request, so a header whose name has the wrong length is passed over
    without lowercasing it (servers send names lowercased already, but ASGI does not insist on it).
    """
    authorization: str | None = None
    api_key: str | None = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization" or (len(key) == _AUTHORIZATION_LENGTH and key.lower() == b"authorization"):
            if authorization is None:
                authorization = bytes(value).decode("latin-1")
        elif (key == b"x-api-key" or (len(key) == _API_KEY_LENGTH and key.lower() == b"x-api-key")) and api_key is None:
            api_key = bytes(value).decode("latin-1")
    return authorization, api_key


async def _refuse(scope: Scope, send: Send, error: KeyturnError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
        return
    status, headers, body = error_response(error)
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw_headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def principal_of(scope: Scope) -> Principal:
    """The principal :class:`GuardMiddleware` verified for this scope (``request.scope`` in Starlette).

    Raises :class:`Unauthorized` when the request did not pass through the middleware.
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise Unauthorized()
    return principal


class GuardMiddleware:
    """Verify the caller of every HTTP and WebSocket request; require ``roles`` and ``scopes``."""

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        *,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        exempt: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.guard = guard
        self.roles = frozenset(roles)
        self.scopes = frozenset(scopes)
        self.exempt = frozenset(exempt)
        self._requires = bool(self.roles or self.scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _GUARDED_TYPES or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        try:
            authorization, api_key = _credential_headers(scope)
            principal = self.guard.cached(authorization)
            if principal is None:
                principal = await self.guard.authenticate(authorization, api_key)
            if self._requires:
                require(principal, roles=self.roles, scopes=self.scopes)
        except KeyturnError as error:
            await _refuse(scope, send, error)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["principal"] = principal
        await self.app(scope, receive, send)
