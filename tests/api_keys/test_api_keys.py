"""The API-key life cycle over real HTTP: create, list, use by header and by exchange, scope limits, revoke."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

#: Input validation does not depend on the database: these families run on SQLite only.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])

ROLES = {"user": ["notes:read", "notes:write"], "admin": ["users:read"]}


@pytest.fixture
async def client(make_client: ClientFactory, make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(make_settings(roles=ROLES)) as c:
        yield c


async def _owner(client: httpx.AsyncClient, email: str = "alice@example.com") -> dict[str, str]:
    """Register and log in ``email``; the Bearer headers of the session."""
    await register(client, email)
    return bearer((await login(client, email))["access_token"])


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"name": "ci", "scopes": ["notes:read"], **body}
    response = await client.post("/auth/api-keys", json=payload, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


async def _exchange(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/auth/token", json={"api_key": key})


async def test_created_key_is_shown_once_and_never_listed(client: httpx.AsyncClient) -> None:
    """Creation returns the key once; the listing shows its metadata but neither the key nor its hash."""
    auth = await _owner(client)
    created = await _create(client, auth, name="  deploy bot ", scopes=["notes:write", "notes:read", "notes:read"])
    key, meta = created["key"], created["api_key"]
    assert key.startswith("ktk_")
    assert len(key) >= 4 + 43
    assert set(meta) == {"id", "name", "scopes", "prefix", "created_at", "last_used_at", "expires_at"}
    assert meta["name"] == "deploy bot"
    assert meta["scopes"] == ["notes:read", "notes:write"]
    assert meta["prefix"] == key[:12]
    assert meta["last_used_at"] is None
    assert meta["expires_at"] is None

    listed = await client.get("/auth/api-keys", headers=auth)
    assert listed.status_code == 200
    assert listed.json()["data"]["api_keys"] == [meta]
    assert key not in listed.text
    assert hashlib.sha256(key.encode()).hexdigest() not in listed.text


async def test_keys_are_private_to_their_owner(client: httpx.AsyncClient) -> None:
    """Another user neither sees nor revokes someone else's key."""
    alice = await _owner(client)
    key_id = (await _create(client, alice))["api_key"]["id"]
    bob = await _owner(client, "bob@example.com")
    assert (await client.get("/auth/api-keys", headers=bob)).json()["data"]["api_keys"] == []
    assert_error(await client.delete(f"/auth/api-keys/{key_id}", headers=bob), 404, "NOT_FOUND")
    assert len((await client.get("/auth/api-keys", headers=alice)).json()["data"]["api_keys"]) == 1


@sqlite_only
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["users:read"]}, "scopes"),
        ({"scopes": ["notes:read", "billing:admin"]}, "scopes"),
        ({"scopes": ["notes read"]}, "scopes"),
        ({"scopes": [""]}, "scopes"),
        ({"name": "   "}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"expires_in": 59}, "expires_in"),
        ({"expires_in": 10**10}, "expires_in"),
    ],
    ids=[
        "scope-of-another-role",
        "one-scope-not-held",
        "space-in-scope",
        "empty-scope",
        "blank-name",
        "control-char-name",
        "too-short-lifetime",
        "too-long-lifetime",
    ],
)
async def test_create_refuses_bad_requests(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    """A scope the owner lacks, a malformed scope, name or lifetime is a 422 naming the field."""
    auth = await _owner(client)
    payload = {"name": "ci", "scopes": ["notes:read"], **body}
    error = assert_error(await client.post("/auth/api-keys", json=payload, headers=auth), 422, "VALIDATION_ERROR")
    assert field in error["error"]["fields"]
    assert (await client.get("/auth/api-keys", headers=auth)).json()["data"]["api_keys"] == []


async def test_key_without_scopes_identifies_only(client: httpx.AsyncClient) -> None:
    """A key with no scopes is allowed: it proves who is calling and grants nothing else."""
    auth = await _owner(client)
    key = (await _create(client, auth, scopes=[]))["key"]
    exchanged = await _exchange(client, key)
    assert exchanged.status_code == 200
    assert exchanged.json()["data"]["scope"] == ""


async def test_key_count_is_capped(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user cannot pile up keys without bound; revoking one makes room again."""
    monkeypatch.setattr("keyturn.domain.api_keys.MAX_KEYS_PER_USER", 2)
    auth = await _owner(client)
    first = await _create(client, auth)
    await _create(client, auth)
    over = await client.post("/auth/api-keys", json={"name": "third", "scopes": []}, headers=auth)
    assert_error(over, 422, "VALIDATION_ERROR")
    await client.delete(f"/auth/api-keys/{first['api_key']['id']}", headers=auth)
    await _create(client, auth, name="third")


async def test_x_api_key_authenticates_on_own_routes(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """X-API-Key alone reaches /auth/me as the owner, and the key's last use is recorded."""
    auth = await _owner(client)
    created = await _create(client, auth)
    me = await client.get("/auth/me", headers={"X-API-Key": created["key"]})
    assert me.status_code == 200, me.text
    assert me.json()["data"]["user"]["email"] == "alice@example.com"
    listed = (await client.get("/auth/api-keys", headers=auth)).json()["data"]["api_keys"]
    assert listed[0]["last_used_at"] is not None
    assert listed[0]["last_used_at"].startswith(listed[0]["created_at"][:16])


async def test_last_use_is_written_at_most_once_a_minute(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Repeated use within a minute does not rewrite last_used_at; a use after it does."""
    auth = await _owner(client)
    key = (await _create(client, auth))["key"]

    async def last_used() -> str:
        listed = (await client.get("/auth/api-keys", headers=auth)).json()["data"]["api_keys"]
        value: str = listed[0]["last_used_at"]
        return value

    await client.get("/auth/me", headers={"X-API-Key": key})
    first = await last_used()
    clock.advance(30)
    await client.get("/auth/me", headers={"X-API-Key": key})
    assert await last_used() == first
    clock.advance(31)
    await client.get("/auth/me", headers={"X-API-Key": key})
    assert await last_used() > first


async def test_bearer_wins_over_x_api_key(client: httpx.AsyncClient) -> None:
    """With both headers the Bearer token decides: a bad one is refused even beside a good key."""
    auth = await _owner(client)
    key = (await _create(client, auth))["key"]
    both_bad_bearer = await client.get("/auth/me", headers={"Authorization": "Bearer nope", "X-API-Key": key})
    assert_error(both_bad_bearer, 401, "TOKEN_INVALID")
    both_bad_key = await client.get("/auth/me", headers={**auth, "X-API-Key": "ktk_garbage"})
    assert both_bad_key.status_code == 200


async def test_exchange_gives_a_short_lived_token_with_the_key_scopes(client: httpx.AsyncClient) -> None:
    """POST /auth/token returns the login shape without a refresh token, scoped to the key, with no roles."""
    auth = await _owner(client)
    created = await _create(client, auth, scopes=["notes:read"])
    response = await _exchange(client, created["key"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    data = response.json()["data"]
    assert "refresh_token" not in data
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 900
    assert data["scope"] == "notes:read"
    assert data["user"]["email"] == "alice@example.com"
    claims = _claims(data["access_token"])
    assert claims["scope"] == "notes:read"
    assert claims["roles"] == []
    assert claims["sid"] == "ak_" + created["api_key"]["id"]
    assert claims["sub"] == data["user"]["id"]
    me = await client.get("/auth/me", headers=bearer(data["access_token"]))
    assert me.status_code == 200


async def test_revoking_a_key_refuses_it_and_its_exchanged_tokens(client: httpx.AsyncClient) -> None:
    """After DELETE the key is refused by header and by exchange, and tokens it already got are refused too."""
    auth = await _owner(client)
    created = await _create(client, auth)
    key, key_id = created["key"], created["api_key"]["id"]
    exchanged = (await _exchange(client, key)).json()["data"]["access_token"]

    deleted = await client.delete(f"/auth/api-keys/{key_id}", headers=auth)
    assert deleted.status_code == 200
    assert deleted.json()["data"] == {"revoked": 1}

    assert_error(await client.get("/auth/me", headers={"X-API-Key": key}), 401, "TOKEN_REVOKED")
    assert_error(await _exchange(client, key), 401, "TOKEN_REVOKED")
    assert_error(await client.get("/auth/me", headers=bearer(exchanged)), 401, "TOKEN_REVOKED")
    assert_error(await client.delete(f"/auth/api-keys/{key_id}", headers=auth), 404, "NOT_FOUND")
    assert (await client.get("/auth/api-keys", headers=auth)).json()["data"]["api_keys"] == []
    assert (await client.get("/auth/me", headers=auth)).status_code == 200


async def test_key_expires_with_the_clock(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A key with expires_in works until then and answers TOKEN_EXPIRED after, by header and by exchange."""
    auth = await _owner(client)
    created = await _create(client, auth, expires_in=3600)
    key = created["key"]
    assert created["api_key"]["expires_at"] is not None
    clock.advance(3599)
    assert (await client.get("/auth/me", headers={"X-API-Key": key})).status_code == 200
    clock.advance(1)
    assert_error(await client.get("/auth/me", headers={"X-API-Key": key}), 401, "TOKEN_EXPIRED")
    assert_error(await _exchange(client, key), 401, "TOKEN_EXPIRED")


@sqlite_only
@pytest.mark.parametrize(
    "garbage",
    ["x", "ktk_", "ktk_" + "A" * 43, "Bearer ktk_abc", "ktk_" + "é" * 20, "ktk_" + "A" * 2000],
    ids=["short", "prefix-only", "unknown", "with-scheme", "latin1", "huge"],
)
async def test_garbage_keys_are_401_never_500(client: httpx.AsyncClient, garbage: str) -> None:
    """Whatever is sent as a key, by exchange or by header, the answer is 401 TOKEN_INVALID."""
    await _owner(client)
    assert_error(await _exchange(client, garbage), 401, "TOKEN_INVALID")
    header = garbage.encode("latin-1")  # headers travel as bytes; every case here is Latin-1
    assert_error(await client.get("/auth/me", headers=[(b"X-API-Key", header)]), 401, "TOKEN_INVALID")


@sqlite_only
@pytest.mark.parametrize(
    "body",
    [{}, {"api_key": 42}, {"api_key": None}, {"api_key": "ktk_x", "extra": 1}, {"api_key": "ktk_\ud800"}],
    ids=["empty", "int", "null", "extra", "lone-surrogate"],
)
async def test_malformed_exchange_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """A body that is not {api_key: string} (a lone surrogate is no string) is a validation error."""
    raw = json.dumps(body).encode()  # ASCII-escaped, so even a lone surrogate reaches the server
    response = await client.post("/auth/token", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_empty_x_api_key_is_no_credentials(client: httpx.AsyncClient) -> None:
    """An empty X-API-Key counts as no credentials at all."""
    assert_error(await client.get("/auth/me", headers={"X-API-Key": "  "}), 401, "UNAUTHORIZED")


async def test_api_keys_cannot_manage_api_keys(client: httpx.AsyncClient) -> None:
    """Neither X-API-Key nor a token exchanged for a key can create, list or revoke keys."""
    auth = await _owner(client)
    created = await _create(client, auth)
    key, key_id = created["key"], created["api_key"]["id"]
    exchanged = bearer((await _exchange(client, key)).json()["data"]["access_token"])
    for headers in ({"X-API-Key": key}, exchanged):
        new = await client.post("/auth/api-keys", json={"name": "x", "scopes": []}, headers=headers)
        assert_error(new, 403, "FORBIDDEN")
        assert_error(await client.get("/auth/api-keys", headers=headers), 403, "FORBIDDEN")
        assert_error(await client.delete(f"/auth/api-keys/{key_id}", headers=headers), 403, "FORBIDDEN")


async def test_api_keys_cannot_manage_the_account(client: httpx.AsyncClient) -> None:
    """A key can read /auth/me but cannot log out sessions, list or revoke them, or change the password."""
    auth = await _owner(client)
    key = (await _create(client, auth))["key"]
    exchanged = bearer((await _exchange(client, key)).json()["data"]["access_token"])
    for headers in ({"X-API-Key": key}, exchanged):
        assert (await client.get("/auth/me", headers=headers)).status_code == 200
        assert_error(await client.post("/auth/logout", headers=headers), 403, "FORBIDDEN")
        assert_error(await client.post("/auth/logout-all", headers=headers), 403, "FORBIDDEN")
        assert_error(await client.get("/auth/sessions", headers=headers), 403, "FORBIDDEN")
        assert_error(await client.delete("/auth/sessions/whatever", headers=headers), 403, "FORBIDDEN")
        change = {"current_password": "x", "new_password": "a brand new passphrase"}
        assert_error(await client.post("/auth/password", json=change, headers=headers), 403, "FORBIDDEN")
    assert (await client.get("/auth/sessions", headers=auth)).status_code == 200


async def test_disabled_owner_keys_are_refused(client: httpx.AsyncClient) -> None:
    """While the owner is disabled their key answers ACCOUNT_DISABLED; once re-enabled it works again."""
    auth = await _owner(client)
    created = await _create(client, auth)
    key = created["key"]
    exchanged = bearer((await _exchange(client, key)).json()["data"]["access_token"])
    services = app_of(client).state.services
    user_id = (await client.get("/auth/me", headers=auth)).json()["data"]["user"]["id"]
    await services.admin.update(user_id, disabled=True)
    assert_error(await client.get("/auth/me", headers={"X-API-Key": key}), 403, "ACCOUNT_DISABLED")
    assert_error(await _exchange(client, key), 403, "ACCOUNT_DISABLED")
    assert_error(await client.get("/auth/me", headers=exchanged), 403, "ACCOUNT_DISABLED")
    await services.admin.update(user_id, disabled=False)
    assert (await client.get("/auth/me", headers={"X-API-Key": key})).status_code == 200
    assert (await _exchange(client, key)).status_code == 200


async def test_key_scopes_shrink_with_the_owner_roles(client: httpx.AsyncClient) -> None:
    """A key never grants more than its owner holds now: removing the role empties the exchanged scope."""
    auth = await _owner(client)
    key = (await _create(client, auth, scopes=["notes:read", "notes:write"]))["key"]
    assert (await _exchange(client, key)).json()["data"]["scope"] == "notes:read notes:write"
    user_id = (await client.get("/auth/me", headers=auth)).json()["data"]["user"]["id"]
    await app_of(client).state.services.admin.update(user_id, roles=["viewer"])
    assert (await _exchange(client, key)).json()["data"]["scope"] == ""


async def test_key_management_needs_authentication(client: httpx.AsyncClient) -> None:
    """Without credentials the key routes answer 401 UNAUTHORIZED."""
    assert_error(await client.get("/auth/api-keys"), 401, "UNAUTHORIZED")
    assert_error(await client.post("/auth/api-keys", json={"name": "x", "scopes": []}), 401, "UNAUTHORIZED")
    assert_error(await client.delete("/auth/api-keys/whatever"), 401, "UNAUTHORIZED")


async def test_unknown_or_overlong_key_id_is_404(client: httpx.AsyncClient) -> None:
    """Deleting a key id that does not exist, of any length, is NOT_FOUND."""
    auth = await _owner(client)
    assert_error(await client.delete("/auth/api-keys/nope", headers=auth), 404, "NOT_FOUND")
    assert_error(await client.delete("/auth/api-keys/" + "a" * 300, headers=auth), 404, "NOT_FOUND")


async def test_creation_and_revocation_are_audited_without_secrets(client: httpx.AsyncClient) -> None:
    """The trail records who created and revoked which key, never the key or its chosen name."""
    auth = await _owner(client)
    created = await _create(client, auth, name="my ktk_ paste", scopes=["notes:read"])
    key_id = created["api_key"]["id"]
    await client.delete(f"/auth/api-keys/{key_id}", headers=auth)
    user_id = (await client.get("/auth/me", headers=auth)).json()["data"]["user"]["id"]
    records = await app_of(client).state.services.audit.page(user_id=user_id, event=None, before=None, limit=20)
    by_event = {r.entry.event: r.entry for r in records}
    made, revoked = by_event["api_key.created"], by_event["api_key.revoked"]
    assert made.detail == {"api_key_id": key_id, "scopes": ["notes:read"], "expires_at": None}
    assert revoked.detail == {"api_key_id": key_id}
    assert made.actor_id == revoked.actor_id == user_id
    trail = json.dumps([r.as_dict() for r in records])
    assert created["key"] not in trail
    assert "paste" not in trail


async def test_exchanges_are_audited_without_the_key(client: httpx.AsyncClient) -> None:
    """Each exchange records who used which key, from where; a refused one records why -- never the key."""
    auth = await _owner(client)
    created = await _create(client, auth, scopes=["notes:read"])
    assert (await _exchange(client, created["key"])).status_code == 200
    guess = "ktk_" + "B" * 43
    assert_error(await _exchange(client, guess), 401, "TOKEN_INVALID")
    records = await app_of(client).state.services.audit.page(user_id=None, event=None, before=None, limit=20)
    by_event = {r.entry.event: r.entry for r in records}
    exchanged, refused = by_event["api_key.exchanged"], by_event["api_key.refused"]
    user_id = (await client.get("/auth/me", headers=auth)).json()["data"]["user"]["id"]
    assert exchanged.detail == {"api_key_id": created["api_key"]["id"], "scopes": ["notes:read"]}
    assert exchanged.actor_id == exchanged.user_id == user_id
    assert exchanged.ip == refused.ip == "203.0.113.7"
    assert refused.detail == {"reason": "token_invalid"}
    assert refused.user_id is None
    trail = json.dumps([r.as_dict() for r in records])
    assert created["key"] not in trail
    assert guess not in trail
