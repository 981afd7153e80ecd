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

    A declared ``Content-Length`` over the limit is refused unread. Otherwise the body
    (chunked or not) is read here, counted as it streams and refused the moment it
    passes the limit; a body within the limit is then handed to the app as one piece.
    Reading it here rather than counting inside the app's ``receive`` matters: a
    framework that meets an error while reading the body reports a parse error (422),
    not the 413 the contract promises.
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
        try:
            body, last = await self._read_body(receive)
        except PayloadTooLarge as exc:
            await send_error(send, exc)
            return
        await self.app(scope, _replay(body, last, receive), send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, Message]:
        """The whole body, and the message that ended it (the last chunk, or a disconnect)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), message


def _replay(body: bytes, last: Message, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then defers to the real one (disconnects)."""
    pending: list[Message] = (
        [{"type": "http.request", "body": body, "more_body": False}] if last["type"] == "http.request" else [last]
    )

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
