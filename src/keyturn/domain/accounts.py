"""Accounts: registration, authentication and password change.

Authentication always costs one argon2 verification, whether or not the account
exists, and answers a wrong e-mail and a wrong password with the same error.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence

from keyturn.clock import Clock
from keyturn.crypto.passwords import PasswordHasher
from keyturn.domain.identity import check_password, normalise_email, normalise_password
from keyturn.domain.models import User
from keyturn.domain.ports import UserStore
from keyturn.errors import AccountDisabled, InvalidCredentials, NotFound, TokenRevoked, ValidationFailed

__all__ = ["Accounts", "acting_user"]

MAX_NAME_LENGTH = 200


def acting_user(user: User | None) -> User:
    """The account behind a session, token or key, if it may still act.

    Checked on every use, never cached: disabling an account must stop its tokens
    now, not when they expire. A deleted account answers TokenRevoked (its
    credentials were revoked with it); a disabled one AccountDisabled.
    """
    if user is None:
        raise TokenRevoked()
    if user.disabled:
        raise AccountDisabled()
    return user


class Accounts:
    """Registration and credential checks over a :class:`UserStore`."""

    def __init__(self, users: UserStore, hasher: PasswordHasher, clock: Clock, *, default_roles: Sequence[str]) -> None:
        self._users = users
        self._hasher = hasher
        self._clock = clock
        self._default_roles = tuple(default_roles)

    async def register(self, email: str, password: str, name: str | None = None, *, roles: Sequence[str] = ()) -> User:
        """Create an account; raise ValidationFailed or EmailTaken."""
        normalised = normalise_email(email)
        checked = check_password(password, email=normalised)
        if name is not None and len(name) > MAX_NAME_LENGTH:
            raise ValidationFailed(fields={"name": f"must be at most {MAX_NAME_LENGTH} characters"})
        if name is not None and any(unicodedata.category(c) == "Cc" for c in name):
            raise ValidationFailed(fields={"name": "must not contain control characters"})
        user = User(
            id=str(uuid.uuid4()),
            email=normalised,
            name=name,
            roles=tuple(roles) or self._default_roles,
            created_at=self._clock.now(),
        )
        await self._users.add(user, await self._hasher.hash(checked))
        return user

    async def authenticate(self, email: str, password: str) -> User:
        """The user whose credentials these are; raise InvalidCredentials or AccountDisabled.

        The e-mail and password are normalised as at registration; a malformed e-mail
        is simply not found (same answer, same cost) rather than a validation error.
        """
        try:
            normalised: str | None = normalise_email(email)
            candidate = normalise_password(password)
        except ValidationFailed:
            normalised, candidate = None, password[:256]
        stored = await self._users.by_email(normalised) if normalised else None
        await self._hasher.verify(stored.password_hash if stored else None, candidate)
        if stored is None:  # unreachable: verify raised; kept so the type narrows
            raise InvalidCredentials()
        if stored.user.disabled:
            raise AccountDisabled()
        if self._hasher.needs_rehash(stored.password_hash):
            await self._users.set_password_hash(stored.user.id, await self._hasher.hash(candidate))
        return stored.user

    async def change_password(self, user_id: str, current: str, new: str) -> User:
        """Check ``current``, then store ``new``; raise InvalidCredentials or ValidationFailed."""
        stored = await self._users.by_id(user_id)
        if stored is None:
            raise NotFound()
        try:
            await self._hasher.verify(stored.password_hash, normalise_password(current))
        except ValidationFailed:
            raise InvalidCredentials() from None
        checked = check_password(new, email=stored.user.email, field="new_password")
        await self._users.set_password_hash(user_id, await self._hasher.hash(checked))
        return stored.user

    async def get(self, user_id: str) -> User:
        stored = await self._users.by_id(user_id)
        if stored is None:
            raise NotFound()
        return stored.user
