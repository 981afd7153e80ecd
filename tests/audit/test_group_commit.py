"""Group commit: concurrent appends share transactions, keep one valid chain, and fail together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from keyturn.domain.audit import AuditEntry, StoredAuditEntry, verify_chain
from keyturn.errors import ServiceUnavailable
from keyturn.server.services import Services
from keyturn.store.audit import SQLITE_ROWS_PER_INSERT, SqlAuditStore, _insert_sqlite
from tests.audit.support import with_services
from tests.conftest import SettingsFactory, run_async


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=float(n),
        event="login.failed",
        actor_id=None,
        user_id=None,
        email=None,
        ip="198.51.100.1",
        user_agent=f"ua/{n}",
        detail={"n": n},
    )


def _counting(store: SqlAuditStore, batches: list[int]) -> None:
    write = store.append_many

    async def counted(entries: Sequence[AuditEntry]) -> list[StoredAuditEntry]:
        batches.append(len(entries))
        return await write(entries)

    store._batches._write = counted


def test_concurrent_appends_share_transactions_and_chain(make_settings: SettingsFactory) -> None:
    """Forty simultaneous appends are written in fewer batches, in one chain that verifies."""
    batches: list[int] = []

    async def work(services: Services) -> tuple[list[StoredAuditEntry], list[StoredAuditEntry]]:
        store = services.audit._store
        assert isinstance(store, SqlAuditStore)
        _counting(store, batches)
        returned = await asyncio.gather(*(store.append(_entry(n)) for n in range(40)))
        return list(returned), await store.after(0, 1000)

    returned, stored = run_async(lambda: with_services(make_settings(), work))
    assert sum(batches) == 40
    assert len(batches) < 40
    assert [r.id for r in returned] == sorted(r.id for r in returned)
    assert verify_chain(stored) is None
    assert [r.hash for r in stored[-40:]] == [r.hash for r in returned]


def test_a_failed_batch_fails_every_caller_in_it(make_settings: SettingsFactory) -> None:
    """When a batch's transaction fails, each of its callers gets the error; later batches work."""

    async def work(services: Services) -> tuple[list[BaseException | StoredAuditEntry], StoredAuditEntry]:
        store = services.audit._store
        assert isinstance(store, SqlAuditStore)
        real = store._batches._write
        batches: list[int] = []

        async def scripted(entries: Sequence[AuditEntry]) -> list[StoredAuditEntry]:
            batches.append(len(entries))
            if len(batches) == 1:  # hold the turn while the next five queue up behind it
                await asyncio.sleep(0.05)
                return await real(entries)
            if len(batches) == 2:
                raise ServiceUnavailable()
            return await real(entries)

        store._batches._write = scripted
        results = await asyncio.gather(*(store.append(_entry(n)) for n in range(6)), return_exceptions=True)
        assert batches == [1, 5]
        return list(results), await store.append(_entry(99))

    results, after = run_async(lambda: with_services(make_settings(), work))
    assert isinstance(results[0], StoredAuditEntry)
    assert all(isinstance(r, ServiceUnavailable) for r in results[1:])
    assert after.entry.detail == {"n": 99}


def test_a_lone_append_is_its_own_batch(make_settings: SettingsFactory) -> None:
    """Without company, an append commits alone and at once."""
    batches: list[int] = []

    async def work(services: Services) -> StoredAuditEntry:
        store = services.audit._store
        assert isinstance(store, SqlAuditStore)
        _counting(store, batches)
        return await store.append(_entry(7))

    stored = run_async(lambda: with_services(make_settings(), work))
    assert batches == [1]
    assert stored.entry.detail == {"n": 7}


def test_a_batch_larger_than_one_statement_keeps_its_order(make_settings: SettingsFactory) -> None:
    """A batch spanning several INSERTs (SQLite writes at most 64 rows in one) is stored in chain order.

    Each caller gets its own row back (matched by hash, not by RETURNING's order), the ids follow
    the chain, and the chain verifies across the statements' boundaries.
    """
    count = 2 * SQLITE_ROWS_PER_INSERT + 3

    async def work(services: Services) -> tuple[list[StoredAuditEntry], list[StoredAuditEntry]]:
        store = services.audit._store
        assert isinstance(store, SqlAuditStore)
        written = await store.append_many([_entry(n) for n in range(count)])
        return written, await store.after(0, 1000)

    written, stored = run_async(lambda: with_services(make_settings(), work))
    assert [w.entry.detail for w in written] == [{"n": n} for n in range(count)]
    assert [w.id for w in written] == list(range(written[0].id, written[0].id + count))
    assert [(s.id, s.hash) for s in stored[-count:]] == [(w.id, w.hash) for w in written]
    assert [s.entry.detail for s in stored[-count:]] == [{"n": n} for n in range(count)]
    assert verify_chain(stored) is None


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
def test_batches_of_every_size_keep_few_statements(make_settings: SettingsFactory) -> None:
    """Batches of 1 to 70 rows all chain correctly, through at most seven kept INSERT statements.

    Each row count is its own compiled statement, kept for the process's life: one per count
    held 7.7 MiB per worker, over the memory budget, so row counts are powers of two.
    """
    _insert_sqlite.cache_clear()

    async def work(services: Services) -> list[StoredAuditEntry]:
        store = services.audit._store
        assert isinstance(store, SqlAuditStore)
        for size in range(1, 71):
            written = await store.append_many([_entry(n) for n in range(size)])
            assert [w.entry.detail for w in written] == [{"n": n} for n in range(size)]
        return await store.after(0, 5000)

    stored = run_async(lambda: with_services(make_settings(), work))
    assert len(stored) >= sum(range(1, 71))
    assert verify_chain(stored) is None
    assert _insert_sqlite.cache_info().currsize <= 7
