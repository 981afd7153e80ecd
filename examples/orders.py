"""The orders of the tutorials' REST API, kept in memory (it is an example), shared by both apps.

Who sees what lives here, once: a user sees their own orders, an ``admin`` sees all.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from keyturn.errors import NotFound, ValidationFailed
from keyturn.guard import Principal

__all__ = ["MAX_ITEM_LENGTH", "MAX_QTY", "Order", "OrderBook", "parse_new_order"]

MAX_ITEM_LENGTH: Final = 200
MAX_QTY: Final = 10_000
ADMIN_ROLE: Final = "admin"


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    item: str
    qty: int
    owner: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_new_order(body: object) -> tuple[str, int]:
    """``(item, qty)`` from a JSON body; :class:`ValidationFailed` naming the bad fields."""
    if not isinstance(body, dict):
        raise ValidationFailed(fields={"body": "must be a JSON object with item and qty"})
    fields: dict[str, str] = {}
    item, qty = body.get("item"), body.get("qty")
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_ITEM_LENGTH:
        fields["item"] = f"must be a non-empty string of at most {MAX_ITEM_LENGTH} characters"
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
        fields["qty"] = f"must be an integer from 1 to {MAX_QTY}"
    if unknown := sorted(set(body) - {"item", "qty"}):
        fields.update(dict.fromkeys(unknown, "is not allowed"))
    if fields or not isinstance(item, str) or not isinstance(qty, int):
        raise ValidationFailed(fields=fields)
    return item.strip(), qty


class OrderBook:
    """Orders in memory, safe to share between threads."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._lock = threading.Lock()

    def visible_to(self, principal: Principal) -> list[Order]:
        """Every order for an admin; the caller's own for anyone else; oldest first."""
        with self._lock:
            orders = list(self._orders.values())
        if ADMIN_ROLE in principal.roles:
            return orders
        return [order for order in orders if order.owner == principal.sub]

    def place(self, principal: Principal, item: str, qty: int) -> Order:
        """A new order owned by the caller."""
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        order = Order(id=str(uuid.uuid4()), item=item, qty=qty, owner=principal.sub, created_at=created)
        with self._lock:
            self._orders[order.id] = order
        return order

    def cancel(self, order_id: str) -> Order:
        """Remove an order; :class:`NotFound` if there is none with that id."""
        with self._lock:
            order = self._orders.pop(order_id, None)
        if order is None:
            raise NotFound()
        return order
