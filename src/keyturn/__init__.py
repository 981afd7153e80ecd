"""keyturn: JWT authentication for Python REST APIs.

The public surface is small on purpose: the errors (one root, one class per contract
code), the clock, and — in :mod:`keyturn.guard` — what resource servers use to verify
tokens. The auth server is built with :func:`keyturn.server.app.create_app`.
"""

from __future__ import annotations

from keyturn.clock import Clock, FrozenClock, SystemClock
from keyturn.errors import (
    AccountDisabled,
    AuthenticationError,
    ConfigurationError,
    CsrfFailed,
    EmailTaken,
    Forbidden,
    InternalError,
    InvalidCredentials,
    KeyturnError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenReused,
    TokenRevoked,
    Unauthorized,
    ValidationFailed,
)

__version__ = "0.1.0"

__all__ = [
    "AccountDisabled",
    "AuthenticationError",
    "Clock",
    "ConfigurationError",
    "CsrfFailed",
    "EmailTaken",
    "Forbidden",
    "FrozenClock",
    "InternalError",
    "InvalidCredentials",
    "KeyturnError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "SystemClock",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenReused",
    "TokenRevoked",
    "Unauthorized",
    "ValidationFailed",
    "__version__",
]
