"""The audit trail in SQL: appends serialised across processes, so the hash chain never forks.

Chaining a record needs the newest record's hash, and two processes reading the same
"newest" would both claim it as predecessor. So every append first takes the one
write lock that all processes share, then reads the head, then inserts:

* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, held until the transaction
  commits (readers are never blocked);
* SQLite: ``BEGIN IMMEDIATE``, the database's own write lock (waiting up to the
  connection's busy timeout).

Driver failures become :class:`~keyturn.errors.ServiceUnavailable` in
:class:`~keyturn.store.sql.Database`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import insert, or_, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from keyturn.domain.audit import GENESIS_HASH, AuditEntry, StoredAuditEntry, canonical_json, chain_hash
from keyturn.store.sql import Database
from keyturn.store.tables import audit_events

__all__ = ["AUDIT_LOCK_KEY", "SqlAuditStore"]

#: The PostgreSQL advisory lock key of audit appends (ASCII "kt-audit" as an int64).
AUDIT_LOCK_KEY: Final = int.from_bytes(b"kt-audit", "big") & 0x7FFF_FFFF_FFFF_FFFF


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


class SqlAuditStore:
    """:class:`~keyturn.domain.ports.AuditStore` on SQLite or PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _lock(self, conn: AsyncConnection) -> None:
        """Take the appenders' lock as the transaction's first statement."""
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
        else:
            # The driver has not begun a transaction yet (it does so lazily, before the
            # first write); beginning it IMMEDIATE takes the write lock up front.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")

    async def append(self, entry: AuditEntry) -> StoredAuditEntry:
        async with self._db.transaction() as conn:
            await self._lock(conn)
            head = (await conn.execute(select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1))).first()
            prev_hash = head.hash if head else GENESIS_HASH
            digest = chain_hash(entry, prev_hash)
            result = await conn.execute(
                insert(audit_events)
                .values(
                    at=entry.at,
                    event=entry.event,
                    actor_id=entry.actor_id,
                    user_id=entry.user_id,
                    email=entry.email,
                    ip=entry.ip,
                    user_agent=entry.user_agent,
                    detail=canonical_json(dict(entry.detail)),
                    prev_hash=prev_hash,
                    hash=digest,
                )
                .returning(audit_events.c.id)
            )
            new_id = int(result.scalar_one())
        return StoredAuditEntry(id=new_id, entry=entry, prev_hash=prev_hash, hash=digest)

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
