"""The ceiling's endpoint behind keyturn's guard: what protecting a Starlette API with keyturn costs.

Same route and same response body as ``bench/apps/ceiling.py``; the only difference is
:class:`keyturn.guard.GuardMiddleware` in front of it, configured the way a resource server is:

* ES256 (asymmetric): the guard finds the public key through a JWK Set URL, exactly as it would at
  a real issuer. To keep the benchmark on loopback and free of a second server, this app publishes
  the JWK Set itself (an exempt route), built from the harness's key; the guard fetches it once,
  caches it for its ``max-age``, and verifies every token locally from then on.
* HS256 (the single-service mode): ``Guard(secret=...)``, nothing fetched.

The guard's verified-token cache keeps its default size (1024 tokens), so the repeated-token runs
measure the cache and the unique-token runs measure first-sight verification.

Environment: ``BENCH_JWT_ALG`` (ES256 or HS256), ``BENCH_JWT_KEY_FILE`` (ES256: the harness's
PKCS#8 private key; only its public half is used), ``BENCH_JWT_SECRET`` (HS256), ``BENCH_JWKS_URL``
(ES256: this app's own JWK Set URL, ``http://127.0.0.1:{port}/.well-known/jwks.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.apps.guarded_config import AUDIENCE, ISSUER, JWKS_PATH, trusted_key
from keyturn.crypto.keys import SigningKey
from keyturn.guard import Guard, GuardMiddleware, principal_of

#: The JWK Set's ``Cache-Control: max-age``: longer than any benchmark run, as an issuer would send.
JWKS_MAX_AGE: Final = 3600


def _key_from_environment() -> SigningKey:
    key_file = os.environ.get("BENCH_JWT_KEY_FILE")
    pem_file = Path(key_file) if key_file else None
    return trusted_key(os.environ.get("BENCH_JWT_ALG", "ES256"), pem_file, os.environ.get("BENCH_JWT_SECRET"))


def _guard(key: SigningKey) -> Guard:
    if key.is_hmac:
        secret = os.environ["BENCH_JWT_SECRET"]
        return Guard(issuer=ISSUER, audience=AUDIENCE, secret=secret, algorithm=key.alg, api_key_exchange=False)
    return Guard(issuer=ISSUER, audience=AUDIENCE, jwks_url=os.environ["BENCH_JWKS_URL"], api_key_exchange=False)


KEY: Final = _key_from_environment()
JWKS: Final = {"keys": [] if KEY.is_hmac else [KEY.public_jwk()]}


async def protected(request: Request) -> JSONResponse:
    """The ceiling's answer, with the id of the verified caller."""
    principal = principal_of(request.scope)
    return JSONResponse({"success": True, "data": {"user": {"id": principal.sub}}})


async def jwks(request: Request) -> JSONResponse:
    """The public key as an issuer publishes it (fetched by the guard once, then cached)."""
    return JSONResponse(JWKS, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


app = Starlette(
    routes=[Route("/api/protected", protected, methods=["GET"]), Route(JWKS_PATH, jwks, methods=["GET"])],
    middleware=[Middleware(GuardMiddleware, guard=_guard(KEY), exempt=[JWKS_PATH])],
)
