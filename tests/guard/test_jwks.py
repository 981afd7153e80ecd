"""The JWKS cache: discovery, Cache-Control, unknown-kid refetch with its floor, failures, key filtering.

Requests are counted at a fake issuer while a frozen clock moves; each rule runs over
the sync driver (Flask) and the async one (ASGI), which share the logic.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.jwk import OKPKey
from joserfc.util import int_to_base64

from keyturn.clock import FrozenClock
from keyturn.crypto.keys import KeyRing, generate_signing_key
from keyturn.errors import ConfigurationError, ServiceUnavailable, TokenInvalid
from keyturn.guard import Guard, GuardTuning, JwksPolicy, Principal
from keyturn.guard.jwks import cache_lifetime, verification_key
from tests.guard.conftest import ISSUER, FakeIssuer

pytestmark = pytest.mark.anyio

Verify = Callable[[Guard, str], Awaitable[Principal]]


async def _sync(guard: Guard, token: str) -> Principal:
    return guard.verify_sync(token)


async def _async(guard: Guard, token: str) -> Principal:
    return await guard.verify(token)


@pytest.fixture(params=[_sync, _async], ids=["sync", "async"])
def verify(request: pytest.FixtureRequest) -> Verify:
    """Verify through the blocking driver or the async one."""
    driver: Verify = request.param
    return driver


def forged(kid: str) -> str:
    """A token naming ``kid``, signed by a key nobody publishes."""
    key = generate_signing_key("ES256", now=0)
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    return jws.serialize_compact(header, '{"sub":"x"}', key.key, algorithms=["ES256"])


async def test_discovery_then_jwks_then_cached(issuer: FakeIssuer, verify: Verify) -> None:
    """The first token costs one discovery and one JWKS fetch; the next ones cost nothing."""
    guard = issuer.guard()
    principal = await verify(guard, issuer.token())
    await verify(guard, issuer.token(subject="user-2"))
    assert principal.sub == "user-1"
    assert issuer.hits == {"/.well-known/openid-configuration": 1, "/.well-known/jwks.json": 1}


async def test_jwks_url_skips_discovery(issuer: FakeIssuer, verify: Verify) -> None:
    """With jwks_url given, the discovery document is never fetched."""
    guard = issuer.guard(jwks_url=f"{ISSUER}/.well-known/jwks.json")
    await verify(guard, issuer.token())
    assert issuer.hits == {"/.well-known/jwks.json": 1}


@pytest.mark.parametrize(
    ("cache_control", "fresh_for"),
    [("public, max-age=60", 60), ("max-age=3600", 3600), (None, 300), ("no-cache", 5), ("max-age=1", 5)],
    ids=["max-age-60", "max-age-3600", "absent-default-300", "no-cache-floor", "tiny-max-age-floor"],
)
async def test_cache_control_sets_the_lifetime(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify, cache_control: str | None, fresh_for: int
) -> None:
    """The JWKS is refetched exactly when Cache-Control (clamped to the floor) says it is stale."""
    issuer.cache_control = cache_control
    guard = issuer.guard(tuning=GuardTuning(token_cache_size=0))
    await verify(guard, issuer.token())
    clock.advance(fresh_for - 1)
    await verify(guard, issuer.token())
    assert issuer.jwks_fetches == 1
    clock.advance(1)
    await verify(guard, issuer.token())
    assert issuer.jwks_fetches == 2
    assert issuer.hits["/.well-known/openid-configuration"] == 1


def test_age_header_shortens_the_lifetime() -> None:
    """A response that already aged in a shared cache is fresh only for what is left."""
    headers = httpx.Headers({"cache-control": "max-age=600", "age": "500"})
    assert cache_lifetime(headers, JwksPolicy()) == 100


async def test_unknown_kid_refetches_and_finds_a_rotated_key(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify
) -> None:
    """A token signed by a key published after the last fetch is verified after one refetch."""
    guard = issuer.guard()
    await verify(guard, issuer.token())
    clock.advance(60)
    issuer.rotate()
    principal = await verify(guard, issuer.token(subject="after-rotation"))
    assert principal.sub == "after-rotation"
    assert issuer.jwks_fetches == 2


async def test_forged_kids_refetch_at_most_once_per_floor(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify
) -> None:
    """A storm of tokens with random kids costs the issuer one fetch per floor, not one per token."""
    guard = issuer.guard()
    await verify(guard, issuer.token())
    clock.advance(10)
    for _ in range(25):
        with pytest.raises(TokenInvalid):
            await verify(guard, forged(secrets.token_hex(8)))
    assert issuer.jwks_fetches == 2
    clock.advance(4.9)
    with pytest.raises(TokenInvalid):
        await verify(guard, forged("still-within-the-floor"))
    assert issuer.jwks_fetches == 2
    clock.advance(0.1)
    with pytest.raises(TokenInvalid):
        await verify(guard, forged("after-the-floor"))
    assert issuer.jwks_fetches == 3


async def test_unknown_kid_right_after_a_fetch_does_not_refetch(issuer: FakeIssuer, verify: Verify) -> None:
    """The floor counts from any fetch: the keys were just read, so an unknown kid is refused at once."""
    guard = issuer.guard()
    with pytest.raises(TokenInvalid):
        await verify(guard, forged("nobody"))
    assert issuer.jwks_fetches == 1


async def test_rotated_key_within_the_floor_is_found_after_it(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify
) -> None:
    """A real rotation met inside the floor is refused briefly, then verified once the floor passed."""
    guard = issuer.guard(tuning=GuardTuning(jwks=JwksPolicy(unknown_kid_floor=2)))
    await verify(guard, issuer.token())
    issuer.rotate()
    clock.advance(1)
    with pytest.raises(TokenInvalid):
        await verify(guard, issuer.token())
    clock.advance(1)
    assert (await verify(guard, issuer.token())).sub == "user-1"


async def test_stale_keys_keep_verifying_while_the_issuer_is_down(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify
) -> None:
    """When a refetch fails, the keys held keep verifying; retries wait for the retry delay."""
    guard = issuer.guard(tuning=GuardTuning(token_cache_size=0))
    await verify(guard, issuer.token())
    issuer.down = True
    clock.advance(301)
    assert (await verify(guard, issuer.token())).sub == "user-1"
    assert (await verify(guard, issuer.token())).sub == "user-1"
    assert issuer.jwks_fetches == 2
    clock.advance(5)
    issuer.down = False
    await verify(guard, issuer.token())
    assert issuer.jwks_fetches == 3


async def test_cold_start_with_the_issuer_down_is_503_then_recovers(
    issuer: FakeIssuer, clock: FrozenClock, verify: Verify
) -> None:
    """With no keys ever fetched, the answer is SERVICE_UNAVAILABLE, and the guard retries later."""
    issuer.down = True
    guard = issuer.guard()
    for _ in range(3):
        with pytest.raises(ServiceUnavailable):
            await verify(guard, issuer.token())
    assert issuer.hits["/.well-known/openid-configuration"] == 1
    issuer.down = False
    clock.advance(5)
    assert (await verify(guard, issuer.token())).sub == "user-1"


@pytest.mark.parametrize(
    "discovery",
    [
        {"issuer": "https://evil.test", "jwks_uri": f"{ISSUER}/.well-known/jwks.json"},
        {"issuer": ISSUER},
        {"issuer": ISSUER, "jwks_uri": "http://evil.test/jwks.json"},
        {"issuer": ISSUER, "jwks_uri": "file:///etc/passwd"},
    ],
    ids=["other-issuer", "no-jwks-uri", "plain-http-jwks", "file-url"],
)
async def test_untrustworthy_discovery_is_refused(
    issuer: FakeIssuer, verify: Verify, discovery: dict[str, Any]
) -> None:
    """A discovery document for another issuer, or pointing at a non-https JWKS, yields no keys."""
    issuer.discovery = discovery
    with pytest.raises(ServiceUnavailable):
        await verify(issuer.guard(), issuer.token())
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    "body",
    [{"keys": "nope"}, ["not", "an", "object"], {"keys": [{}] * 65}, b"not json at all"],
    ids=["keys-not-a-list", "not-an-object", "too-many-keys", "not-json"],
)
async def test_malformed_jwks_is_refused_whole(issuer: FakeIssuer, verify: Verify, body: Any) -> None:
    """A JWKS that is not a bounded list of keys is a failure, never a partial key set."""
    issuer.jwks_override = body
    with pytest.raises(ServiceUnavailable):
        await verify(issuer.guard(), issuer.token())


async def test_oversized_jwks_response_is_refused(issuer: FakeIssuer, verify: Verify) -> None:
    """A response body over the cap is a failure, read no further."""
    issuer.jwks_override = {"keys": [], "padding": "x" * 300_000}
    with pytest.raises(ServiceUnavailable):
        await verify(issuer.guard(), issuer.token())


async def test_removed_key_drops_cached_tokens(issuer: FakeIssuer, clock: FrozenClock, verify: Verify) -> None:
    """A token verified earlier is refused once its key has left the JWKS (emergency rotation)."""
    guard = issuer.guard()
    old = issuer.keys[0]
    token = issuer.token()
    await verify(guard, token)
    issuer.rotate()
    issuer.keys.remove(old)
    clock.advance(301)
    await verify(guard, issuer.token())
    with pytest.raises(TokenInvalid):
        await verify(guard, token)


async def test_cold_start_burst_fetches_once_async(issuer: FakeIssuer) -> None:
    """Many concurrent first requests share one discovery and one JWKS fetch."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.01)
        return issuer.handle(request)

    guard = Guard(
        issuer=ISSUER,
        audience="orders-api",
        clock=issuer.clock,
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)),
    )
    token = issuer.token()
    subjects: list[str] = []

    async def one() -> None:
        subjects.append((await guard.verify(token)).sub)

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(one)
    assert subjects == ["user-1"] * 20
    assert issuer.hits == {"/.well-known/openid-configuration": 1, "/.well-known/jwks.json": 1}


def test_cold_start_burst_fetches_once_threads(issuer: FakeIssuer) -> None:
    """Many threads verifying at once share one discovery and one JWKS fetch."""
    guard = issuer.guard()
    token = issuer.token()
    start = threading.Barrier(8)
    subjects: list[str] = []

    def one() -> None:
        start.wait()
        subjects.append(guard.verify_sync(token).sub)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert subjects == ["user-1"] * 8
    assert issuer.hits == {"/.well-known/openid-configuration": 1, "/.well-known/jwks.json": 1}


# --- which published keys are trusted ---------------------------------------------------------------

_EC = generate_signing_key("ES256", now=0).public_jwk()


@pytest.mark.parametrize(
    ("jwk", "trusted"),
    [
        (_EC, True),
        ({**_EC, "use": None}, False),
        ({k: v for k, v in _EC.items() if k != "use"}, True),
        ({k: v for k, v in _EC.items() if k != "alg"}, False),
        ({**_EC, "use": "enc"}, False),
        ({**_EC, "key_ops": ["encrypt"]}, False),
        ({**_EC, "key_ops": ["verify"]}, True),
        ({**_EC, "alg": "ES384"}, False),
        ({**_EC, "alg": "RS256"}, False),
        ({**_EC, "alg": "none"}, False),
        ({**_EC, "alg": "HS256"}, False),
        ({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256", "kid": "k"}, False),
        ({**_EC, "kid": ""}, False),
        ({**_EC, "kid": "k" * 129}, False),
        ({**_EC, "x": "not-a-point"}, False),
        ({"kty": "RSA", "n": "!!", "e": "AQAB", "alg": "RS256", "kid": "k"}, False),
        ({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "k"}, False),
        ({**OKPKey.generate_key("X25519").as_dict(private=False), "alg": "EdDSA", "kid": "k"}, False),
        ({**OKPKey.generate_key("Ed25519").as_dict(private=False), "alg": "EdDSA", "kid": "k"}, True),
        ({**_EC, "kty": "oct"}, False),
    ],
    ids=[
        "es256",
        "use-null",
        "no-use",
        "no-alg",
        "use-enc",
        "key-ops-encrypt",
        "key-ops-verify",
        "alg-curve-mismatch",
        "alg-kty-mismatch",
        "alg-none",
        "alg-hmac-on-ec",
        "symmetric-key",
        "empty-kid",
        "long-kid",
        "broken-point",
        "rsa-modulus-not-base64",
        "rsa-without-modulus",
        "x25519-as-eddsa",
        "ed25519-as-eddsa",
        "unknown-kty",
    ],
)
def test_only_pinned_asymmetric_signature_keys_are_trusted(jwk: dict[str, Any], trusted: bool) -> None:
    """A JWK verifies only with its own asymmetric alg, for signatures; anything else is skipped."""
    key = verification_key(jwk)
    assert (key is not None) == trusted
    if key is not None:
        assert (key.kid, key.alg) == (jwk["kid"], jwk["alg"])


def test_private_members_of_a_published_key_are_dropped() -> None:
    """Were an issuer to leak a private key in its JWKS, the guard would import only the public part."""
    private = generate_signing_key("ES256", now=0)
    leaked = {**private.key.as_dict(private=True), "kid": private.kid, "alg": "ES256", "use": "sig"}
    key = verification_key(leaked)
    assert key is not None
    assert not key.key.is_private


def test_weak_rsa_keys_are_not_trusted() -> None:
    """An RSA key under 2048 bits is skipped."""
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    numbers = weak_key.public_key().public_numbers()
    weak = {"kty": "RSA", "n": int_to_base64(numbers.n), "e": int_to_base64(numbers.e)}
    assert verification_key({**weak, "kid": "weak", "alg": "RS256"}) is None


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES384", "ES512", "EdDSA"], ids=lambda a: a)
async def test_every_asymmetric_algorithm_verifies_through_the_jwks(clock: FrozenClock, alg: str) -> None:
    """Whatever asymmetric algorithm the issuer signs with, its JWKS alone lets the guard verify."""
    issuer = FakeIssuer(clock, alg=alg)
    assert (await issuer.guard().verify(issuer.token())).sub == "user-1"


def test_jwks_policy_refuses_inconsistent_lifetimes() -> None:
    """Lifetimes out of order or non-positive floors refuse to construct."""
    with pytest.raises(ConfigurationError):
        JwksPolicy(min_ttl=600, default_ttl=300)
    with pytest.raises(ConfigurationError):
        JwksPolicy(unknown_kid_floor=0)


def test_key_ring_lookup_is_by_kid_only() -> None:
    """The guard's key set is a KeyRing: lookups by an unknown kid find nothing, never a guess."""
    key = verification_key(_EC)
    assert key is not None
    ring = KeyRing([key])
    assert ring.verification_key(key.kid) is key
    assert ring.verification_key("other") is None
