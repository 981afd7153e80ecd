"""The attack corpus against the auth server: every attack on ``GET /auth/me`` is a 401, never a 200 or 500.

Runs once per key family (ES256, RS256, EdDSA) and for the HMAC mode (HS256), each
with one server shared by the module.
"""

from __future__ import annotations

import pytest

from tests.conftest import assert_error, bearer
from tests.security.attacks import ATTACKS, Attack
from tests.security.conftest import Issuer, Lure, bearer_bytes

pytestmark = pytest.mark.anyio


async def test_the_genuine_token_is_accepted(issuer: Issuer) -> None:
    """Control: the attacker's own, untouched token opens /auth/me, so refusals below are the rules at work."""
    response = await issuer.client.get("/auth/me", headers=bearer(issuer.forge.genuine))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["user"]["id"] == issuer.user_id


async def test_the_insider_forge_signs_like_the_server(issuer: Issuer) -> None:
    """Control: the genuine header and claims re-signed by the forge are accepted (insiders fail on their rule)."""
    forge = issuer.forge
    response = await issuer.client.get("/auth/me", headers=bearer(forge.sign(forge.header, forge.claims)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
async def test_attack_is_refused(issuer: Issuer, lure: Lure, attack: Attack) -> None:
    """The attack token is answered 401 with the contract code, and the attacker's server hears nothing."""
    token = attack.build(issuer.forge)
    response = await issuer.client.get("/auth/me", headers=bearer_bytes(token))
    assert_error(response, 401, attack.expect)
    assert "invalid_token" in response.headers["www-authenticate"]
    assert lure.requests == []


async def test_the_lure_was_never_contacted(lure: Lure) -> None:
    """After every jku/x5u attack on every server, the attacker's server received zero requests."""
    assert lure.requests == []
