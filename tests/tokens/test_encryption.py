"""Signed-and-encrypted access tokens (``KEYTURN_TOKEN_ENCRYPTION=dir``): nested JWTs, end to end.

With the mode on, an access token is a JWS inside a JWE (``dir`` + ``A256GCM``): five
segments, nothing readable without ``KEYTURN_ENCRYPTION_KEY``. The server and a guard
holding the key decrypt, then verify; anyone else gets ``TOKEN_INVALID``.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from joserfc import jwe

from keyturn.clock import FrozenClock
from keyturn.crypto.access_tokens import VerifyOptions, issue_access_token, verify_access_token
from keyturn.crypto.keys import symmetric_key_from_b64
from keyturn.errors import ConfigurationError, TokenInvalid
from keyturn.guard import Guard
from keyturn.settings import Settings
from tests.conftest import ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register
from tests.guarded import AUDIENCE, ISSUER, guarded_api

pytestmark = pytest.mark.anyio


def new_key() -> str:
    """A fresh 32-byte key, base64url without padding, as an operator would generate it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encrypted(make_settings: SettingsFactory, key: str, **overrides: Any) -> Settings:
    return make_settings(token_encryption="dir", encryption_key=key, **overrides)


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_encrypted_tokens_end_to_end(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """Login gives a 5-part nested token whose claims are unreadable; /auth/me and refresh work with it."""
    key = new_key()
    async with make_client(encrypted(make_settings, key)) as client:
        user = await register(client)
        tokens = await login(client)
        token = tokens["access_token"]
        parts = token.split(".")
        assert len(parts) == 5
        assert parts[1] == ""  # dir: no encrypted key
        assert json.loads(_unb64(parts[0])) == {"alg": "dir", "enc": "A256GCM", "cty": "JWT"}
        for segment in parts[1:]:
            raw = _unb64(segment)
            assert b"alice@example.com" not in raw
            assert user["id"].encode() not in raw
            with pytest.raises(ValueError):  # noqa: PT011 - json.JSONDecodeError or UnicodeDecodeError
                json.loads(raw)

        me = await client.get("/auth/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["data"]["user"]["id"] == user["id"]

        refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        assert refreshed.json()["data"]["access_token"].count(".") == 4

        # With the key, the inside is an ordinary keyturn JWS signed by a published key.
        inner = jwe.decrypt_compact(token, symmetric_key_from_b64(key, purpose="test")).plaintext or b""
        inner_header = json.loads(_unb64(inner.decode().split(".")[0]))
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert inner_header["typ"] == "at+jwt"
        assert inner_header["kid"] in {k["kid"] for k in jwks["keys"]}
        assert json.loads(_unb64(inner.decode().split(".")[1]))["sub"] == user["id"]


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_verifiers_without_the_key_refuse(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """A server of the same database without the key, or with another key, answers TOKEN_INVALID."""
    key = new_key()
    async with make_client(encrypted(make_settings, key)) as client:
        await register(client)
        token = (await login(client))["access_token"]
        ring = app_of(client).state.services.keys.ring
    async with make_client(make_settings()) as plain:
        assert_error(await plain.get("/auth/me", headers=bearer(token)), 401, "TOKEN_INVALID")
    async with make_client(encrypted(make_settings, new_key())) as other:
        assert_error(await other.get("/auth/me", headers=bearer(token)), 401, "TOKEN_INVALID")
    async with make_client(encrypted(make_settings, key)) as same:
        assert (await same.get("/auth/me", headers=bearer(token))).status_code == 200

    options = VerifyOptions(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(TokenInvalid):
        verify_access_token(token, ring, options, now=clock.now())


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_encrypted_mode_refuses_plain_and_tampered_tokens(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """In encrypted mode a plain JWS signed with the server's own key, or a bent ciphertext, is TOKEN_INVALID."""
    async with make_client(encrypted(make_settings, new_key())) as client:
        user = await register(client)
        token = (await login(client))["access_token"]
        signing = app_of(client).state.services.keys.ring.signing_key
        plain = issue_access_token(
            signing, issuer=ISSUER, audience=AUDIENCE, subject=user["id"], ttl=900, now=clock.now()
        ).token
        assert_error(await client.get("/auth/me", headers=bearer(plain)), 401, "TOKEN_INVALID")
        head, empty, iv, ciphertext, tag = token.split(".")
        flipped = ciphertext[:-2] + ("A" if ciphertext[-2] != "A" else "B") + ciphertext[-1]
        for bent in (
            f"{head}.{empty}.{iv}.{flipped}.{tag}",
            f"{head}.{empty}.{iv}.{ciphertext}.{tag[::-1]}",
            f"{head}.AAAA.{iv}.{ciphertext}.{tag}",
        ):
            assert_error(await client.get("/auth/me", headers=bearer(bent)), 401, "TOKEN_INVALID")


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_guard_with_the_key_accepts_and_without_refuses(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """A guard given decryption_key accepts the nested token; without it, or with another key, it refuses."""
    key = new_key()
    async with make_client(encrypted(make_settings, key)) as client:
        user = await register(client)
        token = (await login(client))["access_token"]
        app = app_of(client)
        async with guarded_api(app, clock, decryption_key=key) as api:
            response = await api.get("/orders", headers=bearer(token))
            assert response.status_code == 200, response.text
            assert response.json() == {"sub": user["id"]}
        for decryption_key in (None, new_key()):
            async with guarded_api(app, clock, decryption_key=decryption_key) as api:
                assert_error(await api.get("/orders", headers=bearer(token)), 401, "TOKEN_INVALID")


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_a_compromise_rotation_reaches_another_instance_in_encrypted_mode(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """The unknown-kid reload works inside the JWE: a second instance accepts a token of a key it never loaded."""
    settings = encrypted(make_settings, new_key())
    async with make_client(settings) as first, make_client(settings) as second:
        await register(first)
        await app_of(first).state.services.keys.rotate(compromised=True)
        token = (await login(first))["access_token"]
        new_kid = app_of(first).state.services.keys.ring.signing_key.kid
        assert app_of(second).state.services.keys.ring.verification_key(new_kid) is None
        assert (await second.get("/auth/me", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (base64.urlsafe_b64encode(b"k" * 16).decode(), "32 bytes"),
        (base64.urlsafe_b64encode(b"k" * 64).decode(), "32 bytes"),
        ("not base64 at all!", "base64url"),
    ],
    ids=["16-bytes", "64-bytes", "not-base64"],
)
@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
def test_a_bad_encryption_key_refuses_to_start(make_settings: SettingsFactory, value: str, reason: str) -> None:
    """KEYTURN_ENCRYPTION_KEY must be 32 bytes of base64url; anything else is a ConfigurationError at load."""
    with pytest.raises(ConfigurationError, match=reason):
        make_settings(token_encryption="dir", encryption_key=value)


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_the_encryption_key_is_replaced_without_refusing_a_live_token(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """Guards first take the new key with the old as previous, then the server switches (docs/keys.md).

    Tokens the old key encrypted keep working everywhere until they expire; new tokens are
    encrypted with the new key only; once the old key is dropped, its tokens are refused.
    """
    old, new = new_key(), new_key()
    async with make_client(encrypted(make_settings, old)) as client:
        await register(client)
        before = (await login(client))["access_token"]
        app = app_of(client)
        async with guarded_api(app, clock, decryption_key=new, previous_decryption_key=old) as api:
            assert (await api.get("/orders", headers=bearer(before))).status_code == 200
    async with make_client(encrypted(make_settings, new, encryption_key_previous=old)) as client:
        assert (await client.get("/auth/me", headers=bearer(before))).status_code == 200
        after = (await login(client))["access_token"]
        assert (await client.get("/auth/me", headers=bearer(after))).status_code == 200
        app = app_of(client)
        async with guarded_api(app, clock, decryption_key=new, previous_decryption_key=old) as api:
            for token in (before, after):
                assert (await api.get("/orders", headers=bearer(token))).status_code == 200
        async with guarded_api(app, clock, decryption_key=old) as api:
            assert_error(await api.get("/orders", headers=bearer(after)), 401, "TOKEN_INVALID")
    async with make_client(encrypted(make_settings, new)) as client:
        assert_error(await client.get("/auth/me", headers=bearer(before)), 401, "TOKEN_INVALID")
        assert (await client.get("/auth/me", headers=bearer(after))).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
def test_a_previous_encryption_key_needs_the_current_one(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigurationError, match="KEYTURN_ENCRYPTION_KEY_PREVIOUS needs"):
        make_settings(encryption_key_previous=new_key())
    with pytest.raises(ConfigurationError, match="KEYTURN_ENCRYPTION_KEY_PREVIOUS must"):
        make_settings(token_encryption="dir", encryption_key=new_key(), encryption_key_previous="not base64 at all!")
    with pytest.raises(ConfigurationError, match="previous_decryption_key"):
        Guard(
            issuer=ISSUER, audience=AUDIENCE, secret="s" * 32, api_key_exchange=False, previous_decryption_key=new_key()
        )
