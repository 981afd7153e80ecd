"""All 13 algorithms end to end: sign, publish, verify — and an independent check with ``cryptography``.

For each ``KEYTURN_ALGORITHM`` the real server issues a token at login, publishes
the key in its JWKS (nothing for HMAC), and accepts the token on ``/auth/me``. The
signature is then verified *without keyturn and without joserfc*: the public key is
rebuilt from the published JWK's numbers with ``cryptography`` and checked over the
signing input (RSA PKCS#1 v1.5, RSA-PSS with MGF1 and a salt the size of the hash,
ECDSA with the raw ``r || s`` turned into DER, Ed25519, HMAC with the shared secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Final

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keyturn.crypto.keys import ALGORITHMS
from tests.conftest import ClientFactory, SettingsFactory, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

SECRET: Final = "an HMAC secret that is long enough for HS512 use, 64+ bytes long!!"
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: Final = {
    "ES256": ("P-256", ec.SECP256R1, 32),
    "ES384": ("P-384", ec.SECP384R1, 48),
    "ES512": ("P-521", ec.SECP521R1, 66),
}
_PRIVATE_MEMBERS: Final = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _int(segment: str) -> int:
    return int.from_bytes(_unb64(segment), "big")


def verify_independently(alg: str, jwk: dict[str, Any] | None, token: str) -> None:
    """Check ``token``'s signature with ``cryptography`` alone; raises ``InvalidSignature`` if it is wrong."""
    head, payload, signature_segment = token.split(".")
    signing_input = f"{head}.{payload}".encode("ascii")
    signature = _unb64(signature_segment)
    hash_cls = _HASHES[alg[-3:]] if alg != "EdDSA" else hashes.SHA512
    if alg.startswith("HS"):
        expected = hmac.new(SECRET.encode(), signing_input, getattr(hashlib, f"sha{alg[-3:]}")).digest()
        assert hmac.compare_digest(expected, signature)
        return
    assert jwk is not None
    if alg.startswith(("RS", "PS")):
        public = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        assert public.key_size >= 2048
        scheme: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size)
        )
        public.verify(signature, signing_input, scheme, hash_cls())
    elif alg.startswith("ES"):
        crv, curve, size = _CURVES[alg]
        assert jwk["crv"] == crv
        public_ec = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve()).public_key()
        assert len(signature) == 2 * size
        der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
        public_ec.verify(der, signing_input, ec.ECDSA(hash_cls()))
    else:
        assert jwk["kty"] == "OKP"
        assert jwk["crv"] == "Ed25519"
        ed25519.Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"])).verify(signature, signing_input)


def _settings_for(make_settings: SettingsFactory, alg: str) -> Any:
    return make_settings(algorithm=alg, secret=SECRET) if alg.startswith("HS") else make_settings(algorithm=alg)


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
async def test_algorithm_signs_publishes_and_verifies(
    alg: str, make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Login signs with ``alg``; the JWKS publishes the key (not for HMAC); /auth/me accepts; cryptography agrees."""
    async with make_client(_settings_for(make_settings, alg)) as client:
        await register(client)
        token = (await login(client))["access_token"]
        head, payload, _ = token.split(".")
        header = json.loads(_unb64(head))
        assert header == {"alg": alg, "typ": "at+jwt", "kid": header["kid"]}
        claims = json.loads(_unb64(payload))
        assert claims["iss"] == "http://keyturn.test"
        assert claims["aud"] == "keyturn-tests"

        response = await client.get("/.well-known/jwks.json")
        published = response.json()["keys"]
        if alg.startswith("HS"):
            assert published == []
            jwk = None
        else:
            by_kid = {k["kid"]: k for k in published}
            jwk = by_kid[header["kid"]]
            assert jwk["alg"] == alg
            assert jwk["use"] == "sig"
            assert all(not (_PRIVATE_MEMBERS & set(k)) for k in published)
            assert all(k["alg"] == alg for k in published)

        me = await client.get("/auth/me", headers=bearer(token))
        assert me.status_code == 200, me.text

        verify_independently(alg, jwk, token)
        tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{token.split('.')[2]}"
        with pytest.raises((InvalidSignature, AssertionError)):
            verify_independently(alg, jwk, tampered)
        assert_error(await client.get("/auth/me", headers=bearer(tampered)), 401, "TOKEN_INVALID")


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_discovery_names_the_algorithm(
    alg: str, make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """The discovery document advertises the configured algorithm, so standard clients accept it."""
    async with make_client(_settings_for(make_settings, alg)) as client:
        doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["access_token_signing_alg_values_supported"] == [alg]
