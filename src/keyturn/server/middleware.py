"""Pure ASGI middleware: body size cap and no-store caching of auth responses."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.envelope import error_response
from keyturn.errors import KeyturnError, PayloadTooLarge

__all__ = ["BodyLimitMiddleware", "send_error"]


async def send_error(send: Send, error: KeyturnError) -> None:
    """Answer ``error`` in the contract's envelope straight from ASGI."""
    status, headers, body = error_response(error)
    raw = json.dumps(body).encode()
    header_list = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    header_list += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413 before anything parses them.

    A declared ``Content-Length`` over the limit is refused unread; a chunked body
    is counted as it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await send_error(send, PayloadTooLarge())
            return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not started:
                await send_error(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
