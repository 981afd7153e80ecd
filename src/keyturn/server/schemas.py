"""Request and response bodies of the HTTP API, for validation and the OpenAPI description."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from keyturn.domain.models import Session, User

T = TypeVar("T")

#: Request bodies: unknown fields refused, and no type coercion ("1" is not 1, 0 is not false),
#: so what is accepted is exactly what the OpenAPI description documents.
_STRICT = ConfigDict(extra="forbid", str_max_length=4096, strict=True)


def iso(ts: float | None) -> str | None:
    """An epoch time as an RFC 3339 UTC string."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Ok(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorBody(BaseModel):
    success: Literal[False] = False
    error: ErrorDetail


#: The error answers every route may give, for the OpenAPI document (each router declares them).
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "Unauthenticated (UNAUTHORIZED, INVALID_CREDENTIALS, TOKEN_*)",
        403: "Forbidden (FORBIDDEN, CSRF_FAILED, ACCOUNT_DISABLED)",
        404: "Not found",
        409: "Conflict (EMAIL_TAKEN)",
        413: "Payload too large",
        422: "Validation error",
        429: "Rate limited",
        503: "Service unavailable",
    }.items()
}


# --- requests ---------------------------------------------------------------


class RegisterRequest(BaseModel):
    model_config = _STRICT
    email: str = Field(max_length=1024)
    password: str = Field(max_length=1024)
    name: str | None = Field(default=None, max_length=200)


class LoginRequest(BaseModel):
    model_config = _STRICT
    email: str = Field(max_length=1024)
    password: str = Field(max_length=1024)
    session: Literal["body", "cookie"] = "body"


class RefreshRequest(BaseModel):
    model_config = _STRICT
    refresh_token: str | None = Field(default=None, max_length=512)


class LogoutRequest(BaseModel):
    model_config = _STRICT
    refresh_token: str | None = Field(default=None, max_length=512)


class PasswordChangeRequest(BaseModel):
    model_config = _STRICT
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


# --- responses --------------------------------------------------------------


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    roles: list[str]
    created_at: str

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id, email=user.email, name=user.name, roles=list(user.roles), created_at=iso(user.created_at) or ""
        )


class UserData(BaseModel):
    user: UserOut


class AccessTokenData(BaseModel):
    """The answer of a login without a refresh token: cookie mode, API-key exchange."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_expires_in: int | None = None
    scope: str = ""
    user: UserOut


class TokenData(AccessTokenData):
    """The answer of a body-mode login or refresh."""

    refresh_token: str


class SessionOut(BaseModel):
    id: str
    created_at: str
    last_used_at: str
    user_agent: str | None
    ip: str | None
    current: bool

    @classmethod
    def of(cls, session: Session, current: str | None) -> SessionOut:
        return cls(
            id=session.id,
            created_at=iso(session.created_at) or "",
            last_used_at=iso(session.last_used_at) or "",
            user_agent=session.user_agent,
            ip=session.ip,
            current=session.id == current,
        )


class SessionsData(BaseModel):
    sessions: list[SessionOut]


class RevokedData(BaseModel):
    revoked: int


class PasswordChangedData(BaseModel):
    user: UserOut
    revoked_sessions: int


class HealthData(BaseModel):
    status: str
    checks: dict[str, str] = {}
