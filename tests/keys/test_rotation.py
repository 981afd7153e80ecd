"""Key rotation in one process, on a frozen clock: no logouts, pre-published keys, retirement on time.

The ring holds a ``current`` key (signs), a ``next`` key (published before it signs)
and ``retired`` keys (published until no token they signed can be valid). Time is
moved with the injected :class:`FrozenClock`; nothing sleeps.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import delete, select

from keyturn.clock import FrozenClock
from keyturn.store.tables import signing_keys
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register
from tests.guarded import guarded_api

pytestmark = pytest.mark.anyio

#: reload interval (2 s) + access TTL (900 s) + leeway (5 s): how long a retired key stays published.
RETIRED_FOR = 2 + 900 + 5


def kid_of(token: str) -> str:
    head = token.split(".", maxsplit=1)[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


async def admin_headers(client: httpx.AsyncClient, email: str = "root@example.com") -> dict[str, str]:
    """An administrator, created through the services and logged in over HTTP."""
    await app_of(client).state.services.accounts.register(email, PASSWORD, roles=["admin", "user"])
    return bearer((await login(client, email))["access_token"])


async def ring_states(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """GET /admin/keys grouped by state."""
    response = await client.get("/admin/keys", headers=headers)
    assert response.status_code == 200, response.text
    grouped: dict[str, list[dict[str, Any]]] = {"current": [], "next": [], "retired": []}
    for key in response.json()["data"]["keys"]:
        grouped[key["state"]].append(key)
    return grouped


async def stored_kids(client: httpx.AsyncClient) -> set[str]:
    """The kids of every row of the signing_keys table."""
    async with app_of(client).state.services.db.transaction() as conn:
        return {row.kid for row in await conn.execute(select(signing_keys.c.kid))}


async def published(client: httpx.AsyncClient) -> list[str]:
    return [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]


async def test_first_start_publishes_a_current_and_a_next_key(client: httpx.AsyncClient) -> None:
    """A fresh server signs with its current key and already publishes the next one, current first."""
    await register(client)
    token = (await login(client))["access_token"]
    ring = app_of(client).state.services.keys.ring
    upcoming = ring.next_key
    assert upcoming is not None
    assert await published(client) == [ring.signing_key.kid, upcoming.kid]
    assert kid_of(token) == ring.signing_key.kid


async def test_rotation_promotes_the_prepublished_key_and_logs_nobody_out(
    client: httpx.AsyncClient, clock: FrozenClock, backend: str
) -> None:
    """POST /admin/keys/rotate makes the published next key sign; old tokens keep working; the old key is retired."""
    admin = await admin_headers(client)
    await register(client)
    old = await login(client)
    before = await ring_states(client, admin)
    (old_current,), (prepublished,) = before["current"], before["next"]
    assert kid_of(old["access_token"]) == old_current["kid"]

    rotated = await client.post("/admin/keys/rotate", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["data"]["kid"]
    assert new_kid == prepublished["kid"]

    assert kid_of((await login(client))["access_token"]) == new_kid
    assert (await client.get("/auth/me", headers=bearer(old["access_token"]))).status_code == 200
    refreshed = await client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert kid_of(refreshed.json()["data"]["access_token"]) == new_kid

    after = await ring_states(client, admin)
    assert [k["kid"] for k in after["current"]] == [new_kid]
    assert [k["kid"] for k in after["retired"]] == [old_current["kid"]]
    assert len(after["next"]) == 1
    assert after["next"][0]["kid"] not in {new_kid, old_current["kid"]}
    assert await published(client) == [new_kid, after["next"][0]["kid"], old_current["kid"]]


async def test_a_retired_key_leaves_the_jwks_exactly_when_its_tokens_cannot_be_valid(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """Retired at T, the key is published until T + reload + TTL + leeway, verifying its last token until then."""
    await register(client)
    keys = app_of(client).state.services.keys
    last_old_token = (await login(client))["access_token"]
    old_kid = kid_of(last_old_token)
    retired_at = clock.now()
    await keys.rotate()
    retired = keys.ring.verification_key(old_kid)
    assert retired is not None
    assert retired.state == "retired"
    assert retired.drop_after == retired_at + RETIRED_FOR

    # exp = T + 900: still accepted within the leeway, and its key still published.
    clock.advance(900 + 4)
    assert (await client.get("/auth/me", headers=bearer(last_old_token))).status_code == 200
    assert old_kid in await published(client)

    clock.advance(RETIRED_FOR - 904 - 1)
    assert old_kid in await published(client)
    clock.advance(1)
    assert old_kid not in await published(client)
    assert (await keys.reload()).verification_key(old_kid) is None


async def test_the_dropped_key_is_deleted_from_the_database_at_the_next_rotation(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """Retired keys past their drop time are removed from the table, not kept forever."""
    keys = app_of(client).state.services.keys
    first = keys.ring.signing_key.kid
    await keys.rotate()
    clock.advance(RETIRED_FOR + 1)
    await keys.rotate()
    stored = await stored_kids(client)
    assert first not in stored
    assert len(stored) == 3  # current, next, and the key retired just now


async def test_a_ring_without_a_next_key_gets_one_at_start(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """A database holding only a current key (as before pre-publishing) gains a next key, without a rotation."""
    settings = make_settings()
    async with make_client(settings) as client:
        ring = app_of(client).state.services.keys.ring
        current, upcoming = ring.signing_key.kid, ring.next_key
        assert upcoming is not None
        async with app_of(client).state.services.db.transaction() as conn:
            await conn.execute(delete(signing_keys).where(signing_keys.c.kid == upcoming.kid))
    async with make_client(settings) as client:
        ring = app_of(client).state.services.keys.ring
        assert ring.signing_key.kid == current
        assert ring.next_key is not None
        assert ring.next_key.kid != upcoming.kid
        assert await stored_kids(client) == {current, ring.next_key.kid}


async def test_compromise_rotation_drops_every_old_key_and_clients_refresh(client: httpx.AsyncClient) -> None:
    """--compromised: a fresh key (not the pre-published one) signs, old tokens fail, refresh still works."""
    admin = await admin_headers(client)
    await register(client)
    old = await login(client)
    before = await ring_states(client, admin)
    old_kids = {k["kid"] for group in before.values() for k in group}

    rotated = await client.post("/admin/keys/rotate", headers=admin, json={"compromised": True})
    new_kid = rotated.json()["data"]["kid"]
    assert new_kid not in old_kids
    assert old_kids.isdisjoint(await published(client))
    assert_error(await client.get("/auth/me", headers=bearer(old["access_token"])), 401, "TOKEN_INVALID")

    refreshed = await client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["data"]["access_token"]
    assert kid_of(token) == new_kid
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_automatic_rotation_runs_once_per_interval(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """KEYTURN_KEY_ROTATION_INTERVAL: after the interval the next key signs, once, and the rotation is audited."""
    async with make_client(make_settings(key_rotation_interval="1h")) as client:
        await register(client)
        keys = app_of(client).state.services.keys
        first, upcoming = keys.ring.signing_key.kid, keys.ring.next_key
        assert upcoming is not None
        clock.advance(3599)
        assert kid_of((await login(client))["access_token"]) == first
        clock.advance(1)
        assert kid_of((await login(client))["access_token"]) == upcoming.kid
        clock.advance(2)
        assert kid_of((await login(client))["access_token"]) == upcoming.kid
        assert len(keys.ring.in_state("current")) == 1
        rotations = await app_of(client).state.services.audit.page(
            user_id=None, event="signing_key.rotated", before=None, limit=10
        )
        automatic = [r.entry.detail for r in rotations]
        assert {"kid": upcoming.kid, "alg": "ES256", "compromised": False, "automatic": True} in automatic
        assert all(r.entry.actor_id is None for r in rotations)


async def test_concurrent_rotations_on_two_instances_promote_once(
    make_client: ClientFactory, make_settings: SettingsFactory, backend: str
) -> None:
    """Two instances rotating at the same moment leave one current and one next key, and agree on the signer."""
    settings = make_settings()
    async with make_client(settings) as first, make_client(settings) as second:
        managers = [app_of(first).state.services.keys, app_of(second).state.services.keys]
        prepublished = managers[0].ring.next_key
        assert prepublished is not None
        results: list[str] = []

        async def rotate(index: int) -> None:
            results.append((await managers[index].rotate()).kid)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(rotate, 0)
            tasks.start_soon(rotate, 1)
        assert results == [prepublished.kid, prepublished.kid]
        ring = await managers[0].reload()
        assert [k.kid for k in ring.in_state("current")] == [prepublished.kid]
        assert len(ring.in_state("next")) == 1


async def test_changing_the_algorithm_rotates_without_logging_anyone_out(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Restarting with another KEYTURN_ALGORITHM makes a key of it sign; tokens of the old key still verify."""
    async with make_client(make_settings(algorithm="ES256")) as client:
        await register(client)
        old = (await login(client))["access_token"]
        old_next = app_of(client).state.services.keys.ring.next_key
    async with make_client(make_settings(algorithm="EdDSA")) as client:
        ring = app_of(client).state.services.keys.ring
        assert ring.signing_key.alg == "EdDSA"
        assert ring.next_key is not None
        assert ring.next_key.alg == "EdDSA"
        assert old_next is not None
        assert ring.verification_key(old_next.kid) is None  # never signed: dropped at once
        assert (await client.get("/auth/me", headers=bearer(old))).status_code == 200
        new = (await login(client))["access_token"]
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "==="))["alg"] == "EdDSA"
        algs = {k["alg"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
        assert algs == {"ES256", "EdDSA"}


async def test_only_administrators_rotate(client: httpx.AsyncClient) -> None:
    """Rotation without a token is UNAUTHORIZED, by a plain user FORBIDDEN; a body with unknown fields is refused."""
    assert_error(await client.post("/admin/keys/rotate"), 401, "UNAUTHORIZED")
    await register(client)
    user = bearer((await login(client))["access_token"])
    assert_error(await client.post("/admin/keys/rotate", headers=user), 403, "FORBIDDEN")
    assert_error(await client.get("/admin/keys", headers=user), 403, "FORBIDDEN")
    admin = await admin_headers(client)
    assert_error(await client.post("/admin/keys/rotate", headers=admin, json={"now": True}), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_hmac_mode_cannot_rotate_over_http(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """In HMAC mode the key is KEYTURN_SECRET: rotation is refused with a 422 saying so, never a 500."""
    async with make_client(make_settings(algorithm="HS256", secret="x" * 32)) as client:
        admin = await admin_headers(client)
        body = assert_error(await client.post("/admin/keys/rotate", headers=admin), 422, "VALIDATION_ERROR")
        assert "KEYTURN_SECRET" in body["error"]["message"]


async def test_rotation_is_audited(client: httpx.AsyncClient) -> None:
    """A rotation through the admin API leaves a signing_key.rotated record naming the new kid and the actor."""
    admin = await admin_headers(client)
    kid = (await client.post("/admin/keys/rotate", headers=admin)).json()["data"]["kid"]
    records = await app_of(client).state.services.audit.page(
        user_id=None, event="signing_key.rotated", before=None, limit=10
    )
    assert len(records) == 1
    assert records[0].entry.detail["kid"] == kid
    assert records[0].entry.actor_id is not None


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_guards_pick_up_the_new_key_without_an_extra_fetch(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """A guard that cached the JWKS before a rotation verifies new-key tokens at once: the key was pre-published."""
    async with make_client(make_settings()) as client:
        app = app_of(client)
        fetches: list[str] = []

        async def count(request: httpx.Request) -> None:
            fetches.append(request.url.path)

        async with guarded_api(app, clock, on_request=count) as resource:
            await register(client)
            old = (await login(client))["access_token"]
            assert (await resource.get("/orders", headers=bearer(old))).status_code == 200
            jwks_fetches = fetches.count("/.well-known/jwks.json")
            assert jwks_fetches == 1

            await app.state.services.keys.rotate()
            new = (await login(client))["access_token"]
            assert kid_of(new) != kid_of(old)
            assert (await resource.get("/orders", headers=bearer(new))).status_code == 200
            assert (await resource.get("/orders", headers=bearer(old))).status_code == 200
            assert fetches.count("/.well-known/jwks.json") == jwks_fetches

            # After a compromise rotation the key was never published before: the guard refetches once
            # (no sooner than its unknown-kid floor after the last fetch).
            clock.advance(5)
            await app.state.services.keys.rotate(compromised=True)
            fresh = (await login(client))["access_token"]
            assert (await resource.get("/orders", headers=bearer(fresh))).status_code == 200
            assert fetches.count("/.well-known/jwks.json") == jwks_fetches + 1
