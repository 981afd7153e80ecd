"""A FastAPI resource server guarded by keyturn.guard, reading discovery and the JWKS from a real keyturn app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from keyturn.clock import FrozenClock
from keyturn.guard import Guard, Principal
from keyturn.guard.fastapi import install as install_fastapi

__all__ = ["AUDIENCE", "ISSUER", "guarded_api"]

ISSUER = "http://keyturn.test"
AUDIENCE = "keyturn-tests"


@asynccontextmanager
async def guarded_api(
    keyturn: FastAPI,
    clock: FrozenClock,
    *,
    on_request: Callable[[httpx.Request], Awaitable[None]] | None = None,
    **guard_options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``GET /orders`` behind a guard; ``on_request`` sees each request the guard makes to keyturn."""
    hooks = {"request": [on_request]} if on_request else {}
    keyturn_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=keyturn), base_url=ISSUER, event_hooks=hooks)
    guard = Guard(
        issuer=ISSUER,
        audience=AUDIENCE,
        allow_http=True,
        api_key_exchange=False,
        clock=clock,
        async_http_client=keyturn_http,
        **guard_options,
    )
    api = install_fastapi(FastAPI())

    @api.get("/orders")
    # A default, not Annotated: with postponed annotations FastAPI cannot see the local ``guard``.
    async def orders(principal: Principal = Depends(guard.require())) -> dict[str, str]:  # noqa: B008
        return {"sub": principal.sub}

    async with (
        keyturn_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api.test") as client,
    ):
        yield client
