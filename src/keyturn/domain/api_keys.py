"""API keys: scoped, revocable credentials a user hands to machines (CONTRACT.md §2).

A key is 256 bits from :mod:`secrets` behind the recognisable ``ktk_`` prefix
(:mod:`keyturn.crypto.opaque`). It is shown once, at creation, and stored only as its
SHA-256 digest: a fast hash is right for a full-entropy secret, so checking a key is
one indexed lookup and never an argon2 run on the request path.

A key grants its own scopes and nothing else — never its owner's roles. At creation
they must be a subset of what the owner's roles grant (``KEYTURN_ROLES``); at every
use they are narrowed again to what the owner holds *now*, so a demoted owner's keys
shrink with them. A disabled owner's keys are refused with ``ACCOUNT_DISABLED``.

Access tokens exchanged for a key all carry the session id ``ak_<key id>``. Revoking
the key puts that id on the revocation list until the last such token expires, so
tokens already handed out stop working at once, on the server and on every verifier
that consults the list.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from keyturn.clock import Clock
from keyturn.crypto.opaque import API_KEY_PREFIX, api_key_prefix, hash_secret, mint_api_key
from keyturn.domain.models import ApiKey, User
from keyturn.domain.ports import ApiKeyStore, RevocationStore
from keyturn.domain.tokens import IssuedAccess, ScopeMap, TokenIssuer
from keyturn.errors import AccountDisabled, NotFound, TokenExpired, TokenInvalid, TokenRevoked, ValidationFailed

__all__ = [
    "API_KEY_CLIENT_ID",
    "API_KEY_SESSION_PREFIX",
    "MAX_EXPIRES_IN",
    "MAX_KEYS_PER_USER",
    "MIN_EXPIRES_IN",
    "ApiKeyPolicy",
    "ApiKeys",
    "KeyHolder",
    "NewApiKey",
    "api_key_session_id",
    "is_api_key_session",
]

#: The ``sid`` of every access token exchanged for a key starts with this.
API_KEY_SESSION_PREFIX: Final = "ak_"
#: The ``client_id`` claim of tokens exchanged for a key.
API_KEY_CLIENT_ID: Final = "keyturn-api-key"
#: A real key is 47 characters; anything much longer is refused without a lookup.
MAX_KEY_LENGTH: Final = 128
MAX_KEYS_PER_USER: Final = 100
MAX_NAME_LENGTH: Final = 200
MAX_SCOPES: Final = 64
MAX_SCOPE_LENGTH: Final = 128
MIN_EXPIRES_IN: Final = 60
MAX_EXPIRES_IN: Final = 10 * 365 * 86400
#: ``last_used_at`` is written at most once a minute per key, not on every request.
TOUCH_INTERVAL: Final = 60
#: RFC 6749 §3.3 scope-token characters: printable ASCII except space, ``"`` and ``\\``.
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def api_key_session_id(key_id: str) -> str:
    """The ``sid`` shared by every access token exchanged for key ``key_id``."""
    return API_KEY_SESSION_PREFIX + key_id


def is_api_key_session(session_id: str | None) -> bool:
    """True for the ``sid`` of a token exchanged for an API key (login sessions are UUIDs)."""
    return session_id is not None and session_id.startswith(API_KEY_SESSION_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyPolicy:
    """How long a revoked key's exchanged tokens must stay on the revocation list."""

    access_ttl: int
    leeway: int


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly created key and its secret, which exists only in this answer."""

    api_key: ApiKey
    key: str


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """A checked key, its owner, and the scopes it grants right now."""

    api_key: ApiKey
    user: User
    scopes: tuple[str, ...]


def check_name(name: str) -> str:
    """The stripped name; raise ValidationFailed if empty, too long or holding control characters."""
    stripped = name.strip()
    if not stripped or len(stripped) > MAX_NAME_LENGTH or _CONTROL.search(stripped):
        raise ValidationFailed(fields={"name": f"must be 1 to {MAX_NAME_LENGTH} printable characters"})
    return stripped


def check_scopes(requested: Sequence[str], granted: Sequence[str]) -> tuple[str, ...]:
    """The requested scopes, unique and sorted, if well formed and all ``granted``; else ValidationFailed."""
    if len(requested) > MAX_SCOPES:
        raise ValidationFailed(fields={"scopes": f"at most {MAX_SCOPES} scopes"})
    malformed = [s for s in requested if len(s) > MAX_SCOPE_LENGTH or not _SCOPE_TOKEN.fullmatch(s)]
    if malformed:
        raise ValidationFailed(fields={"scopes": "each scope is 1 to 128 printable characters without spaces"})
    missing = sorted(set(requested) - set(granted))
    if missing:
        raise ValidationFailed(fields={"scopes": f"not granted to you: {' '.join(missing)}"})
    return tuple(sorted(set(requested)))


def check_expires_in(expires_in: int | None) -> int | None:
    """``expires_in`` if absent or within bounds; else ValidationFailed."""
    if expires_in is not None and not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise ValidationFailed(fields={"expires_in": f"must be {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} seconds"})
    return expires_in


class ApiKeys:
    """Create, list, revoke, check and exchange API keys."""

    def __init__(
        self,
        store: ApiKeyStore,
        revocations: RevocationStore,
        issuer: TokenIssuer,
        clock: Clock,
        *,
        scopes_for: ScopeMap,
        policy: ApiKeyPolicy,
    ) -> None:
        self._store = store
        self._revocations = revocations
        self._issuer = issuer
        self._clock = clock
        self._scopes_for = scopes_for
        self._policy = policy

    async def create(self, owner: User, *, name: str, scopes: Sequence[str], expires_in: int | None) -> NewApiKey:
        """Mint a key for ``owner``; raise ValidationFailed for a bad name, scope, lifetime or too many keys."""
        checked_name = check_name(name)
        checked_scopes = check_scopes(scopes, self._scopes_for(list(owner.roles)))
        lifetime = check_expires_in(expires_in)
        now = self._clock.now()
        if await self._store.count_live(owner.id, now) >= MAX_KEYS_PER_USER:
            raise ValidationFailed(fields={"name": f"you already have {MAX_KEYS_PER_USER} API keys; revoke one first"})
        secret = mint_api_key()
        key = ApiKey(
            id=str(uuid.uuid4()),
            user_id=owner.id,
            name=checked_name,
            prefix=api_key_prefix(secret),
            scopes=checked_scopes,
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        )
        await self._store.add(key, hash_secret(secret))
        return NewApiKey(api_key=key, key=secret)

    async def of_user(self, user_id: str) -> list[ApiKey]:
        """The user's keys that are not revoked (expired ones included, so they can be cleaned up)."""
        return await self._store.for_user(user_id)

    async def revoke(self, user_id: str, key_id: str) -> None:
        """Revoke one of the user's keys and its exchanged tokens; NotFound for anyone else's.

        The revocation list is written before the key, so a failure half-way leaves a
        key its owner can still see and revoke again, never a revoked key whose
        tokens still work.
        """
        key = await self._store.get(key_id)
        if key is None or key.user_id != user_id or key.revoked_at is not None:
            raise NotFound("No such API key.")
        now = self._clock.now()
        until = now + self._policy.access_ttl + self._policy.leeway
        await self._revocations.revoke([api_key_session_id(key_id)], until)
        await self._store.revoke(user_id, key_id, now)

    async def authenticate(self, secret: str) -> KeyHolder:
        """The key ``secret`` names, with its owner and current scopes.

        Raises TokenInvalid (unknown or malformed), TokenRevoked, TokenExpired, or
        AccountDisabled when the owner is disabled. Costs one hash and one indexed
        query, plus a write at most once a minute per key.
        """
        key, user = await self._find(secret)
        now = self._clock.now()
        if key.revoked_at is not None:
            raise TokenRevoked("The API key has been revoked.")
        if key.expires_at is not None and now >= key.expires_at:
            raise TokenExpired("The API key has expired.")
        if user.disabled:
            raise AccountDisabled()
        granted = set(self._scopes_for(list(user.roles)))
        if key.last_used_at is None or now - key.last_used_at >= TOUCH_INTERVAL:
            await self._store.touch(key.id, now, not_since=now - TOUCH_INTERVAL)
        return KeyHolder(api_key=key, user=user, scopes=tuple(s for s in key.scopes if s in granted))

    async def _find(self, secret: str) -> tuple[ApiKey, User]:
        if len(secret) > MAX_KEY_LENGTH or not secret.isascii() or not secret.startswith(API_KEY_PREFIX):
            raise TokenInvalid("The API key is invalid.")
        found = await self._store.by_hash(hash_secret(secret))
        if found is None:
            raise TokenInvalid("The API key is invalid.")
        return found

    async def exchange(self, secret: str) -> tuple[KeyHolder, IssuedAccess]:
        """A short-lived access token carrying the key's scopes, no roles, and no refresh token."""
        holder = await self.authenticate(secret)
        access = await self._issuer.for_user(
            holder.user,
            session_id=api_key_session_id(holder.api_key.id),
            scopes=holder.scopes,
            client_id=API_KEY_CLIENT_ID,
            roles=(),
        )
        return holder, access
