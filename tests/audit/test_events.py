"""Every security event lands in the audit table and the log, with who/what/where — and never a secret."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyturn.clock import FrozenClock
from keyturn.domain.audit import AuditEntry, AuditEvent, StoredAuditEntry
from keyturn.errors import ServiceUnavailable
from keyturn.store.tables import audit_events
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, app_of, bearer, login, register

pytestmark = pytest.mark.anyio

UA = "audit-test/1.0"
NEW_PASSWORD = "a brand new passphrase 42"


async def rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The audit table, oldest first, as plain dicts."""
    db = app_of(client).state.services.db
    async with db.transaction() as conn:
        result = await conn.execute(select(audit_events).order_by(audit_events.c.id))
        return [dict(row._mapping) for row in result]


@dataclass(frozen=True)
class Facts:
    user_id: str
    secrets: list[str]


async def scenario(client: httpx.AsyncClient, clock: FrozenClock) -> Facts:
    """Walk through every self-service security event; return the secrets that were in play."""
    user = await register(client, "Alice@Example.com")
    bad = await client.post("/auth/login", json={"email": "alice@example.com", "password": "Wrong-Password-1"})
    assert bad.status_code == 401
    unknown = await client.post("/auth/login", json={"email": "ghost@example.com", "password": "Ghost-Password-2"})
    assert unknown.status_code == 401
    typo = await client.post("/auth/login", json={"email": "Typed-My-Password-3", "password": PASSWORD})
    assert typo.status_code == 401
    first = await login(client, "alice@example.com")
    second = await login(client, "alice@example.com")
    refreshed = (await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()["data"]
    clock.advance(60)  # past the grace window: the spent token is now a theft signal
    replay = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    third = await login(client, "alice@example.com")
    sessions = (await client.get("/auth/sessions", headers=bearer(third["access_token"]))).json()["data"]["sessions"]
    other = next(s["id"] for s in sessions if not s["current"])
    revoke = await client.delete(f"/auth/sessions/{other}", headers=bearer(third["access_token"]))
    assert revoke.status_code == 200
    changed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(third["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert (await client.post("/auth/logout", headers=bearer(third["access_token"]))).status_code == 200
    fourth = await login(client, "alice@example.com", NEW_PASSWORD)
    assert (await client.post("/auth/logout-all", headers=bearer(fourth["access_token"]))).status_code == 200
    tokens = [t[k] for t in (first, second, third, fourth) for k in ("access_token", "refresh_token")]
    typed = [PASSWORD, NEW_PASSWORD, "Wrong-Password-1", "Ghost-Password-2", "Typed-My-Password-3"]
    return Facts(user_id=user["id"], secrets=[*typed, *tokens, refreshed["refresh_token"], refreshed["access_token"]])


async def test_every_event_is_recorded_with_its_context(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, backend: str
) -> None:
    """The scenario leaves exactly the expected events, each with actor, subject, e-mail, IP and agent."""
    async with make_client(make_settings(), headers={"User-Agent": UA}) as client:
        facts = await scenario(client, clock)
        recorded = await rows(client)
    alice = facts.user_id
    assert [(r["event"], r["user_id"], r["email"]) for r in recorded] == [
        (AuditEvent.REGISTERED, alice, "alice@example.com"),
        (AuditEvent.LOGIN_FAILED, alice, "alice@example.com"),
        (AuditEvent.LOGIN_FAILED, None, "ghost@example.com"),
        (AuditEvent.LOGIN_FAILED, None, None),
        (AuditEvent.LOGIN_SUCCEEDED, alice, "alice@example.com"),
        (AuditEvent.LOGIN_SUCCEEDED, alice, "alice@example.com"),
        (AuditEvent.TOKEN_REFRESHED, alice, None),
        (AuditEvent.TOKEN_REUSE_DETECTED, alice, None),
        (AuditEvent.LOGIN_SUCCEEDED, alice, "alice@example.com"),
        (AuditEvent.SESSION_REVOKED, alice, None),
        (AuditEvent.PASSWORD_CHANGED, alice, None),
        (AuditEvent.LOGGED_OUT, alice, None),
        (AuditEvent.LOGIN_SUCCEEDED, alice, "alice@example.com"),
        (AuditEvent.LOGGED_OUT_ALL, alice, None),
    ]
    assert {(r["ip"], r["user_agent"]) for r in recorded} == {("203.0.113.7", UA)}
    assert {r["at"] for r in recorded} <= {1_800_000_000.0, 1_800_000_060.0}
    assert all(r["actor_id"] in (alice, None) for r in recorded)
    assert json.loads(recorded[3]["detail"]) == {"reason": "invalid_credentials", "during": "login"}


async def test_no_secret_reaches_the_table_or_the_log(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """No password (not even one typed into the e-mail field), token or hash is in any row or log line."""
    caplog.set_level(logging.INFO, logger="keyturn.audit")
    async with make_client(make_settings(), headers={"User-Agent": UA}) as client:
        facts = await scenario(client, clock)
        recorded = await rows(client)
        stored_hash = (await app_of(client).state.services.users.by_email("alice@example.com")).password_hash
    secrets = [*facts.secrets, stored_hash, stored_hash[-22:]]
    table = json.dumps(recorded, default=str)
    lines = [r.getMessage() for r in caplog.records if r.name == "keyturn.audit"]
    assert len(lines) == len(recorded)
    for secret in secrets:
        assert secret not in table
        assert all(secret not in line for line in lines)


async def test_the_log_line_carries_the_record_and_its_hash(
    make_client: ClientFactory, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Each audit log line is one JSON object with the row's fields and chain hash (to anchor the head)."""
    caplog.set_level(logging.INFO, logger="keyturn.audit")
    async with make_client(make_settings()) as client:
        await register(client)
        (row,) = await rows(client)
    (line,) = [r for r in caplog.records if r.name == "keyturn.audit"]
    logged = json.loads(line.getMessage())
    assert logged["hash"] == row["hash"] == line.audit["hash"]  # type: ignore[attr-defined]
    assert logged["event"] == AuditEvent.REGISTERED
    assert logged["email"] == "alice@example.com"


async def test_throttled_logins_are_recorded_once_per_minute(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """A hammering client leaves a lock record and one throttle record a minute, not one per request."""
    async with make_client(make_settings()) as client:
        await register(client)
        for _ in range(5):
            await client.post("/auth/login", json={"email": "alice@example.com", "password": "wrong guess 1"})
        for _ in range(30):
            await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        clock.advance(60)
        await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        recorded = await rows(client)
    events = [r["event"] for r in recorded]
    assert events.count(AuditEvent.LOGIN_FAILED) == 5
    assert events.count(AuditEvent.LOGIN_THROTTLED) == 2
    lock = json.loads(recorded[5]["detail"])
    assert lock == {"reason": "invalid_credentials", "during": "login", "locked_for": 900, "strike": 1}
    throttled = json.loads(next(r["detail"] for r in recorded if r["event"] == AuditEvent.LOGIN_THROTTLED))
    assert throttled == {"scope": "account", "retry_after": 900, "strike": 1}


async def test_rate_limited_registrations_are_recorded(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """A client over the register limit leaves a request.rate_limited record naming the limit."""
    async with make_client(make_settings(rate_limit_register="1/hour")) as client:
        await register(client)
        refused = await client.post("/auth/register", json={"email": "b@example.com", "password": PASSWORD})
        assert refused.status_code == 429
        recorded = await rows(client)
    assert recorded[-1]["event"] == AuditEvent.RATE_LIMITED
    assert json.loads(recorded[-1]["detail"]) == {"scope": "register", "retry_after": 7200}


class DeadStore:
    """An audit store whose database is gone."""

    async def append(self, entry: AuditEntry) -> StoredAuditEntry:
        raise ServiceUnavailable()


async def test_a_dead_audit_store_does_not_fail_the_request(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event happened; if its row cannot be written the log line still is, marked unpersisted."""
    caplog.set_level(logging.INFO, logger="keyturn.audit")
    async with make_client(make_settings()) as client:
        monkeypatch.setattr(app_of(client).state.services.audit, "_store", DeadStore())
        await register(client)
    (line,) = [r for r in caplog.records if r.name == "keyturn.audit"]
    assert line.levelno == logging.ERROR
    assert json.loads(line.getMessage())["persisted"] is False


async def test_a_disabled_account_login_is_recorded_and_not_counted_as_a_guess(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Right password, disabled account: 403, a login.failed record with the reason, and no throttle strike."""
    async with make_client(make_settings(rate_limit_login="2/hour")) as client:
        user = await register(client)
        await app_of(client).state.services.users.update(user["id"], roles=None, disabled=True)
        for _ in range(3):
            answer = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
            assert answer.status_code == 403, answer.text
        recorded = await rows(client)
    failures = [r for r in recorded if r["event"] == AuditEvent.LOGIN_FAILED]
    assert len(failures) == 3
    assert json.loads(failures[0]["detail"]) == {"reason": "account_disabled", "during": "login"}
    assert failures[0]["user_id"] == user["id"]


async def test_a_new_password_refused_by_policy_is_not_a_wrong_guess(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Right current password, weak new one: 422, and the attempt does not count toward the lock."""
    async with make_client(make_settings(rate_limit_login="2/hour")) as client:
        await register(client)
        token = (await login(client))["access_token"]
        for _ in range(3):
            weak = await client.post(
                "/auth/password", json={"current_password": PASSWORD, "new_password": "password"}, headers=bearer(token)
            )
            assert weak.status_code == 422, weak.text
        await login(client)


async def test_admin_and_key_events_are_recorded_without_the_key(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Role and disable changes, API keys created and revoked, a signing-key rotation: each one record, no key."""
    settings = make_settings(roles={"user": ["orders:read"], "admin": ["orders:read"]})
    async with make_client(settings, headers={"User-Agent": UA}) as client:
        services = app_of(client).state.services
        root = await services.accounts.register("root@example.com", PASSWORD, roles=["admin", "user"])
        alice = await register(client)
        admin = bearer((await login(client, "root@example.com"))["access_token"])
        mine = bearer((await login(client))["access_token"])
        created = await client.post("/auth/api-keys", json={"name": "ci", "scopes": ["orders:read"]}, headers=mine)
        assert created.status_code == 201, created.text
        key, key_id = created.json()["data"]["key"], created.json()["data"]["api_key"]["id"]
        assert (await client.delete(f"/auth/api-keys/{key_id}", headers=mine)).status_code == 200
        patch = f"/admin/users/{alice['id']}"
        assert (await client.patch(patch, json={"roles": ["user", "auditor"]}, headers=admin)).status_code == 200
        assert (await client.patch(patch, json={"disabled": True}, headers=admin)).status_code == 200
        assert (await client.patch(patch, json={"disabled": False}, headers=admin)).status_code == 200
        rotated = await client.post("/admin/keys/rotate", headers=admin)
        assert rotated.status_code == 200, rotated.text
        recorded = await rows(client)
    by_event = {r["event"]: r for r in recorded}
    for event in (
        AuditEvent.API_KEY_CREATED,
        AuditEvent.API_KEY_REVOKED,
        AuditEvent.ROLES_CHANGED,
        AuditEvent.USER_DISABLED,
        AuditEvent.USER_ENABLED,
        AuditEvent.KEY_ROTATED,
    ):
        assert event in by_event, event
    assert by_event[AuditEvent.API_KEY_CREATED]["actor_id"] == alice["id"]
    assert json.loads(by_event[AuditEvent.API_KEY_REVOKED]["detail"]) == {"api_key_id": key_id}
    assert by_event[AuditEvent.USER_DISABLED]["actor_id"] == root.id
    assert by_event[AuditEvent.USER_DISABLED]["user_id"] == alice["id"]
    assert json.loads(by_event[AuditEvent.ROLES_CHANGED]["detail"])["roles"] == ["auditor", "user"]
    assert json.loads(by_event[AuditEvent.KEY_ROTATED]["detail"])["kid"] == rotated.json()["data"]["kid"]
    assert by_event[AuditEvent.KEY_ROTATED]["actor_id"] == root.id
    assert key not in json.dumps(recorded, default=str)
    assert key[:20] not in json.dumps(recorded, default=str)
