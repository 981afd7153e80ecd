"""Discovery: the JWKS and the OpenID-style configuration, so standard clients find the keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from keyturn.server.dependencies import ServicesDep
from keyturn.server.schemas import ERROR_RESPONSES

router = APIRouter(tags=["discovery"], responses=ERROR_RESPONSES)


@router.get("/.well-known/jwks.json", summary="Public verification keys (RFC 7517)")
async def jwks(services: ServicesDep) -> Response:
    ring = await services.keys.refresh_if_stale()
    # A resource server may cache this long; rotation publishes the next key before
    # it signs nothing but the reload interval, and unknown kids trigger a refetch.
    headers = {"Cache-Control": f"public, max-age={services.settings.jwks_max_age}"}
    return JSONResponse(ring.jwks(services.clock.now()), headers=headers)


@router.get("/.well-known/openid-configuration", summary="Discovery document")
async def openid_configuration(services: ServicesDep) -> dict[str, Any]:
    s = services.settings
    issuer = s.issuer.rstrip("/")
    return {
        "issuer": s.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": [s.algorithm],
        "access_token_signing_alg_values_supported": [s.algorithm],
        "grant_types_supported": ["refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "scopes_supported": sorted({sc for scopes in s.roles.values() for sc in scopes}),
    }
