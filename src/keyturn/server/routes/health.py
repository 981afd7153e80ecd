"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keyturn.envelope import error_response, success_body
from keyturn.errors import ServiceUnavailable
from keyturn.server.dependencies import ServicesDep
from keyturn.server.schemas import HealthData, Ok

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Ok[HealthData], summary="Liveness: the process answers")
async def healthz() -> Ok[HealthData]:
    return Ok(data=HealthData(status="ok"))


@router.get("/readyz", response_model=Ok[HealthData], summary="Readiness: the database answers")
async def readyz(services: ServicesDep) -> JSONResponse:
    try:
        await services.db.ping()
    except ServiceUnavailable as exc:
        status, headers, body = error_response(exc)
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse(success_body({"status": "ready", "checks": {"database": "ok"}}))
