"""API keys in SQL (the ``api_keys`` table of migration 0002), on SQLite and PostgreSQL.

Only the SHA-256 digest of a key is stored (unique, so a lookup is one index probe);
scopes are a JSON list. Driver failures become ServiceUnavailable through
:meth:`Database.transaction`; a foreign-key failure (the owner vanished) becomes NotFound.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from keyturn.domain.models import ApiKey, User
from keyturn.errors import NotFound
from keyturn.store.sql import OWNER_COLUMNS, Database, owner_of
from keyturn.store.tables import api_keys, users

__all__ = ["SqlApiKeyStore"]


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(json.loads(row.scopes)),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


_COLUMNS = [c for c in api_keys.c if c.name != "key_hash"]


class SqlApiKeyStore:
    """The :class:`~keyturn.domain.ports.ApiKeyStore` over SQLAlchemy Core."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, key: ApiKey, key_hash: str) -> None:
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    insert(api_keys).values(
                        id=key.id,
                        user_id=key.user_id,
                        name=key.name,
                        prefix=key.prefix,
                        key_hash=key_hash,
                        scopes=json.dumps(list(key.scopes)),
                        created_at=key.created_at,
                        expires_at=key.expires_at,
                    )
                )
        except IntegrityError as exc:
            raise NotFound("No such user.") from exc

    async def _one(self, where: Any) -> ApiKey | None:
        async with self._db.transaction() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(where))).first()
        return _api_key(row) if row else None

    async def by_hash(self, key_hash: str) -> tuple[ApiKey, User] | None:
        query = (
            select(*_COLUMNS, *OWNER_COLUMNS)
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.key_hash == key_hash)
        )
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).first()
        return (_api_key(row), owner_of(row)) if row else None

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._one(api_keys.c.id == key_id)

    async def for_user(self, user_id: str) -> list[ApiKey]:
        query = (
            select(*_COLUMNS)
            .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        async with self._db.transaction() as conn:
            return [_api_key(row) for row in await conn.execute(query)]

    async def count_live(self, user_id: str, now: float) -> int:
        query = select(func.count()).where(
            api_keys.c.user_id == user_id,
            api_keys.c.revoked_at.is_(None),
            or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
        )
        async with self._db.transaction() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def revoke(self, user_id: str, key_id: str, now: float) -> bool:
        statement = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        async with self._db.transaction() as conn:
            return int((await conn.execute(statement)).rowcount or 0) == 1

    async def touch(self, key_id: str, at: float, *, not_since: float) -> None:
        # Conditional, so many instances using one key write at most once per interval.
        statement = (
            update(api_keys)
            .where(
                api_keys.c.id == key_id,
                or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= not_since),
            )
            .values(last_used_at=at)
        )
        async with self._db.transaction() as conn:
            await conn.execute(statement)
