"""The tutorials' orders API on Flask, protected by keyturn's guard.

Run it next to ``keyturn serve`` (see README, "Protecting your API")::

    KEYTURN_ISSUER=http://127.0.0.1:8000 flask --app examples.orders_flask run --port 8002

It is configured by ``KEYTURN_ISSUER`` alone: the guard finds the issuer's keys
through discovery. Same routes and answers as ``examples/orders_api.py``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from examples.orders import OrderBook, parse_new_order
from keyturn.envelope import success_body
from keyturn.guard import Guard
from keyturn.guard.flask import current_principal, install

__all__ = ["create_app"]


def create_app(guard: Guard | None = None) -> Flask:
    """The orders API; ``guard`` defaults to ``Guard()``, configured from ``KEYTURN_ISSUER``."""
    guard = guard or Guard()
    book = OrderBook()
    app = install(Flask(__name__))
    app.json.sort_keys = False  # type: ignore[attr-defined]  # "success" first, as every keyturn answer
    app.extensions["keyturn_guard"] = guard  # the app owns it: guard.close() when done with the app

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(success_body({"status": "ok"}))

    @app.get("/api/orders")
    @guard.flask_required(scopes=["orders:read"])
    def list_orders() -> ResponseReturnValue:
        orders = [order.as_dict() for order in book.visible_to(current_principal())]
        return jsonify(success_body({"orders": orders}))

    @app.post("/api/orders")
    @guard.flask_required(scopes=["orders:write"])
    def place_order() -> ResponseReturnValue:
        item, qty = parse_new_order(request.get_json(silent=True))
        return jsonify(success_body({"order": book.place(current_principal(), item, qty).as_dict()})), 201

    @app.delete("/api/orders/<order_id>")
    @guard.flask_required(roles=["admin"])
    def cancel_order(order_id: str) -> ResponseReturnValue:
        return jsonify(success_body({"order": book.cancel(order_id).as_dict()}))

    return app


def __getattr__(name: str) -> Any:
    # `app` is built on first access, so importing this module (tests pass their own
    # guard to create_app) needs no KEYTURN_ISSUER; `flask --app examples.orders_flask` works as usual.
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(name)
