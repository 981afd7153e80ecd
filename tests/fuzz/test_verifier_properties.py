"""Property tests of the one token verifier: whatever comes in, only keyturn's own errors come out.

Hypothesis feeds :func:`verify_access_token` arbitrary strings, compact-looking tokens
built from arbitrary JSON, tokens *we* signed over arbitrary claims, and mutations of a
valid token. The verifier may accept only a token we signed whose claims pass the
checks; everything else must raise a :class:`~keyturn.errors.KeyturnError` (never a
``ValueError``, ``KeyError``, ``RecursionError`` … from a library underneath).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OctKey

from keyturn.crypto.access_tokens import (
    AccessToken,
    VerifyOptions,
    issue_access_token,
    read_header,
    verify_access_token,
)
from keyturn.crypto.keys import KeyRing, SigningKey, generate_signing_key, hmac_signing_key
from keyturn.errors import KeyturnError, TokenExpired, TokenInvalid

NOW = 1_800_000_000.0
ISSUER, AUDIENCE = "http://keyturn.test", "keyturn-tests"
EC_KEY = generate_signing_key("ES256", now=NOW)
HMAC_KEY = hmac_signing_key(b"k" * 32, "HS256", now=NOW)
RING = KeyRing([EC_KEY, HMAC_KEY])
DIR_KEY = OctKey.generate_key(256)
PLAIN = VerifyOptions(issuer=ISSUER, audience=AUDIENCE)
NESTED = VerifyOptions(issuer=ISSUER, audience=AUDIENCE, decryption_key=DIR_KEY)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
claim_names = st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "roles", "scope", "email"])


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def outcome(token: str, options: VerifyOptions = PLAIN) -> AccessToken | KeyturnError:
    """The verified token or keyturn's error; anything else escapes and fails the property."""
    try:
        return verify_access_token(token, RING, options, now=NOW)
    except KeyturnError as error:
        return error


def valid_claims(**overrides: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "exp": NOW + 900, "iat": NOW, "jti": "j"}
    claims.update(overrides)
    return claims


def signed(key: SigningKey, claims: Any, header: dict[str, Any] | None = None) -> str:
    """A JWS over ``claims`` (any JSON value), signed with our key: only our checks stand between it and use."""
    protected = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
    return jws.serialize_compact(protected, json.dumps(claims), key.key, algorithms=[key.alg])


@FUZZ
@given(st.text(max_size=300) | st.text(alphabet="abcAB-_.=", max_size=300))
def test_arbitrary_strings_raise_only_keyturn_errors(token: str) -> None:
    """Random text is refused with TokenInvalid, by the verifier and by the header reader."""
    assert isinstance(outcome(token), TokenInvalid)
    assert isinstance(outcome(token, NESTED), TokenInvalid)
    with pytest.raises(TokenInvalid):
        read_header(token)


@FUZZ
@given(json_values, json_values, st.binary(max_size=80), st.sampled_from([3, 5]))
def test_compact_shaped_garbage_raises_only_keyturn_errors(header: Any, payload: Any, sig: bytes, parts: int) -> None:
    """Well-formed base64url segments of arbitrary JSON never verify and never crash."""
    token = ".".join([segment(header), segment(payload), b64(sig)])
    if parts == 5:
        token = ".".join([segment(header), "", b64(sig), segment(payload), b64(sig[:16])])
    assert isinstance(outcome(token), TokenInvalid)
    assert isinstance(outcome(token, NESTED), TokenInvalid)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"kid": st.sampled_from([EC_KEY.kid, HMAC_KEY.kid])},
        optional={
            "alg": st.sampled_from(["none", "HS256", "ES256", "RS256", "EdDSA", "HS512", ""]) | st.text(max_size=8),
            "typ": st.sampled_from(["at+jwt", "JWT", "application/at+jwt", ""]) | json_scalars,
            "jku": st.just("https://attacker.example/jwks"),
            "jwk": json_values,
            "crit": st.lists(st.text(max_size=5), max_size=2),
        },
    ),
    json_values,
    st.binary(max_size=80),
)
def test_headers_naming_our_kid_cannot_forge_a_token(header: dict[str, Any], payload: Any, sig: bytes) -> None:
    """A header naming a real kid, with any alg/typ/jku/jwk, still needs a real signature."""
    assert isinstance(outcome(".".join([segment(header), segment(valid_claims()), b64(sig)])), TokenInvalid)
    assert isinstance(outcome(".".join([segment(header), segment(payload), ""])), TokenInvalid)


@FUZZ
@given(
    st.sampled_from([EC_KEY, HMAC_KEY]),
    st.dictionaries(claim_names, json_values, max_size=6),
    st.booleans(),
)
def test_our_signature_over_arbitrary_claims_is_still_checked(
    key: SigningKey, overrides: dict[str, Any], keep_required: bool
) -> None:
    """Signed by us, a token is accepted only if every claim check passes; otherwise a keyturn error."""
    claims = valid_claims(**overrides) if keep_required else overrides
    result = outcome(signed(key, claims))
    if isinstance(result, AccessToken):
        assert result.claims["iss"] == ISSUER
        audience = result.claims["aud"]
        assert audience == AUDIENCE or (isinstance(audience, list) and AUDIENCE in audience)
        assert isinstance(result.claims["sub"], str)
        assert result.claims["sub"]
        assert float(result.claims["exp"]) > NOW - 5
        assert float(result.claims["iat"]) <= NOW + 5
    else:
        assert isinstance(result, TokenInvalid | TokenExpired)


@FUZZ
@given(st.sampled_from([EC_KEY, HMAC_KEY]), json_values)
def test_non_object_payloads_are_refused(key: SigningKey, payload: Any) -> None:
    """A correctly signed payload that is not a JSON object (a list, a number …) is TokenInvalid."""
    assume(not isinstance(payload, dict))
    assert isinstance(outcome(signed(key, payload)), TokenInvalid)


VALID = issue_access_token(EC_KEY, issuer=ISSUER, audience=AUDIENCE, subject="user-1", ttl=900, now=NOW).token
NESTED_VALID = issue_access_token(
    EC_KEY, issuer=ISSUER, audience=AUDIENCE, subject="user-1", ttl=900, now=NOW, encryption_key=DIR_KEY
).token


@FUZZ
@given(st.data())
def test_mutations_of_a_valid_token_never_verify_as_something_else(data: st.DataObject) -> None:
    """Replacing, inserting or deleting characters yields either the original claims or a keyturn error."""
    for token, options in ((VALID, PLAIN), (NESTED_VALID, NESTED)):
        original = verify_access_token(token, RING, options, now=NOW)
        position = data.draw(st.integers(0, len(token) - 1))
        replacement = data.draw(st.text(max_size=3))
        cut = data.draw(st.integers(0, 3))
        mutated = token[:position] + replacement + token[position + cut :]
        result = outcome(mutated, options)
        if isinstance(result, AccessToken):
            assert result.claims == original.claims
        else:
            assert isinstance(result, TokenInvalid)
