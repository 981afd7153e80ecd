"""``GET /metrics``: the Prometheus text exposition (kept out of the OpenAPI document).

Open by default, like most exporters; with ``KEYTURN_METRICS_TOKEN`` set it asks for
``Authorization: Bearer <that token>`` and answers UNAUTHORIZED otherwise.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response

from keyturn.crypto.opaque import constant_time_equal
from keyturn.errors import Unauthorized
from keyturn.server.dependencies import ServicesDep, bearer_token
from keyturn.server.observability import render_metrics
from keyturn.server.schemas import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(include_in_schema=False, responses=ERROR_RESPONSES)


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Every ``keyturn_`` series of this instance; raises Unauthorized when a token is configured and not sent."""
    expected = services.settings.metrics_token
    if expected is not None:
        sent = bearer_token(request)
        if sent is None or not constant_time_equal(sent, expected.get_secret_value()):
            raise Unauthorized("The metrics token is required.")
    body, content_type = await anyio.to_thread.run_sync(render_metrics)
    return Response(content=body, media_type=content_type)
