"""``/auth/api-keys`` and ``/auth/token``: API keys and their exchange for access tokens (CONTRACT.md §2).

Managing keys needs a login session: a request made with an API key (by header, or
with a token exchanged for one) cannot create, list or revoke keys, so a leaked key
can never mint itself a successor that outlives its revocation.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from keyturn.domain.api_keys import MAX_EXPIRES_IN, MIN_EXPIRES_IN
from keyturn.domain.audit import AuditEvent
from keyturn.domain.models import ApiKey
from keyturn.errors import KeyturnError, NotFound
from keyturn.server import abuse
from keyturn.server.dependencies import ClientDep, ServicesDep, SessionCaller, record_own
from keyturn.server.schemas import ERROR_RESPONSES, AccessTokenData, Ok, RevokedData, UserOut, iso

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["api keys"], responses=ERROR_RESPONSES)

_STRICT = ConfigDict(extra="forbid", str_max_length=4096, strict=True)


class ApiKeyCreateRequest(BaseModel):
    model_config = _STRICT
    name: str = Field(max_length=200)
    scopes: list[str] = Field(max_length=64)
    expires_in: int | None = Field(default=None, ge=MIN_EXPIRES_IN, le=MAX_EXPIRES_IN)


class TokenExchangeRequest(BaseModel):
    model_config = _STRICT
    api_key: str


class ApiKeyOut(BaseModel):
    """A key as its owner sees it: never the key itself, never its hash."""

    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: str
    last_used_at: str | None
    expires_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            scopes=list(key.scopes),
            prefix=key.prefix,
            created_at=iso(key.created_at) or "",
            last_used_at=iso(key.last_used_at),
            expires_at=iso(key.expires_at),
        )


class ApiKeyCreated(BaseModel):
    api_key: ApiKeyOut
    key: str = Field(description="The API key itself. Shown this once: keyturn keeps only its hash.")


class ApiKeysData(BaseModel):
    api_keys: list[ApiKeyOut]


@router.post("/api-keys", status_code=201, response_model=Ok[ApiKeyCreated], summary="Create an API key")
async def create_api_key(
    body: ApiKeyCreateRequest, caller: SessionCaller, services: ServicesDep, client: ClientDep, response: Response
) -> Ok[ApiKeyCreated]:
    created = await services.api_keys.create(
        caller.user, name=body.name, scopes=body.scopes, expires_in=body.expires_in
    )
    key = created.api_key
    # Neither the key nor its user-chosen name goes into the trail (a name could be a pasted key).
    detail = {"api_key_id": key.id, "scopes": list(key.scopes), "expires_at": key.expires_at}
    await record_own(services, AuditEvent.API_KEY_CREATED, caller.user, client, **detail)
    response.headers["Cache-Control"] = "no-store"
    return Ok(data=ApiKeyCreated(api_key=ApiKeyOut.of(created.api_key), key=created.key))


@router.get("/api-keys", response_model=Ok[ApiKeysData], summary="Your API keys (never the keys themselves)")
async def list_api_keys(caller: SessionCaller, services: ServicesDep) -> Ok[ApiKeysData]:
    keys = await services.api_keys.of_user(caller.user.id)
    return Ok(data=ApiKeysData(api_keys=[ApiKeyOut.of(k) for k in keys]))


@router.delete("/api-keys/{key_id}", response_model=Ok[RevokedData], summary="Revoke one of your API keys")
async def revoke_api_key(
    key_id: str, caller: SessionCaller, services: ServicesDep, client: ClientDep
) -> Ok[RevokedData]:
    if len(key_id) > 64:
        raise NotFound("No such API key.")
    await services.api_keys.revoke(caller.user.id, key_id)
    await record_own(services, AuditEvent.API_KEY_REVOKED, caller.user, client, api_key_id=key_id)
    return Ok(data=RevokedData(revoked=1))


@router.post(
    "/token",
    response_model=Ok[AccessTokenData],
    summary="Exchange an API key for an access token",
    dependencies=[abuse.TOKEN_LIMIT],
)
async def exchange_api_key(
    body: TokenExchangeRequest, services: ServicesDep, client: ClientDep, response: Response
) -> Ok[AccessTokenData]:
    try:
        holder, access = await services.api_keys.exchange(body.api_key)
    except KeyturnError as exc:
        await abuse.audit_refused_key(services, exc, client)
        raise
    scopes = sorted(access.scopes)
    await record_own(
        services, AuditEvent.API_KEY_EXCHANGED, holder.user, client, api_key_id=holder.api_key.id, scopes=scopes
    )
    response.headers["Cache-Control"] = "no-store"
    return Ok(
        data=AccessTokenData(
            access_token=access.token.token,
            expires_in=access.token.expires_in,
            scope=" ".join(access.scopes),
            user=UserOut.of(holder.user),
        )
    )
