"""The key ring rides out a database outage: the loaded keys keep being published and used."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from keyturn.clock import FrozenClock
from tests.availability.tcp_proxy import tcp_proxy
from tests.conftest import ClientFactory, SettingsFactory, app_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", ["postgres"], ids=["postgres"])
async def test_jwks_is_served_from_the_loaded_ring_while_the_database_is_down(
    pg_url: str, make_settings: SettingsFactory, make_client: ClientFactory, clock: FrozenClock
) -> None:
    """With PostgreSQL cut, a due reload fails quietly: the JWKS still lists the keys; afterwards reloads resume."""
    upstream = urlsplit(pg_url)
    async with tcp_proxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        user = f"{upstream.username}@" if upstream.username else ""
        settings = make_settings(database_url=urlunsplit(upstream._replace(netloc=f"{user}{proxy.address}")))
        async with make_client(settings) as client:
            before = (await client.get("/.well-known/jwks.json")).json()
            keys = app_of(client).state.services.keys

            await proxy.cut()
            clock.advance(3)
            during = await client.get("/.well-known/jwks.json")
            assert during.status_code == 200
            assert during.json() == before
            assert keys.ring.signing_key.kid == before["keys"][0]["kid"]

            await proxy.restore()
            clock.advance(1)  # still inside the back-off: no new attempt, same answer
            assert (await client.get("/.well-known/jwks.json")).json() == before
            clock.advance(2)
            await keys.rotate()
            after = (await client.get("/.well-known/jwks.json")).json()
            assert after["keys"][0]["kid"] == before["keys"][1]["kid"]
