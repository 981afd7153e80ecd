"""Time, injected.

Nothing in keyturn's domain or crypto calls ``time.time()`` directly: expiry, leeway
and grace windows take a :class:`Clock`, so tests move a :class:`FrozenClock`
instead of sleeping, and every rule about time is checked deterministically.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock"]


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative value)."""
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when
