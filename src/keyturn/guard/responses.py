"""Framework errors in the contract's envelope, for resource servers built on keyturn's guard.

The guard's adapters answer their own refusals through :func:`keyturn.envelope.error_response`;
this adds the framework's own failures (no such route, wrong method, unparseable or too
large body), answered with the codes the auth server uses for them (docs/api.md), so an
example or a downstream API answers everything in the one envelope of CONTRACT.md §1.
"""

from __future__ import annotations

from typing import Any

from keyturn.envelope import error_response
from keyturn.errors import (
    Forbidden,
    InternalError,
    KeyturnError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)

__all__ = ["http_error_response"]


_BY_STATUS: dict[int, type[KeyturnError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
}


def _error_for(status: int) -> KeyturnError:
    # The contract has no 405 code: a wrong method is NOT_FOUND, with HTTP's Allow header.
    if status == 405:
        return NotFound("This endpoint does not accept that method.")
    known = _BY_STATUS.get(status)
    if known is not None:
        return known()
    if 400 <= status < 500:
        return ValidationFailed(fields={"body": "could not be parsed"})
    return InternalError()


def http_error_response(status: int, *, allow: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``(status, headers, body)`` in the envelope for a framework's HTTP error of ``status``."""
    code, headers, body = error_response(_error_for(status))
    if allow is not None and status == 405:
        headers["Allow"] = allow
    return code, headers, body
