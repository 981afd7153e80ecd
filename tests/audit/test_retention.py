"""Audit retention (``KEYTURN_AUDIT_RETENTION``): old records go, the chain still verifies, tampering still shows.

A purge deletes the oldest records -- a prefix of the chain -- and chains an ``audit.purged``
record naming the hash the rest now starts from, in the same transaction. ``verify`` accepts a
chain that starts mid-way only when such a record names its first link: deleting the oldest
records by hand is still reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from keyturn.clock import FrozenClock
from keyturn.domain.audit import GENESIS_HASH, AuditEvent, BrokenLink, StoredAuditEntry
from keyturn.errors import ConfigurationError
from keyturn.server.services import Services, build_services
from keyturn.settings import Settings
from tests.audit.support import append, remove
from tests.conftest import ClientFactory, SettingsFactory, app_of, login, register

pytestmark = pytest.mark.anyio

DAY = 86400.0


@pytest.fixture
async def services(make_settings: SettingsFactory, clock: FrozenClock) -> AsyncIterator[Services]:
    started = build_services(make_settings(), clock=clock)
    await started.start()
    try:
        yield started
    finally:
        await started.close()


async def records(services: Services) -> list[tuple[int, str, float]]:
    return [(r.id, r.entry.event, r.entry.at) async for r in services.audit.scan()]


async def test_a_purge_removes_the_old_records_and_the_chain_still_verifies(
    services: Services, clock: FrozenClock
) -> None:
    await append(services, 4, "old")
    clock.advance(10 * DAY)
    await append(services, 3, "new")
    before = await records(services)

    purged = await services.audit.purge(7 * DAY)

    assert purged is not None
    after = await records(services)
    assert [r[1] for r in after] == [AuditEvent.LOGIN_FAILED] * 3 + [AuditEvent.PURGED]
    assert [r[0] for r in after[:3]] == [r[0] for r in before[4:]]
    assert purged.entry.detail["removed"] == 4
    assert purged.entry.detail["through_id"] == before[3][0]
    first_kept = (await services.audit.latest(4))[0]
    assert purged.entry.detail["anchor"] == first_kept.prev_hash != GENESIS_HASH
    count, broken, head = await services.audit.verify()
    assert (count, broken, head) == (4, None, purged.hash)


async def test_records_younger_than_the_retention_are_all_kept(services: Services, clock: FrozenClock) -> None:
    await append(services, 3)
    clock.advance(2 * DAY)
    assert await services.audit.purge(7 * DAY) is None
    assert len(await records(services)) == 3
    assert (await services.audit.verify())[1] is None


async def test_purges_in_a_row_keep_the_chain_verifiable(services: Services, clock: FrozenClock) -> None:
    """Each purge anchors what it leaves; the next one may remove the previous purge record itself."""
    for _ in range(3):
        await append(services, 2)
        clock.advance(8 * DAY)
        assert await services.audit.purge(7 * DAY) is not None
        count, broken, _ = await services.audit.verify()
        assert broken is None
        assert count == 1  # only this purge's own record is younger than a week
    assert [r[1] for r in await records(services)] == [AuditEvent.PURGED]


async def test_every_record_old_leaves_the_purge_record_chained_to_the_last_one(
    services: Services, clock: FrozenClock
) -> None:
    await append(services, 3)
    head = (await services.audit.latest(1))[0]
    clock.advance(30 * DAY)
    purged = await services.audit.purge(7 * DAY)
    assert purged is not None
    assert purged.prev_hash == head.hash == purged.entry.detail["anchor"]
    assert await services.audit.verify() == (1, None, purged.hash)


async def test_deleting_the_oldest_records_by_hand_is_still_reported(services: Services) -> None:
    """Without an audit.purged record naming the link, a chain starting mid-way is broken at its first record."""
    await append(services, 4)
    await remove(services, 1)
    await remove(services, 2)
    assert await services.audit.verify() == (0, BrokenLink(3, "unlinked"), GENESIS_HASH)


async def test_deleting_more_than_a_purge_did_is_reported(services: Services, clock: FrozenClock) -> None:
    """After a purge, removing the first record it kept breaks the anchor: reported at the next one."""
    await append(services, 2, "old")
    clock.advance(10 * DAY)
    await append(services, 3, "new")
    await services.audit.purge(7 * DAY)
    kept = await records(services)
    await remove(services, kept[0][0])
    _, broken, _ = await services.audit.verify()
    assert broken == BrokenLink(kept[1][0], "unlinked")


async def test_a_purge_during_a_verification_is_not_reported_as_tampering(
    services: Services, clock: FrozenClock
) -> None:
    """A verify walks in batches; a purge deleting past the batch in hand is no broken link.

    (``keyturn audit verify`` against a server whose purge loop runs meanwhile.) The walk
    starts again when the chain's oldest record moved under it.
    """
    await append(services, 6, "old")
    clock.advance(10 * DAY)
    await append(services, 2, "new")
    store = services.audit._store
    real_after = store.after
    purges: list[object] = []

    async def after_then_purge(after_id: int, limit: int) -> list[StoredAuditEntry]:
        records = await real_after(after_id, limit)
        if limit == 2 and not purges:  # the walk's first batch is in hand: the server purges now
            purges.append(await services.audit.purge(7 * DAY))
        return records

    store.after = after_then_purge  # type: ignore[method-assign]
    count, broken, _ = await services.audit.verify(batch=2)
    assert purges
    assert purges[0] is not None
    assert broken is None
    assert count == 3  # the two new records and the audit.purged note


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
@pytest.mark.parametrize("value", ["1h", "86399"], ids=["1h", "a-second-short-of-a-day"])
def test_a_retention_under_a_day_is_refused(make_settings: SettingsFactory, value: str) -> None:
    with pytest.raises(ConfigurationError, match="KEYTURN_AUDIT_RETENTION"):
        make_settings(audit_retention=value)


@pytest.mark.parametrize("backend", ["sqlite"], ids=["sqlite"])
async def test_the_server_purges_old_records_on_its_schedule(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock
) -> None:
    """KEYTURN_AUDIT_RETENTION=30d: the purge loop removes what is older and records that it did."""
    settings: Settings = make_settings(purge_interval=1, audit_retention="30d")
    async with make_client(settings) as client:
        await register(client)
        clock.advance(31 * DAY)
        await login(client)
        services = app_of(client).state.services
        for _ in range(300):  # the first purge is due one second after start; allow a loaded machine 15 s
            if AuditEvent.PURGED in [r[1] for r in await records(services)]:
                break
            await anyio.sleep(0.05)
        # Read again: a scan (batches by id) that raced the purge can hold a record it deleted
        # from one batch and its audit.purged note from the next.
        events = [r[1] for r in await records(services)]
        assert events == [AuditEvent.LOGIN_SUCCEEDED, AuditEvent.PURGED]
        assert (await services.audit.verify())[1] is None
