"""Purging: expired, idle and revoked sessions, stale sealed successors and revocations go, so tables stay bounded."""

from __future__ import annotations

import anyio
import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, SettingsFactory, assert_error, bearer, login, register
from tests.sessions.helpers import count_rows, is_alive, refresh, services_of, sqlite_only

pytestmark = pytest.mark.anyio

HALF_DAY = 43200


async def _purge(client: httpx.AsyncClient) -> dict[str, int]:
    await services_of(client).sessions.purge()
    return await count_rows(client)


async def test_tables_stay_bounded_under_steady_use(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, backend: str
) -> None:
    """Eight half-days of logins, refreshes and logouts: after each purge the rows level off at what is
    still alive instead of growing with the traffic, and drain to nothing once everything has expired."""
    async with make_client(make_settings(refresh_ttl="2d")) as client:
        await register(client)
        history = []
        for _round in range(8):
            pairs = [await login(client) for _ in range(4)]
            for _ in range(2):
                pairs = [(await refresh(client, p["refresh_token"])).json()["data"] for p in pairs]
            await client.post("/auth/logout", headers=bearer(pairs[0]["access_token"]))
            clock.advance(HALF_DAY)
            history.append(await _purge(client))
        alive_rounds = [min(r + 1, 3) for r in range(8)]  # a 2-day session outlives 3 half-day steps, not 4
        assert [h["sessions"] for h in history] == [3 * n for n in alive_rounds]
        assert [h["tokens"] for h in history] == [9 * n for n in alive_rounds]
        assert {h["revocations"] for h in history} == {0}
        assert {h["sealed"] for h in history} == {0}
        clock.advance(4 * HALF_DAY)
        assert await _purge(client) == {"sessions": 0, "live_sessions": 0, "tokens": 0, "sealed": 0, "revocations": 0}


async def test_revoked_and_idle_sessions_are_purged(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, backend: str
) -> None:
    """Revoked sessions go once their access tokens are dead, idle ones once idle; live ones stay."""
    async with make_client(make_settings(refresh_idle_ttl="2h")) as client:
        await register(client)
        revoked, idle, live = [await login(client) for _ in range(3)]
        await client.post("/auth/logout", headers=bearer(revoked["access_token"]))
        clock.advance(904)  # the revoked session's access token still verifies (exp + leeway not reached)
        rows = await _purge(client)
        assert (rows["sessions"], rows["revocations"]) == (3, 1)
        assert not await is_alive(client, revoked["access_token"])
        assert_error(await refresh(client, revoked["refresh_token"]), 401, "TOKEN_REVOKED")
        clock.advance(1)
        rows = await _purge(client)
        assert (rows["sessions"], rows["revocations"]) == (2, 0)
        assert_error(await refresh(client, revoked["refresh_token"]), 401, "TOKEN_INVALID")
        clock.advance(3600)
        live = (await refresh(client, live["refresh_token"])).json()["data"]
        clock.advance(3600)
        rows = await _purge(client)
        assert (rows["sessions"], rows["tokens"]) == (1, 2)
        assert_error(await refresh(client, idle["refresh_token"]), 401, "TOKEN_INVALID")
        assert (await refresh(client, live["refresh_token"])).status_code == 200


@sqlite_only
async def test_purge_forgets_sealed_successors_only_after_the_grace_window(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """A purge inside the grace window keeps the sealed successor a retry needs; after it, the seal is gone
    but the spent hash stays, so a replay is still recognised as theft."""
    await register(client)
    first = await login(client)
    second = (await refresh(client, first["refresh_token"])).json()["data"]
    clock.advance(10)
    assert (await _purge(client))["sealed"] == 1
    retried = await refresh(client, first["refresh_token"])
    assert retried.json()["data"]["refresh_token"] == second["refresh_token"]
    clock.advance(1)
    rows = await _purge(client)
    assert (rows["sealed"], rows["tokens"]) == (0, 2)
    assert_error(await refresh(client, first["refresh_token"]), 401, "TOKEN_REUSED")


@sqlite_only
async def test_purge_runs_on_a_schedule(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """The server purges by itself every KEYTURN_PURGE_INTERVAL, without anyone calling purge()."""
    async with make_client(make_settings(purge_interval=1)) as client:
        await register(client)
        await login(client)
        assert (await count_rows(client))["sessions"] == 1
        clock.advance(15 * 86400)
        for _ in range(300):  # the first purge is due one second after start; allow a loaded machine 15 s
            rows = await count_rows(client)
            if rows["sessions"] == 0:
                break
            await anyio.sleep(0.05)
        assert (rows["sessions"], rows["tokens"]) == (0, 0)
