"""The audit trail in SQL: appends serialised across processes, so the hash chain never forks.

Chaining a record needs the newest record's hash, and two processes reading the same
"newest" would both claim it as predecessor. So every append first takes the one
write lock that all processes share, then reads the head, then inserts:

* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, held until the transaction
  commits (readers are never blocked);
* SQLite: ``BEGIN IMMEDIATE``, the database's own write lock (waiting up to the
  connection's busy timeout).

Taking that lock once per event would cap the whole fleet at one commit per event
(measured: 130-240 appends/s on PostgreSQL, whatever the number of instances). So
appends are *group-committed*: within a process, whichever append holds the local
turn writes every entry queued meanwhile as one batch — one lock, one head read, the
rows (on PostgreSQL one INSERT of arrays; on SQLite a few multi-row INSERTs, see
:func:`_sqlite_chunks`), one commit. A caller still returns only after its
own row has committed, so nothing is acknowledged that is not durable. The batch is
written on the driver itself (:class:`~keyturn.store.sql.Driver`): every login and
refresh appends.

A retention purge (:meth:`SqlAuditStore.purge`) takes the same lock to delete the oldest
run of records and chain the ``audit.purged`` record that anchors what is left.

Driver failures become :class:`~keyturn.errors.ServiceUnavailable` in
:class:`~keyturn.store.sql.Database`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from sqlalchemy import bindparam, delete, func, insert, or_, select, text
from sqlalchemy.engine import Row

from keyturn.domain.audit import GENESIS_HASH, AuditEntry, StoredAuditEntry, canonical_json, chain_hash
from keyturn.errors import ServiceUnavailable
from keyturn.store.sql import Database, Driver, DriverStatement
from keyturn.store.tables import audit_events

__all__ = ["AUDIT_LOCK_KEY", "SqlAuditStore"]

#: The PostgreSQL advisory lock key of audit appends (ASCII "kt-audit" as an int64).
AUDIT_LOCK_KEY: Final = int.from_bytes(b"kt-audit", "big") & 0x7FFF_FFFF_FFFF_FFFF


# Built once: every login and refresh appends, and building a statement costs more than running it.
_COLUMNS: Final = ("at", "event", "actor_id", "user_id", "email", "ip", "user_agent", "detail", "prev_hash", "hash")
_HEAD: Final = DriverStatement(select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1))
#: The most rows one INSERT carries on SQLite: 64 rows of 10 columns stay under the 999
#: parameters an SQLite older than 3.32 allows.
SQLITE_ROWS_PER_INSERT: Final = 64


def _sqlite_chunks(count: int) -> list[int]:
    """How many rows each INSERT of a ``count``-row batch carries on SQLite: powers of two, largest first.

    A statement per row cost a hand-off to aiosqlite's thread each (~0.1-0.2 ms of CPU, most
    of it around the statement), so rows go in multi-row INSERTs. Each row count is its own
    statement, compiled once and kept; keeping one for every count up to 64 held 7.7 MiB per
    worker, so counts are powers of two (seven statements): 13 rows are 8 + 4 + 1.
    """
    chunks = []
    while count:
        size = min(SQLITE_ROWS_PER_INSERT, 1 << (count.bit_length() - 1))
        chunks.append(size)
        count -= size
    return chunks


@functools.cache
def _insert_sqlite(count: int) -> DriverStatement:
    """One INSERT of ``count`` rows (parameters ``at_0``, ``event_0``, ... ``hash_{count-1}``)."""
    values: list[dict[str, Any]] = [{name: bindparam(f"{name}_{index}") for name in _COLUMNS} for index in range(count)]
    return DriverStatement(insert(audit_events).values(values).returning(audit_events.c.id, audit_events.c.hash))


# The retention's purge: the first record to keep, the last to delete (whose hash anchors what is left).
_NEXT_ID: Final = DriverStatement(select((func.max(audit_events.c.id) + 1).label("id")))
# In id order, so the scan stops at the first record to keep: it reads what it deletes, no more.
_FIRST_KEPT: Final = DriverStatement(
    select(audit_events.c.id).where(audit_events.c.at >= bindparam("cutoff")).order_by(audit_events.c.id).limit(1)
)
_LAST_BEFORE: Final = DriverStatement(
    select(audit_events.c.id, audit_events.c.hash)
    .where(audit_events.c.id < bindparam("bound"))
    .order_by(audit_events.c.id.desc())
    .limit(1)
)
_COUNT_THROUGH: Final = DriverStatement(
    select(func.count().label("removed")).where(audit_events.c.id <= bindparam("through"))
)
_DELETE_THROUGH: Final = DriverStatement(delete(audit_events).where(audit_events.c.id <= bindparam("through")))
# PostgreSQL takes the appenders' lock, and inserts the whole batch in one statement (one
# array per column), whatever the batch's size.
_LOCK_PG: Final = DriverStatement(text("SELECT pg_advisory_xact_lock(:key)"))
_INSERT_PG: Final = DriverStatement(
    text(
        """
        INSERT INTO audit_events (at, event, actor_id, user_id, email, ip, user_agent, detail, prev_hash, hash)
        SELECT * FROM unnest(
            CAST(:at AS double precision[]), CAST(:event AS text[]), CAST(:actor_id AS text[]),
            CAST(:user_id AS text[]), CAST(:email AS text[]), CAST(:ip AS text[]), CAST(:user_agent AS text[]),
            CAST(:detail AS text[]), CAST(:prev_hash AS text[]), CAST(:hash AS text[])
        )
        RETURNING id, hash
        """
    )
)


def _entry(row: Row[Any]) -> StoredAuditEntry:
    return StoredAuditEntry(
        id=int(row.id),
        entry=AuditEntry(
            at=float(row.at),
            event=row.event,
            actor_id=row.actor_id,
            user_id=row.user_id,
            email=row.email,
            ip=row.ip,
            user_agent=row.user_agent,
            detail=json.loads(row.detail),
        ),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _row(entry: AuditEntry, prev_hash: str, digest: str) -> dict[str, Any]:
    return {
        "at": entry.at,
        "event": entry.event,
        "actor_id": entry.actor_id,
        "user_id": entry.user_id,
        "email": entry.email,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "detail": canonical_json(dict(entry.detail)),
        "prev_hash": prev_hash,
        "hash": digest,
    }


def _chained(entries: Sequence[AuditEntry], prev_hash: str) -> list[dict[str, Any]]:
    """The rows of ``entries``, each hash-chained to the one before, the first to ``prev_hash``."""
    rows: list[dict[str, Any]] = []
    for entry in entries:
        digest = chain_hash(entry, prev_hash)
        rows.append(_row(entry, prev_hash, digest))
        prev_hash = digest
    return rows


def _stored(
    entries: Sequence[AuditEntry], rows: Sequence[dict[str, Any]], ids: Sequence[int]
) -> list[StoredAuditEntry]:
    return [
        StoredAuditEntry(id=new_id, entry=entry, prev_hash=row["prev_hash"], hash=row["hash"])
        for new_id, entry, row in zip(ids, entries, rows, strict=True)
    ]


async def _insert(driver: Driver, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert chained ``rows`` in as few statements as the database allows; their new ids, in order.

    Both databases number the rows of one INSERT in the order its values are listed (an
    array's order on PostgreSQL, the VALUES list's on SQLite), so ids follow the chain, which
    verification walks by id. Neither promises the order of the RETURNING clause, so each
    returned row is matched by its hash (unique: it covers its predecessor's).
    """
    if driver.postgres:
        inserted = await driver.fetch(_INSERT_PG, {name: [row[name] for row in rows] for name in _COLUMNS})
    else:
        inserted, start = [], 0
        for size in _sqlite_chunks(len(rows)):
            chunk = rows[start : start + size]
            params = {f"{name}_{index}": row[name] for index, row in enumerate(chunk) for name in _COLUMNS}
            inserted += await driver.fetch(_insert_sqlite(size), params)
            start += size
    by_hash = {record["hash"]: int(record["id"]) for record in inserted}
    return [by_hash[row["hash"]] for row in rows]


class _GroupCommit:
    """Turns concurrent single appends into batches written one at a time, in arrival order.

    Each caller queues its entry and waits for its turn; the caller holding the turn
    writes everything queued so far, so callers that arrived meanwhile find their
    row already written. A failed batch fails every caller in it.
    """

    def __init__(self, write: Callable[[Sequence[AuditEntry]], Awaitable[list[StoredAuditEntry]]]) -> None:
        self._write = write
        self._pending: list[tuple[AuditEntry, asyncio.Future[StoredAuditEntry]]] = []
        self._turn = asyncio.Lock()

    async def submit(self, entry: AuditEntry) -> StoredAuditEntry:
        mine: asyncio.Future[StoredAuditEntry] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, mine))
        async with self._turn:
            if not mine.done():
                try:
                    await self._flush()
                except BaseException:
                    if mine.done():
                        mine.exception()  # retrieved: the caller's cancellation wins
                    raise
        return await mine

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            stored = await self._write([entry for entry, _ in batch])
        except BaseException as exc:
            # A cancelled writer must not strand the callers whose rows it took.
            failure = exc if isinstance(exc, Exception) else ServiceUnavailable()
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, waiter), record in zip(batch, stored, strict=True):
            waiter.set_result(record)


class SqlAuditStore:
    """:class:`~keyturn.domain.ports.AuditStore` on SQLite or PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batches = _GroupCommit(self.append_many)

    async def append(self, entry: AuditEntry) -> StoredAuditEntry:
        """Chain and store ``entry``; return once it has committed (possibly in a batch)."""
        return await self._batches.submit(entry)

    async def append_many(self, entries: Sequence[AuditEntry]) -> list[StoredAuditEntry]:
        """Chain and store ``entries`` in order, in one transaction under the appenders' lock."""
        async with self._db.driver() as driver, driver.transaction(immediate=True):
            if driver.postgres:
                await driver.execute(_LOCK_PG, {"key": AUDIT_LOCK_KEY})
            head = await driver.fetchrow(_HEAD, {})
            rows = _chained(entries, head["hash"] if head else GENESIS_HASH)
            ids = await _insert(driver, rows)
        return _stored(entries, rows, ids)

    async def purge(self, cutoff: float, note: Callable[[int, int, str], AuditEntry]) -> StoredAuditEntry | None:
        """Delete the oldest records, up to the first at or after ``cutoff``; chain ``note`` (see the port).

        The first record to keep is found before taking the appenders' lock (the only step
        that reads more than it deletes): records below it never change but by a purge. The
        deletion and its note then run under the lock, so no append chains to a record being
        deleted, and commit together: a chain never starts from an unexplained link.
        """
        async with self._db.driver() as driver:
            kept = await driver.fetchrow(_FIRST_KEPT, {"cutoff": cutoff})
            if kept is None:  # every record is old: keep whatever is appended from now on
                kept = await driver.fetchrow(_NEXT_ID, {})
        if kept is None or kept["id"] is None:
            return None
        bound = int(kept["id"])
        async with self._db.driver() as driver, driver.transaction(immediate=True):
            if driver.postgres:
                await driver.execute(_LOCK_PG, {"key": AUDIT_LOCK_KEY})
            last = await driver.fetchrow(_LAST_BEFORE, {"bound": bound})
            if last is None:
                return None
            head = await driver.fetchrow(_HEAD, {})
            counted = await driver.fetchrow(_COUNT_THROUGH, {"through": last["id"]})
            removed = int(counted["removed"]) if counted else 0
            await driver.execute(_DELETE_THROUGH, {"through": last["id"]})
            entry = note(removed, int(last["id"]), str(last["hash"]))
            rows = _chained([entry], head["hash"] if head else GENESIS_HASH)
            ids = await _insert(driver, rows)
        return _stored([entry], rows, ids)[0]

    async def page(
        self, *, user_id: str | None, event: str | None, before: int | None, limit: int
    ) -> list[StoredAuditEntry]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if user_id is not None:
            query = query.where(or_(audit_events.c.user_id == user_id, audit_events.c.actor_id == user_id))
        if event is not None:
            query = query.where(audit_events.c.event == event)
        if before is not None:
            query = query.where(audit_events.c.id < before)
        async with self._db.transaction() as conn:
            return [_entry(row) for row in await conn.execute(query)]

    async def after(self, after_id: int, limit: int) -> list[StoredAuditEntry]:
        query = select(audit_events).where(audit_events.c.id > after_id).order_by(audit_events.c.id).limit(limit)
        async with self._db.transaction() as conn:
            return [_entry(row) for row in await conn.execute(query)]

    async def latest(self, count: int) -> list[StoredAuditEntry]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(count)
        async with self._db.transaction() as conn:
            rows = [_entry(row) for row in await conn.execute(query)]
        return rows[::-1]
