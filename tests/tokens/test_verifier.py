"""The one verifier's rules in isolation: leeway on each time claim, the unknown-kid signal, hostile input.

The attack corpus (tests/security) shows every bad token is refused; these tests pin
the other side — what is accepted at the edges — and that nothing but
:class:`TokenInvalid` / :class:`TokenExpired` ever leaves the verifier.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwk, jws
from joserfc.errors import SecurityWarning

from keyturn.crypto import access_tokens
from keyturn.crypto.access_tokens import (
    MAX_TOKEN_BYTES,
    UnknownKeyId,
    VerifyOptions,
    issue_access_token,
    read_header,
    verify_access_token,
)
from keyturn.crypto.keys import ALGORITHMS, KeyRing, SigningKey, generate_signing_key
from keyturn.errors import TokenExpired, TokenInvalid
from tests.security.attacks import raw_sign

NOW = 1_800_000_000.0
OPTIONS = VerifyOptions(issuer="https://issuer.test", audience="api", leeway=5)
KEY = generate_signing_key("ES256", now=NOW)
RING = KeyRing([KEY])


def token(key: SigningKey = KEY, **claims: Any) -> str:
    """A token signed by ``key`` with the usual claims, any of them overridden."""
    body: dict[str, Any] = {
        "iss": OPTIONS.issuer,
        "sub": "user-1",
        "aud": OPTIONS.audience,
        "exp": int(NOW) + 900,
        "iat": int(NOW),
        "jti": "j1",
    }
    body.update(claims)
    return raw_sign(key.alg, key.key, {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}, body)


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"exp": int(NOW) - 4}, True),
        ({"exp": int(NOW) - 5}, False),
        ({"iat": int(NOW) + 5}, True),
        ({"iat": int(NOW) + 6}, False),
        ({"nbf": int(NOW) + 5}, True),
        ({"nbf": int(NOW) + 6}, False),
        ({"aud": ["other", OPTIONS.audience]}, True),
        ({"exp": float(NOW) + 0.5}, True),
        ({"exp": 2**53 + 1}, True),
        ({"iat": -(2**53) - 1}, True),
        ({"exp": 10**400}, False),
        ({"exp": True}, False),
        ({"exp": str(int(NOW) + 900)}, False),
    ],
    ids=[
        "exp-within-leeway",
        "exp-at-leeway",
        "iat-within",
        "iat-beyond",
        "nbf-within",
        "nbf-beyond",
        "aud-list",
        "float-exp",
        "exp-past-floats-exact-integers",
        "iat-past-floats-exact-integers",
        "exp-overflows-a-float",
        "exp-a-boolean",
        "exp-a-string",
    ],
)
def test_time_and_audience_edges(claims: dict[str, Any], accepted: bool) -> None:
    """Leeway applies symmetrically: exp up to 5 s past, iat/nbf up to 5 s ahead; aud may be a list naming us."""
    signed = token(**claims)
    if accepted:
        assert verify_access_token(signed, RING, OPTIONS, now=NOW).subject == "user-1"
    else:
        with pytest.raises((TokenInvalid, TokenExpired)):
            verify_access_token(signed, RING, OPTIONS, now=NOW)


def test_expired_is_told_apart_from_invalid() -> None:
    """An otherwise valid token past exp + leeway is TokenExpired, so clients know to refresh."""
    with pytest.raises(TokenExpired):
        verify_access_token(token(exp=int(NOW) - 60), RING, OPTIONS, now=NOW)


def test_an_unknown_well_formed_kid_raises_the_reload_signal() -> None:
    """A token of a key not in the ring raises UnknownKeyId (a TokenInvalid), naming the kid to look for."""
    other = generate_signing_key("ES256", now=NOW)
    with pytest.raises(UnknownKeyId) as caught:
        verify_access_token(token(other), RING, OPTIONS, now=NOW)
    assert caught.value.kid == other.kid
    assert caught.value.code == "TOKEN_INVALID"
    assert verify_access_token(token(other), KeyRing([KEY, other]), OPTIONS, now=NOW).kid == other.kid


@pytest.mark.parametrize(
    "kid", ["k" * 129, "../x", "a b", "", "é"], ids=["long", "slash", "space", "empty", "non-ascii"]
)
def test_a_malformed_kid_is_invalid_without_the_reload_signal(kid: str) -> None:
    """Kids outside [A-Za-z0-9._-]{1,128} never trigger a key reload or a JWKS refetch."""
    signed = raw_sign("ES256", KEY.key, {"alg": "ES256", "typ": "at+jwt", "kid": kid}, {"sub": "x"})
    with pytest.raises(TokenInvalid) as caught:
        verify_access_token(signed, RING, OPTIONS, now=NOW)
    assert not isinstance(caught.value, UnknownKeyId)


def test_size_cap_is_checked_before_parsing() -> None:
    """A token over 8 KiB is refused by read_header too, before any base64 or JSON work."""
    with pytest.raises(TokenInvalid):
        read_header("a" * (MAX_TOKEN_BYTES + 1))
    assert read_header(token())["kid"] == KEY.kid


def test_a_retired_key_still_verifies_and_a_next_key_already_does() -> None:
    """Verification is by kid over the whole ring: retired and pre-published keys verify too."""
    retired = KEY.with_state("retired", drop_after=NOW + 900)
    upcoming = generate_signing_key("ES256", now=NOW, state="next")
    ring = KeyRing([retired, upcoming])
    assert verify_access_token(token(retired), ring, OPTIONS, now=NOW).kid == KEY.kid
    assert verify_access_token(token(upcoming), ring, OPTIONS, now=NOW).kid == upcoming.kid


def _token_shaped(alphabet: str, *, text: int, segment: int, segments: tuple[int, int]) -> st.SearchStrategy[str]:
    """Any text up to ``text`` characters, or ``segments`` dot-joined runs of ``alphabet`` up to ``segment`` long."""
    low, high = segments
    runs = st.lists(st.text(alphabet=alphabet, max_size=segment), min_size=low, max_size=high)
    return st.one_of(st.text(max_size=text), runs.map(".".join))


@settings(max_examples=300, deadline=None)
@given(_token_shaped("ABCDEFGHIJabcdefghij0123456789-_=+/ ", text=300, segment=60, segments=(1, 6)))
def test_hostile_strings_only_ever_raise_token_errors(value: str) -> None:
    """Whatever the string, the verifier raises TokenInvalid (or TokenExpired) and nothing else."""
    with pytest.raises((TokenInvalid, TokenExpired)):
        verify_access_token(value, RING, OPTIONS, now=NOW)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_hostile_segments_after_a_real_header_only_raise_token_errors(payload: bytes, signature: bytes) -> None:
    """A genuine header followed by arbitrary payload and signature bytes is refused with a token error."""
    head = token().split(".")[0]
    value = ".".join([head, *(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in (payload, signature))])
    with pytest.raises((TokenInvalid, TokenExpired)):
        verify_access_token(value, RING, OPTIONS, now=NOW)


def test_issued_tokens_round_trip() -> None:
    """issue_access_token output verifies with the ring it was signed from, claims intact."""
    issued = issue_access_token(
        KEY, issuer=OPTIONS.issuer, audience=OPTIONS.audience, subject="u", ttl=60, now=NOW, roles=["a"], scope="s t"
    )
    verified = verify_access_token(issued.token, RING, OPTIONS, now=NOW)
    assert verified.roles == ("a",)
    assert verified.scopes == frozenset({"s", "t"})
    assert verified.expires_at == issued.expires_at


#: Algorithms whose signature is a function of key and input alone (RSASSA-PKCS1-v1_5, EdDSA, HMAC).
DETERMINISTIC = frozenset({"RS256", "RS384", "RS512", "EdDSA", "HS256", "HS384", "HS512"})


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_issued_tokens_are_what_joserfc_signs(alg: str) -> None:
    """keyturn signs through joserfc's algorithm object with its header encoded once per key: the token
    must be the one ``jws.serialize_compact`` makes for the same header and payload (byte for byte where
    the signature is deterministic), and verify with joserfc's own compact deserialisation."""
    key = generate_signing_key(alg, now=NOW)
    issued = issue_access_token(key, issuer=OPTIONS.issuer, audience=OPTIONS.audience, subject="u", ttl=60, now=NOW)
    header_segment, payload_segment, _ = issued.token.split(".")
    header = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    payload = base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4))
    with warnings.catch_warnings():  # joserfc's own warning for the name "EdDSA" (keyturn's choice)
        warnings.simplefilter("ignore", SecurityWarning)
        expected = jws.serialize_compact(header, payload, key.key, algorithms=[alg])
        opened = jws.deserialize_compact(issued.token, key.key, algorithms=[alg])
    assert header_segment == expected.split(".")[0]
    if alg in DETERMINISTIC:
        assert issued.token == expected
    assert opened.headers() == header
    assert opened.payload == payload
    assert verify_access_token(issued.token, KeyRing([key]), OPTIONS, now=NOW).subject == "u"


def test_a_token_names_the_key_that_signed_it_however_many_keys_sign() -> None:
    """The encoded header is remembered per key, a bounded number of them: after more keys than it
    keeps, each key's tokens still carry that key's own ``kid`` and verify with it alone."""
    keys = [generate_signing_key("HS256", now=NOW) for _ in range(access_tokens._MAX_HEADER_SEGMENTS + 6)]
    for key in [*keys, *keys[:3]]:
        issued = issue_access_token(key, issuer=OPTIONS.issuer, audience=OPTIONS.audience, subject="u", ttl=60, now=NOW)
        assert read_header(issued.token)["kid"] == key.kid
        verify_access_token(issued.token, KeyRing([key]), OPTIONS, now=NOW)
    assert access_tokens._header_segment.cache_info().currsize <= access_tokens._MAX_HEADER_SEGMENTS


def test_checked_headers_are_remembered_a_bounded_number_and_only_short_ones() -> None:
    """The verifier remembers headers that passed its checks, the most recently used few, none of them
    long: a stream of distinct headers (unknown kids, each refused) never grows the memo past its bound,
    a header too long to keep is still checked, and a kept one still goes through the key ring."""
    remembered = access_tokens._remembered_header
    remembered.cache_clear()
    for index in range(access_tokens._MAX_CACHED_HEADERS + 10):
        header = {"alg": KEY.alg, "typ": "at+jwt", "kid": f"unknown-{index}"}
        with pytest.raises(UnknownKeyId):
            verify_access_token(raw_sign(KEY.alg, KEY.key, header, {"sub": "u"}), RING, OPTIONS, now=NOW)
    assert remembered.cache_info().currsize == access_tokens._MAX_CACHED_HEADERS

    remembered.cache_clear()
    long_kid = "k" * (access_tokens._MAX_CACHED_HEADER_CHARS + 1)
    too_long = raw_sign(KEY.alg, KEY.key, {"alg": KEY.alg, "typ": "at+jwt", "kid": long_kid}, b"{}")
    with pytest.raises(TokenInvalid):
        verify_access_token(too_long, RING, OPTIONS, now=NOW)
    assert remembered.cache_info().currsize == 0

    good = token()
    verify_access_token(good, RING, OPTIONS, now=NOW)
    verify_access_token(good, RING, OPTIONS, now=NOW)
    assert remembered.cache_info().hits == 1
    with pytest.raises(UnknownKeyId):
        verify_access_token(good, KeyRing([generate_signing_key("ES256", now=NOW)]), OPTIONS, now=NOW)


#: RFC 7515 §2 and §7.1's compact serialisation, as a grammar: unpadded base64url segments and dots.
_COMPACT_GRAMMAR = re.compile(r"[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*")


@settings(max_examples=300, deadline=None)
@given(_token_shaped("AZaz09-_+/= \n\t.é\u200b\uff21\x00\x7f", text=80, segment=12, segments=(3, 3)))
def test_the_alphabet_check_admits_exactly_the_compact_grammar(value: str) -> None:
    """The verifier's character check (a byte deletion, not a regex) accepts a string exactly when
    RFC 7515's grammar does: every character outside base64url and the dot -- padding, the standard
    alphabet's ``+`` and ``/``, whitespace, control and non-ASCII look-alikes -- is refused anywhere."""
    try:
        access_tokens._segments(value)
    except TokenInvalid:
        accepted = False
    else:
        accepted = True
    shaped = value.split(".")
    well_shaped = (len(shaped) == 3 and all(shaped)) or (
        len(shaped) == 5 and shaped[0] and not shaped[1] and all(shaped[2:])
    )
    assert accepted == bool(_COMPACT_GRAMMAR.fullmatch(value) and well_shaped)


@pytest.mark.parametrize("char", [*map(chr, range(128)), "é", "\u200b", "\uff21", "\U0001f600"])
def test_each_character_is_admitted_in_a_segment_exactly_when_base64url_has_it(char: str) -> None:
    """Every ASCII character, and non-ASCII look-alikes, put at the start, the middle and the end of
    each segment of a well-shaped token: refused unless base64url has it."""
    admitted = bool(_COMPACT_GRAMMAR.fullmatch(char)) and char != "."
    segments = ["eyJh", "e30", "c2ln"]
    for index in range(3):
        for at in (0, 2, 4):
            value = ".".join(s[:at] + char + s[at:] if i == index else s for i, s in enumerate(segments))
            if admitted:
                assert access_tokens._segments(value) == value.split(".")
            else:
                with pytest.raises(TokenInvalid):
                    access_tokens._segments(value)


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("ES256", jwk.generate_key("EC", "P-384")),
        ("ES384", jwk.generate_key("EC", "P-256")),
        ("ES256", jwk.generate_key("OKP", "Ed25519")),
        ("EdDSA", jwk.generate_key("OKP", "X25519")),
        ("RS256", jwk.generate_key("EC", "P-256")),
        ("HS256", jwk.generate_key("EC", "P-256")),
        ("EdDSA", jwk.generate_key("oct", 256)),
        ("ES256", jwk.generate_key("EC", "P-256", parameters={"use": "enc"})),
        ("ES256", jwk.generate_key("EC", "P-256", parameters={"alg": "ES384"})),
        ("none", jwk.generate_key("oct", 256)),
    ],
    ids=[
        "p384-as-es256",
        "p256-as-es384",
        "okp-as-es256",
        "x25519-as-eddsa",
        "ec-as-rs256",
        "ec-as-hs256",
        "oct-as-eddsa",
        "encryption-key",
        "key-made-for-another-alg",
        "alg-none",
    ],
)
def test_a_key_that_does_not_fit_its_algorithm_cannot_be_pinned_to_it(alg: str, key: jwk.Key) -> None:
    """A SigningKey's key always fits its algorithm (type, curve, use, the key's own ``alg``; for EdDSA a
    signing curve, which joserfc's own check misses): checked once when the pair is made, which is why
    signing and verifying do not check it per token."""
    with pytest.raises(ValueError, match=r"does not fit|unsupported"):
        SigningKey(kid="k1", alg=alg, key=key)


def test_a_key_carries_its_algorithm_object_through_a_change_of_role() -> None:
    """The algorithm object is set when the pair is made, including by ``dataclasses.replace`` (a key's
    promotion or retirement), so a replaced key signs and verifies like the original and its check runs
    again for the new pair."""
    key = SigningKey(kid="k1", alg="ES256", key=jwk.generate_key("EC", "P-256"), state="next")
    promoted = dataclasses.replace(key, state="current")
    assert promoted.jws_algorithm is key.jws_algorithm
    assert promoted.jws_algorithm.name == "ES256"
    assert promoted == dataclasses.replace(key, state="current")
    assert "jws_algorithm" not in repr(promoted)
    issued = issue_access_token(
        promoted, issuer="https://issuer.example", audience="api", subject="u1", ttl=60, now=1000
    )
    claims = verify_access_token(
        issued.token, KeyRing([promoted]), VerifyOptions(issuer="https://issuer.example", audience="api"), now=1001
    )
    assert claims.subject == "u1"
    with pytest.raises(ValueError, match="does not fit ES384"):
        dataclasses.replace(key, alg="ES384")


@pytest.mark.parametrize("kid", ["has space", "k" * 129, "ünïcode", ""])
def test_a_key_whose_kid_no_verifier_accepts_refuses_to_sign(kid: str) -> None:
    """Signing checks its header with the verifier's own rule, so a key never issues tokens that every
    guard would turn away (the kid rule: ``[A-Za-z0-9._-]{1,128}``)."""
    key = dataclasses.replace(generate_signing_key("ES256", now=NOW), kid=kid)
    with pytest.raises(ValueError, match="would not verify"):
        issue_access_token(key, issuer=OPTIONS.issuer, audience=OPTIONS.audience, subject="u", ttl=60, now=NOW)
