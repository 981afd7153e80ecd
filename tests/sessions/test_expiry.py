"""Refresh-token lifetime: absolute KEYTURN_REFRESH_TTL (default 14 days) and the optional idle timeout."""

from __future__ import annotations

import pytest

from keyturn.clock import FrozenClock
from keyturn.errors import ConfigurationError
from keyturn.settings import load_settings
from tests.conftest import ClientFactory, SettingsFactory, assert_error, bearer, login, register
from tests.sessions.helpers import refresh, sqlite_only

pytestmark = pytest.mark.anyio

DAY = 86400


async def test_default_lifetime_is_fourteen_days_and_absolute(
    make_client: ClientFactory, clock: FrozenClock, backend: str
) -> None:
    """Refreshing never extends a session: 14 days after login it ends, however busy it was."""
    async with make_client() as client:
        await register(client)
        pair = await login(client)
        assert pair["refresh_expires_in"] == 14 * DAY
        for day in range(1, 14):
            clock.advance(DAY)
            answer = await refresh(client, pair["refresh_token"])
            assert answer.status_code == 200, (day, answer.text)
            pair = answer.json()["data"]
            assert pair["refresh_expires_in"] == (14 - day) * DAY
        clock.advance(DAY)
        assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_EXPIRED")
        fresh = await login(client)
        listed = (await client.get("/auth/sessions", headers=bearer(fresh["access_token"]))).json()["data"]
        assert [s["current"] for s in listed["sessions"]] == [True]


@sqlite_only
@pytest.mark.parametrize(("ttl", "seconds"), [("2h", 7200), ("1d", DAY), (3600, 3600)], ids=["2h", "1d", "seconds"])
async def test_refresh_ttl_setting(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, ttl: str | int, seconds: int
) -> None:
    """KEYTURN_REFRESH_TTL accepts seconds or a unit; the token works one second before it and not at it."""
    async with make_client(make_settings(refresh_ttl=ttl)) as client:
        await register(client)
        pair = await login(client)
        assert pair["refresh_expires_in"] == seconds
        clock.advance(seconds - 1)
        pair = (await refresh(client, pair["refresh_token"])).json()["data"]
        assert pair["refresh_expires_in"] == 1
        clock.advance(1)
        assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_EXPIRED")


async def test_idle_timeout_ends_an_unused_session(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, backend: str
) -> None:
    """With KEYTURN_REFRESH_IDLE_TTL, each refresh moves the idle deadline; a session left alone that long ends."""
    async with make_client(make_settings(refresh_idle_ttl="1h")) as client:
        await register(client)
        pair = await login(client)
        assert pair["refresh_expires_in"] == 3600
        for _ in range(4):  # 4 x 50 min: well past one idle period in total, never idle for one
            clock.advance(3000)
            answer = await refresh(client, pair["refresh_token"])
            assert answer.status_code == 200, answer.text
            pair = answer.json()["data"]
            assert pair["refresh_expires_in"] == 3600
        other = await login(client)
        clock.advance(3600)
        assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_EXPIRED")
        fresh = await login(client)
        listed = (await client.get("/auth/sessions", headers=bearer(fresh["access_token"]))).json()["data"]
        assert [s["current"] for s in listed["sessions"]] == [True]
        assert_error(await refresh(client, other["refresh_token"]), 401, "TOKEN_EXPIRED")


@sqlite_only
async def test_idle_timeout_never_outlives_the_absolute_lifetime(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """refresh_expires_in reports whichever comes first: the idle deadline or the absolute expiry."""
    async with make_client(make_settings(refresh_ttl="3h", refresh_idle_ttl="2h")) as client:
        await register(client)
        pair = await login(client)
        assert pair["refresh_expires_in"] == 7200
        clock.advance(5400)
        pair = (await refresh(client, pair["refresh_token"])).json()["data"]
        assert pair["refresh_expires_in"] == 10800 - 5400
        clock.advance(5400)
        assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_EXPIRED")


@sqlite_only
async def test_expired_session_cannot_be_deleted_or_listed(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """An expired session is gone from the list and DELETE answers 404 for it."""
    async with make_client(make_settings(refresh_ttl="1h")) as client:
        await register(client)
        await login(client)
        clock.advance(1800)
        fresh = await login(client)
        listed = (await client.get("/auth/sessions", headers=bearer(fresh["access_token"]))).json()["data"]
        old_id = next(s["id"] for s in listed["sessions"] if not s["current"])
        clock.advance(1800)
        fresh = (await refresh(client, fresh["refresh_token"])).json()["data"]
        listed = (await client.get("/auth/sessions", headers=bearer(fresh["access_token"]))).json()["data"]
        assert [s["current"] for s in listed["sessions"]] == [True]
        gone = await client.delete(f"/auth/sessions/{old_id}", headers=bearer(fresh["access_token"]))
        assert_error(gone, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "overrides",
    [{"refresh_idle_ttl": "10m"}, {"refresh_idle_ttl": 900}, {"refresh_idle_ttl": -1}, {"refresh_ttl": "5m"}],
    ids=["idle-below-access", "idle-equal-access", "idle-negative", "refresh-below-access"],
)
def test_lifetimes_that_would_end_every_session_are_refused(overrides: dict[str, object]) -> None:
    """An idle timeout or refresh lifetime not longer than the access-token lifetime refuses to start."""
    with pytest.raises(ConfigurationError, match="KEYTURN_"):
        load_settings(**overrides)
