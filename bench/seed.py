"""Fixtures for keyturn's auth-server peers: accounts, refresh tokens, and throwaway PostgreSQL databases.

Accounts and sessions are made with keyturn's own services (``Accounts.register``,
``Sessions.start``: the code a login runs once the password has matched), against the very
database the server under test will open, before it starts. So the server finds rows it wrote
itself, and the benchmark does not spend minutes hashing passwords to log in tens of thousands of
times: a login's password check is measured by the login storm, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import asyncpg

from keyturn.domain.models import ClientInfo, User
from keyturn.server.services import Services, build_services
from keyturn.settings import Settings, load_settings

PG_ADMIN_DSN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL_TEMPLATE: Final = "postgresql://postgres@127.0.0.1:5432/{name}"
SEED_CLIENT: Final = ClientInfo(ip="127.0.0.1", user_agent="keyturn-bench-seed")
#: Sessions opened concurrently while seeding (PostgreSQL takes them in parallel; SQLite queues them).
SEED_CONCURRENCY: Final = 16


def settings_for(env: Mapping[str, str]) -> Settings:
    """keyturn's settings from the ``KEYTURN_*`` variables a server peer is started with."""
    prefix = "KEYTURN_"
    overrides = {name[len(prefix) :].lower(): value for name, value in env.items() if name.startswith(prefix)}
    return load_settings(**overrides)


async def _register(services: Services, accounts: Sequence[tuple[str, str]]) -> list[User]:
    return [await services.accounts.register(email, password) for email, password in accounts]


async def _sessions(services: Services, user: User, count: int) -> list[str]:
    tokens: list[str] = []
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one() -> str:
        async with gate:
            pair = await services.sessions.start(user, SEED_CLIENT)
        if pair.refresh_token is None:
            raise RuntimeError("a body-mode session came without a refresh token")
        return pair.refresh_token

    for start in range(0, count, 1000):
        tokens += await asyncio.gather(*(one() for _ in range(min(1000, count - start))))
    return tokens


@contextlib.asynccontextmanager
async def _started(settings: Settings) -> AsyncIterator[Services]:
    """keyturn's services on the server's database, migrated and with its keys, closed afterwards."""
    services = build_services(settings)
    try:
        await services.start()
        yield services
    finally:
        await services.close()


async def _seed(settings: Settings, accounts: Sequence[tuple[str, str]], sessions: int) -> list[str]:
    async with _started(settings) as services:
        users = await _register(services, accounts)
        return await _sessions(services, users[0], sessions) if sessions else []


def seed(env: Mapping[str, str], accounts: Sequence[tuple[str, str]], sessions: int = 0) -> list[str]:
    """Create ``accounts`` (e-mail, password) and open ``sessions`` sessions for the first one.

    Runs keyturn's migrations first, as ``keyturn serve`` would. Returns the sessions' refresh
    tokens, each good for exactly one refresh.
    """
    return asyncio.run(_seed(settings_for(env), accounts, sessions))


def more_sessions(env: Mapping[str, str], email: str, count: int) -> list[str]:
    """Open ``count`` more sessions for the account ``email`` made by :func:`seed`, while its server runs.

    The refresh comparison's top-up: a host faster than :func:`seed`'s list was sized for
    spends it before the last round.
    """
    return asyncio.run(_more_sessions(settings_for(env), email, count))


async def _more_sessions(settings: Settings, email: str, count: int) -> list[str]:
    async with _started(settings) as services:
        stored = await services.users.by_email(email)
        if stored is None:
            raise RuntimeError(f"no account {email!r} to open sessions for")
        return await _sessions(services, stored.user, count)


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    """One item per line (token lists for ``load.lua``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# --- throwaway PostgreSQL databases ------------------------------------------------------------


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> str:
    """Create an empty database on the local PostgreSQL and return its URL (the contract's plain form)."""
    name = f"keyturn_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return PG_URL_TEMPLATE.format(name=name)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (servers using it must have stopped)."""
    name = url.rsplit("/", 1)[1]
    if not name.startswith("keyturn_bench_"):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database")
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the duration of the block."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
