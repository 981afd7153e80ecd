"""The session store's own guarantees, below HTTP: a rotation whose session died meanwhile changes nothing."""

from __future__ import annotations

import pytest

from keyturn.clock import FrozenClock
from keyturn.crypto.opaque import hash_secret, mint_refresh_token, seal_successor
from keyturn.domain.models import ClientInfo, Rotation
from tests.conftest import ClientFactory, bearer, login, register
from tests.sessions.helpers import count_rows, refresh, services_of

pytestmark = pytest.mark.anyio


def _rotation(token: str, session_id: str, at: float) -> Rotation:
    successor = mint_refresh_token()
    return Rotation(
        token_hash=hash_secret(token),
        successor_hash=hash_secret(successor),
        sealed_successor=seal_successor(token, successor),
        session_id=session_id,
        at=at,
        client=ClientInfo("198.51.100.1", "test"),
    )


@pytest.mark.parametrize("death", ["revoked", "expired"], ids=["revoked", "expired"])
async def test_rotation_of_a_dead_session_rolls_back(
    make_client: ClientFactory, clock: FrozenClock, backend: str, death: str
) -> None:
    """A rotation refused because the session was revoked, or expired by the rotation's time, spends
    nothing and inserts nothing, so the token still answers as before."""
    async with make_client() as client:
        await register(client)
        pair = await login(client)
        store = services_of(client).session_store
        found = await store.find_token(hash_secret(pair["refresh_token"]))
        assert found is not None
        at = clock.now()
        if death == "revoked":
            await client.post("/auth/logout", headers=bearer(pair["access_token"]))
        else:
            at = found.session.expires_at
        assert await store.rotate(_rotation(pair["refresh_token"], found.session.id, at)) is False
        after = await store.find_token(hash_secret(pair["refresh_token"]))
        assert after is not None
        assert (after.spent_at, after.sealed_successor) == (None, None)
        assert (await count_rows(client))["tokens"] == 1
        if death == "expired":
            assert (await refresh(client, pair["refresh_token"])).status_code == 200
