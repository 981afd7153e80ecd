"""The schema, as SQLAlchemy Core tables. Alembic migrations are the source of truth in databases.

Times are stored as epoch seconds (double precision): one representation on SQLite
and PostgreSQL, compared with plain arithmetic against the injected clock.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

__all__ = [
    "api_keys",
    "audit_events",
    "metadata",
    "refresh_tokens",
    "revocations",
    "sessions",
    "signing_keys",
    "users",
]

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", Text, nullable=False, server_default="[]"),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("mode", String(10), nullable=False, server_default="body"),
    Column("user_agent", String(512), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("revoked_at", Float, nullable=True),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_expires_at", "expires_at"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("spent_at", Float, nullable=True),
    Column("sealed_successor", Text, nullable=True),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

revocations = Table(
    "revocations",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_revocations_expires_at", "expires_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(128), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("state", String(10), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("drop_after", Float, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", Text, nullable=False, server_default="[]"),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Index("ix_api_keys_user_id", "user_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor_id", String(36), nullable=True),
    Column("user_id", String(36), nullable=True),
    Column("email", String(320), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("detail", Text, nullable=False, server_default="{}"),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_user_id", "user_id"),
    Index("ix_audit_events_event", "event"),
    Index("ix_audit_events_at", "at"),
)
