"""The admin API over real HTTP: paging, reading and changing accounts, and what a change does to sessions."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from keyturn.cli import main
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

#: Input validation does not depend on the database: these families run on SQLite only.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])

ROLES = {"user": ["notes:read"], "admin": ["users:read"], "editor": ["notes:publish"]}


@pytest.fixture
async def client(make_client: ClientFactory, make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(make_settings(roles=ROLES)) as c:
        yield c


async def _admin(client: httpx.AsyncClient, email: str = "root@example.com") -> tuple[str, dict[str, str]]:
    """Create an administrator through the services and log them in: (id, Bearer headers)."""
    user = await app_of(client).state.services.accounts.register(email, PASSWORD, roles=["admin", "user"])
    return user.id, bearer((await login(client, email))["access_token"])


async def _user(client: httpx.AsyncClient, email: str = "alice@example.com") -> tuple[str, dict[str, Any]]:
    """Register and log in an ordinary user: (id, login data)."""
    user = await register(client, email)
    return user["id"], await login(client, email)


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


async def test_paging_visits_every_user_exactly_once(client: httpx.AsyncClient) -> None:
    """Following next_cursor over more users than the limit yields each user once, then a null cursor."""
    _, auth = await _admin(client)
    accounts = app_of(client).state.services.accounts
    for n in range(6):
        await accounts.register(f"user{n}@example.com", PASSWORD)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/admin/users", params=params, headers=auth)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert len(data["users"]) <= 3
        seen.extend(data["users"])
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 7
    assert len({u["id"] for u in seen}) == 7
    assert [u["id"] for u in seen] == sorted(u["id"] for u in seen)
    assert set(seen[0]) == {"id", "email", "name", "roles", "created_at", "disabled"}
    assert all(u["disabled"] is False for u in seen)


async def test_exact_page_ends_with_null_cursor(client: httpx.AsyncClient) -> None:
    """When the users fit the default limit exactly or under, next_cursor is null at once."""
    _, auth = await _admin(client)
    data = (await client.get("/admin/users", headers=auth)).json()["data"]
    assert len(data["users"]) == 1
    assert data["next_cursor"] is None
    data = (await client.get("/admin/users", params={"limit": "1"}, headers=auth)).json()["data"]
    assert len(data["users"]) == 1
    assert data["next_cursor"] is None


@sqlite_only
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"not an id!").decode()}, "cursor"),
        ({"cursor": "A" * 500}, "cursor"),
        ({"cursor": "é"}, "cursor"),
    ],
    ids=[
        "limit-zero",
        "limit-over-100",
        "limit-not-a-number",
        "cursor-not-base64",
        "cursor-not-an-id",
        "cursor-huge",
        "cursor-non-ascii",
    ],
)
async def test_bad_paging_parameters_are_422(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    """An out-of-range limit or a cursor the server never handed out is a validation error."""
    _, auth = await _admin(client)
    error = assert_error(await client.get("/admin/users", params=params, headers=auth), 422, "VALIDATION_ERROR")
    assert field in error["error"]["fields"]


async def test_non_admins_are_forbidden(client: httpx.AsyncClient) -> None:
    """An ordinary user gets 403 FORBIDDEN on every admin route, and nothing changes."""
    user_id, tokens = await _user(client)
    auth = bearer(tokens["access_token"])
    assert_error(await client.get("/admin/users", headers=auth), 403, "FORBIDDEN")
    assert_error(await client.get(f"/admin/users/{user_id}", headers=auth), 403, "FORBIDDEN")
    patched = await client.patch(f"/admin/users/{user_id}", json={"roles": ["admin"]}, headers=auth)
    assert_error(patched, 403, "FORBIDDEN")
    assert (await app_of(client).state.services.accounts.get(user_id)).roles == ("user",)


async def test_admin_routes_need_credentials(client: httpx.AsyncClient) -> None:
    """Without a token the admin routes answer 401 UNAUTHORIZED."""
    assert_error(await client.get("/admin/users"), 401, "UNAUTHORIZED")
    assert_error(await client.patch("/admin/users/x", json={"disabled": True}), 401, "UNAUTHORIZED")


async def test_api_keys_never_reach_the_admin_api(client: httpx.AsyncClient) -> None:
    """An admin's API key, by header or exchanged, is refused: keys carry scopes, never roles."""
    _, auth = await _admin(client)
    created = await client.post("/auth/api-keys", json={"name": "ops", "scopes": ["users:read"]}, headers=auth)
    key = created.json()["data"]["key"]
    exchanged = (await client.post("/auth/token", json={"api_key": key})).json()["data"]["access_token"]
    assert_error(await client.get("/admin/users", headers={"X-API-Key": key}), 403, "FORBIDDEN")
    assert_error(await client.get("/admin/users", headers=bearer(exchanged)), 403, "FORBIDDEN")


async def test_get_user_and_unknown_ids(client: httpx.AsyncClient) -> None:
    """GET returns the user with the disabled flag; unknown, malformed or huge ids are 404."""
    _, auth = await _admin(client)
    user_id, _ = await _user(client)
    found = await client.get(f"/admin/users/{user_id}", headers=auth)
    assert found.status_code == 200
    user = found.json()["data"]["user"]
    assert user["email"] == "alice@example.com"
    assert user["disabled"] is False
    assert "password" not in found.text
    for missing in ("00000000-0000-4000-8000-000000000000", "not-a-user", "x" * 300, "%20"):
        assert_error(await client.get(f"/admin/users/{missing}", headers=auth), 404, "NOT_FOUND")
        assert_error(await client.patch(f"/admin/users/{missing}", json={}, headers=auth), 404, "NOT_FOUND")


async def test_adding_a_role_shows_in_the_next_token(client: httpx.AsyncClient) -> None:
    """A granted role keeps existing sessions alive and appears, with its scopes, at the next refresh."""
    _, auth = await _admin(client)
    user_id, tokens = await _user(client)
    patched = await client.patch(f"/admin/users/{user_id}", json={"roles": ["user", "editor", "user"]}, headers=auth)
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["user"]["roles"] == ["editor", "user"]
    assert (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
    refreshed = (await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()["data"]
    claims = _claims(refreshed["access_token"])
    assert claims["roles"] == ["editor", "user"]
    assert claims["scope"] == "notes:publish notes:read"


async def test_removing_a_role_revokes_the_sessions(client: httpx.AsyncClient) -> None:
    """Taking a role away is immediate: the user's access and refresh tokens are refused."""
    _, auth = await _admin(client)
    user_id, tokens = await _user(client)
    patched = await client.patch(f"/admin/users/{user_id}", json={"roles": []}, headers=auth)
    assert patched.json()["data"]["user"]["roles"] == []
    assert_error(await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401, "TOKEN_REVOKED")
    refresh = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(refresh, 401, "TOKEN_REVOKED")
    again = await login(client, "alice@example.com")
    assert _claims(again["access_token"])["roles"] == []


async def test_demoted_admin_loses_the_admin_api_at_once(client: httpx.AsyncClient) -> None:
    """One admin demoting another cuts the other off immediately."""
    _, root = await _admin(client)
    other_id, other = await _admin(client, "ops@example.com")
    assert (await client.get("/admin/users", headers=other)).status_code == 200
    await client.patch(f"/admin/users/{other_id}", json={"roles": ["user"]}, headers=root)
    assert_error(await client.get("/admin/users", headers=other), 401, "TOKEN_REVOKED")
    fresh = bearer((await login(client, "ops@example.com"))["access_token"])
    assert_error(await client.get("/admin/users", headers=fresh), 403, "FORBIDDEN")


async def test_disabling_cuts_off_and_enabling_restores(client: httpx.AsyncClient) -> None:
    """Disabling refuses the live access and refresh tokens and login; re-enabling lets the user log in again."""
    _, auth = await _admin(client)
    user_id, tokens = await _user(client)
    second = await login(client, "alice@example.com")
    disabled = await client.patch(f"/admin/users/{user_id}", json={"disabled": True}, headers=auth)
    assert disabled.status_code == 200
    assert disabled.json()["data"]["user"]["disabled"] is True

    for access in (tokens["access_token"], second["access_token"]):
        assert_error(await client.get("/auth/me", headers=bearer(access)), 401, "TOKEN_REVOKED")
    refresh = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    login_refused = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert_error(login_refused, 403, "ACCOUNT_DISABLED")
    assert (await client.get(f"/admin/users/{user_id}", headers=auth)).json()["data"]["user"]["disabled"] is True

    enabled = await client.patch(f"/admin/users/{user_id}", json={"disabled": False}, headers=auth)
    assert enabled.json()["data"]["user"]["disabled"] is False
    back = await login(client, "alice@example.com")
    assert (await client.get("/auth/me", headers=bearer(back["access_token"]))).status_code == 200
    old_refresh = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_error(old_refresh, 401, "TOKEN_REVOKED")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"disabled": True}, "disabled"), ({"roles": ["user"]}, "roles"), ({"roles": []}, "roles")],
    ids=["disable-self", "drop-own-admin", "drop-all-own-roles"],
)
async def test_admins_cannot_lock_themselves_out(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    """Disabling oneself or removing one's own admin role is refused, and changes nothing."""
    admin_id, auth = await _admin(client)
    error = assert_error(
        await client.patch(f"/admin/users/{admin_id}", json=body, headers=auth), 422, "VALIDATION_ERROR"
    )
    assert field in error["error"]["fields"]
    me = (await client.get(f"/admin/users/{admin_id}", headers=auth)).json()["data"]["user"]
    assert me["disabled"] is False
    assert me["roles"] == ["admin", "user"]


async def test_admin_dropping_own_other_role_keeps_this_session(client: httpx.AsyncClient) -> None:
    """An admin removing a non-admin role of their own keeps the session they did it from, not the others."""
    admin_id, auth = await _admin(client)
    other = bearer((await login(client, "root@example.com"))["access_token"])
    patched = await client.patch(f"/admin/users/{admin_id}", json={"roles": ["admin"]}, headers=auth)
    assert patched.json()["data"]["user"]["roles"] == ["admin"]
    assert (await client.get("/admin/users", headers=auth)).status_code == 200
    assert_error(await client.get("/auth/me", headers=other), 401, "TOKEN_REVOKED")


@sqlite_only
@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["has space"]},
        {"roles": [""]},
        {"roles": ["-leading"]},
        {"roles": ["r" * 65]},
        {"roles": [f"r{n}" for n in range(33)]},
        {"roles": ["ktk_lookalike"]},
        {"roles": "admin"},
        {"disabled": "yes"},
        {"email": "x@example.com"},
    ],
    ids=[
        "space",
        "empty",
        "leading-dash",
        "too-long",
        "too-many",
        "secret-lookalike",
        "not-a-list",
        "not-a-bool",
        "unknown-field",
    ],
)
async def test_malformed_patches_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """Malformed role names, wrong types and unknown fields are validation errors."""
    _, auth = await _admin(client)
    user_id, _ = await _user(client)
    assert_error(await client.patch(f"/admin/users/{user_id}", json=body, headers=auth), 422, "VALIDATION_ERROR")
    assert (await app_of(client).state.services.accounts.get(user_id)).roles == ("user",)


async def test_changes_are_audited(client: httpx.AsyncClient) -> None:
    """Role changes, disabling and enabling each leave a record naming the admin and the user."""
    admin_id, auth = await _admin(client)
    user_id, _ = await _user(client)
    await client.patch(f"/admin/users/{user_id}", json={"roles": ["editor"], "disabled": True}, headers=auth)
    await client.patch(f"/admin/users/{user_id}", json={"disabled": False}, headers=auth)
    audit = app_of(client).state.services.audit
    records = await audit.page(user_id=user_id, event=None, before=None, limit=20)
    admin_records = [r.entry for r in records if r.entry.actor_id == admin_id]
    assert [e.event for e in reversed(admin_records)] == ["user.roles_changed", "user.disabled", "user.enabled"]
    assert all(e.user_id == user_id and e.email == "alice@example.com" for e in admin_records)
    assert admin_records[-1].detail == {"roles": ["editor"]}


def test_cli_set_roles(tmp_path: Path) -> None:
    """`keyturn users set-roles` replaces the roles of an account, and reports an unknown e-mail or a bad role."""
    env = {**os.environ, "KEYTURN_DATA_DIR": str(tmp_path / "cli"), "KEYTURN_PASSWORD_PROFILE": "test-only-cheap"}
    env.pop("KEYTURN_DATABASE_URL", None)
    runner = CliRunner()
    created = runner.invoke(
        main, ["users", "create", "a@example.com", "--password-stdin"], input=PASSWORD + "\n", env=env
    )
    assert created.exit_code == 0, created.output
    changed = runner.invoke(main, ["users", "set-roles", "A@Example.com", "editor", "admin"], env=env)
    assert changed.exit_code == 0, changed.output
    assert "roles=admin,editor" in changed.output
    listed = runner.invoke(main, ["users", "list"], env=env)
    assert "a@example.com  roles=admin,editor" in listed.output
    missing = runner.invoke(main, ["users", "set-roles", "nobody@example.com", "user"], env=env)
    assert missing.exit_code != 0
    assert "no account" in missing.output
    bad = runner.invoke(main, ["users", "set-roles", "a@example.com", "bad role"], env=env)
    assert bad.exit_code != 0
    assert "roles" in bad.output
