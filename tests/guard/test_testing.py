"""keyturn.testing: what a downstream service uses to test its protected routes without a server."""

from __future__ import annotations

import warnings

import pytest

from keyturn.clock import FrozenClock
from keyturn.crypto.access_tokens import read_header
from keyturn.errors import TokenExpired, TokenInvalid
from keyturn.testing import TokenFactory

pytestmark = pytest.mark.anyio


def test_fixture_gives_a_factory_whose_guard_trusts_it(keyturn_tokens: TokenFactory) -> None:
    """The keyturn_tokens fixture mints tokens its own guard verifies."""
    token = keyturn_tokens.mint("alice", email="a@example.com", roles=["admin"], scopes=["orders:read"])
    principal = keyturn_tokens.guard().verify_sync(token)
    assert (principal.sub, principal.email) == ("alice", "a@example.com")
    assert principal.roles == frozenset({"admin"})
    assert principal.scopes == frozenset({"orders:read"})


def test_tokens_have_the_servers_shape(keyturn_tokens: TokenFactory) -> None:
    """Header and claims are those of CONTRACT.md §3, so tests exercise what production sees."""
    token = keyturn_tokens.mint()
    assert read_header(token) == {"alg": "ES256", "typ": "at+jwt", "kid": keyturn_tokens.key.kid}
    claims = keyturn_tokens.guard().verify_sync(token).claims
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "roles", "scope"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900


def test_extra_claims_override_and_add(keyturn_tokens: TokenFactory) -> None:
    """Keyword claims are added, or replace the standard ones (a wrong issuer is then refused)."""
    principal = keyturn_tokens.guard().verify_sync(keyturn_tokens.mint(tenant="acme"))
    assert principal.claims["tenant"] == "acme"
    with pytest.raises(TokenInvalid):
        keyturn_tokens.guard().verify_sync(keyturn_tokens.mint(iss="https://someone-else.test"))


def test_expiry_follows_the_shared_clock() -> None:
    """With a frozen clock, expires_in and the guard agree exactly (the test guard has no leeway)."""
    clock = FrozenClock(1_800_000_000)
    factory = TokenFactory(clock=clock)
    guard = factory.guard()
    token = factory.mint(expires_in=60)
    clock.advance(59)
    assert guard.verify_sync(token).sub == "user-1"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        guard.verify_sync(token)
    with pytest.raises(TokenExpired):
        guard.verify_sync(factory.mint(expired=True))


def test_another_factory_is_an_untrusted_issuer(keyturn_tokens: TokenFactory) -> None:
    """A token from another factory (another key, same issuer name) is TOKEN_INVALID."""
    with pytest.raises(TokenInvalid):
        keyturn_tokens.guard().verify_sync(TokenFactory().mint())


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES384", "EdDSA"], ids=lambda a: a)
def test_any_asymmetric_algorithm_without_warnings(alg: str) -> None:
    """The factory signs with any asymmetric algorithm keyturn offers, quietly."""
    factory = TokenFactory(algorithm=alg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = factory.mint()
    assert factory.guard().verify_sync(token).sub == "user-1"
    assert factory.jwks()["keys"][0]["alg"] == alg


async def test_api_keys_are_exchanged_by_the_factory_guard(keyturn_tokens: TokenFactory) -> None:
    """api_key() gives a key the factory's guard exchanges for a token with the given claims."""
    key = keyturn_tokens.api_key("service-7", scopes=["orders:read"])
    principal = await keyturn_tokens.guard().authenticate(None, key)
    assert principal.sub == "service-7"
    assert principal.scopes == frozenset({"orders:read"})
    with pytest.raises(TokenInvalid):
        await keyturn_tokens.guard().authenticate(None, "ktk_unknown")


def test_headers_is_a_bearer_header(keyturn_tokens: TokenFactory) -> None:
    """headers() is ready to pass to a test client."""
    ((name, value),) = keyturn_tokens.headers(roles=["user"]).items()
    assert name == "Authorization"
    assert value.startswith("Bearer ")
