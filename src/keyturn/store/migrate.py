"""Apply the Alembic migrations, safely when several instances start at once.

On PostgreSQL a session-level advisory lock serialises concurrent migrators: the
first applies the revisions, the others wait, then find nothing left to do. On
SQLite the database file's own write lock does the same.

Every start first compares the revision the database records (``alembic_version``)
with the newest script in ``migrations/versions``, read from the scripts' source. Only
a database that is behind imports Alembic: Alembic, Mako and Pygments cost a serving
process about 10 MiB that it would keep for its whole life (docs/performance.md).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["head_revision", "migrate"]

#: An arbitrary constant naming keyturn's migration lock.
MIGRATION_LOCK_ID: Final = 0x6B65797475726E
MIGRATIONS: Final = Path(__file__).parent / "migrations"


def _script_links(script: Path) -> tuple[str, set[str]]:
    """A migration script's ``revision`` and the revisions it revises (``down_revision``)."""
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(script.read_text(encoding="utf-8"), str(script)).body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("revision", "down_revision")
    }
    revision, down = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str):
        raise RuntimeError(f"{script.name} names no revision")
    parents = {down} if isinstance(down, str) else set(down) if isinstance(down, tuple | list) else set()
    return revision, {str(p) for p in parents}


def head_revision(versions: Path = MIGRATIONS / "versions") -> str:
    """The newest revision of the scripts in ``versions``: the one no other script revises.

    Reads the scripts' ``revision`` / ``down_revision`` assignments the way Alembic's
    script directory does, without importing Alembic. Raises :class:`RuntimeError`
    unless the history has exactly one head.
    """
    scripts = sorted(script for script in versions.glob("*.py") if not script.name.startswith("_"))
    links = dict(_script_links(script) for script in scripts)
    heads = set(links) - set().union(*links.values())
    if len(heads) != 1:
        raise RuntimeError(f"the migration history must have one head, not {sorted(heads)}")
    return heads.pop()


def _recorded_revisions(connection: Connection) -> set[str]:
    if not inspect(connection).has_table("alembic_version"):  # a database never migrated
        return set()
    return {str(row[0]) for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


async def _is_current(conn: AsyncConnection) -> bool:
    """True when the database is at the newest revision (read-only: nothing to apply)."""
    recorded = await conn.run_sync(_recorded_revisions)
    await conn.rollback()  # end the read, so an upgrade starts on a clean connection
    return recorded == {head_revision()}


def _upgrade(connection: Connection) -> None:
    from alembic import command  # noqa: PLC0415 - only a database that is behind pays for Alembic
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database to the newest revision; a database already there costs one read."""
    postgres = engine.dialect.name == "postgresql"
    async with engine.connect() as conn:
        if await _is_current(conn):
            return
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            await conn.commit()
        else:
            # SQLite: the database's write lock, taken before the upgrade reads where the schema
            # stands, so a second process (``serve --workers N`` on a new file) waits for the first
            # (busy timeout) and then finds nothing to apply. SQLite's DDL is transactional.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                await conn.commit()
