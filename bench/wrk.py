"""Load generation with wrk, run as a separate process.

wrk (from Debian's packages) is the load generator because it is a C event loop on its own core:
a Python client would measure itself as much as the server. The Lua script ``bench/lua/load.lua``
makes wrk print one machine-readable JSON line, parsed here into :class:`WrkResult`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "load.lua"
_MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class LoadSpec:
    """What each request of a run looks like.

    ``tokens_file`` rotates ``<token_header>: <token_prefix><token>`` over its lines (unique
    tokens), or puts the token in place of ``{{token}}`` when the body has that slot;
    ``body_file`` turns the requests into JSON POSTs (logins, refreshes). Both contenders of an A/B
    comparison normally get the same load shape so that the client side costs the same for both.
    """

    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    tokens_file: Path | None = None
    body_file: Path | None = None
    token_header: str = "Authorization"
    token_prefix: str = "Bearer "

    @property
    def method(self) -> str:
        """HTTP method wrk will use (POST exactly when there is a body)."""
        return "POST" if self.body_file is not None else "GET"


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how long wrk pushes: the same for every run of a comparison."""

    duration_s: float = 5.0
    connections: int = 64
    threads: int = 1
    request_timeout_s: float = 10.0


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and error counts."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    socket_errors: int
    bad_status: int

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second over the run (wrk's own definition)."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """False when any response was an error: such a run's req/s measures the wrong thing."""
        return self.socket_errors == 0 and self.bad_status == 0


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


def wrk_path() -> str:
    """Locate wrk; ``bench/run.sh`` installs it from Debian's packages when it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk not found: run `bash bench/run.sh` or `apt-get install -y wrk`")
    return found


def build_command(url: str, load: LoadSpec, settings: LoadSettings) -> list[str]:
    """wrk's argv for one run against ``url`` (which must already contain ``load.path``)."""
    argv = [
        wrk_path(),
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{settings.duration_s:g}s",
        f"--timeout={settings.request_timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
    ]
    for name, value in load.headers.items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def build_env(load: LoadSpec, settings: LoadSettings) -> dict[str, str]:
    """Environment read by ``load.lua``: the token list, the POST body, the thread count."""
    env = dict(os.environ)
    env["BENCH_THREADS"] = str(settings.threads)
    env["BENCH_TOKEN_HEADER"] = load.token_header
    env["BENCH_TOKEN_PREFIX"] = load.token_prefix
    for name in ("BENCH_TOKENS_FILE", "BENCH_BODY_FILE"):
        env.pop(name, None)
    if load.tokens_file is not None:
        env["BENCH_TOKENS_FILE"] = str(load.tokens_file)
    if load.body_file is not None:
        env["BENCH_BODY_FILE"] = str(load.body_file)
    return env


def parse_output(stdout: str) -> WrkResult:
    """Read the JSON line printed by ``done()`` in ``load.lua``."""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            return _result_from_json(json.loads(line[len(_MARKER) :]))
    raise WrkError(f"wrk printed no {_MARKER.strip()} line:\n{stdout}")


def _result_from_json(data: dict[str, object]) -> WrkResult:
    errors = _int_map(data["errors"])
    latency = _int_map(data["latency_us"])
    return WrkResult(
        requests=int(str(data["requests"])),
        duration_s=int(str(data["duration_us"])) / 1e6,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        max_ms=latency["max"] / 1000,
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        bad_status=errors["status"],
    )


def _int_map(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise WrkError(f"unexpected wrk JSON: {value!r}")
    return {str(k): int(float(v)) for k, v in value.items()}


def run_wrk(url: str, load: LoadSpec, settings: LoadSettings) -> WrkResult:
    """Run wrk once and wait for it; bounded by the run's duration plus a generous grace period."""
    process = subprocess.run(
        build_command(url, load, settings),
        env=build_env(load, settings),
        capture_output=True,
        text=True,
        timeout=settings.duration_s + settings.request_timeout_s + 30,
        check=False,
    )
    if process.returncode != 0:
        raise WrkError(f"wrk exited {process.returncode}:\n{process.stdout}\n{process.stderr}")
    return parse_output(process.stdout)


def start_wrk(url: str, load: LoadSpec, settings: LoadSettings) -> subprocess.Popen[str]:
    """Start wrk without waiting, for runs that overlap (a probe during a login storm)."""
    return subprocess.Popen(
        build_command(url, load, settings),
        env=build_env(load, settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_wrk(process: subprocess.Popen[str], settings: LoadSettings) -> WrkResult:
    """Wait for a wrk started by :func:`start_wrk` and parse its result."""
    try:
        stdout, stderr = process.communicate(timeout=settings.duration_s + settings.request_timeout_s + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise WrkError(f"wrk exited {process.returncode}:\n{stdout}\n{stderr}")
    return parse_output(stdout)
