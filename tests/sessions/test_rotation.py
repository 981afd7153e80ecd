"""Rotation, the grace window and reuse detection, over HTTP (CONTRACT.md §4)."""

from __future__ import annotations

import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, SettingsFactory, assert_error, bearer, login, register
from tests.sessions.helpers import count_rows, is_alive, refresh, sqlite_only

pytestmark = pytest.mark.anyio


async def test_refresh_rotates_within_one_session(make_client: ClientFactory, backend: str) -> None:
    """Each refresh spends the presented token, returns a new one, and keeps the session id."""
    async with make_client() as client:
        await register(client)
        first = await login(client)
        second = (await refresh(client, first["refresh_token"])).json()["data"]
        third = (await refresh(client, second["refresh_token"])).json()["data"]
        tokens = {first["refresh_token"], second["refresh_token"], third["refresh_token"]}
        assert len(tokens) == 3
        assert all(t.startswith("ktr_") and len(t) >= 4 + 43 for t in tokens)
        listed = (await client.get("/auth/sessions", headers=bearer(third["access_token"]))).json()["data"]
        assert len(listed["sessions"]) == 1
        assert listed["sessions"][0]["current"] is True
        rows = await count_rows(client)
        assert (rows["sessions"], rows["tokens"]) == (1, 3)


async def test_grace_retry_returns_the_same_successor(
    make_client: ClientFactory, clock: FrozenClock, backend: str
) -> None:
    """A spent token retried inside the grace window gets the very same successor, and the chain goes on."""
    async with make_client() as client:
        await register(client)
        first = await login(client)
        rotated = await refresh(client, first["refresh_token"])
        clock.advance(9)
        retried = await refresh(client, first["refresh_token"])
        assert retried.status_code == 200, retried.text
        successor = rotated.json()["data"]["refresh_token"]
        assert retried.json()["data"]["refresh_token"] == successor
        assert await is_alive(client, retried.json()["data"]["access_token"])
        onward = await refresh(client, successor)
        assert onward.status_code == 200
        assert onward.json()["data"]["refresh_token"] not in {successor, first["refresh_token"]}
        assert (await count_rows(client))["tokens"] == 3


@sqlite_only
@pytest.mark.parametrize(
    ("grace", "after", "reused"),
    [
        (None, 10, False),
        (None, 11, True),
        ("30s", 29, False),
        ("30s", 31, True),
        ("0", 1, True),
    ],
    ids=["default-at-10s", "default-past-10s", "30s-inside", "30s-past", "grace-off"],
)
async def test_grace_window_follows_the_setting(
    *,
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    clock: FrozenClock,
    grace: str | None,
    after: int,
    reused: bool,
) -> None:
    """KEYTURN_REFRESH_GRACE (default 10 s) bounds the idempotent retry; past it the retry is theft."""
    settings = make_settings() if grace is None else make_settings(refresh_grace=grace)
    async with make_client(settings) as client:
        await register(client)
        first = await login(client)
        await refresh(client, first["refresh_token"])
        clock.advance(after)
        retried = await refresh(client, first["refresh_token"])
        if reused:
            assert_error(retried, 401, "TOKEN_REUSED")
        else:
            assert retried.status_code == 200, retried.text


async def test_reuse_after_grace_revokes_that_session_only(
    make_client: ClientFactory, clock: FrozenClock, backend: str
) -> None:
    """A replay after the window answers TOKEN_REUSED and kills the whole session — newest token and
    access tokens included — while the user's other session and other users are untouched."""
    async with make_client() as client:
        await register(client)
        await register(client, "bob@example.com")
        victim = await login(client)
        other = await login(client)
        bob = await login(client, "bob@example.com")
        newest = (await refresh(client, victim["refresh_token"])).json()["data"]
        clock.advance(11)

        assert_error(await refresh(client, victim["refresh_token"]), 401, "TOKEN_REUSED")

        assert_error(await refresh(client, newest["refresh_token"]), 401, "TOKEN_REVOKED")
        assert not await is_alive(client, newest["access_token"])
        assert not await is_alive(client, victim["access_token"])
        assert await is_alive(client, other["access_token"])
        assert await is_alive(client, bob["access_token"])
        assert (await refresh(client, other["refresh_token"])).status_code == 200
        assert (await refresh(client, bob["refresh_token"])).status_code == 200
        listed = (await client.get("/auth/sessions", headers=bearer(other["access_token"]))).json()["data"]
        assert [s["current"] for s in listed["sessions"]] == [True]


@sqlite_only
async def test_reuse_detected_for_any_older_token_of_the_chain(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Not only the last spent token: any earlier token of the chain replayed after its window is theft."""
    await register(client)
    tokens = [(await login(client))["refresh_token"]]
    for _ in range(3):
        clock.advance(60)
        tokens.append((await refresh(client, tokens[-1])).json()["data"]["refresh_token"])
    assert_error(await refresh(client, tokens[0]), 401, "TOKEN_REUSED")
    assert_error(await refresh(client, tokens[-1]), 401, "TOKEN_REVOKED")


async def test_retry_in_grace_of_a_revoked_session_is_refused(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Logging out ends the grace window too: the spent token no longer yields its successor."""
    await register(client)
    first = await login(client)
    second = (await refresh(client, first["refresh_token"])).json()["data"]
    assert (await client.post("/auth/logout", headers=bearer(second["access_token"]))).status_code == 200
    clock.advance(1)
    assert_error(await refresh(client, first["refresh_token"]), 401, "TOKEN_REVOKED")
    assert_error(await refresh(client, second["refresh_token"]), 401, "TOKEN_REVOKED")


@sqlite_only
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"refresh_token": "ktr_" + "A" * 43}, 401, "TOKEN_INVALID"),
        ({"refresh_token": "not-a-token"}, 401, "TOKEN_INVALID"),
        ({"refresh_token": ""}, 401, "TOKEN_INVALID"),
        ({"refresh_token": "x" * 600}, 422, "VALIDATION_ERROR"),
        ({"refresh_token": 12345}, 422, "VALIDATION_ERROR"),
        ({"refresh_token": "ktr_x", "extra": 1}, 422, "VALIDATION_ERROR"),
        ({}, 401, "UNAUTHORIZED"),
        (None, 401, "UNAUTHORIZED"),
    ],
    ids=["unknown", "garbage", "empty", "oversized", "not-a-string", "extra-field", "no-token", "no-body"],
)
async def test_bad_refresh_requests_get_contract_errors(
    client: httpx.AsyncClient, body: object, status: int, code: str
) -> None:
    """Unknown, malformed or missing refresh tokens get a contract error, never a 500."""
    response = await client.post("/auth/refresh", json=body) if body is not None else await client.post("/auth/refresh")
    assert_error(response, status, code)


@sqlite_only
async def test_refresh_answer_has_the_login_shape(client: httpx.AsyncClient) -> None:
    """The refresh answer carries the same fields as the login answer, with a new refresh token."""
    await register(client)
    first = await login(client)
    second = (await refresh(client, first["refresh_token"])).json()["data"]
    assert set(second) == set(first)
    assert second["token_type"] == "Bearer"
    assert second["user"] == first["user"]
    assert second["refresh_expires_in"] == 14 * 86400
