"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keyturn.envelope import error_response, success_body
from keyturn.errors import ServiceUnavailable
from keyturn.server.dependencies import ServicesDep
from keyturn.server.schemas import ERROR_RESPONSES, HealthData, Ok

router = APIRouter(tags=["health"], responses=ERROR_RESPONSES)


@router.get("/healthz", response_model=Ok[HealthData], summary="Liveness: the process answers")
async def healthz() -> Ok[HealthData]:
    return Ok(data=HealthData(status="ok"))


@router.get(
    "/readyz",
    response_model=Ok[HealthData],
    summary="Readiness: the database answers (and Redis, when configured)",
    description=(
        "503 SERVICE_UNAVAILABLE when the database does not answer: this instance cannot serve. "
        "When Redis is configured but down the answer is still 200, with status `degraded` and "
        "`checks.redis` = `down`: the instance keeps serving correctly from the database, and taking "
        "every instance out of the balancer because the shared Redis is down would stop the whole fleet."
    ),
)
async def readyz(services: ServicesDep) -> JSONResponse:
    try:
        await services.db.ping()
    except ServiceUnavailable as exc:
        status, headers, body = error_response(exc)
        return JSONResponse(body, status_code=status, headers=headers)
    checks = {"database": "ok"}
    if services.fleet is not None:
        await services.fleet.link.ping()
        checks["redis"] = services.fleet.health()
    state = "ready" if all(v == "ok" for v in checks.values()) else "degraded"
    return JSONResponse(success_body({"status": state, "checks": checks}))
