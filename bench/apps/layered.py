"""The ceiling behind one ASGI middleware that does nothing: the control for the guard-overhead rows.

``GuardMiddleware`` is one more ASGI layer in front of the ceiling's route plus the guard's own
work on each request. This app has the layer and none of the work: it passes every request on
untouched. Served by the same server, under the same load as the guarded app, its ratio to the
ceiling is what any middleware costs on the run's host, so the guard rows can be read against it
(guarded ÷ this app is the guard's own share). It is a control, not a target.

Run: ``python -m uvicorn bench.apps.layered:app`` or ``python -m granian --interface asgi
bench.apps.layered:app`` from the repository root.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.apps.ceiling import protected


class PassThrough:
    """An ASGI middleware of ``GuardMiddleware``'s shape that calls on and nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


# Where the guarded app has GuardMiddleware: inside Starlette's error middleware, outside its router.
app = Starlette(routes=[Route("/api/protected", protected, methods=["GET"])], middleware=[Middleware(PassThrough)])
