"""Plain records the domain works with; the stores map them to rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from keyturn.crypto.access_tokens import IssuedToken

__all__ = [
    "MAX_USER_AGENT",
    "ApiKey",
    "ClientInfo",
    "PurgeCutoffs",
    "Rotation",
    "Session",
    "SessionMode",
    "SpentToken",
    "StoredUser",
    "TokenPair",
    "User",
]

SessionMode = Literal["body", "cookie"]


@dataclass(frozen=True, slots=True)
class User:
    """An account as the API shows it (never with its password hash)."""

    id: str
    email: str
    name: str | None
    roles: tuple[str, ...]
    created_at: float
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A user's scoped, revocable credential for machines; the secret itself is never kept."""

    id: str
    user_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None = None
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredUser:
    """An account with its password hash, as only the domain and the store see it."""

    user: User
    password_hash: str


#: Longest user agent kept on sessions and in the audit trail (the columns' width).
MAX_USER_AGENT: Final = 512


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is calling: kept on sessions and in the audit trail."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """One login: a chain of refresh tokens sharing an id (the ``sid`` claim)."""

    id: str
    user_id: str
    created_at: float
    last_used_at: float
    expires_at: float
    mode: SessionMode = "body"
    user_agent: str | None = None
    ip: str | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class SpentToken:
    """A refresh token's stored state: its session and owner, and whether and when it was spent.

    The owner comes with the token (one read) because every refresh needs both: the
    session to check, the account to check and to put in the new access token.
    """

    token_hash: str
    session: Session
    owner: User
    created_at: float
    spent_at: float | None = None
    sealed_successor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """One refresh: spend ``token_hash``, chain ``successor_hash`` after it."""

    token_hash: str
    successor_hash: str
    sealed_successor: str
    session_id: str
    at: float
    client: ClientInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeCutoffs:
    """What a purge at ``now`` may delete.

    Sessions expired by ``now``, unused since ``idle_before`` (``None``: no idle timeout)
    or revoked by ``revoked_before`` go, with their tokens; sealed successors of tokens
    spent strictly before ``spent_before`` are forgotten (their grace window is over).
    """

    now: float
    spent_before: float
    idle_before: float | None
    revoked_before: float


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands out."""

    access: IssuedToken
    refresh_token: str | None
    refresh_expires_in: int
    session: Session
    user: User
    scopes: tuple[str, ...] = field(default=())
