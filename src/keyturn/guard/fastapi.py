"""FastAPI: ``Depends(guard.require(roles=..., scopes=...))`` gives the verified :class:`Principal`.

The dependency raises keyturn's errors; :func:`install` makes the application answer
them — and its own validation and routing errors — in the contract's envelope. The
security schemes appear in the OpenAPI description, so ``/docs`` offers "Authorize".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyturn.domain.authorization import Principal, require
from keyturn.envelope import error_response
from keyturn.errors import InternalError, KeyturnError, ValidationFailed
from keyturn.guard.responses import http_error_response
from keyturn.guard.verifier import Guard

__all__ = ["dependency", "envelope_response", "install"]

_BEARER = HTTPBearer(auto_error=False, description="A keyturn access token.")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="A keyturn API key.")
# Declared for the OpenAPI description only: the guard reads the headers itself.
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
ApiKeyDoc = Annotated[str | None, Security(_API_KEY)]


def dependency(
    guard: Guard, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()
) -> Callable[..., Awaitable[Principal]]:
    """The dependency behind :meth:`Guard.require`: authenticate, then require ``roles`` and ``scopes``."""
    needed_roles, needed_scopes = frozenset(roles), frozenset(scopes)

    async def principal(request: Request, _bearer: BearerDoc) -> Principal:
        found = await guard.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
        return require(found, roles=needed_roles, scopes=needed_scopes)

    async def principal_or_api_key(request: Request, _bearer: BearerDoc, _api_key: ApiKeyDoc) -> Principal:
        return await principal(request, _bearer)

    return principal_or_api_key if guard.accepts_api_keys else principal


def envelope_response(error: KeyturnError) -> JSONResponse:
    """``error`` as the contract's failure envelope."""
    status, headers, body = error_response(error)
    return JSONResponse(body, status_code=status, headers=headers)


async def _on_keyturn_error(_: Request, exc: Exception) -> JSONResponse:
    return envelope_response(exc if isinstance(exc, KeyturnError) else InternalError())


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    fields = {
        ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")) or "body": str(
            e.get("msg", "is invalid")
        )
        for e in errors
    }
    return envelope_response(ValidationFailed(fields=fields))


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover - registered for HTTPException only
        return envelope_response(InternalError())
    allow = (exc.headers or {}).get("Allow")
    status, headers, body = http_error_response(exc.status_code, allow=allow)
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> FastAPI:
    """Answer keyturn's errors, validation errors and HTTP errors of ``app`` in the envelope; returns ``app``."""
    app.add_exception_handler(KeyturnError, _on_keyturn_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    return app
