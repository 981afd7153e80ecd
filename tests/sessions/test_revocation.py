"""Every way to end a session — logout, logout-all, DELETE /auth/sessions/{id}, password change —
and that the access tokens of an ended session are refused at once."""

from __future__ import annotations

import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import PASSWORD, ClientFactory, assert_error, bearer, login, register
from tests.sessions.helpers import count_rows, is_alive, refresh

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a different horse battery"


async def _login_from(client: httpx.AsyncClient, user_agent: str) -> dict[str, str]:
    body = {"email": "alice@example.com", "password": PASSWORD}
    response = await client.post("/auth/login", json=body, headers={"User-Agent": user_agent})
    assert response.status_code == 200, response.text
    data: dict[str, str] = response.json()["data"]
    return data


async def _sessions(client: httpx.AsyncClient, access_token: str) -> list[dict[str, object]]:
    response = await client.get("/auth/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.text
    listed: list[dict[str, object]] = response.json()["data"]["sessions"]
    return listed


async def test_logout_ends_this_session_only(make_client: ClientFactory, backend: str) -> None:
    """Logout refuses this session's access and refresh tokens at once; the user's other session lives on."""
    async with make_client() as client:
        await register(client)
        this = await login(client)
        other = await login(client)
        out = await client.post("/auth/logout", headers=bearer(this["access_token"]))
        assert out.json() == {"success": True, "data": {"revoked": 1}}
        assert_error(await client.get("/auth/me", headers=bearer(this["access_token"])), 401, "TOKEN_REVOKED")
        assert_error(await refresh(client, this["refresh_token"]), 401, "TOKEN_REVOKED")
        assert await is_alive(client, other["access_token"])
        assert (await refresh(client, other["refresh_token"])).status_code == 200


async def test_logout_with_a_refresh_token_ends_its_session_too(client: httpx.AsyncClient) -> None:
    """A refresh token in the logout body names a further own session to end."""
    await register(client)
    this = await login(client)
    other = await login(client)
    out = await client.post(
        "/auth/logout", headers=bearer(this["access_token"]), json={"refresh_token": other["refresh_token"]}
    )
    assert out.json()["data"]["revoked"] == 2
    assert not await is_alive(client, this["access_token"])
    assert not await is_alive(client, other["access_token"])


@pytest.mark.parametrize("whose", ["another-user", "unknown"], ids=["another-user", "unknown"])
async def test_logout_with_a_foreign_refresh_token_is_refused(client: httpx.AsyncClient, whose: str) -> None:
    """Nobody can end someone else's session by logging out with their refresh token; nothing is revoked."""
    await register(client)
    await register(client, "bob@example.com")
    alice = await login(client)
    bob = await login(client, "bob@example.com")
    token = bob["refresh_token"] if whose == "another-user" else "ktr_" + "B" * 43
    out = await client.post("/auth/logout", headers=bearer(alice["access_token"]), json={"refresh_token": token})
    assert_error(out, 401, "TOKEN_INVALID")
    assert await is_alive(client, alice["access_token"])
    assert await is_alive(client, bob["access_token"])
    assert (await refresh(client, bob["refresh_token"])).status_code == 200


async def test_logout_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    """Logout without an access token is UNAUTHORIZED and ends nothing."""
    await register(client)
    tokens = await login(client)
    assert_error(
        await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]}), 401, "UNAUTHORIZED"
    )
    assert await is_alive(client, tokens["access_token"])


async def test_logout_all_ends_every_session(make_client: ClientFactory, backend: str) -> None:
    """logout-all ends every session of the caller — and only the caller's."""
    async with make_client() as client:
        await register(client)
        await register(client, "bob@example.com")
        mine = [await login(client) for _ in range(3)]
        bob = await login(client, "bob@example.com")
        out = await client.post("/auth/logout-all", headers=bearer(mine[1]["access_token"]))
        assert out.json() == {"success": True, "data": {"revoked": 3}}
        for pair in mine:
            assert not await is_alive(client, pair["access_token"])
            assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_REVOKED")
        assert await is_alive(client, bob["access_token"])
        assert (await login(client))["access_token"]


async def test_sessions_list_describes_each_session(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """GET /auth/sessions lists the caller's live sessions with id, times, user agent, IP and ``current``."""
    await register(client)
    await register(client, "bob@example.com")
    phone = await _login_from(client, "Phone/1.0")
    await login(client, "bob@example.com")
    clock.advance(60)
    laptop = await _login_from(client, "Laptop/2.0")
    listed = await _sessions(client, laptop["access_token"])
    assert [s["user_agent"] for s in listed] == ["Phone/1.0", "Laptop/2.0"]
    assert [s["current"] for s in listed] == [False, True]
    assert {s["ip"] for s in listed} == {"203.0.113.7"}
    for item in listed:
        assert set(item) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
        assert item["created_at"] == item["last_used_at"]
        assert str(item["created_at"]).endswith("Z")
    clock.advance(60)
    await client.post(
        "/auth/refresh", json={"refresh_token": phone["refresh_token"]}, headers={"User-Agent": "Phone/1.1"}
    )
    phone_now = (await _sessions(client, laptop["access_token"]))[0]
    assert phone_now["user_agent"] == "Phone/1.1"
    assert phone_now["last_used_at"] != phone_now["created_at"]


async def test_sessions_list_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    """The session list is a protected route."""
    assert_error(await client.get("/auth/sessions"), 401, "UNAUTHORIZED")


async def test_delete_session_ends_one_own_session(make_client: ClientFactory, backend: str) -> None:
    """DELETE /auth/sessions/{id} ends that session of the caller: its tokens are refused, the rest live."""
    async with make_client() as client:
        await register(client)
        here = await login(client)
        there = await login(client)
        target = next(s for s in await _sessions(client, here["access_token"]) if not s["current"])
        out = await client.delete(f"/auth/sessions/{target['id']}", headers=bearer(here["access_token"]))
        assert out.json() == {"success": True, "data": {"revoked": 1}}
        assert not await is_alive(client, there["access_token"])
        assert_error(await refresh(client, there["refresh_token"]), 401, "TOKEN_REVOKED")
        assert await is_alive(client, here["access_token"])
        assert [s["current"] for s in await _sessions(client, here["access_token"])] == [True]
        again = await client.delete(f"/auth/sessions/{target['id']}", headers=bearer(here["access_token"]))
        assert_error(again, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "target",
    ["another-user", "unknown", "overlong", "path-junk"],
    ids=["another-user", "unknown", "overlong", "path-junk"],
)
async def test_delete_session_of_anyone_else_is_not_found(client: httpx.AsyncClient, target: str) -> None:
    """Someone else's session, or one that does not exist, is a 404 that reveals and ends nothing."""
    await register(client)
    await register(client, "bob@example.com")
    alice = await login(client)
    bob = await login(client, "bob@example.com")
    bob_session = (await _sessions(client, bob["access_token"]))[0]["id"]
    session_id = {
        "another-user": bob_session,
        "unknown": "00000000-0000-4000-8000-000000000000",
        "overlong": "a" * 300,
        "path-junk": "%27%20OR%201=1--",
    }[target]
    out = await client.delete(f"/auth/sessions/{session_id}", headers=bearer(alice["access_token"]))
    assert_error(out, 404, "NOT_FOUND")
    assert await is_alive(client, bob["access_token"])
    assert await is_alive(client, alice["access_token"])


async def test_password_change_ends_every_other_session(make_client: ClientFactory, backend: str) -> None:
    """POST /auth/password checks the current password, then ends every session but the caller's."""
    async with make_client() as client:
        await register(client)
        here = await login(client)
        others = [await login(client) for _ in range(2)]
        changed = await client.post(
            "/auth/password",
            headers=bearer(here["access_token"]),
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["data"]["revoked_sessions"] == 2
        for pair in others:
            assert not await is_alive(client, pair["access_token"])
            assert_error(await refresh(client, pair["refresh_token"]), 401, "TOKEN_REVOKED")
        assert await is_alive(client, here["access_token"])
        assert (await refresh(client, here["refresh_token"])).status_code == 200
        old = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        assert_error(old, 401, "INVALID_CREDENTIALS")
        assert (await login(client, password=NEW_PASSWORD))["access_token"]


async def test_password_change_with_a_wrong_current_password_changes_nothing(client: httpx.AsyncClient) -> None:
    """A wrong current password is INVALID_CREDENTIALS; the password and every session stay as they were."""
    await register(client)
    here = await login(client)
    other = await login(client)
    changed = await client.post(
        "/auth/password",
        headers=bearer(here["access_token"]),
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
    )
    assert_error(changed, 401, "INVALID_CREDENTIALS")
    assert await is_alive(client, other["access_token"])
    assert (await login(client))["access_token"]


async def test_revocation_entries_live_exactly_as_long_as_the_access_tokens(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """A revoked session's access token is refused as revoked until it would have expired anyway;
    after that its revocation entry is purged and the token is refused as expired."""
    await register(client)
    tokens = await login(client)
    await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    clock.advance(900)
    services = client.app.state.services  # type: ignore[attr-defined]
    await services.sessions.purge()
    assert_error(await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401, "TOKEN_REVOKED")
    assert (await count_rows(client))["revocations"] == 1
    clock.advance(6)
    assert_error(await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401, "TOKEN_EXPIRED")
    await services.sessions.purge()
    assert (await count_rows(client))["revocations"] == 0


async def test_revocation_is_seen_by_another_instance_at_once(make_client: ClientFactory, backend: str) -> None:
    """Two app instances on one database: a logout on one is refused by the other on the next request."""
    async with make_client() as first, make_client() as second:
        await register(first)
        tokens = await login(first)
        assert await is_alive(second, tokens["access_token"])
        await first.post("/auth/logout", headers=bearer(tokens["access_token"]))
        assert not await is_alive(second, tokens["access_token"])
