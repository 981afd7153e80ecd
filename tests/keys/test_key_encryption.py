"""Private keys at rest: sealed with ``KEYTURN_KEY_ENCRYPTION_KEY``, whose replacement happens in place.

A missing KEK, or one that opens nothing, refuses to start.
"""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest
from sqlalchemy import select

from keyturn.clock import FrozenClock
from keyturn.errors import ConfigurationError
from tests.conftest import ClientFactory, SettingsFactory, app_of, bearer, login, register

pytestmark = pytest.mark.anyio


def new_kek() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


async def stored_rows(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(kid, private_jwk) of every row of the signing_keys table, read with SQL."""
    from keyturn.store.tables import signing_keys  # noqa: PLC0415 - only these tests look at the table

    async with app_of(client).state.services.db.transaction() as conn:
        return [(r.kid, r.private_jwk) for r in await conn.execute(select(signing_keys))]


async def test_private_keys_are_sealed_in_the_database(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """With a KEK every row is a JWE (dir/A256GCM), not JSON, and holds no private number in clear."""
    async with make_client(make_settings(key_encryption_key=new_kek())) as client:
        await register(client)
        token = (await login(client))["access_token"]
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
        rows = await stored_rows(client)
        private_numbers = [json.loads(k.private_jwk_json())["d"] for k in app_of(client).state.services.keys.ring]
    assert len(rows) == 2
    for _, stored in rows:
        assert not stored.lstrip().startswith("{")
        with pytest.raises(ValueError):  # noqa: PT011 - json.JSONDecodeError
            json.loads(stored)
        header = json.loads(base64.urlsafe_b64decode(stored.split(".")[0] + "=="))
        assert header == {"alg": "dir", "enc": "A256GCM", "cty": "jwk+json"}
        assert all(d not in stored for d in private_numbers)


async def test_without_a_kek_rows_are_plain_and_sealed_once_one_is_set(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Setting a KEK later seals the keys already stored, on the next start; tokens issued before keep working."""
    async with make_client(make_settings()) as client:
        await register(client)
        token = (await login(client))["access_token"]
        assert all(stored.startswith("{") for _, stored in await stored_rows(client))
    async with make_client(make_settings(key_encryption_key=new_kek())) as client:
        assert all(not stored.startswith("{") for _, stored in await stored_rows(client))
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
@pytest.mark.parametrize(
    ("kek", "message"),
    [(None, "KEYTURN_KEY_ENCRYPTION_KEY is required"), ("wrong", "does not decrypt")],
    ids=["missing-kek", "wrong-kek"],
)
async def test_a_missing_or_wrong_kek_refuses_to_start(
    make_client: ClientFactory, make_settings: SettingsFactory, kek: str | None, message: str
) -> None:
    """Sealed keys and no KEK, or another KEK: start-up fails with a ConfigurationError that says which."""
    async with make_client(make_settings(key_encryption_key=new_kek())):
        pass
    settings = make_settings(key_encryption_key=None if kek is None else new_kek())
    with pytest.raises(ConfigurationError, match=message):
        async with make_client(settings):
            pass


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
@pytest.mark.parametrize(
    "value",
    [base64.urlsafe_b64encode(b"k" * 31).decode(), "%%%%", ""],
    ids=["31-bytes", "not-base64", "empty"],
)
def test_a_malformed_kek_is_refused_at_load(make_settings: SettingsFactory, value: str) -> None:
    """KEYTURN_KEY_ENCRYPTION_KEY must be 32 bytes of base64url, checked before anything starts."""
    with pytest.raises(ConfigurationError, match="KEYTURN_KEY_ENCRYPTION_KEY"):
        make_settings(key_encryption_key=value)


async def jwks_kids(client: httpx.AsyncClient) -> set[str]:
    return {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}


async def test_the_kek_is_replaced_in_place_with_the_previous_one_beside_it(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """New KEK + the old as KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS: the keys move under the new one at start.

    Same keys (tokens issued before still verify); afterwards the new KEK alone opens them, the old
    one no longer does, and a second start with both rewrites nothing.
    """
    old, new = new_kek(), new_kek()
    async with make_client(make_settings(key_encryption_key=old)) as client:
        await register(client)
        token = (await login(client))["access_token"]
        kids = await jwks_kids(client)
        before = dict(await stored_rows(client))
    async with make_client(make_settings(key_encryption_key=new, key_encryption_key_previous=old)) as client:
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
        assert await jwks_kids(client) == kids
        moved = dict(await stored_rows(client))
    assert moved.keys() == before.keys()
    assert all(moved[kid] != before[kid] for kid in before)
    async with make_client(make_settings(key_encryption_key=new, key_encryption_key_previous=old)) as client:
        assert dict(await stored_rows(client)) == moved
    async with make_client(make_settings(key_encryption_key=new)) as client:
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
        assert await jwks_kids(client) == kids
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        async with make_client(make_settings(key_encryption_key=old)):
            pass


async def test_keys_in_clear_are_sealed_with_the_new_kek_when_a_previous_one_is_named(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    async with make_client(make_settings()) as client:
        await register(client)
    new = new_kek()
    async with make_client(make_settings(key_encryption_key=new, key_encryption_key_previous=new_kek())):
        pass
    async with make_client(make_settings(key_encryption_key=new)) as client:
        assert all(not stored.startswith("{") for _, stored in await stored_rows(client))


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_keys_sealed_with_neither_kek_refuse_to_start(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """A third KEK: the error names both settings, and nothing is rewritten."""
    async with make_client(make_settings(key_encryption_key=new_kek())):
        pass
    settings = make_settings(key_encryption_key=new_kek(), key_encryption_key_previous=new_kek())
    with pytest.raises(ConfigurationError, match="nor KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS"):
        async with make_client(settings):
            pass


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
def test_a_previous_kek_needs_a_current_one_and_the_same_format(make_settings: SettingsFactory) -> None:
    with pytest.raises(
        ConfigurationError, match="KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS needs KEYTURN_KEY_ENCRYPTION_KEY"
    ):
        make_settings(key_encryption_key_previous=new_kek())
    with pytest.raises(ConfigurationError, match="KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS must"):
        make_settings(key_encryption_key=new_kek(), key_encryption_key_previous="%%%%")


async def test_an_instance_still_on_the_old_kek_keeps_serving_while_the_fleet_moves(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """Mid-rollout: another instance re-sealed the keys with the new KEK; this one cannot open them.

    It keeps the keys it loaded -- logins, the JWK Set and token checks all answer -- instead of
    failing requests, until it restarts with the new KEK.
    """
    old, new = new_kek(), new_kek()
    async with make_client(make_settings(key_encryption_key=old)) as behind:
        await register(behind)
        kids = await jwks_kids(behind)
        async with make_client(make_settings(key_encryption_key=new, key_encryption_key_previous=old)) as ahead:
            clock.advance(10)  # past the ring's reload interval: the old instance re-reads the table
            assert await jwks_kids(behind) == kids
            token = (await login(behind))["access_token"]
            assert (await behind.get("/auth/me", headers=bearer(token))).status_code == 200
            assert (await ahead.get("/auth/me", headers=bearer(token))).status_code == 200
            unknown = forge_with_unknown_kid(token)
            assert (await behind.get("/auth/me", headers=bearer(unknown))).status_code == 401


def forge_with_unknown_kid(token: str) -> str:
    """``token`` with its header naming a key nobody holds (the signature no longer matters)."""
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=="))
    fields["kid"] = "unknown-" + secrets.token_hex(4)
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    return f"{forged}.{payload}.{signature}"
