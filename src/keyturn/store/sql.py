"""The domain's stores on SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

Driver errors are translated here and nowhere else: a unique violation on e-mail
becomes :class:`EmailTaken`; an unreachable or failing database becomes
:class:`ServiceUnavailable` (503), never a 500. Every write is one transaction, so
a failure leaves no half-state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
from joserfc.jwk import Key, OctKey
from sqlalchemy import Float, and_, bindparam, delete, event, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import Label
from sqlalchemy.util import greenlet_spawn

from keyturn.crypto.keys import (
    KeyChange,
    KeyState,
    SigningKey,
    load_private_jwk,
    resealed_private_jwk,
    seal_private_jwk,
)
from keyturn.domain.models import PurgeCutoffs, Rotation, Session, SpentToken, StoredUser, User
from keyturn.errors import EmailTaken, ServiceUnavailable, ValidationFailed
from keyturn.store.tables import refresh_tokens, revocations, sessions, signing_keys, users

__all__ = [
    "OWNER_COLUMNS",
    "Driver",
    "DriverStatement",
    "owner_of",
    "sqlite_path",
    "Database",
    "SqlKeyStore",
    "SqlRevocationStore",
    "SqlSessionStore",
    "SqlUserStore",
    "create_engine",
    "mark_connections_stale",
]

_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)

log = logging.getLogger("keyturn.store")


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (``None`` for other databases and in-memory SQLite)."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or url == prefix or ":memory:" in url:
        return None
    return Path(url[len(prefix) :])


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 0, pool_timeout: float = 5.0) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout on every connection.

    No overflow by default: SQLAlchemy closes an overflow connection as soon as it is
    returned, so a load above ``pool_size`` opened and closed a connection per request
    (on SQLite a new thread and four PRAGMAs each time; on PostgreSQL a new backend).
    Requests beyond the pool wait for a connection instead, at most ``pool_timeout``.
    """
    if url.startswith("sqlite"):
        pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_reset_on_return=None, **(pool if sqlite_path(url) else {})
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args={"timeout": pool_timeout},
    )
    _check_on_checkout(engine, IDLE_PING_AFTER)
    return engine


#: Seconds a pooled connection may sit unused before it is pinged on checkout.
IDLE_PING_AFTER: Final = 0.5


#: Per engine: connections opened before this moment (``time.monotonic``) are replaced on checkout.
_STALE_BEFORE: Final[weakref.WeakKeyDictionary[Engine, float]] = weakref.WeakKeyDictionary()


def mark_connections_stale(engine: AsyncEngine) -> None:
    """Replace, at their next checkout, every pooled connection opened before now.

    Called when a connection is found broken: a server restart or failover killed its
    siblings too, and each would otherwise fail one more request before being noticed.
    (SQLAlchemy does the same for its own statements; this covers :meth:`Database.driver`.)
    """
    _STALE_BEFORE[engine.sync_engine] = time.monotonic()


def _check_on_checkout(engine: AsyncEngine, idle_after: float) -> None:
    """Ping a pooled connection on checkout only if it sat unused for ``idle_after`` seconds.

    SQLAlchemy's ``pool_pre_ping`` pings on *every* checkout: a round trip per
    transaction, a quarter of all round trips of a refresh. A connection handed back
    moments ago is as good as a ping (HikariCP skips its check within 500 ms of last
    use for the same reason). A connection that fails the ping is replaced before
    the request sees it; one that dies within the window fails that one request with
    503, and every connection opened before that failure is then replaced at its next
    checkout (:func:`mark_connections_stale`), without a ping.
    """
    dialect = engine.sync_engine.dialect
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _opened(_dbapi_connection: Any, record: Any) -> None:
        record.info["keyturn_opened_at"] = time.monotonic()

    @event.listens_for(sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["keyturn_idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _lent(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("keyturn_opened_at", 0.0) <= _STALE_BEFORE.get(sync_engine, -1.0):
            raise DisconnectionError()
        since = record.info.get("keyturn_idle_since")
        if since is None or time.monotonic() - since < idle_after:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure means: replace this connection
            raise DisconnectionError() from exc
        if not alive:
            raise DisconnectionError()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """Roll a returned SQLite connection back only if it holds a transaction.

    Replaces SQLAlchemy's rollback-on-return (``pool_reset_on_return=None``), which rolls
    back every connection a :meth:`Database.driver` caller hands back -- one more hop to
    aiosqlite's thread (~45 µs of CPU) per checkout, for nothing after a read or a commit.
    A connection left inside a transaction (an error between statements) is still rolled
    back, so it never reaches the next borrower holding SQLite's write lock.
    """
    if state.terminate_only or not state.asyncio_safe or state.transaction_was_reset:
        return  # being closed (which rolls back), or SQLAlchemy already ended its transaction
    if _holds_transaction(record.driver_connection):
        dbapi_connection.rollback()


def _holds_transaction(connection: Any) -> bool:
    """True when an aiosqlite connection is inside a transaction (a closed one, discarded after a failure, is not)."""
    try:
        return bool(connection.in_transaction)
    except ValueError:  # aiosqlite: "no active connection"
        return False


def _refused_value(sqlstate: str) -> ValidationFailed:
    """PostgreSQL's SQLSTATE class 22 ("data exception"): the request's fault, a 422 rather than a 500.

    A value the column cannot hold (a NUL character in text, a string over its width) that
    validation let through.
    """
    log.warning("database refused a value (SQLSTATE %s)", sqlstate)
    return ValidationFailed(fields={"body": "contains a value that cannot be stored"})


class DriverStatement:
    """A SQLAlchemy statement compiled once per dialect, to run on the driver itself (:class:`Driver`).

    SQLAlchemy's execution path (connection and transaction objects, execution context,
    result wrapping, events, the greenlet bridge; on SQLite three or four thread hand-offs
    per statement) cost more CPU than the statement itself: measured on PostgreSQL about
    380 µs per statement on top of the ~170 µs of the checkout and asyncpg's own work, on
    SQLite 640 µs against 250 for a read (docs/performance.md). The hot statements -- every
    refresh, every login, every session check -- are therefore compiled from the same
    SQLAlchemy constructs as everywhere else (one source for the SQL and the tables), once
    per dialect, and sent with the driver: asyncpg (whose statement cache prepares each once
    per connection) or aiosqlite (one hand-off per statement).
    """

    __slots__ = ("_compiled", "_statement")

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[bool, _Compiled] = {}

    def _compile(self, postgres: bool) -> _Compiled:
        # Each dialect is loaded only by the servers that use it.
        if postgres:
            from sqlalchemy.dialects.postgresql import asyncpg as dialect_module  # noqa: PLC0415
        else:
            from sqlalchemy.dialects.sqlite import aiosqlite as dialect_module  # type: ignore[no-redef] # noqa: PLC0415
        compiled = self._statement.compile(dialect=dialect_module.dialect())  # type: ignore[no-untyped-call]
        assert isinstance(compiled, SQLCompiler)  # noqa: S101 - a statement compiles to a SQLCompiler
        # Values the statement carries itself (a LIMIT, say); the caller supplies the rest.
        carried = {name: value for name, value in compiled.params.items() if value is not None}
        columns = getattr(self._statement, "exported_columns", None)
        names = tuple(columns.keys()) if columns is not None else ()
        self._compiled[postgres] = entry = _Compiled(str(compiled), tuple(compiled.positiontup or ()), carried, names)
        return entry

    def bind(self, params: Mapping[str, Any], *, postgres: bool) -> tuple[str, list[Any], tuple[str, ...]]:
        """The SQL, its positional arguments taken from ``params`` by name, and its result columns."""
        compiled = self._compiled.get(postgres) or self._compile(postgres)
        carried = compiled.carried
        args = [params[name] if name in params else carried[name] for name in compiled.parameters]
        return compiled.sql, args, compiled.columns


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    parameters: tuple[str, ...]
    carried: dict[str, Any]
    columns: tuple[str, ...]


class Driver:
    """A pooled connection's own driver, lent by :meth:`Database.driver` for :class:`DriverStatement`.

    Each statement is atomic on its own (asyncpg runs in autocommit; SQLite opens no
    transaction for a read, and :meth:`transaction` is the only way in for writes here).
    Rows are read by column name.
    """

    __slots__ = ("connection", "postgres")

    def __init__(self, connection: Any, *, postgres: bool) -> None:
        self.connection = connection
        self.postgres = postgres

    async def fetch(self, statement: DriverStatement, params: Mapping[str, Any]) -> list[_Fields]:
        sql, args, columns = statement.bind(params, postgres=self.postgres)
        if self.postgres:
            return list(await self.connection.fetch(sql, *args))
        return [dict(zip(columns, row, strict=True)) for row in await self.connection.execute_fetchall(sql, args)]

    async def fetchrow(self, statement: DriverStatement, params: Mapping[str, Any]) -> _Fields | None:
        """The first row, or ``None`` (for statements that select at most one)."""
        if self.postgres:
            sql, args, _ = statement.bind(params, postgres=True)
            row: _Fields | None = await self.connection.fetchrow(sql, *args)
            return row
        rows = await self.fetch(statement, params)
        return rows[0] if rows else None

    async def execute(self, statement: DriverStatement, params: Mapping[str, Any]) -> None:
        sql, args, _ = statement.bind(params, postgres=self.postgres)
        if self.postgres:
            await self.connection.execute(sql, *args)
        else:
            await self.connection.execute_fetchall(sql, args)

    @asynccontextmanager
    async def transaction(self, *, immediate: bool = False) -> AsyncIterator[None]:
        """Statements that commit together, or not at all.

        ``immediate`` (SQLite) takes the database's write lock at the start, rather than at
        the first write: for a transaction whose reads must not change before it writes.
        """
        if self.postgres:
            async with self.connection.transaction():
                yield
            return
        if immediate:
            await self.connection.execute_fetchall("BEGIN IMMEDIATE", ())
        try:
            yield
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.connection.rollback()
            raise
        await self.connection.commit()


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a failure on a lent driver connection means."""

    #: What the caller sees (the failure itself, or the contract error it stands for).
    error: BaseException
    #: The connection's state is unknown: discard it rather than lend it again.
    discard: bool
    #: The database is unreachable or restarted: the connection's siblings likely are dead too.
    broken: bool = False


def _postgres_verdict(exc: Exception, connection: Any) -> _Verdict:
    """asyncpg's failures, answered as :meth:`Database._translated` answers SQLAlchemy's.

    A statement the server refused on a live connection keeps the connection and its meaning
    (a bad value is a 422, a constraint an :class:`IntegrityError`, a server shutting down a
    503, anything else is raised as it is). A connection that broke or timed out -- its end
    can also surface as a protocol-state error on the next statement -- is a 503, discarded.
    """
    import asyncpg  # noqa: PLC0415 - loaded by the PostgreSQL dialect already

    if isinstance(exc, asyncpg.PostgresError) and not connection.is_closed():
        sqlstate = str(exc.sqlstate or "")
        if sqlstate.startswith("22"):
            return _Verdict(_refused_value(sqlstate), discard=False)
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return _Verdict(IntegrityError(None, None, exc), discard=False)
        if sqlstate[:2] in _UNAVAILABLE_CLASSES:
            return _Verdict(ServiceUnavailable(), discard=False)
        return _Verdict(exc, discard=False)
    broken = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    if isinstance(exc, broken) or connection.is_closed():
        return _Verdict(ServiceUnavailable(), discard=True, broken=True)
    return _Verdict(exc, discard=False)  # keyturn's own, raised between statements: the connection is clean


def _sqlite_verdict(exc: Exception) -> _Verdict:
    """sqlite3's failures: a refused row keeps the connection; anything else from the driver discards it."""
    if isinstance(exc, sqlite3.IntegrityError):
        return _Verdict(IntegrityError(None, None, exc), discard=False)
    if isinstance(exc, sqlite3.DataError):
        return _Verdict(exc, discard=False)
    if isinstance(exc, sqlite3.OperationalError | OSError | TimeoutError):
        # Locked beyond the busy timeout, an I/O error, a read-only file ...
        return _Verdict(ServiceUnavailable(), discard=True)
    return _Verdict(exc, discard=isinstance(exc, sqlite3.Error))


#: SQLSTATE classes that mean the server cannot serve now: connection exception,
#: insufficient resources, operator intervention (shutdown, cancel).
_UNAVAILABLE_CLASSES: Final = frozenset({"08", "53", "57"})


class Database:
    """The engine, with transactions that translate driver failures."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @engine.setter
    def engine(self, engine: AsyncEngine) -> None:
        self._engine = engine
        #: True on PostgreSQL (the hot statements differ: see :class:`Driver`).
        self.postgres = engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """Driver failures as contract errors: unreachable → ServiceUnavailable, bad value → 422."""
        try:
            yield
        except IntegrityError:
            raise
        except _UNAVAILABLE as exc:
            raise ServiceUnavailable() from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise ServiceUnavailable() from exc
            sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
            if sqlstate.startswith("22"):
                raise _refused_value(sqlstate) from exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; unreachable or failing databases raise ServiceUnavailable."""
        async with self._translated(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """A pooled connection's own driver (asyncpg or aiosqlite), for :class:`DriverStatement`.

        The connection comes from, and goes back to, the one pool (idle ping and reset on
        return included). Failures are translated as in :meth:`transaction`. A connection
        that failed for any reason other than the database refusing a statement (cancelled
        mid-statement, broken, timed out) is discarded, never lent again: its state is
        unknown. On PostgreSQL a broken one also marks its siblings stale
        (:func:`mark_connections_stale`).
        """
        async with self._translated():
            proxied = await self.engine.raw_connection()
        connection: Any = proxied.driver_connection  # asyncpg / aiosqlite ship no types
        postgres = self.postgres
        try:
            yield Driver(connection, postgres=postgres)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled, perhaps mid-statement: raised as it is
                verdict = _Verdict(exc, discard=True)
            elif postgres:
                verdict = _postgres_verdict(exc, connection)
            else:
                verdict = _sqlite_verdict(exc)
            if verdict.discard and postgres:
                proxied.invalidate()
            elif verdict.discard:
                with anyio.CancelScope(shield=True):
                    await greenlet_spawn(proxied.invalidate)
            if verdict.broken:
                mark_connections_stale(self.engine)
            if verdict.error is exc:
                raise
            raise verdict.error from exc
        finally:
            if postgres or not _holds_transaction(connection):
                # Nothing to roll back (asyncpg's own transactions are over; SQLite holds none):
                # the return is synchronous, so it needs neither a greenlet nor a shield.
                proxied.close()
            else:
                # The reset on return is a rollback, one hop to aiosqlite's thread: it must
                # complete even if the caller was cancelled, or the pool loses the connection.
                with anyio.CancelScope(shield=True):
                    await greenlet_spawn(proxied.close)

    async def ping(self) -> None:
        async with self.transaction() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


#: A row read by column name: a SQLAlchemy row's ``_mapping``, or an asyncpg record.
_Fields = Mapping[Any, Any]


def _user(row: Row[Any]) -> User:
    return _account(row.id, row._mapping, "")


def _account(user_id: str, fields: _Fields, prefix: str) -> User:
    """A :class:`User` from a row's account columns, named with ``prefix`` when joined to another table.

    ``fields`` is a SQLAlchemy row's ``_mapping`` or an asyncpg record (:class:`DriverStatement`).
    """
    return User(
        id=user_id,
        email=fields[f"{prefix}email"],
        name=fields[f"{prefix}name"],
        roles=tuple(json.loads(fields[f"{prefix}roles"])),
        created_at=fields[f"{prefix}created_at"],
        disabled=bool(fields[f"{prefix}disabled"]),
    )


def _session(row: Row[Any]) -> Session:
    return _session_of(row._mapping)


def _session_of(fields: _Fields) -> Session:
    return Session(
        id=fields["id"],
        user_id=fields["user_id"],
        created_at=fields["created_at"],
        last_used_at=fields["last_used_at"],
        expires_at=fields["expires_at"],
        mode=fields["mode"],
        user_agent=fields["user_agent"],
        ip=fields["ip"],
        revoked_at=fields["revoked_at"],
    )


#: An account's columns, labelled, for reads that join the owner of a row (never the password hash).
OWNER_COLUMNS: Final[tuple[Label[Any], ...]] = (
    users.c.email.label("owner_email"),
    users.c.name.label("owner_name"),
    users.c.roles.label("owner_roles"),
    users.c.disabled.label("owner_disabled"),
    users.c.created_at.label("owner_created_at"),
)


def owner_of(row: Row[Any]) -> User:
    """The account joined by :data:`OWNER_COLUMNS` to a row that has its ``user_id``."""
    return _account(row.user_id, row._mapping, "owner_")


# The statements of the hot paths (login, refresh, every protected request), built and
# compiled once (per dialect), run on the driver itself (see DriverStatement).
_USER_BY_ID: Final = DriverStatement(select(users).where(users.c.id == bindparam("user_id")))
_USER_BY_EMAIL: Final = DriverStatement(select(users).where(users.c.email == bindparam("email")))
_FIND_TOKEN: Final = DriverStatement(
    select(
        sessions,
        refresh_tokens.c.created_at.label("token_created_at"),
        refresh_tokens.c.spent_at,
        refresh_tokens.c.sealed_successor,
        *OWNER_COLUMNS,
    )
    .join(refresh_tokens, sessions.c.id == refresh_tokens.c.session_id)
    .join(users, users.c.id == sessions.c.user_id)
    .where(refresh_tokens.c.token_hash == bindparam("token_hash"))
)
_REVOKED_UNTIL: Final = DriverStatement(
    select(revocations.c.expires_at).where(revocations.c.session_id == bindparam("session_id"))
)
# SQLite's rotation: the steps of ``_ROTATE_PG`` below, in one transaction. The first
# UPDATE takes SQLite's database write lock, so concurrent rotations run one after
# the other and the next one finds the token spent. RETURNING tells whether a step matched.
_ROTATED_AT: Final = bindparam("rotated_at", type_=Float)
_TOUCH: Final = DriverStatement(
    update(sessions)
    .where(sessions.c.id == bindparam("touch_id"), sessions.c.revoked_at.is_(None), sessions.c.expires_at > _ROTATED_AT)
    .values(last_used_at=_ROTATED_AT, ip=bindparam("client_ip"), user_agent=bindparam("client_agent"))
    .returning(sessions.c.id)
)
_SPEND: Final = DriverStatement(
    update(refresh_tokens)
    .where(refresh_tokens.c.token_hash == bindparam("spent_hash"), refresh_tokens.c.spent_at.is_(None))
    .values(spent_at=_ROTATED_AT, sealed_successor=bindparam("sealed"))
    .returning(refresh_tokens.c.token_hash)
)
_INSERT_TOKEN: Final = DriverStatement(
    insert(refresh_tokens).values({c: bindparam(c) for c in ("token_hash", "session_id", "created_at")})
)
_INSERT_SESSION: Final = DriverStatement(
    insert(sessions).values(
        {
            c: bindparam(c)
            for c in ("id", "user_id", "created_at", "last_used_at", "expires_at", "mode", "user_agent", "ip")
        }
    )
)
# A session and its first token in one statement (one round trip, atomic without BEGIN/COMMIT).
_CREATE_SESSION_PG: Final = DriverStatement(
    text(
        """
    WITH opened AS (
        INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, mode, user_agent, ip)
        VALUES (:id, :user_id, :created_at, :last_used_at, :expires_at, :mode, :user_agent, :ip)
        RETURNING id, created_at
    )
    INSERT INTO refresh_tokens (token_hash, session_id, created_at) SELECT :token_hash, id, created_at FROM opened
    """
    )
)
# PostgreSQL does a rotation in one statement (one round trip instead of five): the
# session row is locked and re-checked first, the token is spent only if that
# matched, the successor inserted only if the spend matched. Of concurrent spenders
# exactly one matches (``spent_at IS NULL`` is re-checked after the winner commits);
# a revocation that committed first makes the session match nothing. A loser may
# have touched ``last_used_at``: harmless, it is answering for that session too.
_ROTATE_PG: Final = DriverStatement(
    text(
        """
    WITH touched AS (
        UPDATE sessions SET last_used_at = :at, ip = :ip, user_agent = :agent
        WHERE id = :session_id AND revoked_at IS NULL AND expires_at > :at
        RETURNING id
    ), spent AS (
        UPDATE refresh_tokens SET spent_at = :at, sealed_successor = :sealed
        WHERE token_hash = :token_hash AND spent_at IS NULL AND EXISTS (SELECT 1 FROM touched)
        RETURNING session_id
    )
    INSERT INTO refresh_tokens (token_hash, session_id, created_at)
    SELECT :successor_hash, session_id, :at FROM spent
    RETURNING token_hash
    """
    )
)


class SqlUserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, user: User, password_hash: str) -> None:
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    insert(users).values(
                        id=user.id,
                        email=user.email,
                        name=user.name,
                        password_hash=password_hash,
                        roles=json.dumps(list(user.roles)),
                        disabled=user.disabled,
                        created_at=user.created_at,
                    )
                )
        except IntegrityError as exc:
            raise EmailTaken() from exc

    async def _one(self, query: DriverStatement, params: dict[str, str]) -> StoredUser | None:
        async with self._db.driver() as driver:
            fields = await driver.fetchrow(query, params)
        return StoredUser(_account(fields["id"], fields, ""), fields["password_hash"]) if fields else None

    async def by_email(self, email: str) -> StoredUser | None:
        return await self._one(_USER_BY_EMAIL, {"email": email})

    async def by_id(self, user_id: str) -> StoredUser | None:
        return await self._one(_USER_BY_ID, {"user_id": user_id})

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))

    async def update(self, user_id: str, *, roles: Sequence[str] | None, disabled: bool | None) -> User | None:
        values: dict[str, Any] = {}
        if roles is not None:
            values["roles"] = json.dumps(sorted(set(roles)))
        if disabled is not None:
            values["disabled"] = disabled
        async with self._db.transaction() as conn:
            if values:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def page(self, *, after: str | None, limit: int) -> list[User]:
        query = select(users).order_by(users.c.id).limit(limit)
        if after:
            query = query.where(users.c.id > after)
        async with self._db.transaction() as conn:
            return [_user(row) for row in await conn.execute(query)]


class _RotationLost(Exception):
    """Rolls a rotation back when a concurrent refresh spent its token first."""


class SqlSessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, session: Session, token_hash: str) -> None:
        row = {
            "id": session.id,
            "user_id": session.user_id,
            "created_at": session.created_at,
            "last_used_at": session.last_used_at,
            "expires_at": session.expires_at,
            "mode": session.mode,
            "user_agent": session.user_agent,
            "ip": session.ip,
            "token_hash": token_hash,
        }
        async with self._db.driver() as driver:
            if driver.postgres:
                await driver.execute(_CREATE_SESSION_PG, row)
                return
            async with driver.transaction():
                await driver.execute(_INSERT_SESSION, row)
                first = {"token_hash": token_hash, "session_id": session.id, "created_at": session.created_at}
                await driver.execute(_INSERT_TOKEN, first)

    async def find_token(self, token_hash: str) -> SpentToken | None:
        async with self._db.driver() as driver:
            fields = await driver.fetchrow(_FIND_TOKEN, {"token_hash": token_hash})
        if fields is None:
            return None
        return SpentToken(
            token_hash=token_hash,
            session=_session_of(fields),
            owner=_account(fields["user_id"], fields, "owner_"),
            created_at=fields["token_created_at"],
            spent_at=fields["spent_at"],
            sealed_successor=fields["sealed_successor"],
        )

    async def rotate(self, rotation: Rotation) -> bool:
        r = rotation
        if self._db.postgres:
            params = {
                "at": r.at,
                "ip": r.client.ip,
                "agent": r.client.user_agent,
                "session_id": r.session_id,
                "sealed": r.sealed_successor,
                "token_hash": r.token_hash,
                "successor_hash": r.successor_hash,
            }
            async with self._db.driver() as driver:
                return await driver.fetchrow(_ROTATE_PG, params) is not None
        steps = {
            "rotated_at": r.at,
            "touch_id": r.session_id,
            "client_ip": r.client.ip,
            "client_agent": r.client.user_agent,
            "spent_hash": r.token_hash,
            "sealed": r.sealed_successor,
        }
        successor = {"token_hash": r.successor_hash, "session_id": r.session_id, "created_at": r.at}
        try:
            async with self._db.driver() as driver, driver.transaction():
                if not await driver.fetch(_TOUCH, steps):
                    return False  # the session was revoked or expired meanwhile
                if not await driver.fetch(_SPEND, steps):
                    raise _RotationLost()  # a concurrent refresh spent it first: undo the touch
                await driver.execute(_INSERT_TOKEN, successor)
        except _RotationLost:
            return False
        return True

    async def get(self, session_id: str) -> Session | None:
        async with self._db.transaction() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
        return _session(row) if row else None

    async def revoke(self, session_ids: Sequence[str], now: float) -> list[str]:
        # One statement, so two concurrent revocations never both claim the same session.
        revoke = (
            update(sessions)
            .where(sessions.c.id.in_(list(session_ids)), sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(sessions.c.id)
        )
        async with self._db.transaction() as conn:
            return [row.id for row in await conn.execute(revoke)]

    async def active_for_user(self, user_id: str, now: float) -> list[Session]:
        query = (
            select(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None), sessions.c.expires_at > now)
            .order_by(sessions.c.created_at)
        )
        async with self._db.transaction() as conn:
            return [_session(row) for row in await conn.execute(query)]

    async def purge(self, cutoffs: PurgeCutoffs) -> int:
        c = cutoffs
        dead = or_(
            sessions.c.expires_at <= c.now,
            and_(sessions.c.revoked_at.is_not(None), sessions.c.revoked_at <= c.revoked_before),
        )
        if c.idle_before is not None:
            dead = or_(dead, sessions.c.last_used_at <= c.idle_before)
        async with self._db.transaction() as conn:
            dead_ids = select(sessions.c.id).where(dead)
            tokens = await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(dead_ids)))
            gone = await conn.execute(delete(sessions).where(dead))
            await conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.spent_at < c.spent_before, refresh_tokens.c.sealed_successor.is_not(None))
                .values(sealed_successor=None)
            )
        return int(tokens.rowcount or 0) + int(gone.rowcount or 0)

    async def count(self) -> tuple[int, int]:
        """(sessions, refresh tokens) rows: for tests and metrics."""
        async with self._db.transaction() as conn:
            n_sessions = (await conn.execute(text("SELECT COUNT(*) FROM sessions"))).scalar_one()
            n_tokens = (await conn.execute(text("SELECT COUNT(*) FROM refresh_tokens"))).scalar_one()
        return int(n_sessions), int(n_tokens)


class SqlRevocationStore:
    """Revoked session ids in the database, with a local cache of positive answers.

    A revoked id stays revoked until it expires, so caching "revoked" is always safe;
    "not revoked" is asked of the database on every request (a primary-key lookup).
    """

    def __init__(self, db: Database, *, max_cached: int = 100_000) -> None:
        self._db = db
        self._revoked: dict[str, float] = {}
        self._max_cached = max_cached

    def _remember(self, session_id: str, until: float) -> None:
        if len(self._revoked) >= self._max_cached:
            self._revoked.clear()
        self._revoked[session_id] = until

    async def revoke(self, session_ids: Sequence[str], until: float) -> None:
        rows = [{"session_id": sid, "expires_at": until} for sid in dict.fromkeys(session_ids)]
        if not rows:
            return
        # An upsert, not read-then-insert: concurrent revocations of one session (racing
        # replays, logout beside logout-all) must not collide on the primary key.
        dialect = pg_dialect if self._db.postgres else sqlite_dialect
        stmt = dialect.insert(revocations).values(rows)
        upsert = stmt.on_conflict_do_update(
            index_elements=[revocations.c.session_id], set_={"expires_at": stmt.excluded.expires_at}
        )
        async with self._db.transaction() as conn:
            await conn.execute(upsert)
        for sid in session_ids:
            self._remember(sid, until)

    async def is_revoked(self, session_id: str) -> bool:
        if session_id in self._revoked:
            return True
        async with self._db.driver() as driver:
            row = await driver.fetchrow(_REVOKED_UNTIL, {"session_id": session_id})
        if row is None:
            return False
        self._remember(session_id, row["expires_at"])
        return True

    async def purge(self, now: float) -> int:
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        async with self._db.transaction() as conn:
            result = await conn.execute(delete(revocations).where(revocations.c.expires_at <= now))
        return int(result.rowcount or 0)


class SqlKeyStore:
    """Signing keys in the database, where every instance reads them; sealed when a KEK is set.

    ``previous_kek`` is a key-encryption key being replaced: the keys it sealed still open,
    and :meth:`reseal` moves them under ``kek``. Parsed keys are cached by ``kid`` and stored
    text: importing an RSA private key costs tens of milliseconds, and the ring is reloaded
    every few seconds.
    """

    def __init__(self, db: Database, kek: OctKey | None = None, previous_kek: OctKey | None = None) -> None:
        self._db = db
        self._kek = kek
        self._previous_kek = previous_kek
        self._parsed: dict[str, tuple[str, Key]] = {}

    async def load(self) -> list[SigningKey]:
        async with self._db.transaction() as conn:
            rows = list(await conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)))
        parsed: dict[str, tuple[str, Key]] = {}
        for r in rows:
            cached = self._parsed.get(r.kid)
            if cached is None or cached[0] != r.private_jwk:
                key = await anyio.to_thread.run_sync(load_private_jwk, r.private_jwk, self._kek, self._previous_kek)
                cached = (r.private_jwk, key)
            parsed[r.kid] = cached
        self._parsed = parsed
        return [
            SigningKey(
                kid=r.kid,
                alg=r.alg,
                key=parsed[r.kid][1],
                state=_state(r.state),
                created_at=r.created_at,
                drop_after=r.drop_after,
            )
            for r in rows
        ]

    async def apply(self, change: KeyChange) -> bool:
        sealed = [(k, seal_private_jwk(k.private_jwk_json(), self._kek)) for k in change.add]
        try:
            async with self._db.transaction() as conn:
                if not await _claim_ring(conn, change.expect_current):
                    raise _RingMoved
                if change.delete:
                    await conn.execute(delete(signing_keys).where(signing_keys.c.kid.in_(list(change.delete))))
                if change.purge_before is not None:
                    await conn.execute(
                        delete(signing_keys).where(
                            signing_keys.c.state == "retired", signing_keys.c.drop_after <= change.purge_before
                        )
                    )
                for k in change.update:
                    await conn.execute(
                        update(signing_keys)
                        .where(signing_keys.c.kid == k.kid)
                        .values(state=k.state, drop_after=k.drop_after, created_at=k.created_at)
                    )
                for k, stored in sealed:
                    await conn.execute(
                        insert(signing_keys).values(
                            kid=k.kid,
                            alg=k.alg,
                            private_jwk=stored,
                            state=k.state,
                            created_at=k.created_at,
                            drop_after=k.drop_after,
                        )
                    )
        except _RingMoved:
            return False
        return True

    async def reseal(self) -> int:
        """Seal with the current KEK every key stored in clear or sealed with the previous one.

        One transaction; each row is rewritten only if it still holds what was read, so
        instances starting together rewrite each row once between them.
        """
        if self._kek is None:
            return 0
        async with self._db.transaction() as conn:
            rows = list(await conn.execute(select(signing_keys.c.kid, signing_keys.c.private_jwk)))
            moved = 0
            for r in rows:
                resealed = resealed_private_jwk(r.private_jwk, self._kek, self._previous_kek)
                if resealed is None:
                    continue
                await conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.kid == r.kid, signing_keys.c.private_jwk == r.private_jwk)
                    .values(private_jwk=resealed)
                )
                moved += 1
        return moved


class _RingMoved(Exception):
    """Another instance changed the ring first: roll back this change."""


#: Serialises key-ring changes across PostgreSQL instances (an arbitrary, fixed lock id).
_KEY_RING_LOCK = 0x6B6579726E67


async def _claim_ring(conn: AsyncConnection, expect_current: str | None) -> bool:
    """Lock the ring for this transaction and check it is as the change expects.

    The first statement writes, so SQLite takes its write lock before reading
    (a read-then-write transaction could lose the lock race); PostgreSQL takes an
    advisory lock, which also covers the empty ring a row lock could not.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _KEY_RING_LOCK})
    current = signing_keys.c.state == "current"
    if expect_current is None:
        touched = await conn.execute(update(signing_keys).where(current).values(state="current"))
        return not touched.rowcount
    touched = await conn.execute(
        update(signing_keys).where(current, signing_keys.c.kid == expect_current).values(state="current")
    )
    return touched.rowcount == 1


def _state(value: str) -> KeyState:
    if value == "next":
        return "next"
    if value == "retired":
        return "retired"
    return "current"
