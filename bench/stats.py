"""Median-and-spread summaries.

Every figure the suite reports is a median over interleaved rounds with its min-max spread next to
it, so a reader can tell a real difference from noise without trusting a single run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median of a series of measurements and its full range (min-max)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarise ``values``; an empty series is a programming error, not a zero."""
        if not values:
            raise ValueError("cannot summarise an empty series")
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, digits: int = 0) -> str:
        """Render as ``median (low-high)``, the form used in every table."""
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """Summarise per-round ratios ``numerators[i] / denominators[i]``.

    Ratios are taken round by round (not median/median) so that a slow spell of the machine, which
    hits both contenders of a round alike, cancels out.
    """
    if len(numerators) != len(denominators):
        raise ValueError("ratio series must pair up round by round")
    return Spread.of([n / d for n, d in zip(numerators, denominators, strict=True) if d > 0])
