"""Helpers for the session tests: refresh calls, cookie parsing, row counts."""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyturn.server.services import Services
from keyturn.store.tables import refresh_tokens, revocations, sessions
from tests.conftest import app_of, bearer

__all__ = [
    "SetCookie",
    "count_rows",
    "is_alive",
    "refresh",
    "services_of",
    "set_cookies",
    "sqlite_only",
]

#: For rules that live in the domain or the HTTP layer: the stores are exercised per backend elsewhere.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])


def services_of(client: httpx.AsyncClient) -> Services:
    services: Services = app_of(client).state.services
    return services


async def refresh(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    """POST /auth/refresh with ``token`` in the body."""
    return await client.post("/auth/refresh", json={"refresh_token": token}, headers=headers)


async def is_alive(client: httpx.AsyncClient, access_token: str) -> bool:
    """Whether a protected route accepts ``access_token``; anything but 200 or TOKEN_REVOKED fails the test."""
    response = await client.get("/auth/me", headers=bearer(access_token))
    if response.status_code == 200:
        return True
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "TOKEN_REVOKED", response.text
    return False


@dataclass(frozen=True)
class SetCookie:
    """One ``Set-Cookie`` header, parsed."""

    name: str
    value: str
    attributes: dict[str, Any]
    flags: frozenset[str]


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    """Every cookie a response sets, by name, with its attributes (lower-case keys)."""
    found: dict[str, SetCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            lowered = header.lower()
            flags = frozenset(f for f in ("httponly", "secure") if f"; {f}" in lowered)
            attributes = {k: v for k, v in morsel.items() if v and k not in ("httponly", "secure")}
            found[name] = SetCookie(name, morsel.value, attributes, flags)
    return found


async def count_rows(client: httpx.AsyncClient) -> dict[str, int]:
    """Rows in the session tables, straight from the database."""
    services = services_of(client)
    n_sessions, n_tokens = await services.session_store.count()
    async with services.db.transaction() as conn:
        n_revoked = (await conn.execute(select(func.count()).select_from(revocations))).scalar_one()
        n_sealed = (
            await conn.execute(
                select(func.count()).select_from(refresh_tokens).where(refresh_tokens.c.sealed_successor.is_not(None))
            )
        ).scalar_one()
        n_live = (
            await conn.execute(select(func.count()).select_from(sessions).where(sessions.c.revoked_at.is_(None)))
        ).scalar_one()
    return {
        "sessions": n_sessions,
        "live_sessions": int(n_live),
        "tokens": n_tokens,
        "sealed": int(n_sealed),
        "revocations": int(n_revoked),
    }
