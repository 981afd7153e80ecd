"""``/admin/keys``: rotate the signing keys and see the ring (role ``admin``; CONTRACT.md §2).

A rotation made here reaches every instance through the database within the
reload interval (2 s): no restart, and no one is logged out. The rules live in
:class:`keyturn.domain.keyring.KeyManager`; this module only plumbs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict

from keyturn.crypto.keys import SigningKey
from keyturn.domain.audit import AuditEvent
from keyturn.server.dependencies import Caller, ClientDep, ServicesDep, require_role
from keyturn.server.schemas import ERROR_RESPONSES, Ok, iso

__all__ = ["router"]

router = APIRouter(prefix="/admin/keys", tags=["admin"], responses=ERROR_RESPONSES)

AdminCaller = Annotated[Caller, require_role("admin")]


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    #: After an incident: make a fresh key and drop every old one at once (clients refresh).
    compromised: bool = False


class RotatedData(BaseModel):
    kid: str


class KeyOut(BaseModel):
    """A key as administrators see it: never its private part."""

    kid: str
    alg: str
    state: Literal["next", "current", "retired"]
    since: str | None
    drop_after: str | None

    @classmethod
    def of(cls, key: SigningKey) -> KeyOut:
        return cls(kid=key.kid, alg=key.alg, state=key.state, since=iso(key.created_at), drop_after=iso(key.drop_after))


class KeysData(BaseModel):
    keys: list[KeyOut]


@router.post("/rotate", response_model=Ok[RotatedData], summary="Rotate the signing key")
async def rotate(
    caller: AdminCaller,
    services: ServicesDep,
    client: ClientDep,
    body: Annotated[RotateRequest | None, Body()] = None,
) -> Ok[RotatedData]:
    compromised = body is not None and body.compromised
    key = await services.keys.rotate(compromised=compromised)
    await services.audit.record(
        AuditEvent.KEY_ROTATED,
        client=client,
        actor_id=caller.user.id,
        detail={"kid": key.kid, "alg": key.alg, "compromised": compromised},
    )
    return Ok(data=RotatedData(kid=key.kid))


@router.get("", response_model=Ok[KeysData], summary="The key ring: next, current and retired keys")
async def list_keys(caller: AdminCaller, services: ServicesDep) -> Ok[KeysData]:
    ring = await services.keys.reload()
    return Ok(data=KeysData(keys=[KeyOut.of(k) for k in ring.published(services.clock.now())]))
