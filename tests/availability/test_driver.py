"""The hot statements on the driver itself (``Database.driver``): the same answers as SQLAlchemy's path.

Every refresh, login and session check runs its statements on the pooled connection's own
asyncpg or aiosqlite connection (``DriverStatement``). These tests hold that path, on a real
PostgreSQL and a real SQLite file, to
what :meth:`Database.transaction` promises: a value the server refuses is a 422, a constraint an
``IntegrityError``, a broken connection a 503 -- and a connection whose state is unknown is never
lent again, while one that merely had a statement refused is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from keyturn.errors import ServiceUnavailable, ValidationFailed
from keyturn.store.migrate import migrate
from keyturn.store.sql import Database, create_engine
from tests.availability.test_database_down import _requests_needing_the_database, _terminate_connections
from tests.conftest import ClientFactory, SettingsFactory, login, register

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(pg_url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=1))
    yield database
    await database.dispose()


async def _backend(db: Database) -> int:
    async with db.driver() as driver:
        pid: int = await driver.connection.fetchval("SELECT pg_backend_pid()")
    return pid


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
async def test_a_value_the_server_refuses_is_a_validation_error_and_the_connection_is_kept(
    db: Database, value: str
) -> None:
    """Text PostgreSQL cannot store is the request's fault: 422, and the connection stays pooled."""
    before = await _backend(db)
    with pytest.raises(ValidationFailed):
        async with db.driver() as driver:
            await driver.connection.fetchval("SELECT $1::text", value)
    assert await _backend(db) == before


async def test_a_constraint_violation_is_an_integrity_error(db: Database) -> None:
    """A foreign key the row breaks: IntegrityError, as SQLAlchemy's path raises it (callers catch it)."""
    with pytest.raises(IntegrityError):
        async with db.driver() as driver:
            await driver.connection.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
                "0" * 64,
                "no-such-session",
                1.0,
            )


async def test_other_refusals_are_raised_as_they_are(db: Database) -> None:
    """Neither unavailable nor the request's fault (a bug, say): the driver's own error, connection kept."""
    before = await _backend(db)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.driver() as driver:
            await driver.connection.fetchval("SELECT 1 FROM no_such_table")
    assert await _backend(db) == before


async def test_an_error_of_our_own_between_statements_keeps_the_connection(db: Database) -> None:
    """A rotation that lost its race (or any error of keyturn's own) leaves the connection clean: kept."""
    before = await _backend(db)

    async def lost_race() -> None:
        async with db.driver() as driver, driver.transaction():
            await driver.connection.fetchval("SELECT 1")
            raise LookupError("a concurrent refresh spent it first")

    with pytest.raises(LookupError):
        await lost_race()
    assert await _backend(db) == before


async def test_a_statement_cancelled_midway_discards_its_connection(db: Database) -> None:
    """A request cancelled mid-statement leaves its connection in an unknown state: it is never lent again."""
    before = await _backend(db)
    with anyio.move_on_after(0.3):
        async with db.driver() as driver:
            await driver.connection.fetchval("SELECT pg_sleep(5)")
    assert await _backend(db) != before


async def test_a_broken_connection_is_unavailable_and_discarded(db: Database, pg_url: str) -> None:
    """The server ends the connection mid-use: 503, and the next checkout gets a new connection."""
    before = await _backend(db)

    async def killed_midway() -> None:
        async with db.driver() as driver:
            await _terminate_connections(pg_url)
            await driver.connection.fetchval("SELECT 1")

    with pytest.raises(ServiceUnavailable):
        await killed_midway()
    assert await _backend(db) != before


@pytest.mark.parametrize("backend", ["postgres"])
async def test_connections_killed_within_the_ping_window_fail_at_most_one_request(
    pg_url: str, make_settings: SettingsFactory, make_client: ClientFactory
) -> None:
    """A restart kills every pooled connection; the first request to meet a dead one gets 503, no other does.

    The pool holds several connections (opened by concurrent requests). They are killed and used at
    once, inside the idle-ping window, so no ping can catch them: the first failure marks every
    connection opened before it stale, and each is replaced at its next checkout.
    """
    async with make_client(make_settings(), use_clock=False) as client:
        await register(client)
        tokens = await login(client)

        async def me() -> None:
            await client.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(me)
        assert await _terminate_connections(pg_url) >= 2
        responses = await _requests_needing_the_database(client, tokens)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        responses += [await client.get("/auth/me", headers=bearer) for _ in range(8)]
        failures = [r for r in responses if r.status_code not in (200, 201)]
        assert len(failures) <= 1, [(r.status_code, r.text) for r in responses]
        assert all(r.status_code == 503 for r in failures)


# --- SQLite (aiosqlite): the same rules --------------------------------------------------------


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", pool_size=1))
    await migrate(database.engine)
    yield database
    await database.dispose()


async def _lent(db: Database) -> object:
    """The driver connection the one-connection pool lends (the same object while it is kept)."""
    async with db.driver() as driver:
        connection: object = driver.connection
    return connection


async def _revoked(db: Database) -> list[object]:
    async with db.driver() as driver:
        return list(await driver.connection.execute_fetchall("SELECT session_id FROM revocations", ()))


async def test_sqlite_a_constraint_violation_is_an_integrity_error_and_the_connection_is_kept(
    sqlite_db: Database,
) -> None:
    before = await _lent(sqlite_db)

    async def orphan() -> None:
        async with sqlite_db.driver() as driver, driver.transaction():
            await driver.connection.execute_fetchall(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)",
                ("0" * 64, "no-such-session", 1.0),
            )

    with pytest.raises(IntegrityError):
        await orphan()
    assert await _lent(sqlite_db) is before


async def test_sqlite_an_error_of_our_own_rolls_the_transaction_back_and_keeps_the_connection(
    sqlite_db: Database,
) -> None:
    """Nothing half-written: the row inserted before the error is gone; the connection is lent again."""
    before = await _lent(sqlite_db)

    async def lost_race() -> None:
        async with sqlite_db.driver() as driver, driver.transaction():
            await driver.connection.execute_fetchall("INSERT INTO revocations VALUES (?, ?)", ("s1", 2.0))
            raise LookupError("a concurrent refresh spent it first")

    with pytest.raises(LookupError):
        await lost_race()
    assert await _revoked(sqlite_db) == []
    assert await _lent(sqlite_db) is before


async def test_sqlite_a_driver_failure_is_unavailable_and_discards_the_connection(sqlite_db: Database) -> None:
    """An operational error (here: a table that is not there) is a 503; the connection is not lent again."""
    before = await _lent(sqlite_db)

    async def failing() -> None:
        async with sqlite_db.driver() as driver:
            await driver.connection.execute_fetchall("SELECT 1 FROM no_such_table", ())

    with pytest.raises(ServiceUnavailable):
        await failing()
    assert await _lent(sqlite_db) is not before


async def test_sqlite_a_connection_handed_back_inside_a_transaction_is_rolled_back(sqlite_db: Database) -> None:
    """A write left uncommitted is undone on return: the next borrower never inherits it (nor the write lock)."""

    async def abandon_a_write() -> None:
        async with sqlite_db.driver() as driver:
            await driver.connection.execute_fetchall("INSERT INTO revocations VALUES (?, ?)", ("s1", 2.0))
            assert driver.connection.in_transaction

    await abandon_a_write()
    async with sqlite_db.driver() as driver:
        assert not driver.connection.in_transaction
    assert await _revoked(sqlite_db) == []


async def test_sqlite_a_connection_handed_back_idle_costs_no_rollback(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a read or a commit there is nothing to roll back: no hop to aiosqlite's thread for one."""
    connection: Any = await _lent(sqlite_db)
    rollbacks: list[None] = []
    original = connection.rollback

    async def counted() -> None:
        rollbacks.append(None)
        await original()

    monkeypatch.setattr(connection, "rollback", counted)
    await _revoked(sqlite_db)
    async with sqlite_db.driver() as driver, driver.transaction():
        await driver.connection.execute_fetchall("INSERT INTO revocations VALUES (?, ?)", ("s1", 2.0))
    assert rollbacks == []
    assert await _lent(sqlite_db) is connection
