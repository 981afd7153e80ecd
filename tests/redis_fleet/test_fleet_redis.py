"""Two instances sharing one PostgreSQL and one Redis: revocations and key rotations travel between them.

Both apps run in this process on one event loop (each with its own pool, replica and
subscriber); tests/fleet/ does the same with real server processes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import redis

from keyturn.server.services import Services
from keyturn.settings import Settings
from keyturn.store.sql import SqlRevocationStore
from tests.availability.tcp_proxy import tcp_proxy
from tests.conftest import REDIS_URL, ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register
from tests.redis_fleet.support import redis_namespace

pytestmark = pytest.mark.anyio

#: The issue's promise: a logout on one instance is honoured by every other within a second.
REVOCATION_DEADLINE = 1.0
#: ... and a key rotation reaches every instance within five.
ROTATION_DEADLINE = 5.0


@pytest.fixture
def backend() -> str:
    """These tests need a database both instances share."""
    return "postgres"


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_namespace() as name:
        yield name


@asynccontextmanager
async def two_instances(
    make_client: ClientFactory, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with make_client(settings) as a, make_client(settings) as b:
        yield a, b


def services_of(client: httpx.AsyncClient) -> Services:
    services: Services = app_of(client).state.services
    return services


async def refused_within(client: httpx.AsyncClient, access_token: str, deadline: float) -> httpx.Response:
    """Poll /auth/me until the token is refused or ``deadline`` seconds pass; return the last answer."""
    until = time.monotonic() + deadline
    while True:
        response = await client.get("/auth/me", headers=bearer(access_token))
        if response.status_code != 200 or time.monotonic() >= until:
            return response
        await anyio.sleep(0.02)


async def test_logout_on_one_instance_is_refused_on_the_other(
    make_settings: SettingsFactory, make_client: ClientFactory, prefix: str
) -> None:
    """A logout on B is refused on A within a second through the announcement alone (A's poll is 5 s apart)."""
    settings = make_settings(redis_url=REDIS_URL, redis_prefix=prefix, revocation_sync_interval=5.0)
    async with two_instances(make_client, settings) as (a, b):
        await register(a)
        tokens = await login(b)
        assert (await a.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
        assert (await b.post("/auth/logout", headers=bearer(tokens["access_token"]))).status_code == 200
        assert_error(await refused_within(a, tokens["access_token"], REVOCATION_DEADLINE), 401, "TOKEN_REVOKED")


async def test_revocation_never_announced_is_caught_by_the_database_poll(
    make_settings: SettingsFactory, make_client: ClientFactory, prefix: str
) -> None:
    """A revocation that reached the database but never Redis (a missed publish) is still honoured within a second."""
    async with two_instances(make_client, make_settings(redis_url=REDIS_URL, redis_prefix=prefix)) as (a, b):
        await register(a)
        tokens = await login(a)
        assert (await b.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
        token = await services_of(a).tokens.verify(tokens["access_token"])
        assert token.session_id is not None
        silent = SqlRevocationStore(services_of(a).db)  # writes the database only, announces nothing
        await silent.revoke([token.session_id], services_of(a).clock.now() + 3600)
        assert_error(await refused_within(b, tokens["access_token"], REVOCATION_DEADLINE), 401, "TOKEN_REVOKED")


async def test_key_rotation_reaches_the_other_instance_through_the_signal(
    make_settings: SettingsFactory, make_client: ClientFactory, prefix: str
) -> None:
    """A rotation on A is in B's ring within 5 s although B's clock is frozen (so its periodic reload never fires)."""
    async with two_instances(make_client, make_settings(redis_url=REDIS_URL, redis_prefix=prefix)) as (a, b):
        before = services_of(b).keys.ring.signing_key.kid
        new = await services_of(a).keys.rotate()
        assert new.kid != before
        until = time.monotonic() + ROTATION_DEADLINE
        for _ in range(int(ROTATION_DEADLINE / 0.02)):
            if services_of(b).keys.ring.signing_key.kid == new.kid or time.monotonic() > until:
                break
            await anyio.sleep(0.02)
        assert services_of(b).keys.ring.signing_key.kid == new.kid


async def test_readyz_reports_redis(make_settings: SettingsFactory, make_client: ClientFactory, prefix: str) -> None:
    """With Redis configured and up, /readyz checks both the database and Redis."""
    async with make_client(make_settings(redis_url=REDIS_URL, redis_prefix=prefix)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_redis_down_fleet_keeps_serving_from_the_database(
    make_settings: SettingsFactory, make_client: ClientFactory, prefix: str
) -> None:
    """Redis cut: readyz says degraded (200), logins, refreshes and logouts work fleet-wide; then Redis catches up."""
    upstream = urlsplit(REDIS_URL)
    async with tcp_proxy(upstream.hostname or "127.0.0.1", upstream.port or 6379) as proxy:
        settings = make_settings(redis_url=f"redis://{proxy.address}/0", redis_prefix=prefix)
        async with two_instances(make_client, settings) as (a, b):
            await register(a)
            await proxy.cut()

            ready = await a.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["data"] == {"status": "degraded", "checks": {"database": "ok", "redis": "down"}}

            tokens = await login(a)
            refreshed = await b.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            access = refreshed.json()["data"]["access_token"]
            assert (await a.get("/auth/me", headers=bearer(access))).status_code == 200
            assert (await b.post("/auth/logout", headers=bearer(access))).status_code == 200
            assert_error(await refused_within(a, access, REVOCATION_DEADLINE), 401, "TOKEN_REVOKED")

            await proxy.restore()
            sid = (await services_of(a).tokens.verify(tokens["access_token"])).session_id
            assert await mirrored_within(f"{prefix}rev:{sid}", ROTATION_DEADLINE)
            assert (await a.get("/readyz")).json()["data"]["status"] == "ready"


async def mirrored_within(key: str, deadline: float) -> bool:
    """Whether ``key`` appears in the real Redis within ``deadline`` seconds."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if await client.exists(key):
                return True
            await anyio.sleep(0.05)
        return False
    finally:
        await client.aclose()
