"""The classic flow over real HTTP: register → login → Bearer → me → refresh → logout."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PASSWORD, ClientFactory, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio


async def test_register_login_me_refresh_logout(make_client: ClientFactory, backend: str) -> None:
    """The whole tutorial flow works end to end on each database."""
    async with make_client() as client:
        user = await register(client, "Alice@Example.COM", name="Alice")
        assert user["email"] == "alice@example.com"
        assert set(user) == {"id", "email", "name", "roles", "created_at"}
        tokens = await login(client, "alice@example.com")
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 900
        assert tokens["refresh_token"].startswith("ktr_")

        me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json() == {"success": True, "data": {"user": user}}

        refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        new = refreshed.json()["data"]
        assert new["refresh_token"] != tokens["refresh_token"]
        assert new["access_token"] != tokens["access_token"]

        out = await client.post("/auth/logout", headers=bearer(new["access_token"]))
        assert out.status_code == 200
        assert_error(await client.get("/auth/me", headers=bearer(new["access_token"])), 401, "TOKEN_REVOKED")
        assert_error(
            await client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]}), 401, "TOKEN_REVOKED"
        )


async def test_user_ids_are_opaque_uuids(client: httpx.AsyncClient) -> None:
    """User ids are random UUIDs, never sequential numbers."""
    first = await register(client, "a@example.com")
    second = await register(client, "b@example.com")
    assert len(first["id"]) == 36
    assert first["id"] != second["id"]
    assert not first["id"].isdigit()


async def test_wrong_password_and_unknown_email_answer_alike(client: httpx.AsyncClient) -> None:
    """Unknown e-mail and wrong password get the same status, body and header."""
    await register(client)
    wrong = await client.post("/auth/login", json={"email": "alice@example.com", "password": "not the password"})
    unknown = await client.post("/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    assert wrong.json() == unknown.json()
    assert wrong.status_code == unknown.status_code
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
