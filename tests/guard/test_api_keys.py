"""X-API-Key at a guard: exchanged at the issuer, the token cached until shortly before expiry."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from keyturn.clock import FrozenClock
from keyturn.errors import Forbidden, RateLimited, ServiceUnavailable, TokenExpired, TokenInvalid
from keyturn.guard import ExchangePolicy, Guard, GuardTuning
from keyturn.testing import TokenFactory

pytestmark = pytest.mark.anyio


class Exchanges:
    """An issuer's POST /auth/token with a scripted answer, counting calls; JWKS from a factory."""

    def __init__(self, factory: TokenFactory) -> None:
        self.factory = factory
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        self.body: Any = None
        self.headers: dict[str, str] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/auth/token":
            return self.factory.transport.handle_request(request)
        self.calls.append(json.loads(request.content))
        if self.status == 200 and self.body is None:
            token = self.factory.mint("key-owner", scopes=["orders:read"])
            data = {"access_token": token, "token_type": "Bearer", "expires_in": 900, "scope": "orders:read"}
            return httpx.Response(200, json={"success": True, "data": {**data, "user": {"id": "key-owner"}}})
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    def guard(self, **options: Any) -> Guard:
        transport = httpx.MockTransport(self.handle)
        return Guard(
            issuer=self.factory.issuer,
            audience=self.factory.audience,
            clock=self.factory.clock,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            **options,
        )


@pytest.fixture
def exchanges(clock: FrozenClock) -> Exchanges:
    return Exchanges(TokenFactory(clock=clock))


async def test_exchange_posts_the_key_once_and_caches_the_token(exchanges: Exchanges, clock: FrozenClock) -> None:
    """The first request exchanges the key; later ones reuse the token until 30 s before it expires."""
    guard = exchanges.guard()
    principal = await guard.authenticate(None, "ktk_live_key")
    assert principal.sub == "key-owner"
    assert exchanges.calls == [{"api_key": "ktk_live_key"}]
    clock.advance(900 - 31)
    assert guard.authenticate_sync(None, "ktk_live_key").sub == "key-owner"
    assert len(exchanges.calls) == 1
    clock.advance(1)
    await guard.authenticate(None, "ktk_live_key")
    assert len(exchanges.calls) == 2


async def test_each_api_key_has_its_own_token(exchanges: Exchanges) -> None:
    """Two keys are two exchanges; the cache never answers one key with another's token."""
    guard = exchanges.guard()
    await guard.authenticate(None, "ktk_one")
    await guard.authenticate(None, "ktk_two")
    await guard.authenticate(None, "ktk_one")
    assert [c["api_key"] for c in exchanges.calls] == ["ktk_one", "ktk_two"]


async def test_exchange_cache_is_bounded(exchanges: Exchanges) -> None:
    """Past its size the least recently used key is forgotten and exchanged again."""
    guard = exchanges.guard(tuning=GuardTuning(exchange=ExchangePolicy(size=1)))
    for key in ("ktk_one", "ktk_two", "ktk_one"):
        await guard.authenticate(None, key)
    assert [c["api_key"] for c in exchanges.calls] == ["ktk_one", "ktk_two", "ktk_one"]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, "TOKEN_INVALID", TokenInvalid),
        (401, "INVALID_CREDENTIALS", TokenInvalid),
        (401, "TOKEN_EXPIRED", TokenExpired),
        (401, "TOKEN_REVOKED", TokenInvalid),
        (422, "VALIDATION_ERROR", TokenInvalid),
        (403, "ACCOUNT_DISABLED", Forbidden),
    ],
    ids=["invalid", "bad-credentials", "expired-key", "revoked-key", "malformed", "disabled-account"],
)
async def test_refusals_map_to_guard_codes_and_are_remembered_briefly(
    exchanges: Exchanges, clock: FrozenClock, status: int, code: str, error: type[Exception]
) -> None:
    """The issuer's refusal becomes a guard code and is not asked again for negative_ttl seconds."""
    exchanges.status, exchanges.body = status, {"success": False, "error": {"code": code, "message": "no"}}
    guard = exchanges.guard()
    for _ in range(3):
        with pytest.raises(error):
            await guard.authenticate(None, "ktk_bad")
    assert len(exchanges.calls) == 1
    clock.advance(10)
    with pytest.raises(error):
        guard.authenticate_sync(None, "ktk_bad")
    assert len(exchanges.calls) == 2


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (
            429,
            {"success": False, "error": {"code": "RATE_LIMITED", "message": "slow"}},
            {"Retry-After": "7"},
            RateLimited,
        ),
        (503, None, {}, ServiceUnavailable),
        (500, None, {}, ServiceUnavailable),
        (302, None, {"Location": "https://elsewhere.test/"}, ServiceUnavailable),
        (200, {"success": True, "data": {"access_token": 42}}, {}, ServiceUnavailable),
        (200, {"nonsense": True}, {}, ServiceUnavailable),
    ],
    ids=["rate-limited", "unavailable", "server-error", "redirect-not-followed", "token-not-a-string", "no-data"],
)
async def test_transient_failures_are_not_remembered(
    exchanges: Exchanges, status: int, body: Any, headers: dict[str, str], error: type[Exception]
) -> None:
    """Throttling and issuer failures pass through and the next request asks again."""
    exchanges.status, exchanges.body, exchanges.headers = status, body, headers
    guard = exchanges.guard()
    for _ in range(2):
        with pytest.raises(error) as raised:
            await guard.authenticate(None, "ktk_key")
    assert len(exchanges.calls) == 2
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 7


@pytest.mark.parametrize("key", ["k" * 513, "ktk_\u00e9", "ktk_\x00"], ids=["too-long", "non-ascii", "control"])
async def test_implausible_keys_are_refused_without_asking(exchanges: Exchanges, key: str) -> None:
    """A key no issuer could have minted is TOKEN_INVALID without a request."""
    with pytest.raises(TokenInvalid):
        await exchanges.guard().authenticate(None, key)
    assert exchanges.calls == []


async def test_bearer_token_wins_over_api_key(exchanges: Exchanges) -> None:
    """With both headers the Bearer token is verified and the key is not exchanged."""
    token = exchanges.factory.mint("bearer-user")
    principal = await exchanges.guard().authenticate(f"Bearer {token}", "ktk_key")
    assert principal.sub == "bearer-user"
    assert exchanges.calls == []


def test_exchange_policy_refuses_nonsense() -> None:
    """A negative margin or an empty cache refuse to construct."""
    with pytest.raises(Exception, match="margin"):
        ExchangePolicy(margin=-1)
    with pytest.raises(Exception, match="size"):
        ExchangePolicy(size=0)


async def test_refusal_without_a_json_body_is_token_invalid(exchanges: Exchanges) -> None:
    """A 401 whose body is not the envelope is still a refusal of the key."""
    exchanges.status, exchanges.body = 401, None
    with pytest.raises(TokenInvalid):
        await exchanges.guard().authenticate(None, "ktk_key")
