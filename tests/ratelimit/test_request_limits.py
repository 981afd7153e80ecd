"""Per-client limits on register and refresh: every request counts, the window resets, clients are apart."""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.clock import FrozenClock
from tests.conftest import ClientFactory, SettingsFactory, assert_error, login, register
from tests.ratelimit.helpers import PROXY, from_ip

pytestmark = pytest.mark.anyio


async def test_register_limit_and_its_reset(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, limits_storage: dict[str, Any]
) -> None:
    """Three registrations per hour: the fourth is 429 until the window has slid far enough."""
    settings = make_settings(rate_limit_register="3/hour", trusted_proxies=[PROXY], **limits_storage)
    async with make_client(settings) as client:
        for n in range(3):
            await register(client, f"user{n}@example.com")
        refused = await client.post("/auth/register", json={"email": "x@example.com", "password": "irrelevant"})
        assert_error(refused, 429, "RATE_LIMITED")
        assert refused.headers["retry-after"] == str(3600 + 3600 // 3)
        other = await client.post(
            "/auth/register",
            json={"email": "other@example.com", "password": "correct horse battery staple"},
            headers=from_ip("198.51.100.20"),
        )
        assert other.status_code == 201
        clock.advance(int(refused.headers["retry-after"]))
        await register(client, "later@example.com")


async def test_invalid_registrations_count_too(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """Malformed bodies spend the client's budget as well: the limit is on requests, not accounts."""
    async with make_client(make_settings(rate_limit_register="2/hour")) as client:
        for _ in range(2):
            assert_error(await client.post("/auth/register", json={"email": "nope"}), 422, "VALIDATION_ERROR")
        assert_error(await client.post("/auth/register", json={"email": "nope"}), 429, "RATE_LIMITED")


async def test_refresh_limit_and_its_reset(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, limits_storage: dict[str, Any]
) -> None:
    """Refreshes per client per minute are capped; the next minute-and-a-bit admits again."""
    async with make_client(make_settings(rate_limit_refresh="4/minute", **limits_storage)) as client:
        await register(client)
        token = (await login(client))["refresh_token"]
        for _ in range(4):
            answer = await client.post("/auth/refresh", json={"refresh_token": token})
            assert answer.status_code == 200, answer.text
            token = answer.json()["data"]["refresh_token"]
        refused = await client.post("/auth/refresh", json={"refresh_token": token})
        assert_error(refused, 429, "RATE_LIMITED")
        assert refused.headers["retry-after"] == str(60 + 60 // 4)
        clock.advance(int(refused.headers["retry-after"]))
        assert (await client.post("/auth/refresh", json={"refresh_token": token})).status_code == 200


async def test_api_key_exchange_limit_and_its_reset(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, limits_storage: dict[str, Any]
) -> None:
    """POST /auth/token per client per minute is capped, valid keys or not; refusals are audited, once a minute.

    Guessing API keys must cost the guesser, not the server: every exchange request counts.
    """
    settings = make_settings(rate_limit_token="3/minute", trusted_proxies=[PROXY], **limits_storage)
    async with make_client(settings) as client:
        await register(client)
        auth = {"Authorization": f"Bearer {(await login(client))['access_token']}"}
        created = await client.post("/auth/api-keys", json={"name": "ci", "scopes": []}, headers=auth)
        key = created.json()["data"]["key"]
        assert (await client.post("/auth/token", json={"api_key": key})).status_code == 200
        for _ in range(2):
            guess = await client.post("/auth/token", json={"api_key": "ktk_" + "A" * 43})
            assert_error(guess, 401, "TOKEN_INVALID")
        refused = await client.post("/auth/token", json={"api_key": key})
        assert_error(refused, 429, "RATE_LIMITED")
        assert refused.headers["retry-after"] == str(60 + 60 // 3)
        elsewhere = await client.post("/auth/token", json={"api_key": key}, headers=from_ip("198.51.100.20"))
        assert elsewhere.status_code == 200
        clock.advance(int(refused.headers["retry-after"]))
        assert (await client.post("/auth/token", json={"api_key": key})).status_code == 200

        services = client.app.state.services  # type: ignore[attr-defined]
        records = await services.audit.page(user_id=None, event=None, before=None, limit=50)
        events = [r.entry.event for r in records]
        assert events.count("api_key.refused") == 1  # two refusals within a minute: one record
        assert events.count("api_key.exchanged") == 3
        assert [r.entry.detail["scope"] for r in records if r.entry.event == "request.rate_limited"] == ["token"]
