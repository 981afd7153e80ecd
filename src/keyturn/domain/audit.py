"""The audit trail: security events, each hash-chained to the one before it.

Every security event (a login, a refresh, a reuse detected, an admin's change …) is
recorded twice: as a row in the :class:`~keyturn.domain.ports.AuditStore` and as one
structured log line on the ``keyturn.audit`` logger. A record names who acted, whom it
concerns, the e-mail attempted (for logins), the client's address and user agent, and
when; never a password, a token, a key or a hash of one (:func:`check_detail` refuses
them by name and by shape).

Each stored record carries ``prev_hash`` (the ``hash`` of the record before it) and
``hash`` = SHA-256 over the canonical JSON of its own fields plus ``prev_hash``. Editing
a record changes its hash; deleting one leaves its successor pointing at nothing; so
:func:`verify_chain` names the first record that does not follow from the one before.
Cutting records off the *end* leaves a valid, shorter chain: that is why the log line
carries the hash too — shipped elsewhere, it anchors the head.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from keyturn.clock import Clock
from keyturn.crypto.opaque import API_KEY_PREFIX, REFRESH_TOKEN_PREFIX
from keyturn.domain.models import MAX_USER_AGENT, ClientInfo
from keyturn.domain.ports import AuditStore
from keyturn.errors import ServiceUnavailable

__all__ = [
    "GENESIS_HASH",
    "Audit",
    "AuditEntry",
    "AuditEvent",
    "AuditValue",
    "BrokenLink",
    "StoredAuditEntry",
    "chain_hash",
    "check_detail",
    "verify_chain",
]

log = logging.getLogger("keyturn.audit")

#: ``prev_hash`` of the first record.
GENESIS_HASH: Final = "0" * 64
#: Widths of the audit table's columns; longer values are cut, never refused.
MAX_EMAIL: Final = 320
MAX_IP: Final = 64
MAX_DETAIL_TEXT: Final = 200
#: Walks :meth:`Audit.verify` makes when purges keep moving the chain's start under it.
VERIFY_ATTEMPTS: Final = 3

AuditValue = str | int | float | bool | None | list[str]


class AuditEvent:
    """The event names (``event`` column), as constants; :data:`ALL` lists them."""

    REGISTERED: Final = "user.registered"
    LOGIN_SUCCEEDED: Final = "login.succeeded"
    LOGIN_FAILED: Final = "login.failed"
    LOGIN_THROTTLED: Final = "login.throttled"
    TOKEN_REFRESHED: Final = "token.refreshed"
    TOKEN_REUSE_DETECTED: Final = "token.reuse_detected"
    LOGGED_OUT: Final = "session.logged_out"
    LOGGED_OUT_ALL: Final = "session.logged_out_all"
    SESSION_REVOKED: Final = "session.revoked"
    PASSWORD_CHANGED: Final = "user.password_changed"
    ROLES_CHANGED: Final = "user.roles_changed"
    USER_DISABLED: Final = "user.disabled"
    USER_ENABLED: Final = "user.enabled"
    API_KEY_CREATED: Final = "api_key.created"
    API_KEY_REVOKED: Final = "api_key.revoked"
    API_KEY_EXCHANGED: Final = "api_key.exchanged"
    API_KEY_REFUSED: Final = "api_key.refused"
    KEY_ROTATED: Final = "signing_key.rotated"
    RATE_LIMITED: Final = "request.rate_limited"
    #: Records older than the retention were deleted; ``detail.anchor`` is the last one's hash.
    PURGED: Final = "audit.purged"

    ALL: Final = frozenset(
        {
            REGISTERED,
            LOGIN_SUCCEEDED,
            LOGIN_FAILED,
            LOGIN_THROTTLED,
            TOKEN_REFRESHED,
            TOKEN_REUSE_DETECTED,
            LOGGED_OUT,
            LOGGED_OUT_ALL,
            SESSION_REVOKED,
            PASSWORD_CHANGED,
            ROLES_CHANGED,
            USER_DISABLED,
            USER_ENABLED,
            API_KEY_CREATED,
            API_KEY_REVOKED,
            API_KEY_EXCHANGED,
            API_KEY_REFUSED,
            KEY_ROTATED,
            RATE_LIMITED,
            PURGED,
        }
    )


#: Detail keys that could only ever hold a secret; a record naming one is a bug.
_SECRET_NAMES: Final = frozenset(
    {"password", "new_password", "current_password", "token", "access_token", "refresh_token", "api_key", "key"}
)
_SECRET_WORDS: Final = ("password", "secret", "token_hash", "key_hash", "private")
#: Recognisable secret values: opaque refresh tokens and API keys (JWTs are checked by shape).
_SECRET_PREFIXES: Final = (REFRESH_TOKEN_PREFIX, API_KEY_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One security event, before it is chained."""

    at: float
    event: str
    actor_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, AuditValue] = field(default_factory=dict)

    def canonical(self, prev_hash: str) -> bytes:
        """The bytes the hash covers: every field and ``prev_hash``, as canonical JSON."""
        fields = {
            "at": self.at,
            "event": self.event,
            "actor_id": self.actor_id,
            "user_id": self.user_id,
            "email": self.email,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "detail": dict(self.detail),
            "prev_hash": prev_hash,
        }
        return canonical_json(fields).encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAuditEntry:
    """A record as stored: the entry, its position and its link in the chain."""

    id: int
    entry: AuditEntry
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, object]:
        """The record as plain JSON-ready data (for the log line, the API and the CLI)."""
        e = self.entry
        return {
            "id": self.id,
            "at": e.at,
            "event": e.event,
            "actor_id": e.actor_id,
            "user_id": e.user_id,
            "email": e.email,
            "ip": e.ip,
            "user_agent": e.user_agent,
            "detail": dict(e.detail),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: one text per value, on every process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(entry: AuditEntry, prev_hash: str) -> str:
    """SHA-256 (hex) over ``entry``'s canonical JSON with ``prev_hash`` in it."""
    return hashlib.sha256(entry.canonical(prev_hash)).hexdigest()


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first record that does not follow from its predecessor, and why."""

    id: int
    reason: Literal["edited", "unlinked"]

    def describe(self) -> str:
        if self.reason == "edited":
            return f"record {self.id}: its hash does not match its contents (the record was edited)"
        return f"record {self.id}: prev_hash does not match the record before it (a record was deleted or edited)"


def verify_chain(records: Iterable[StoredAuditEntry], *, prev_hash: str = GENESIS_HASH) -> BrokenLink | None:
    """The first broken link among ``records`` (in id order), or ``None`` when all hold."""
    for record in records:
        if record.prev_hash != prev_hash:
            return BrokenLink(record.id, "unlinked")
        if chain_hash(record.entry, record.prev_hash) != record.hash:
            return BrokenLink(record.id, "edited")
        prev_hash = record.hash
    return None


def _looks_secret(value: str) -> bool:
    compact_jose = value.startswith("eyJ") and value.count(".") in (2, 4)
    return compact_jose or value.startswith(_SECRET_PREFIXES)


def check_detail(detail: Mapping[str, AuditValue]) -> dict[str, AuditValue]:
    """``detail`` with long strings cut; raise ValueError if it names or holds a secret.

    A secret reaching the audit trail is a programming error, so this refuses loudly
    rather than redacting quietly.
    """
    checked: dict[str, AuditValue] = {}
    for name, value in detail.items():
        lowered = name.lower()
        if lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(f"audit detail {name!r} would record a secret")
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and _looks_secret(v) for v in values):
            raise ValueError(f"audit detail {name!r} holds something shaped like a token or key")
        checked[name] = value[:MAX_DETAIL_TEXT] if isinstance(value, str) else value
    return checked


def _cut(value: str | None, width: int) -> str | None:
    """``value`` trimmed to its column, NUL replaced (PostgreSQL text cannot hold it)."""
    return value[:width].replace("\x00", "\ufffd") if value else None


class Audit:
    """Records security events: one chained row and one ``keyturn.audit`` log line each."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        event: str,
        *,
        client: ClientInfo | None = None,
        actor_id: str | None = None,
        user_id: str | None = None,
        email: str | None = None,
        detail: Mapping[str, AuditValue] | None = None,
    ) -> StoredAuditEntry | None:
        """Record ``event``; return the stored record, or ``None`` if the store is down.

        The action being audited has already happened, so an unreachable database does
        not fail the request: the log line is still written (``"persisted": false``) at
        ERROR level. Raises ValueError for an unknown event or a secret in ``detail``.
        """
        if event not in AuditEvent.ALL:
            raise ValueError(f"unknown audit event {event!r}")
        entry = AuditEntry(
            at=self._clock.now(),
            event=event,
            actor_id=actor_id,
            user_id=user_id,
            email=_cut(email, MAX_EMAIL),
            ip=_cut(client.ip if client else None, MAX_IP),
            user_agent=_cut(client.user_agent if client else None, MAX_USER_AGENT),
            detail=check_detail(detail or {}),
        )
        try:
            stored = await self._store.append(entry)
        except ServiceUnavailable:
            _log_line(entry, None)
            return None
        _log_line(entry, stored)
        return stored

    async def page(
        self, *, user_id: str | None, event: str | None, before: int | None, limit: int
    ) -> list[StoredAuditEntry]:
        """Records newest first, optionally about or by ``user_id`` and of one ``event`` type."""
        return await self._store.page(user_id=user_id, event=event, before=before, limit=limit)

    async def latest(self, count: int) -> list[StoredAuditEntry]:
        """The last ``count`` records, oldest first."""
        return await self._store.latest(count)

    async def after(self, after_id: int, limit: int) -> list[StoredAuditEntry]:
        """Records with an id above ``after_id``, oldest first."""
        return await self._store.after(after_id, limit)

    async def scan(self, *, batch: int = 1000) -> AsyncIterator[StoredAuditEntry]:
        """Every record, oldest first, read in batches."""
        last = 0
        while records := await self._store.after(last, batch):
            for record in records:
                yield record
            last = records[-1].id

    async def verify(self, *, batch: int = 1000) -> tuple[int, BrokenLink | None, str]:
        """Walk the whole chain: (records checked, the first broken link or None, head hash).

        The chain may start after records removed by the retention (:meth:`purge`): its first
        record then links to the last removed one, and some later ``audit.purged`` record must
        name that link as its ``anchor`` -- otherwise the first record is reported as unlinked,
        as when records were deleted by hand.

        The walk reads ``batch`` records at a time, so a purge running meanwhile (the server's,
        while ``keyturn audit verify`` walks) can delete records beyond the batch in hand, and
        the next batch then seems to start from a missing link. A broken link is therefore
        reported only if the oldest record is the same after the walk as before it; if a purge
        moved it, the walk starts again (at most :data:`VERIFY_ATTEMPTS` times).
        """
        for _ in range(VERIFY_ATTEMPTS):
            oldest = await self._oldest_id()
            count, broken, head = await self._walk(batch)
            if broken is None or await self._oldest_id() == oldest:
                break
        return count, broken, head

    async def _oldest_id(self) -> int | None:
        first = await self._store.after(0, 1)
        return first[0].id if first else None

    async def _walk(self, batch: int) -> tuple[int, BrokenLink | None, str]:
        prev_hash, count, first_id, unanchored = GENESIS_HASH, 0, 0, ""
        async for record in self.scan(batch=batch):
            if count == 0 and record.prev_hash != GENESIS_HASH:
                first_id, unanchored = record.id, record.prev_hash  # older records are gone
                prev_hash = record.prev_hash
            broken = verify_chain([record], prev_hash=prev_hash)
            if broken is not None:
                return count, broken, prev_hash
            if (
                unanchored
                and record.entry.event == AuditEvent.PURGED
                and record.entry.detail.get("anchor") == unanchored
            ):
                unanchored = ""  # a retention removed them, and said so in the chain
            prev_hash, count = record.hash, count + 1
        if unanchored:
            return 0, BrokenLink(first_id, "unlinked"), GENESIS_HASH
        return count, None, prev_hash

    async def purge(self, retention: float) -> StoredAuditEntry | None:
        """Delete the records older than ``retention`` seconds, and record that it happened.

        The oldest records go, up to (not including) the first that is younger -- a prefix
        of the chain, so what is left still verifies. An ``audit.purged`` record, chained
        in the same transaction, names how many went and the hash the remaining chain starts
        from (``anchor``), which is what lets :meth:`verify` tell a retention from a deletion.
        Returns that record, or ``None`` when nothing was old enough.
        """
        now = self._clock.now()
        cutoff = now - retention

        def note(removed: int, through_id: int, anchor: str) -> AuditEntry:
            detail: dict[str, AuditValue] = {
                "removed": removed,
                "through_id": through_id,
                "anchor": anchor,
                "older_than": cutoff,
            }
            return AuditEntry(at=now, event=AuditEvent.PURGED, detail=check_detail(detail))

        stored = await self._store.purge(cutoff, note)
        if stored is not None:
            _log_line(stored.entry, stored)
        return stored


def _log_line(entry: AuditEntry, stored: StoredAuditEntry | None) -> None:
    """One JSON line per event, the same fields as the row (and its hash, when stored).

    Nothing is built when the level is off (a server run at ``warning``): the canonical
    JSON of a record is a few percent of a login's CPU besides the hash.
    """
    level = logging.INFO if stored is not None else logging.ERROR
    if not log.isEnabledFor(level):
        return
    if stored is not None:
        fields: dict[str, object] = stored.as_dict()
    else:
        fields = StoredAuditEntry(id=0, entry=entry, prev_hash="", hash="").as_dict()
        del fields["id"], fields["prev_hash"], fields["hash"]
        fields["persisted"] = False
    log.log(level, canonical_json(fields), extra={"audit": fields})
