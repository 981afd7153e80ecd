"""The tutorials' orders API on FastAPI, protected by keyturn's guard.

Run it next to ``keyturn serve`` (see README, "Protecting your API")::

    KEYTURN_ISSUER=http://127.0.0.1:8000 uvicorn examples.orders_api:app --port 8001

It is configured by ``KEYTURN_ISSUER`` alone: the guard finds the issuer's keys
through discovery, never through the server's data directory.

    GET    /api/orders        scope orders:read   users see their own orders, admins all
    POST   /api/orders        scope orders:write  {item, qty} → 201 {order}
    DELETE /api/orders/{id}   role admin          → {order}
"""

# FastAPI reads these annotations at run time, with the locals of create_app: no "from __future__ import annotations".
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from examples.orders import MAX_ITEM_LENGTH, MAX_QTY, OrderBook
from keyturn.envelope import success_body
from keyturn.guard import Guard, Principal
from keyturn.guard.fastapi import install

__all__ = ["NewOrder", "create_app"]


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=MAX_ITEM_LENGTH, pattern=r"\S")
    qty: int = Field(ge=1, le=MAX_QTY, strict=True)


def create_app(guard: Guard | None = None) -> FastAPI:
    """The orders API; ``guard`` defaults to ``Guard()``, configured from ``KEYTURN_ISSUER``."""
    guard = guard or Guard()
    book = OrderBook()
    reader = Depends(guard.require(scopes=["orders:read"]))
    writer = Depends(guard.require(scopes=["orders:write"]))
    admin = Depends(guard.require(roles=["admin"]))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await guard.aclose()

    app = install(FastAPI(title="orders (keyturn example)", lifespan=lifespan))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return success_body({"status": "ok"})

    @app.get("/api/orders")
    async def list_orders(principal: Annotated[Principal, reader]) -> dict[str, Any]:
        return success_body({"orders": [order.as_dict() for order in book.visible_to(principal)]})

    @app.post("/api/orders", status_code=201)
    async def place_order(body: NewOrder, principal: Annotated[Principal, writer]) -> dict[str, Any]:
        return success_body({"order": book.place(principal, body.item.strip(), body.qty).as_dict()})

    @app.delete("/api/orders/{order_id}")
    async def cancel_order(order_id: str, _: Annotated[Principal, admin]) -> dict[str, Any]:
        return success_body({"order": book.cancel(order_id).as_dict()})

    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access, so importing this module (tests pass their own
    # guard to create_app) needs no KEYTURN_ISSUER; uvicorn's "module:app" works as usual.
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(name)
