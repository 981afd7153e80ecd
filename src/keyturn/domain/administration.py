"""User administration: paging through accounts, changing roles, disabling (CONTRACT.md §2).

Two rules an administrator relies on:

* **No lock-out.** An administrator cannot disable their own account or take away
  their own ``admin`` role, so the last administrator cannot lock everyone out by a
  slip of the hand.
* **Taking away is immediate; giving is on the next token.** Disabling an account or
  removing any of its roles revokes every session of that user at once (their access
  tokens are refused, their refresh tokens dead), because a token minted before the
  change still carries the old roles and scopes. Adding roles revokes nothing: the
  new roles appear in the next token the user gets (login or refresh).

Pages are ordered by user id; the cursor is opaque to clients (the base64url of the
last id seen) and a malformed one is a validation error.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from keyturn.domain.models import User
from keyturn.domain.ports import UserStore
from keyturn.domain.sessions import Sessions
from keyturn.errors import NotFound, ValidationFailed

__all__ = [
    "ADMIN_ROLE",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "UserAdmin",
    "UserPage",
    "check_roles",
    "decode_cursor",
    "encode_cursor",
]

ADMIN_ROLE: Final = "admin"
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
MAX_ROLES: Final = 32
_ROLE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
#: Role names may not look like keyturn's secrets or a JWT: the audit trail refuses to record such strings.
_RESERVED_PREFIXES: Final = ("ktk_", "ktr_", "eyJ")
_MAX_CURSOR_LENGTH: Final = 128


def encode_cursor(last_id: str) -> str:
    """The opaque cursor that continues after the user ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The user id inside ``cursor``; raise ValidationFailed for anything this server did not hand out."""
    invalid = ValidationFailed(fields={"cursor": "is not a cursor this server handed out"})
    if len(cursor) > _MAX_CURSOR_LENGTH or not cursor.isascii():
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    if not _ID.fullmatch(raw):
        raise invalid
    return raw


def check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """Well-formed role names, unique and sorted; raise ValidationFailed otherwise.

    Any well-formed name is accepted: a role absent from ``KEYTURN_ROLES`` simply
    grants no scopes (it can still be checked as a role).
    """
    if len(roles) > MAX_ROLES:
        raise ValidationFailed(fields={"roles": f"at most {MAX_ROLES} roles"})
    if any(not _ROLE.fullmatch(role) for role in roles):
        raise ValidationFailed(fields={"roles": "each role is 1 to 64 letters, digits or _ . : - (not first)"})
    if any(role.startswith(_RESERVED_PREFIXES) for role in roles):
        raise ValidationFailed(fields={"roles": "role names may not start with ktk_, ktr_ or eyJ"})
    return tuple(sorted(set(roles)))


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    next_cursor: str | None


class UserAdmin:
    """What the admin API and the CLI do to accounts."""

    def __init__(self, users: UserStore, sessions: Sessions) -> None:
        self._users = users
        self._sessions = sessions

    async def page(self, cursor: str | None, limit: int = DEFAULT_PAGE_SIZE) -> UserPage:
        """Up to ``limit`` users after ``cursor``; ``next_cursor`` is ``None`` on the last page."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValidationFailed(fields={"limit": f"must be 1 to {MAX_PAGE_SIZE}"})
        after = decode_cursor(cursor) if cursor else None
        found = await self._users.page(after=after, limit=limit + 1)
        more = len(found) > limit
        users = found[:limit]
        return UserPage(users=users, next_cursor=encode_cursor(users[-1].id) if more else None)

    async def get(self, user_id: str) -> User:
        """The account ``user_id``; raise NotFound."""
        stored = await self._users.by_id(user_id) if _ID.fullmatch(user_id) else None
        if stored is None:
            raise NotFound("No such user.")
        return stored.user

    async def update(
        self,
        user_id: str,
        *,
        roles: Sequence[str] | None = None,
        disabled: bool | None = None,
        actor: User | None = None,
        actor_session: str | None = None,
    ) -> User:
        """Change roles and/or the disabled flag; revoke sessions when something was taken away.

        ``actor`` is the administrator making the change (``None`` for the operator's
        CLI, which has no lock-out rule). Raises NotFound or ValidationFailed.
        """
        before = await self.get(user_id)
        new_roles = check_roles(roles) if roles is not None else None
        if actor is not None and actor.id == user_id:
            _refuse_lock_out(new_roles, disabled)
        after = await self._users.update(user_id, roles=new_roles, disabled=disabled)
        if after is None:
            raise NotFound("No such user.")
        if disabled:
            # Also on a repeated disable: a retry after a failed revocation completes it.
            await self._sessions.revoke_all(user_id)
        elif set(before.roles) - set(after.roles):
            keep = actor_session if actor is not None and actor.id == user_id else None
            await self._sessions.revoke_all(user_id, keep=keep)
        return after


def _refuse_lock_out(new_roles: Sequence[str] | None, disabled: bool | None) -> None:
    if disabled:
        raise ValidationFailed(fields={"disabled": "you cannot disable your own account"})
    if new_roles is not None and ADMIN_ROLE not in new_roles:
        raise ValidationFailed(fields={"roles": "you cannot remove your own admin role"})
