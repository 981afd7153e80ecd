"""``GET /admin/audit``: the audit trail, newest first, paged and filterable (role ``admin``)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel

from keyturn.domain.audit import AuditEvent, AuditValue, StoredAuditEntry
from keyturn.errors import ValidationFailed
from keyturn.server.dependencies import Caller, ServicesDep, require_role
from keyturn.server.schemas import ERROR_RESPONSES, Ok, iso

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)

AdminCaller = Annotated[Caller, require_role("admin")]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
#: A cursor is the id of the last record of the previous page (an int64, in decimal).
_MAX_CURSOR_DIGITS: Final = 19


class AuditEventOut(BaseModel):
    """One audit record; ``prev_hash``/``hash`` link it into the tamper-evident chain."""

    id: int
    at: str
    event: str
    actor_id: str | None
    user_id: str | None
    email: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, AuditValue]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, record: StoredAuditEntry) -> AuditEventOut:
        e = record.entry
        return cls(
            id=record.id,
            at=iso(e.at) or "",
            event=e.event,
            actor_id=e.actor_id,
            user_id=e.user_id,
            email=e.email,
            ip=e.ip,
            user_agent=e.user_agent,
            detail=dict(e.detail),
            prev_hash=record.prev_hash,
            hash=record.hash,
        )


class AuditPageData(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not value.isascii() or len(value) > _MAX_CURSOR_DIGITS:
        raise ValidationFailed(fields={"cursor": "is not a cursor this endpoint returned"})
    return int(value)


def _event(value: str | None) -> str | None:
    if value and value not in AuditEvent.ALL:
        raise ValidationFailed(fields={"event": f"must be one of {', '.join(sorted(AuditEvent.ALL))}"})
    return value or None


@router.get("/audit", response_model=Ok[AuditPageData], summary="The audit trail, newest first")
async def list_audit(
    _: AdminCaller,
    services: ServicesDep,
    user: Annotated[str | None, Query(max_length=64, description="Events about or by this user id")] = None,
    event: Annotated[str | None, Query(max_length=40, description="Only this event type")] = None,
    cursor: Annotated[str | None, Query(max_length=32, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Ok[AuditPageData]:
    records = await services.audit.page(user_id=user or None, event=_event(event), before=_cursor(cursor), limit=limit)
    next_cursor = str(records[-1].id) if len(records) == limit else None
    return Ok(data=AuditPageData(events=[AuditEventOut.of(r) for r in records], next_cursor=next_cursor))
