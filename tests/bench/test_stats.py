"""Every figure of the benchmark is a median with its min-max, and every ratio is taken round by round."""

from __future__ import annotations

import pytest
from bench.stats import Spread, ratios


def test_a_spread_is_the_median_and_the_full_range() -> None:
    spread = Spread.of([3.0, 1.0, 10.0, 2.0])
    assert (spread.median, spread.low, spread.high) == (2.5, 1.0, 10.0)
    assert spread.fmt(1) == "2.5 (1.0-10.0)"
    assert Spread.of([1234.5]).fmt() == "1,234 (1,234-1,234)"


def test_an_empty_series_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="empty"):
        Spread.of([])


def test_ratios_are_taken_round_by_round_so_a_slow_spell_cancels_out() -> None:
    # Round 2 ran while the machine was slow for both contenders: candidate and baseline halved alike.
    candidate = [900.0, 450.0, 880.0]
    baseline = [1000.0, 500.0, 1000.0]
    spread = ratios(candidate, baseline)
    assert spread.median == pytest.approx(0.90)
    assert (spread.low, spread.high) == pytest.approx((0.88, 0.90))
    # The ratio of the medians would read 0.88 and hide that two rounds of three measured 0.90.
    assert Spread.of(candidate).median / Spread.of(baseline).median == pytest.approx(0.88)


def test_ratio_series_must_pair_up_and_a_zero_baseline_round_is_left_out() -> None:
    with pytest.raises(ValueError, match="pair up"):
        ratios([1.0, 2.0], [1.0])
    assert ratios([5.0, 3.0], [0.0, 2.0]) == Spread(1.5, 1.5, 1.5)
    with pytest.raises(ValueError, match="empty"):
        ratios([5.0], [0.0])
