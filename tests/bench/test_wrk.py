"""wrk's result line, and the environment its Lua script reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bench.wrk import LoadSettings, LoadSpec, WrkError, build_command, build_env, parse_output


def _line(**overrides: object) -> str:
    data: dict[str, object] = {
        "requests": 101_234,
        "duration_us": 5_002_000,
        "latency_us": {"p50": 2100, "p90": 3500.0, "p99": 5250, "p999": 9000, "max": 20_100},
        "errors": {"connect": 0, "read": 1, "write": 0, "timeout": 2, "status": 3},
    }
    data.update(overrides)
    return "BENCH_JSON " + json.dumps(data)


def test_the_json_line_is_read_among_wrks_other_output() -> None:
    stdout = f"Running 5s test @ http://127.0.0.1:8000/\n  1 threads and 64 connections\n{_line()}\n"
    result = parse_output(stdout)
    assert result.requests == 101_234
    assert result.duration_s == pytest.approx(5.002)
    assert result.requests_per_s == pytest.approx(101_234 / 5.002)
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.p999_ms, result.max_ms) == (2.1, 3.5, 5.25, 9.0, 20.1)
    # Connection, read, write errors and timeouts are socket errors; non-2xx answers are counted apart.
    assert (result.socket_errors, result.bad_status) == (3, 3)
    assert not result.ok


def test_a_clean_run_is_ok_and_an_empty_run_has_no_rate() -> None:
    clean = parse_output(_line(errors={"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}))
    assert clean.ok
    assert parse_output(_line(duration_us=0)).requests_per_s == 0.0


def test_output_without_the_result_line_or_with_a_malformed_one_is_an_error() -> None:
    with pytest.raises(WrkError, match="no BENCH_JSON line"):
        parse_output("unable to connect to 127.0.0.1:8000 Connection refused\n")
    with pytest.raises(WrkError, match="unexpected wrk JSON"):
        parse_output(_line(errors=[1, 2]))


def test_the_environment_carries_this_runs_files_and_drops_a_stale_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_TOKENS_FILE", "/stale/tokens.txt")
    monkeypatch.setenv("BENCH_BODY_FILE", "/stale/body.json")
    body = tmp_path / "body.json"
    env = build_env(LoadSpec("/auth/login", body_file=body, token_header="X-API-Key", token_prefix=""), LoadSettings())
    assert env["BENCH_BODY_FILE"] == str(body)
    assert "BENCH_TOKENS_FILE" not in env
    assert (env["BENCH_TOKEN_HEADER"], env["BENCH_TOKEN_PREFIX"], env["BENCH_THREADS"]) == ("X-API-Key", "", "1")
    assert os.environ["BENCH_TOKENS_FILE"] == "/stale/tokens.txt"  # the caller's environment is left alone


def test_the_command_is_wrks_with_the_runs_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "wrk"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    load = LoadSpec("/x", headers={"Authorization": "Bearer t"})
    argv = build_command("http://127.0.0.1:1/x", load, LoadSettings(duration_s=2.5, connections=16, threads=2))
    assert argv[0] == str(fake)
    assert argv[1:5] == ["-t2", "-c16", "-d2.5s", "--timeout=10s"]
    assert argv[-3:] == ["-H", "Authorization: Bearer t", "http://127.0.0.1:1/x"]
    assert LoadSpec("/x").method == "GET"
    assert LoadSpec("/x", body_file=tmp_path / "b.json").method == "POST"


def test_a_missing_wrk_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WrkError, match=r"bench/run\.sh"):
        build_command("http://127.0.0.1:1/", LoadSpec("/"), LoadSettings())
