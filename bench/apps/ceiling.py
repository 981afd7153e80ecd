"""The ceiling: a plain Starlette endpoint with no authentication at all.

Whatever a guard costs shows up as the distance from this app, served by the same server
(uvicorn or granian) with the same worker count, so it is the denominator of the guard-overhead
ratios. It deliberately returns a small JSON body like the guarded endpoints do, so that the
difference measured is the auth work, not response size.

Run: ``python -m uvicorn bench.apps.ceiling:app`` or ``python -m granian --interface asgi
bench.apps.ceiling:app`` from the repository root.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def protected(request: Request) -> JSONResponse:
    """Answer like a guarded endpoint would, minus the guard (the ``Authorization`` header is ignored)."""
    return JSONResponse({"success": True, "data": {"user": {"id": "507f1f77bcf86cd799439011"}}})


app = Starlette(routes=[Route("/api/protected", protected, methods=["GET"])])
