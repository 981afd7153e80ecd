"""keyturn's guard: verify keyturn access tokens at a resource server, without calling keyturn.

    from keyturn.guard import Guard
    guard = Guard()          # KEYTURN_ISSUER, KEYTURN_AUDIENCE, KEYTURN_LEEWAY

    # FastAPI (keyturn[fastapi])       principal: Principal = Depends(guard.require(scopes=["orders:read"]))
    # Flask (keyturn[flask])           @guard.flask_required(roles=["admin"])  → flask.g.principal
    # any ASGI app                     GuardMiddleware(app, guard, scopes=[...])

The core imports neither the server's stack nor a web framework; the adapters import
theirs only when used. See docs/guard.md.
"""

from keyturn.domain.authorization import Principal, require
from keyturn.errors import (
    ConfigurationError,
    Forbidden,
    KeyturnError,
    RateLimited,
    ServiceUnavailable,
    TokenError,
    TokenExpired,
    TokenInvalid,
    Unauthorized,
)
from keyturn.guard.api_keys import ExchangePolicy
from keyturn.guard.asgi import GuardMiddleware, principal_of
from keyturn.guard.jwks import JwksPolicy
from keyturn.guard.verifier import Guard, GuardTuning, credentials

__all__ = [
    "Guard",
    "GuardTuning",
    "JwksPolicy",
    "ExchangePolicy",
    "GuardMiddleware",
    "Principal",
    "credentials",
    "principal_of",
    "require",
    "ConfigurationError",
    "Forbidden",
    "KeyturnError",
    "RateLimited",
    "ServiceUnavailable",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "Unauthorized",
]
