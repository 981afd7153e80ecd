"""Server processes under test: start on a free loopback port, wait until ready, measure, stop.

Each server runs in its own session (process group) so that stopping it also stops the workers it
forked, and nothing it leaves behind outlives the benchmark. Output goes to a log file rather than
a pipe: a chatty server must never block on a full pipe in the middle of a measurement.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
EXPRESS_DIR = BENCH_DIR / "express"
LOOPBACK = "127.0.0.1"

Runtime = Literal["uvicorn", "granian"]


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server. ``{port}`` in ``argv`` or ``env`` values is replaced at start."""

    name: str
    argv: Sequence[str]
    ready_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    ready_timeout_s: float = 30.0


@dataclass(frozen=True)
class RunningServer:
    """A started server: where to reach it and which process (group) to stop."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: loopback only, by construction."""
        return f"http://{LOOPBACK}:{self.port}"


class ServerError(RuntimeError):
    """A server did not come up, or died."""


def free_port() -> int:
    """Ask the kernel for a free loopback port (a small race with other processes is acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _substitute(value: str, port: int) -> str:
    return value.replace("{port}", str(port))


def start_server(spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start ``spec`` on a free port and return once it answers HTTP on ``spec.ready_path``."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}-{port}.log"
    env = {**os.environ, **{k: _substitute(v, port) for k, v in spec.env.items()}}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_substitute(arg, port) for arg in spec.argv],
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(spec, process, port, log_path)
    try:
        wait_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_ready(server: RunningServer) -> None:
    """Poll until the server gives any HTTP answer below 500 (a guarded path may well say 401)."""
    deadline = time.monotonic() + server.spec.ready_timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.spec.name} exited early:\n{tail(server.log_path)}")
        if _answers(server.port, server.spec.ready_path):
            return
        time.sleep(0.1)
    raise ServerError(f"{server.spec.name} not ready in {server.spec.ready_timeout_s}s:\n{tail(server.log_path)}")


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a server log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_server(server: RunningServer, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers past ``grace_s``."""
    if server.process.poll() is None:
        _signal_group(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=grace_s)
    # Workers that ignored the parent's exit would keep the port and a core busy: end the group.
    _signal_group(server.process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@contextlib.contextmanager
def running(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    """Context manager form of :func:`start_server` / :func:`stop_server`."""
    server = start_server(spec, log_dir)
    try:
        yield server
    finally:
        stop_server(server)


# --- peak memory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakRss:
    """Peak resident memory (VmHWM) of a server's process tree, in KiB.

    ``per_process`` maps pid to (command name, VmHWM). With several workers, ``max_process_kib``
    is the per-worker figure and ``total_kib`` an upper bound of the whole server's peak (the
    processes did not necessarily peak at the same moment).
    """

    per_process: Mapping[int, tuple[str, int]]

    @property
    def total_kib(self) -> int:
        """Sum of every process's own peak."""
        return sum(kib for _, kib in self.per_process.values())

    @property
    def max_process_kib(self) -> int:
        """The largest single process's peak: the per-worker figure."""
        return max((kib for _, kib in self.per_process.values()), default=0)


def peak_rss(root_pid: int) -> PeakRss:
    """Read VmHWM of ``root_pid`` and all its descendants from /proc (psutil is not a dependency).

    Must be called before the server stops: a process's high-water mark disappears with it.
    """
    return PeakRss({pid: info for pid in _descendants(root_pid) if (info := _vm_hwm(pid)) is not None})


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent_pid(entry)) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found += frontier
    return found


def _parent_pid(proc_dir: Path) -> int | None:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return None
    # The command name (2nd field) is in parentheses and may contain spaces: split after it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _vm_hwm(pid: int) -> tuple[str, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmHWM" not in fields:  # kernel threads have no memory of their own
        return None
    return fields["Name"].strip(), int(fields["VmHWM"].split()[0])


# --- quiescence ----------------------------------------------------------------------------


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU time consumed so far by ``root_pid`` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _descendants(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / ticks


def wait_quiet(server: RunningServer, window_s: float = 0.25, busy_cores: float = 0.1, timeout_s: float = 30.0) -> None:
    """Return once the server's processes use less than ``busy_cores`` of CPU over ``window_s``.

    After a load run the server may still be working off queued requests (a login storm leaves
    seconds of password hashing behind); the next run must not inherit that work. Gives up quietly
    after ``timeout_s``: a server that never settles is visible in the results anyway.
    """
    deadline = time.monotonic() + timeout_s
    before = cpu_seconds(server.process.pid)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        after = cpu_seconds(server.process.pid)
        if after - before < busy_cores * window_s:
            return
        before = after


# --- the peers -------------------------------------------------------------------------------


def asgi_server(
    name: str,
    app_ref: str,
    runtime: Runtime,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/api/protected",
) -> ServerSpec:
    """Serve the ASGI app ``app_ref`` ("module:attr") under uvicorn or granian, on loopback.

    Both servers get their fastest settings available here (uvloop, httptools for uvicorn) and no
    access log, so the comparison is about the app, not about logging.
    """
    common = ["--host", LOOPBACK, "--port", "{port}", "--workers", str(workers)]
    if runtime == "uvicorn":
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            app_ref,
            *common,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            *common,
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            app_ref,
        ]
    return ServerSpec(name=f"{name}-{runtime}", argv=argv, ready_path=ready_path, env=dict(env or {}))


def ceiling_server(runtime: Runtime, *, workers: int = 1) -> ServerSpec:
    """The plain Starlette app without auth (``bench/apps/ceiling.py``)."""
    return asgi_server("ceiling", "bench.apps.ceiling:app", runtime, workers=workers)


def layered_server(runtime: Runtime, *, workers: int = 1) -> ServerSpec:
    """The ceiling behind a do-nothing ASGI middleware (``bench/apps/layered.py``): the guard rows' control."""
    return asgi_server("layered", "bench.apps.layered:app", runtime, workers=workers)


def express_server(
    algorithm: Literal["ES256", "HS256"],
    *,
    email: str,
    password: str,
    key_file: Path | None = None,
    secret: str | None = None,
) -> ServerSpec:
    """The tutorials' Express + jsonwebtoken + bcryptjs app (``bench/express/server.js``).

    ``key_file`` (ES256, PKCS#8 PEM) or ``secret`` (HS256) lets the harness mint tokens the app
    accepts; without them the app makes its own key and tokens come from ``/auth/login``.
    """
    env = {
        "PORT": "{port}",
        "HOST": LOOPBACK,
        "JWT_ALG": algorithm,
        "BENCH_EMAIL": email,
        "BENCH_PASSWORD": password,
        "NODE_ENV": "production",
    }
    if key_file is not None:
        env["JWT_PRIVATE_KEY_FILE"] = str(key_file)
    if secret is not None:
        env["JWT_SECRET"] = secret
    return ServerSpec(
        name=f"express-{algorithm.lower()}", argv=["node", "server.js"], ready_path="/health", env=env, cwd=EXPRESS_DIR
    )
