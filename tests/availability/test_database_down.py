"""The database goes away and comes back, for real: 503 SERVICE_UNAVAILABLE meanwhile, then service again."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import httpx
import pytest

from keyturn.store.sql import IDLE_PING_AFTER
from tests.availability.tcp_proxy import TcpProxy, tcp_proxy
from tests.conftest import REDIS_URL, ClientFactory, SettingsFactory, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio


def _through(proxy: TcpProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.address}"))


async def _requests_needing_the_database(client: httpx.AsyncClient, tokens: dict[str, str]) -> list[httpx.Response]:
    return [
        await client.post(
            "/auth/login", json={"email": "alice@example.com", "password": "correct horse battery staple"}
        ),
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        await client.get("/auth/me", headers=bearer(tokens["access_token"])),
        await client.post("/auth/register", json={"email": "bob@example.com", "password": "another fine passphrase"}),
        await client.get("/readyz"),
    ]


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("with_redis", [False, True], ids=["database-only", "with-redis"])
async def test_database_down_answers_503_then_recovers_by_itself(
    pg_url: str, make_settings: SettingsFactory, make_client: ClientFactory, with_redis: bool
) -> None:
    """While PostgreSQL is unreachable requests needing it get 503 SERVICE_UNAVAILABLE; then the server recovers."""
    upstream = urlsplit(pg_url)
    async with tcp_proxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        extra = {"redis_url": REDIS_URL, "redis_prefix": f"kt-test-{secrets.token_hex(4)}:"} if with_redis else {}
        settings = make_settings(database_url=_through(proxy, pg_url), **extra)
        async with make_client(settings, use_clock=False) as client:
            await register(client)
            tokens = await login(client)

            await proxy.cut()
            for response in await _requests_needing_the_database(client, tokens):
                assert_error(response, 503, "SERVICE_UNAVAILABLE")
            assert (await client.get("/healthz")).status_code == 200  # alive, just not ready

            await proxy.restore()
            assert (await client.get("/readyz")).json()["data"]["checks"]["database"] == "ok"
            assert (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
            refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            await login(client)


async def _terminate_connections(pg_url: str) -> int:
    """Kill every server process serving ``pg_url``'s database, as a PostgreSQL restart would."""
    database = urlsplit(pg_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_url, timeout=5)
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()
    return len(killed)


@pytest.mark.parametrize("backend", ["postgres"])
async def test_pooled_connections_killed_while_idle_are_replaced_unseen(
    pg_url: str, make_settings: SettingsFactory, make_client: ClientFactory
) -> None:
    """Connections that died while idle in the pool (a restart, an idle timeout) never reach a request.

    The pool pings a connection on checkout once it has been idle for ``IDLE_PING_AFTER``
    seconds, and replaces it if the ping fails: every request below succeeds.
    """
    async with make_client(make_settings(), use_clock=False) as client:
        await register(client)
        tokens = await login(client)
        assert await _terminate_connections(pg_url) > 0
        await anyio.sleep(IDLE_PING_AFTER + 0.2)
        responses = await _requests_needing_the_database(client, tokens)
        assert [r.status_code for r in responses] == [200, 200, 200, 201, 200], [r.text for r in responses]
