"""Run the guard's network conversations over a sync or an async httpx client.

Discovery, the JWKS fetch and the API-key exchange are each written once, as a
*flow*: a generator that yields the :class:`httpx.Request` it needs next and is sent
the :class:`httpx.Response` (the shape of httpx's own ``Auth.auth_flow``). The two
drivers here run a flow over :class:`httpx.Client` (Flask, threads) or
:class:`httpx.AsyncClient` (ASGI, FastAPI), so no rule is written twice.

httpx is called here and nowhere else in the guard, so its errors are translated
here: a transport failure is thrown into the flow as :class:`ServiceUnavailable`,
where the flow may recover (keep serving cached keys) or let it rise. Responses
are read up to :data:`MAX_RESPONSE_BYTES`; a larger one is a failure, not a
memory problem.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Final, TypeVar

import httpx

from keyturn.errors import ServiceUnavailable

__all__ = ["MAX_RESPONSE_BYTES", "Flow", "run_async", "run_sync"]

log = logging.getLogger("keyturn.guard")

T = TypeVar("T")

#: A conversation with the auth server: yields requests, is sent responses, returns a value.
Flow = Generator[httpx.Request, httpx.Response, T]

#: Discovery documents, JWK Sets and token answers are small; anything bigger is refused.
MAX_RESPONSE_BYTES: Final = 256 * 1024


class _TooLarge(Exception):
    """The response body passed :data:`MAX_RESPONSE_BYTES`."""


def _failure(request: httpx.Request, exc: Exception) -> ServiceUnavailable:
    # The URL is the issuer's, never a credential; the exception class says enough.
    log.warning("keyturn guard: %s %s failed: %s", request.method, request.url, type(exc).__name__)
    return ServiceUnavailable()


def _finish(response: httpx.Response, body: bytes) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers, content=body, request=response.request)


def _send_sync(client: httpx.Client, request: httpx.Request) -> httpx.Response:
    with client.stream(request.method, request.url, headers=request.headers, content=request.content) as response:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise _TooLarge()
        return _finish(response, bytes(body))


async def _send_async(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    async with client.stream(request.method, request.url, headers=request.headers, content=request.content) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise _TooLarge()
        return _finish(response, bytes(body))


def run_sync(flow: Flow[T], client: httpx.Client) -> T:
    """Drive ``flow`` to its end over ``client``; return what the flow returns.

    Raises whatever the flow raises, including the :class:`ServiceUnavailable`
    thrown into it for a transport failure that it did not handle.
    """
    try:
        request = next(flow)
        while True:
            try:
                response = _send_sync(client, request)
            except (httpx.HTTPError, _TooLarge) as exc:
                request = flow.throw(_failure(request, exc))
            else:
                request = flow.send(response)
    except StopIteration as done:
        value: T = done.value
        return value


async def run_async(flow: Flow[T], client: httpx.AsyncClient) -> T:
    """Drive ``flow`` to its end over ``client``; the async twin of :func:`run_sync`."""
    try:
        request = next(flow)
        while True:
            try:
                response = await _send_async(client, request)
            except (httpx.HTTPError, _TooLarge) as exc:
                request = flow.throw(_failure(request, exc))
            else:
                request = flow.send(response)
    except StopIteration as done:
        value: T = done.value
        return value
