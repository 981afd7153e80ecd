"""The server's collaborators, built once from the settings (the composition root's output)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from joserfc.jwk import OctKey
from pydantic import SecretStr

from keyturn.clock import Clock, SystemClock
from keyturn.crypto.keys import SigningKey, symmetric_key_from_b64
from keyturn.crypto.passwords import PROFILES, PasswordHasher
from keyturn.domain.accounts import Accounts, acting_user
from keyturn.domain.administration import UserAdmin
from keyturn.domain.api_keys import ApiKeyPolicy, ApiKeys
from keyturn.domain.audit import Audit, AuditEvent, AuditValue
from keyturn.domain.keyring import KeyManager, KeyPolicy
from keyturn.domain.models import User
from keyturn.domain.ports import RevocationStore
from keyturn.domain.sessions import SessionPolicy, Sessions
from keyturn.domain.tokens import TokenIssuer, TokenPolicy
from keyturn.server.cookies import CookiePolicy
from keyturn.server.ratelimit import RateLimits
from keyturn.settings import Settings
from keyturn.store.api_keys import SqlApiKeyStore
from keyturn.store.audit import SqlAuditStore
from keyturn.store.migrate import migrate

if TYPE_CHECKING:  # imported where used: without KEYTURN_REDIS_URL, redis is never loaded (~5 MiB)
    from keyturn.store.redis import Fleet
from keyturn.store.sql import (
    Database,
    SqlKeyStore,
    SqlRevocationStore,
    SqlSessionStore,
    SqlUserStore,
    create_engine,
    sqlite_path,
)

__all__ = ["Services", "build_services", "prepare_data_dir"]


def prepare_data_dir(path: Path) -> None:
    """Create the data dir 0700 and tighten every file in it to 0600 (they hold secrets)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    for child in path.iterdir():
        if child.is_file():
            child.chmod(0o600)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    users: SqlUserStore
    session_store: SqlSessionStore
    revocations: RevocationStore
    keys: KeyManager
    tokens: TokenIssuer
    accounts: Accounts
    sessions: Sessions
    hasher: PasswordHasher
    cookies: CookiePolicy
    api_keys: ApiKeys
    admin: UserAdmin
    #: The Redis side of a fleet instance (KEYTURN_REDIS_URL), else None.
    fleet: Fleet | None
    audit: Audit
    rate_limits: RateLimits

    async def load_active_user(self, user_id: str) -> User:
        """The user behind a session; disabled or deleted accounts may no longer act."""
        stored = await self.users.by_id(user_id)
        return acting_user(stored.user if stored else None)

    async def start(self) -> None:
        """Migrate and load (or create) the signing keys."""
        await migrate(self.db.engine)
        if (path := sqlite_path(self.settings.async_database_url)) is not None:
            prepare_data_dir(path.parent)
        await self.keys.start()
        if self.fleet is not None:
            await self.fleet.start()

    async def close(self) -> None:
        if self.fleet is not None:
            await self.fleet.close()
        await self.rate_limits.close()
        await self.db.dispose()
        self.hasher.close()


def build_services(settings: Settings, *, clock: Clock | None = None) -> Services:
    """Wire every collaborator from ``settings``; no I/O happens here."""
    clock = clock or SystemClock()
    if settings.database_url is None:
        prepare_data_dir(settings.data_dir)
    elif (path := sqlite_path(settings.async_database_url)) is not None:
        prepare_data_dir(path.parent)
    old_umask = os.umask(0o077)  # the SQLite file and its WAL are created 0600
    try:
        engine = create_engine(
            settings.async_database_url,
            pool_size=settings.pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
        )
    finally:
        os.umask(old_umask)
    db = Database(engine)
    kek = _symmetric_key(settings.key_encryption_key, "KEYTURN_KEY_ENCRYPTION_KEY")
    previous_kek = _symmetric_key(settings.key_encryption_key_previous, "KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS")
    enc = previous_enc = None
    if settings.token_encryption == "dir":
        enc = _symmetric_key(settings.encryption_key, "KEYTURN_ENCRYPTION_KEY")
        previous_enc = _symmetric_key(settings.encryption_key_previous, "KEYTURN_ENCRYPTION_KEY_PREVIOUS")
    fleet = _fleet(settings, db, clock)
    key_store = SqlKeyStore(db, kek, previous_kek)
    audit = Audit(SqlAuditStore(db), clock)

    async def audit_automatic_rotation(key: SigningKey) -> None:
        detail: dict[str, AuditValue] = {"kid": key.kid, "alg": key.alg, "compromised": False, "automatic": True}
        await audit.record(AuditEvent.KEY_ROTATED, detail=detail)

    keys = KeyManager(
        fleet.signalling(key_store) if fleet else key_store,
        clock,
        KeyPolicy(
            algorithm=settings.algorithm,
            access_ttl=settings.access_ttl,
            leeway=settings.leeway,
            hmac_secret=settings.secret_bytes() if settings.is_hmac else b"",
            rotation_interval=settings.key_rotation_interval,
        ),
        on_automatic_rotation=audit_automatic_rotation,
    )
    if fleet is not None:
        fleet.on_keys_changed(keys.reload_serving)
    tokens = TokenIssuer(
        keys,
        clock,
        TokenPolicy(
            issuer=settings.issuer,
            audience=settings.audience,
            access_ttl=settings.access_ttl,
            leeway=settings.leeway,
            encryption_key=enc,
            previous_encryption_key=previous_enc,
        ),
        settings.scopes_for,
    )
    hasher = PasswordHasher(PROFILES[settings.password_profile], max_concurrency=settings.hash_concurrency)
    users = SqlUserStore(db)
    session_store = SqlSessionStore(db)
    revocations: RevocationStore = fleet.revocations if fleet else SqlRevocationStore(db)
    sessions = Sessions(
        session_store,
        revocations,
        tokens,
        clock,
        SessionPolicy(
            refresh_ttl=settings.refresh_ttl,
            idle_ttl=settings.refresh_idle_ttl,
            grace=settings.refresh_grace,
            access_ttl=settings.access_ttl,
            leeway=settings.leeway,
        ),
    )
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        users=users,
        session_store=session_store,
        revocations=revocations,
        keys=keys,
        tokens=tokens,
        accounts=Accounts(users, hasher, clock, default_roles=settings.default_roles),
        sessions=sessions,
        hasher=hasher,
        cookies=CookiePolicy(secure=settings.cookie_secure and not settings.dev),
        api_keys=ApiKeys(
            SqlApiKeyStore(db),
            revocations,
            tokens,
            clock,
            scopes_for=settings.scopes_for,
            policy=ApiKeyPolicy(access_ttl=settings.access_ttl, leeway=settings.leeway),
        ),
        admin=UserAdmin(users, sessions),
        fleet=fleet,
        audit=audit,
        rate_limits=RateLimits.from_settings(settings, clock),
    )


def _symmetric_key(value: SecretStr | None, name: str) -> OctKey | None:
    """The 32-byte key in setting ``name``, if set (its format was checked with the settings)."""
    return symmetric_key_from_b64(value.get_secret_value(), purpose=name) if value is not None else None


def _fleet(settings: Settings, db: Database, clock: Clock) -> Fleet | None:
    """The Redis side of a fleet instance, when ``KEYTURN_REDIS_URL`` is set (no I/O yet)."""
    if settings.redis_url is None:
        return None
    from keyturn.store.redis import Fleet, RedisLink, ReplicatedRevocations  # noqa: PLC0415

    link = RedisLink(settings.redis_url, prefix=settings.redis_prefix)
    revocations = ReplicatedRevocations(
        db,
        link,
        clock,
        horizon=settings.access_ttl + settings.leeway,
        sync_interval=settings.revocation_sync_interval,
    )
    return Fleet(link, revocations)
