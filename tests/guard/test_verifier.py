"""The guard's own rules: configuration, HMAC and encrypted modes, the verified-token cache, credentials."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from joserfc.jwk import OctKey

import keyturn.guard.verifier as verifier_module
from keyturn.clock import FrozenClock
from keyturn.crypto import access_tokens
from keyturn.crypto.access_tokens import issue_access_token
from keyturn.crypto.keys import KeyRing, generate_signing_key, hmac_signing_key
from keyturn.errors import ConfigurationError, ServiceUnavailable, TokenExpired, TokenInvalid, Unauthorized
from keyturn.guard import Guard, GuardTuning, credentials
from tests.guard.conftest import AUDIENCE, ISSUER, FakeIssuer
from tests.process import free_port

pytestmark = pytest.mark.anyio

SECRET = b"a shared secret of at least 32 bytes!"


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_keyturn_env")
def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEYTURN_ISSUER, KEYTURN_AUDIENCE and KEYTURN_LEEWAY configure a Guard() given nothing."""
    monkeypatch.setenv("KEYTURN_ISSUER", "https://auth.example.com")
    monkeypatch.setenv("KEYTURN_AUDIENCE", "orders")
    monkeypatch.setenv("KEYTURN_LEEWAY", "2m")
    guard = Guard()
    assert (guard.issuer, guard.audience, guard.leeway) == ("https://auth.example.com", "orders", 120.0)


@pytest.mark.usefixtures("no_keyturn_env")
def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments are used as given; the audience defaults to the server's own default."""
    monkeypatch.setenv("KEYTURN_ISSUER", "https://ignored.example.com")
    guard = Guard(issuer="https://auth.example.com", leeway=0)
    assert (guard.issuer, guard.audience, guard.leeway) == ("https://auth.example.com", "keyturn", 0.0)


@pytest.mark.usefixtures("no_keyturn_env")
def test_missing_issuer_refuses_to_construct() -> None:
    """Without an issuer the guard cannot know whom to trust: ConfigurationError, at once."""
    with pytest.raises(ConfigurationError, match="KEYTURN_ISSUER"):
        Guard()


@pytest.mark.usefixtures("no_keyturn_env")
def test_malformed_leeway_refuses_to_construct(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEYTURN_LEEWAY must be seconds or a number with a unit."""
    monkeypatch.setenv("KEYTURN_LEEWAY", "soon")
    with pytest.raises(ConfigurationError, match="KEYTURN_LEEWAY"):
        Guard(issuer="https://auth.example.com")


@pytest.mark.parametrize(
    ("issuer", "allow_http", "accepted"),
    [
        ("https://auth.example.com", False, True),
        ("http://127.0.0.1:8000", False, True),
        ("http://localhost:8000", False, True),
        ("http://auth.internal:8000", False, False),
        ("http://auth.internal:8000", True, True),
        ("ftp://auth.example.com", True, False),
        ("auth.example.com", False, False),
    ],
    ids=["https", "loopback-ip", "localhost", "plain-http-remote", "plain-http-allowed", "ftp", "no-scheme"],
)
def test_issuer_url_must_be_safe_to_fetch_keys_from(issuer: str, allow_http: bool, accepted: bool) -> None:
    """Keys are fetched over https, or plain http on loopback, or where allow_http says so."""
    if accepted:
        Guard(issuer=issuer, allow_http=allow_http)
    else:
        with pytest.raises(ConfigurationError):
            Guard(issuer=issuer, allow_http=allow_http)


def test_tuning_refuses_nonsense() -> None:
    """Negative cache sizes and non-positive timeouts refuse to construct."""
    with pytest.raises(ConfigurationError):
        GuardTuning(token_cache_size=-1)
    with pytest.raises(ConfigurationError):
        GuardTuning(http_timeout=0)


# --- HMAC and encrypted modes -----------------------------------------------------------------------


def _guard_without_network(**options: Any) -> Guard:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    transport = httpx.MockTransport(refuse)
    return Guard(
        issuer="keyturn-single-service",
        audience=AUDIENCE,
        api_key_exchange=False,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
        **options,
    )


async def test_hmac_mode_verifies_with_the_shared_secret_and_fetches_nothing(clock: FrozenClock) -> None:
    """Guard(secret=...) verifies HS256 tokens of the same secret without any request."""
    key = hmac_signing_key(SECRET)
    token = issue_access_token(
        key, issuer="keyturn-single-service", audience=AUDIENCE, subject="u", ttl=60, now=clock.now()
    ).token
    guard = _guard_without_network(secret=SECRET, clock=clock)
    assert (await guard.verify(token)).sub == "u"
    assert guard.verify_sync(token).sub == "u"


async def test_hmac_mode_refuses_other_secrets_and_asymmetric_tokens(clock: FrozenClock) -> None:
    """A token of another secret, or signed with an asymmetric key, is TOKEN_INVALID in HMAC mode."""
    guard = _guard_without_network(secret=SECRET, clock=clock)
    for key in (hmac_signing_key(b"another shared secret of 32 bytes..."), generate_signing_key("ES256", now=0)):
        token = issue_access_token(
            key, issuer="keyturn-single-service", audience=AUDIENCE, subject="u", ttl=60, now=clock.now()
        ).token
        with pytest.raises(TokenInvalid):
            await guard.verify(token)


def test_hmac_mode_refuses_a_short_secret() -> None:
    """A secret under 32 bytes refuses to construct, as on the server."""
    with pytest.raises(ConfigurationError):
        _guard_without_network(secret="too short")


async def test_nested_tokens_are_decrypted_with_the_decryption_key(issuer: FakeIssuer) -> None:
    """With decryption_key, a JWE-wrapped token verifies; plain ones are refused, like on the server."""
    key = OctKey.generate_key(256)
    guard = issuer.guard(decryption_key=key)
    assert (await guard.verify(issuer.token(encryption_key=key))).sub == "user-1"
    with pytest.raises(TokenInvalid):
        await guard.verify(issuer.token())
    with pytest.raises(TokenInvalid):
        await issuer.guard().verify(issuer.token(encryption_key=key))


async def test_decryption_key_as_base64url_string(issuer: FakeIssuer) -> None:
    """The decryption key may be given as KEYTURN_ENCRYPTION_KEY is: 32 bytes, base64url."""
    raw = "A" * 43
    guard = issuer.guard(decryption_key=raw)
    key = OctKey.import_key(b"\x00" * 32)
    assert (await guard.verify(issuer.token(encryption_key=key))).sub == "user-1"


async def test_unknown_kid_inside_a_nested_token_refetches(issuer: FakeIssuer, clock: FrozenClock) -> None:
    """A rotation is noticed even when the kid is only visible after decryption."""
    key = OctKey.generate_key(256)
    guard = issuer.guard(decryption_key=key)
    await guard.verify(issuer.token(encryption_key=key))
    clock.advance(60)
    issuer.rotate()
    assert (await guard.verify(issuer.token(encryption_key=key))).sub == "user-1"
    assert issuer.jwks_fetches == 2


# --- the verified-token cache -------------------------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the one verifier was actually run on."""
    seen: list[str] = []
    real = access_tokens.verify_access_token

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(verifier_module, "verify_access_token", counting)
    return seen


async def test_cache_hit_skips_the_verifier(issuer: FakeIssuer, verifications: list[str]) -> None:
    """The same token verified twice runs the verifier once."""
    guard = issuer.guard()
    token = issuer.token()
    first = await guard.verify(token)
    assert guard.verify_sync(token) is first
    assert verifications == [token]


async def test_cache_is_a_bounded_lru(issuer: FakeIssuer, verifications: list[str]) -> None:
    """Past its size the least recently used token is forgotten, and verified again when it returns."""
    guard = issuer.guard(tuning=GuardTuning(token_cache_size=2))
    a, b, c = (issuer.token(subject=s) for s in "abc")
    for token in (a, b, a, c, a, b):
        await guard.verify(token)
    assert verifications == [a, b, c, b]


async def test_cache_disabled_verifies_every_time(issuer: FakeIssuer, verifications: list[str]) -> None:
    """token_cache_size=0 runs the verifier on every request."""
    guard = issuer.guard(tuning=GuardTuning(token_cache_size=0))
    token = issuer.token()
    await guard.verify(token)
    await guard.verify(token)
    assert verifications == [token, token]


async def test_cache_hit_still_checks_expiry_with_leeway(issuer: FakeIssuer, clock: FrozenClock) -> None:
    """A cached token is accepted up to exp + leeway and refused as TOKEN_EXPIRED after."""
    guard = issuer.guard(leeway=5)
    token = issuer.token(ttl=10)
    await guard.verify(token)
    clock.advance(14)
    assert (await guard.verify(token)).sub == "user-1"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        await guard.verify(token)


def test_principal_carries_the_claims(issuer: FakeIssuer) -> None:
    """The principal exposes sub, email, roles, scopes and every claim."""
    token = issuer.token(email="a@example.com", roles=["user", "admin"], scope="orders:read orders:write")
    principal = issuer.guard().verify_sync(token)
    assert principal.sub == "user-1"
    assert principal.email == "a@example.com"
    assert principal.roles == frozenset({"user", "admin"})
    assert principal.scopes == frozenset({"orders:read", "orders:write"})
    assert principal.claims["iss"] == ISSUER
    assert principal.claims["aud"] == AUDIENCE


# --- credentials ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "api_key", "expected"),
    [
        ("Bearer abc", None, ("abc", None)),
        ("bearer   abc  ", None, ("abc", None)),
        ("Bearer abc", "key", ("abc", None)),
        (None, "key", (None, "key")),
        ("Basic dXNlcg==", "key", (None, "key")),
        ("Bearer", "key", (None, "key")),
    ],
    ids=["bearer", "case-and-spaces", "bearer-wins", "api-key", "other-scheme-falls-back", "empty-bearer-falls-back"],
)
def test_credentials_prefer_bearer_then_api_key(
    authorization: str | None, api_key: str | None, expected: tuple[str | None, str | None]
) -> None:
    """A Bearer token is used when present, else the API key."""
    found = credentials(authorization, api_key)
    assert (found.bearer, found.api_key) == expected


@pytest.mark.parametrize(
    ("authorization", "api_key", "accept_api_key"),
    [(None, None, True), ("", "  ", True), ("Basic x", None, True), (None, "key", False)],
    ids=["nothing", "blank", "other-scheme", "api-keys-off"],
)
def test_no_credentials_is_unauthorized(authorization: str | None, api_key: str | None, accept_api_key: bool) -> None:
    """Nothing usable presented is UNAUTHORIZED (no error attribute in the challenge)."""
    with pytest.raises(Unauthorized):
        credentials(authorization, api_key, accept_api_key=accept_api_key)


async def test_transport_failure_is_logged_without_secrets(
    issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection error is a ServiceUnavailable; the log names the URL and error class, nothing more."""

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(broken)
    guard = Guard(issuer=ISSUER, audience=AUDIENCE, async_http_client=httpx.AsyncClient(transport=transport))
    token = issuer.token()
    with caplog.at_level(logging.WARNING, logger="keyturn.guard"), pytest.raises(ServiceUnavailable):
        await guard.verify(token)
    assert "ConnectError" in caplog.text
    assert token not in caplog.text


async def test_static_keys_verify_without_any_request(clock: FrozenClock) -> None:
    """Guard(keys=KeyRing(...)) trusts exactly those keys and never fetches."""
    key = generate_signing_key("ES256", now=clock.now())
    guard = _guard_without_network(keys=KeyRing([key]), clock=clock)
    for signer, accepted in ((key, True), (generate_signing_key("ES256", now=clock.now()), False)):
        token = issue_access_token(
            signer, issuer="keyturn-single-service", audience=AUDIENCE, subject="u", ttl=60, now=clock.now()
        ).token
        if accepted:
            assert (await guard.verify(token)).sub == "u"
        else:
            with pytest.raises(TokenInvalid):
                await guard.verify(token)


async def test_default_http_clients_fail_closed_and_close(issuer: FakeIssuer) -> None:
    """Without injected clients the guard makes its own; an unreachable issuer is 503, then they close."""
    guard = Guard(issuer=f"http://127.0.0.1:{free_port()}", audience=AUDIENCE)
    with pytest.raises(ServiceUnavailable):
        guard.verify_sync(issuer.token())
    with pytest.raises(ServiceUnavailable):
        await guard.verify(issuer.token())
    await guard.aclose()
