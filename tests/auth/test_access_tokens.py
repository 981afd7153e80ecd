"""Access tokens as CONTRACT.md §3 specifies them, and the server's own verification of them."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, SettingsFactory, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

SECRET = "an HMAC secret that is long enough to be safe!"


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_header_and_claims(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Header alg/typ/kid and every listed claim, with a 15-minute lifetime."""
    user = await register(client)
    data = await login(client)
    header, claims = _segment(data["access_token"], 0), _segment(data["access_token"], 1)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": header["kid"]}
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id", "email", "roles", "scope"}
    assert claims["iss"] == "http://keyturn.test"
    assert claims["aud"] == "keyturn-tests"
    assert claims["sub"] == user["id"]
    assert claims["email"] == "alice@example.com"
    assert claims["roles"] == ["user"]
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] - claims["iat"] == 900


async def test_scopes_come_from_roles(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """KEYTURN_ROLES maps the user's roles to the space-separated scope claim."""
    settings = make_settings(roles={"user": ["orders:read", "orders:write"]})
    async with make_client(settings) as client:
        await register(client)
        data = await login(client)
    assert _segment(data["access_token"], 1)["scope"] == "orders:read orders:write"
    assert data["scope"] == "orders:read orders:write"


async def test_expiry_honours_the_leeway(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A token is accepted up to `leeway` seconds after exp, then TOKEN_EXPIRED."""
    await register(client)
    token = (await login(client))["access_token"]
    clock.advance(900 + 4)
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
    clock.advance(2)
    assert_error(await client.get("/auth/me", headers=bearer(token)), 401, "TOKEN_EXPIRED")


async def test_token_from_the_future_is_refused(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """An iat beyond the leeway in the future is refused (a clock-skew or forgery symptom)."""
    await register(client)
    clock.advance(60)
    token = (await login(client))["access_token"]
    clock.advance(-60)
    assert_error(await client.get("/auth/me", headers=bearer(token)), 401, "TOKEN_INVALID")


@pytest.mark.parametrize(
    "forge",
    [
        "alg-none",
        "alg-none-mixed-case",
        "stripped-signature",
        "edited-claims",
        "hmac-with-public-key",
        "unknown-kid",
        "wrong-typ",
        "oversized",
        "garbage",
    ],
)
async def test_forged_tokens_are_refused(client: httpx.AsyncClient, forge: str) -> None:
    """Classic forgeries are answered 401 TOKEN_INVALID with error=invalid_token."""
    await register(client)
    token = (await login(client))["access_token"]
    head, body, sig = token.split(".")
    header, claims = _segment(token, 0), _segment(token, 1)
    jwk = next(k for k in (await client.get("/.well-known/jwks.json")).json()["keys"] if k["kid"] == header["kid"])
    if forge.startswith("alg-none"):
        alg = "none" if forge == "alg-none" else "nOnE"
        forged = f"{_b64(json.dumps({**header, 'alg': alg}).encode())}.{body}."
    elif forge == "stripped-signature":
        forged = f"{head}.{body}."
    elif forge == "edited-claims":
        forged = f"{head}.{_b64(json.dumps({**claims, 'roles': ['admin']}).encode())}.{sig}"
    elif forge == "hmac-with-public-key":
        import hashlib  # noqa: PLC0415
        import hmac  # noqa: PLC0415

        new_head = _b64(json.dumps({**header, "alg": "HS256"}).encode())
        mac = hmac.new(json.dumps(jwk).encode(), f"{new_head}.{body}".encode(), hashlib.sha256).digest()
        forged = f"{new_head}.{body}.{_b64(mac)}"
    elif forge == "unknown-kid":
        forged = f"{_b64(json.dumps({**header, 'kid': 'nope'}).encode())}.{body}.{sig}"
    elif forge == "wrong-typ":
        forged = f"{_b64(json.dumps({**header, 'typ': 'JWT'}).encode())}.{body}.{sig}"
    elif forge == "oversized":
        forged = token + "A" * 8200
    else:
        forged = "definitely.not.a-token"
    response = await client.get("/auth/me", headers=bearer(forged))
    assert_error(response, 401, "TOKEN_INVALID")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("claim", ["iss", "aud"])
async def test_other_issuer_or_audience_is_refused(
    make_client: ClientFactory, make_settings: SettingsFactory, claim: str
) -> None:
    """A token signed with our key but for another issuer or audience is refused."""
    async with make_client(make_settings()) as client:
        await register(client)
        token = (await login(client))["access_token"]
    other = {"issuer": "http://elsewhere.test"} if claim == "iss" else {"audience": "another-api"}
    async with make_client(make_settings(**other)) as client:
        assert_error(await client.get("/auth/me", headers=bearer(token)), 401, "TOKEN_INVALID")


async def test_hmac_mode(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """HS256 with a shared secret is the opt-in mode: tokens verify, the JWKS publishes nothing."""
    async with make_client(make_settings(algorithm="HS256", secret=SECRET)) as client:
        await register(client)
        token = (await login(client))["access_token"]
        assert _segment(token, 0)["alg"] == "HS256"
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
        jwks = await client.get("/.well-known/jwks.json")
        assert jwks.json() == {"keys": []}
        assert SECRET not in jwks.text


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer"],
    ids=["absent", "no-token", "blank-token", "basic", "lowercase-no-token"],
)
async def test_missing_credentials(client: httpx.AsyncClient, header: str | None) -> None:
    """No usable Bearer token is UNAUTHORIZED, with a bare Bearer challenge."""
    headers = {"Authorization": header} if header is not None else {}
    response = await client.get("/auth/me", headers=headers)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'
