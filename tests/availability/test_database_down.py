"""The database goes away and comes back, for real: 503 SERVICE_UNAVAILABLE meanwhile, then service again."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

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
