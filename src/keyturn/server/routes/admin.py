"""``/admin/users``: list, read and change accounts (role ``admin``; CONTRACT.md §2).

The admin API needs an administrator who logged in: API keys grant no roles, so
neither ``X-API-Key`` nor a token exchanged for a key ever reaches it. The rules
(lock-out protection, what revokes sessions) live in
:mod:`keyturn.domain.administration`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from keyturn.domain.administration import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from keyturn.domain.audit import AuditEvent, AuditValue
from keyturn.domain.models import User
from keyturn.server.dependencies import Caller, ClientDep, ServicesDep, require_role
from keyturn.server.schemas import ERROR_RESPONSES, Ok, UserOut

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)

AdminCaller = Annotated[Caller, require_role("admin")]


class AdminUserOut(UserOut):
    """A user as administrators see them: with the ``disabled`` flag."""

    disabled: bool

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(**UserOut.of(user).model_dump(), disabled=user.disabled)


class AdminUserData(BaseModel):
    user: AdminUserOut


class UserPageData(BaseModel):
    users: list[AdminUserOut]
    next_cursor: str | None


class UserPatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096, strict=True)
    roles: list[str] | None = Field(default=None, max_length=32)
    disabled: StrictBool | None = None


@router.get("/users", response_model=Ok[UserPageData], summary="Page through accounts")
async def list_users(
    _: AdminCaller,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Ok[UserPageData]:
    page = await services.admin.page(cursor or None, limit)
    return Ok(data=UserPageData(users=[AdminUserOut.of(u) for u in page.users], next_cursor=page.next_cursor))


@router.get("/users/{user_id}", response_model=Ok[AdminUserData], summary="One account")
async def get_user(user_id: str, _: AdminCaller, services: ServicesDep) -> Ok[AdminUserData]:
    user = await services.admin.get(user_id)
    return Ok(data=AdminUserData(user=AdminUserOut.of(user)))


@router.patch("/users/{user_id}", response_model=Ok[AdminUserData], summary="Change roles or disable an account")
async def patch_user(
    user_id: str,
    body: UserPatchRequest,
    caller: AdminCaller,
    services: ServicesDep,
    client: ClientDep,
) -> Ok[AdminUserData]:
    user = await services.admin.update(
        user_id, roles=body.roles, disabled=body.disabled, actor=caller.user, actor_session=caller.session_id
    )
    for event, detail in _audit_events(body, user):
        await services.audit.record(
            event, client=client, actor_id=caller.user.id, user_id=user.id, email=user.email, detail=detail
        )
    return Ok(data=AdminUserData(user=AdminUserOut.of(user)))


def _audit_events(body: UserPatchRequest, user: User) -> list[tuple[str, dict[str, AuditValue]]]:
    """One audit event per kind of change the PATCH asked for."""
    events: list[tuple[str, dict[str, AuditValue]]] = []
    if body.roles is not None:
        events.append((AuditEvent.ROLES_CHANGED, {"roles": list(user.roles)}))
    if body.disabled is not None:
        events.append((AuditEvent.USER_DISABLED if body.disabled else AuditEvent.USER_ENABLED, {}))
    return events
