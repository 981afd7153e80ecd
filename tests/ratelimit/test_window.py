"""The sliding-window arithmetic and the rate notation, checked without a server."""

from __future__ import annotations

import pytest

from keyturn.server.ratelimit import MAX_LOCK, Rate, lock_seconds, seconds_until_free


@pytest.mark.parametrize(
    ("notation", "rate"),
    [
        ("5/15minutes", Rate(5, 900)),
        ("100/15minutes", Rate(100, 900)),
        ("20/hour", Rate(20, 3600)),
        ("120/minute", Rate(120, 60)),
        ("3 per 2 seconds", Rate(3, 2)),
    ],
    ids=["login", "login-ip", "register", "refresh", "prose"],
)
def test_rate_notation(notation: str, rate: Rate) -> None:
    """The contract's N/period notation is read by the limits library."""
    assert Rate.parse(notation) == rate


@pytest.mark.parametrize(
    ("prev", "cur", "elapsed", "wait"),
    [
        (0, 4, 0.0, 0.0),  # room left
        (0, 5, 0.0, 60 + 60 / 5),  # full now: next window, once the old hits weigh 4
        (0, 5, 30.0, 30 + 60 / 5),
        (5, 0, 0.0, 60 / 5),  # the previous window weighs 5 now, 4 after 12 s
        (10, 2, 30.0, 30 - 60 * 2 / 10),
        (3, 2, 59.0, 0.0),
    ],
    ids=["room", "full-at-start", "full-midway", "previous-full", "mixed", "mixed-with-room"],
)
def test_seconds_until_free(prev: int, cur: int, elapsed: float, wait: float) -> None:
    """One more hit fits once prev*(60-t)/60 + cur ≤ 4 for a 5/minute rate."""
    assert seconds_until_free(Rate(5, 60), prev, cur, elapsed) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("strike", "seconds"),
    [(1, 900), (2, 1800), (3, 3600), (7, 57600), (8, MAX_LOCK), (500, MAX_LOCK)],
    ids=["first", "second", "third", "seventh", "capped", "far"],
)
def test_lock_durations(strike: int, seconds: int) -> None:
    """A lock lasts one period, doubled per strike, capped at MAX_LOCK."""
    assert lock_seconds(900, strike) == seconds
