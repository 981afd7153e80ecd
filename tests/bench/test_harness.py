"""The A/B harness: ABBA order, bounds measured around each run, single-use tokens never replayed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from bench.harness import ContenderRuns, HashBound, TokenCursor, round_order
from bench.wrk import LoadSpec

from tests.bench.results import http_outcome, login_storm, probe_result, rss, wrk


def test_abba_order_puts_each_kind_first_and_last_equally_often() -> None:
    assert [round_order(i) for i in range(4)] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert [round_order(i, 3) for i in range(2)] == [(0, 1, 2), (2, 1, 0)]


def test_a_bound_around_a_run_is_the_mean_of_before_and_after() -> None:
    assert HashBound.around(HashBound(100.0, 90.0), HashBound(120.0, 110.0)) == HashBound(110.0, 100.0)
    # "All cores hashing" measured on one side only is not averaged with nothing.
    assert HashBound.around(HashBound(100.0, 90.0), HashBound(120.0)) == HashBound(110.0, None)


def _cursor(tmp_path: Path, count: int, mint_from: int | None = None) -> TokenCursor:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"t{i}\n" for i in range(count)))
    minted: list[int] = []

    def mint(n: int) -> list[str]:
        start = (mint_from or count) + sum(minted)
        minted.append(n)
        return [f"t{i}" for i in range(start, start + n)]

    load = LoadSpec("/auth/refresh", tokens_file=tokens)
    return TokenCursor(load, tmp_path / "slices", "refresh", mint if mint_from is not None else None)


def _offered(load: LoadSpec) -> list[str]:
    assert load.tokens_file is not None
    return load.tokens_file.read_text().splitlines()


def test_each_run_is_offered_only_tokens_no_earlier_run_can_have_sent(tmp_path: Path) -> None:
    cursor = _cursor(tmp_path, 100)
    first = cursor.take()
    assert _offered(first) == [f"t{i}" for i in range(100)]
    # 40 answered, 2 socket errors, and one request per connection (4) may still have been in flight.
    sent = wrk(8, socket_errors=2)
    assert cursor.after(sent, connections=4) == sent
    assert _offered(cursor.take()) == [f"t{i}" for i in range(46, 100)]
    assert cursor.most_reuse == pytest.approx(40 / 100)


def test_a_run_that_outruns_its_slice_is_marked_failed_not_replayed_silently(tmp_path: Path) -> None:
    cursor = _cursor(tmp_path, 30)
    cursor.take()
    result = cursor.after(wrk(10), connections=4)  # 50 requests over 30 tokens: 20 replays
    assert result.bad_status == 20
    assert not result.ok
    assert cursor.most_reuse == pytest.approx(50 / 30)
    with pytest.raises(RuntimeError, match="every single-use token is spent"):
        cursor.take()


def test_a_cursor_mints_what_the_next_run_needs(tmp_path: Path) -> None:
    cursor = _cursor(tmp_path, 10, mint_from=10)
    cursor.spent(8)
    cursor.ensure(5)  # 2 left: 3 more are minted
    assert cursor.made == 13
    assert _offered(cursor.take()) == ["t8", "t9", "t10", "t11", "t12"]
    cursor.ensure(2)  # enough left: nothing minted
    assert cursor.made == 13


def test_single_use_tokens_need_a_token_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokens_file"):
        TokenCursor(LoadSpec("/"), tmp_path, "refresh")


def test_token_reuse_is_the_most_any_run_sent_each_unique_token() -> None:
    runs = ContenderRuns("guard", "guarded-es256-uvicorn", [wrk(1000), wrk(2000)], rss(50.0), token_count=5000)
    assert runs.token_reuse == pytest.approx(2.0)
    assert ContenderRuns("ceiling", "ceiling-uvicorn", [wrk(1000)], rss(34.0), None).token_reuse is None


def test_the_cpu_ratio_needs_both_sides_cpu() -> None:
    outcome = http_outcome("guard-uvicorn-es256-repeated", [1000, 1000], [900, 880])
    assert outcome.cpu_ratio is None
    assert outcome.throughput_ratio.median == pytest.approx(0.89)
    assert outcome.valid


def test_a_storm_with_a_failed_request_or_probe_is_invalid() -> None:
    storm = login_storm([90, 80], limits=[100, 100], all_cores=[95, 95])
    assert storm.valid
    assert not replace(storm, alone=[wrk(90), wrk(80, socket_errors=1)]).valid
    assert not replace(storm, idle=[probe_result(2.0), probe_result(2.0, failures=1)]).valid


def test_a_storm_ratio_with_a_missing_bound_is_unknown_rather_than_misaligned() -> None:
    storm = login_storm([90, 80], limits=[100, 100], all_cores=[95, 95])
    assert replace(storm, alone_bounds=storm.alone_bounds[:1]).bound_ratio is None
