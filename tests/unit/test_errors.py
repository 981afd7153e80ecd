"""The error tree: one root, a contract code and status on every concrete error, one envelope."""

from __future__ import annotations

import inspect

import pytest

import keyturn.errors as errors_module
from keyturn.envelope import error_response, success_body
from keyturn.errors import (
    AuthenticationError,
    KeyturnError,
    RateLimited,
    TokenError,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)

CONTRACT_CODES = {
    "VALIDATION_ERROR": 422,
    "INVALID_CREDENTIALS": 401,
    "UNAUTHORIZED": 401,
    "TOKEN_INVALID": 401,
    "TOKEN_EXPIRED": 401,
    "TOKEN_REVOKED": 401,
    "TOKEN_REUSED": 401,
    "CSRF_FAILED": 403,
    "FORBIDDEN": 403,
    "ACCOUNT_DISABLED": 403,
    "NOT_FOUND": 404,
    "EMAIL_TAKEN": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "RATE_LIMITED": 429,
    "SERVICE_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}

CONCRETE = [
    cls
    for _, cls in inspect.getmembers(errors_module, inspect.isclass)
    if issubclass(cls, KeyturnError) and cls not in (KeyturnError, AuthenticationError, TokenError)
]


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_every_error_has_a_contract_code_and_status(cls: type[KeyturnError]) -> None:
    """Each concrete error carries one of the contract's codes with the contract's status."""
    assert CONTRACT_CODES[cls.code] == cls.status


def test_every_contract_code_has_an_error() -> None:
    """No code of CONTRACT.md §1 lacks an exception class."""
    assert {cls.code for cls in CONCRETE} == set(CONTRACT_CODES)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    """The module docstring names every error class, so the tree stays documented."""
    doc = errors_module.__doc__ or ""
    for cls in CONCRETE:
        assert cls.__name__ in doc


def test_401_answers_carry_www_authenticate() -> None:
    """RFC 6750: no error attribute without a token, invalid_token when one was refused."""
    _, headers, _ = error_response(Unauthorized())
    assert headers["WWW-Authenticate"] == 'Bearer realm="keyturn"'
    _, headers, _ = error_response(TokenExpired())
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_rate_limited_sets_retry_after() -> None:
    """A 429 tells the client when to come back."""
    status, headers, body = error_response(RateLimited(retry_after=42))
    assert (status, headers["Retry-After"], body["error"]["code"]) == (429, "42", "RATE_LIMITED")


def test_validation_errors_list_fields() -> None:
    """The envelope of a validation error names the offending fields."""
    _, _, body = error_response(ValidationFailed(fields={"email": "is not valid"}))
    assert body == {
        "success": False,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "The request is not valid.",
            "fields": {"email": "is not valid"},
        },
    }


def test_success_envelope() -> None:
    """Successes wrap their data."""
    assert success_body({"a": 1}) == {"success": True, "data": {"a": 1}}
