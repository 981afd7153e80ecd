"""Concurrent refreshes inside one server: the chain never forks and nothing answers 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, assert_error, bearer, login, register
from tests.sessions.helpers import count_rows, is_alive, refresh

pytestmark = pytest.mark.anyio

RACERS = 24


async def _race(client: httpx.AsyncClient, token: str, n: int = RACERS) -> list[httpx.Response]:
    return list(await asyncio.gather(*(refresh(client, token) for _ in range(n))))


async def test_racing_refreshes_yield_one_successor(make_client: ClientFactory, backend: str) -> None:
    """24 simultaneous refreshes of one token all succeed with one and the same successor."""
    async with make_client() as client:
        await register(client)
        first = await login(client)
        answers = await _race(client, first["refresh_token"])
        assert [r.status_code for r in answers] == [200] * RACERS, [r.text for r in answers if r.status_code != 200]
        successors = {r.json()["data"]["refresh_token"] for r in answers}
        assert len(successors) == 1
        assert (await count_rows(client))["tokens"] == 2
        (successor,) = successors
        onward = await refresh(client, successor)
        assert onward.status_code == 200
        assert await is_alive(client, onward.json()["data"]["access_token"])


async def test_racing_replays_after_grace_fail_cleanly(
    make_client: ClientFactory, clock: FrozenClock, backend: str
) -> None:
    """24 simultaneous replays of a spent token past the window all fail with a 401 and revoke the session."""
    async with make_client() as client:
        await register(client)
        first = await login(client)
        newest = (await refresh(client, first["refresh_token"])).json()["data"]
        clock.advance(11)
        answers = await _race(client, first["refresh_token"])
        codes = {(r.status_code, r.json()["error"]["code"]) for r in answers}
        assert codes <= {(401, "TOKEN_REUSED"), (401, "TOKEN_REVOKED")}, codes
        assert (401, "TOKEN_REUSED") in codes
        assert_error(await refresh(client, newest["refresh_token"]), 401, "TOKEN_REVOKED")
        rows = await count_rows(client)
        assert (rows["live_sessions"], rows["revocations"]) == (0, 1)


async def test_refreshes_racing_a_logout_leave_nothing_alive(make_client: ClientFactory, backend: str) -> None:
    """Refreshes racing a logout never 500, and once the logout returns no token they produced still works."""
    async with make_client() as client:
        await register(client)
        first = await login(client)
        logout = client.post("/auth/logout", headers=bearer(first["access_token"]))
        answers = await asyncio.gather(logout, *(refresh(client, first["refresh_token"]) for _ in range(16)))
        assert answers[0].status_code == 200
        won = [r.json()["data"] for r in answers[1:] if r.status_code == 200]
        refused = {r.json()["error"]["code"] for r in answers[1:] if r.status_code != 200}
        assert refused <= {"TOKEN_REVOKED"}, refused
        assert len({w["refresh_token"] for w in won}) <= 1
        for pair in won:
            assert not await is_alive(client, pair["access_token"])
            assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_REVOKED")
