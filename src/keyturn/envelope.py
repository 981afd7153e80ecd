"""The contract's response envelope, as pure functions shared by server and guards.

An error becomes ``(status, headers, body)`` here and nowhere else, so every adapter
answers a given failure with the same bytes: the envelope of CONTRACT.md §1, the
``WWW-Authenticate`` header of RFC 6750 on every 401, ``Retry-After`` on 429.
"""

from __future__ import annotations

from typing import Any

from keyturn.errors import (
    AuthenticationError,
    KeyturnError,
    RateLimited,
    ServiceUnavailable,
    TokenError,
    ValidationFailed,
)

__all__ = ["error_body", "error_headers", "error_response", "success_body"]

_REALM = "keyturn"


def success_body(data: dict[str, Any]) -> dict[str, Any]:
    """Wrap ``data`` in the success envelope."""
    return {"success": True, "data": data}


def error_body(error: KeyturnError) -> dict[str, Any]:
    """The failure envelope for ``error``; ``fields`` only for validation errors."""
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, ValidationFailed) and error.fields:
        payload["fields"] = error.fields
    return {"success": False, "error": payload}


def _www_authenticate(error: AuthenticationError) -> str:
    # RFC 6750 §3: no error attribute when no credentials were sent at all.
    if isinstance(error, TokenError):
        description = error.message.replace('"', "'")
        return f'Bearer realm="{_REALM}", error="invalid_token", error_description="{description}"'
    if error.code == "INVALID_CREDENTIALS":
        return f'Bearer realm="{_REALM}", error="invalid_request"'
    return f'Bearer realm="{_REALM}"'


def error_headers(error: KeyturnError) -> dict[str, str]:
    """The headers the contract requires for ``error``."""
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = _www_authenticate(error)
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = "1"
    return headers


def error_response(error: KeyturnError) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``(status, headers, body)`` for ``error``, ready for any framework to send."""
    return error.status, error_headers(error), error_body(error)
