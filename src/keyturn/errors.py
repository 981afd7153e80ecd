"""The one exception root of keyturn, with a subclass per contract error code.

Every failure a client can observe is a :class:`KeyturnError`; its class attributes
``code`` and ``status`` are the contract's (CONTRACT.md §1), so the HTTP layer and
the guards translate an error into a response without knowing where it came from.

    KeyturnError                      500 INTERNAL_ERROR
    ├── ValidationFailed              422 VALIDATION_ERROR   (.fields)
    ├── AuthenticationError           401  (base: answered with WWW-Authenticate)
    │   ├── InvalidCredentials        401 INVALID_CREDENTIALS
    │   ├── Unauthorized              401 UNAUTHORIZED
    │   └── TokenError                401  (base: a token was sent and refused)
    │       ├── TokenInvalid          401 TOKEN_INVALID
    │       ├── TokenExpired          401 TOKEN_EXPIRED
    │       ├── TokenRevoked          401 TOKEN_REVOKED
    │       └── TokenReused           401 TOKEN_REUSED
    ├── CsrfFailed                    403 CSRF_FAILED
    ├── Forbidden                     403 FORBIDDEN
    ├── AccountDisabled               403 ACCOUNT_DISABLED
    ├── NotFound                      404 NOT_FOUND
    ├── EmailTaken                    409 EMAIL_TAKEN
    ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE
    ├── RateLimited                   429 RATE_LIMITED       (.retry_after)
    ├── ServiceUnavailable            503 SERVICE_UNAVAILABLE
    └── InternalError                 500 INTERNAL_ERROR

Messages are fixed, human sentences chosen here: callers may pass a more specific
one, but must never put a secret (password, token, key) or an internal detail in it.

:class:`ConfigurationError` is not part of this tree: it is raised before anything
serves, by the settings, and is not an HTTP answer.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccountDisabled",
    "AuthenticationError",
    "ConfigurationError",
    "CsrfFailed",
    "EmailTaken",
    "Forbidden",
    "InternalError",
    "InvalidCredentials",
    "KeyturnError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenReused",
    "TokenRevoked",
    "Unauthorized",
    "ValidationFailed",
]


class KeyturnError(Exception):
    """Root of every error keyturn reports to a client."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An internal error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class ValidationFailed(KeyturnError):
    """The request body or a parameter is malformed; ``fields`` names the culprits."""

    code = "VALIDATION_ERROR"
    status = 422
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields: dict[str, str] = dict(fields or {})


class AuthenticationError(KeyturnError):
    """Base of the 401 answers, which all carry ``WWW-Authenticate: Bearer``."""

    status = 401
    code = "UNAUTHORIZED"
    default_message = "Authentication is required."


class InvalidCredentials(AuthenticationError):
    """Wrong e-mail or wrong password: one answer for both, so neither is revealed."""

    code = "INVALID_CREDENTIALS"
    default_message = "The e-mail or password is incorrect."


class Unauthorized(AuthenticationError):
    """No credentials were sent to a protected route."""

    code = "UNAUTHORIZED"
    default_message = "Authentication is required."


class TokenError(AuthenticationError):
    """A token was sent and refused (RFC 6750 ``error="invalid_token"``)."""

    code = "TOKEN_INVALID"
    default_message = "The token is invalid."


class TokenInvalid(TokenError):
    """Bad signature, wrong alg/typ/kid/iss/aud, malformed or oversized token."""

    code = "TOKEN_INVALID"
    default_message = "The token is invalid."


class TokenExpired(TokenError):
    """The token's ``exp`` has passed, leeway included."""

    code = "TOKEN_EXPIRED"
    default_message = "The token has expired."


class TokenRevoked(TokenError):
    """The token, or the session it belongs to, was revoked."""

    code = "TOKEN_REVOKED"
    default_message = "The token has been revoked."


class TokenReused(TokenError):
    """A spent refresh token came back after the grace window: the session is revoked."""

    code = "TOKEN_REUSED"
    default_message = "The refresh token was already used; the session has been revoked."


class CsrfFailed(KeyturnError):
    """A cookie-mode request did not echo the CSRF cookie in ``X-CSRF-Token``."""

    code = "CSRF_FAILED"
    status = 403
    default_message = "The CSRF token is missing or does not match."


class Forbidden(KeyturnError):
    """Authenticated, but lacking the role or scope the route requires."""

    code = "FORBIDDEN"
    status = 403
    default_message = "You do not have permission to do this."


class AccountDisabled(KeyturnError):
    """Correct credentials for an account an administrator disabled."""

    code = "ACCOUNT_DISABLED"
    status = 403
    default_message = "This account is disabled."


class NotFound(KeyturnError):
    """No such resource, or none the caller may see."""

    code = "NOT_FOUND"
    status = 404
    default_message = "Not found."


class EmailTaken(KeyturnError):
    """The normalised e-mail is already registered."""

    code = "EMAIL_TAKEN"
    status = 409
    default_message = "This e-mail address is already registered."


class PayloadTooLarge(KeyturnError):
    """The request body is larger than the configured limit."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "The request body is too large."


class RateLimited(KeyturnError):
    """Throttled; ``retry_after`` (whole seconds) becomes the ``Retry-After`` header."""

    code = "RATE_LIMITED"
    status = 429
    default_message = "Too many requests; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(KeyturnError):
    """The database or Redis cannot be reached; the request may be retried."""

    code = "SERVICE_UNAVAILABLE"
    status = 503
    default_message = "The service is temporarily unavailable."


class InternalError(KeyturnError):
    """A bug. The message never carries internals."""

    code = "INTERNAL_ERROR"
    status = 500
    default_message = "An internal error occurred."


class ConfigurationError(ValueError):
    """The settings are unsafe or inconsistent; keyturn refuses to start."""
