"""The in-memory revocation replica: trusted only while fresh, fed only by well-formed announcements."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyturn.clock import FrozenClock
from keyturn.store.migrate import migrate
from keyturn.store.redis import RedisLink, ReplicatedRevocations
from keyturn.store.sql import Database, SqlRevocationStore, create_engine

pytestmark = pytest.mark.anyio

HORIZON = 905.0


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}")
    await migrate(engine)
    yield Database(engine)
    await engine.dispose()


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    dead = RedisLink("redis://127.0.0.1:1/0", prefix="kt-test-replica:")  # nothing listens on port 1
    yield dead
    await dead.close()


def replica(db: Database, link: RedisLink, clock: FrozenClock, ticker: Ticker) -> ReplicatedRevocations:
    return ReplicatedRevocations(db, link, clock, horizon=HORIZON, sync_interval=0.5, monotonic=ticker)


async def test_stale_replica_asks_the_database(db: Database, link: RedisLink, clock: FrozenClock) -> None:
    """A replica not synced for over a second defers to the database, which knows an unannounced revocation."""
    ticker = Ticker()
    store = replica(db, link, clock, ticker)
    await store.sync()
    await SqlRevocationStore(db).revoke(["sid-unannounced"], clock.now() + HORIZON)
    ticker.now += 0.2
    assert store.fresh()
    assert await store.is_revoked("sid-unannounced") is False  # the bounded staleness the poll allows
    ticker.now += 1.0
    assert not store.fresh()
    assert await store.is_revoked("sid-unannounced") is True


async def test_sync_picks_up_revocations_written_elsewhere(db: Database, link: RedisLink, clock: FrozenClock) -> None:
    """A revocation committed by another instance after the last sync is in the replica after the next one."""
    ticker = Ticker()
    store = replica(db, link, clock, ticker)
    await store.sync()
    clock.advance(3)
    await SqlRevocationStore(db).revoke(["sid-elsewhere"], clock.now() + HORIZON)
    assert await store.sync() >= 1
    assert await store.is_revoked("sid-elsewhere") is True


async def test_revoke_with_redis_down_still_lands_in_the_database(
    db: Database, link: RedisLink, clock: FrozenClock
) -> None:
    """With Redis unreachable a revocation is committed, remembered locally, and found by a fresh replica elsewhere."""
    ticker = Ticker()
    store = replica(db, link, clock, ticker)
    await link.ping()
    await store.revoke(["sid-offline"], clock.now() + 5)
    assert await store.is_revoked("sid-offline") is True
    other = replica(db, link, clock, ticker)
    await other.sync()
    assert await other.is_revoked("sid-offline") is True


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"sids": "sid-x", "until": 1}),
        json.dumps({"sids": [7], "until": 1}),
        json.dumps({"sids": ["x" * 65], "until": 1}),
        json.dumps({"sids": ["sid-x"], "until": "soon"}),
        json.dumps({"until": 1}),
    ],
    ids=["not-json", "not-a-list", "not-strings", "too-long", "bad-until", "no-sids"],
)
async def test_malformed_announcements_are_ignored(
    db: Database, link: RedisLink, clock: FrozenClock, message: str
) -> None:
    """Whatever arrives on the channel, only a well-formed list of session ids is remembered."""
    ticker = Ticker()
    store = replica(db, link, clock, ticker)
    await store.sync()
    store.on_message(message)
    assert await store.is_revoked("sid-x") is False
    store.on_message(json.dumps({"sids": ["sid-x"], "until": clock.now() + 60}))
    assert await store.is_revoked("sid-x") is True
