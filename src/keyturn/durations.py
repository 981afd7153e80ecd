"""The duration notation of keyturn's settings: seconds, or a number with a unit.

Pure and dependency-free, so the server's settings and the guards (which must not
import the server's settings stack) read ``KEYTURN_*`` durations the same way.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["parse_duration"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(value: Any) -> int:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"15m"``, ``"12h"`` or ``"14d"``.

    Raises ``ValueError`` for anything else (negative, fractional, words, booleans).
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a number with a unit (s, m, h, d)")
    if isinstance(value, int) and value >= 0:
        return value
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError("a duration is a number of seconds or a number with a unit (s, m, h, d)")
    return int(match.group(1)) * _UNITS[match.group(2).lower() or "s"]
