"""Drive the audit trail outside the HTTP app: populate it, tamper with it, append from many processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import delete, update

from keyturn.clock import FrozenClock
from keyturn.domain.audit import AuditEvent
from keyturn.domain.models import ClientInfo
from keyturn.server.services import Services, build_services
from keyturn.settings import Settings, load_settings
from keyturn.store.tables import audit_events

T = TypeVar("T")


async def with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` against started services (migrated database), then close them."""
    services = build_services(settings, clock=FrozenClock(1_800_000_000.0))
    await services.start()
    try:
        return await work(services)
    finally:
        await services.close()


async def append(services: Services, count: int, tag: str = "test") -> None:
    """Record ``count`` login failures, distinguishable by ``tag``."""
    for n in range(count):
        await services.audit.record(
            AuditEvent.LOGIN_FAILED,
            client=ClientInfo("198.51.100.1", f"{tag}/{n}"),
            email=f"{tag}{n}@example.com",
            detail={"reason": "invalid_credentials", "n": n},
        )


async def edit(services: Services, record_id: int) -> None:
    """What an intruder with database access might do: rewrite a record in place."""
    async with services.db.transaction() as conn:
        await conn.execute(update(audit_events).where(audit_events.c.id == record_id).values(email="x@example.com"))


async def remove(services: Services, record_id: int) -> None:
    async with services.db.transaction() as conn:
        await conn.execute(delete(audit_events).where(audit_events.c.id == record_id))


if __name__ == "__main__":  # python -m tests.audit.support DATABASE_URL COUNT TAG: one appending process
    url, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    settings = load_settings(database_url=url, password_profile="test-only-cheap")
    asyncio.run(with_services(settings, lambda services: append(services, count, tag)))
