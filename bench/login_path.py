"""What a login costs the server besides the password hash, thread by thread.

``python -m bench.login_path`` starts ``keyturn serve`` on SQLite as the login storm does (48
accounts, 16 closed-loop wrk connections) but with the test-only hash profile, so that what is
measured is the request path: HTTP, the throttle, the account read, the session insert, the
access token, the audit append. It reports the server's CPU per login over several runs, split
into the event loop's thread and every other thread (aiosqlite's connection threads, the hashing
threads), and how often per login the event loop's thread was woken (voluntary context switches:
it slept, waiting for a socket or another thread's answer) and preempted (involuntary ones).
``--hash owasp`` measures the production profile instead (the storm itself), and adds the
hash-bound limit and the all-cores-hashing rate measured around each run, as the suite does.

CPU time comes from ``/proc`` (time a thread waited for a core or for the GIL is not counted).
docs/performance.md quotes it for the login path's changes; the suite's storm is the comparison
that counts for the targets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import keyturn_peers
from bench.harness import HashBound, bound_around
from bench.servers import running, wait_quiet
from bench.wrk import LoadSettings, run_wrk

_TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of ``pid``, by thread id."""
    cpu = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return cpu


def _loop_switches(pid: int) -> tuple[int, int]:
    """The event loop's thread's (voluntary, involuntary) context switches so far."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines())
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])


def _against(rate: float, bound: HashBound) -> str:
    """This run's logins/s against the hash bound measured around it."""
    text = f"; hash-bound limit {bound.limit_per_s:.1f}/s (logins ÷ limit {rate / bound.limit_per_s:.2f}x)"
    if bound.all_cores_per_s:
        text += f", all cores hashing {bound.all_cores_per_s:.1f}/s ({rate / bound.all_cores_per_s:.2f}x)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.login_path", description=__doc__)
    parser.add_argument("--hash", choices=["test-only-cheap", "owasp"], default="test-only-cheap")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="keyturn-login-path-"))
    try:
        env, load = keyturn_peers.login_storm_setup(home, KEYTURN_PASSWORD_PROFILE=args.hash)
        settings = LoadSettings(duration_s=args.seconds, connections=args.connections)
        loop_ms, other_ms, rates = [], [], []
        with running(keyturn_peers.auth_server("login-path", "uvicorn", env), home) as server:
            pid = server.process.pid
            run_wrk(server.base_url + load.path, load, LoadSettings(duration_s=2, connections=args.connections))
            for _ in range(args.runs):
                wait_quiet(server)
                before, switched = _thread_cpu(pid), _loop_switches(pid)
                (result, after, switches), bound = bound_around(
                    server,
                    keyturn_peers.hash_bound if args.hash == "owasp" else None,
                    lambda: (
                        run_wrk(server.base_url + load.path, load, settings),
                        _thread_cpu(pid),
                        _loop_switches(pid),
                    ),
                )
                if not result.ok or not result.requests:
                    print(f"run failed: {result}", file=sys.stderr)
                    return 1
                spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
                loop_ms.append(1e3 * spent.get(pid, 0.0) / result.requests)
                other_ms.append(1e3 * sum(v for tid, v in spent.items() if tid != pid) / result.requests)
                rates.append(result.requests_per_s)
                woken = (switches[0] - switched[0]) / result.requests
                preempted = (switches[1] - switched[1]) / result.requests
                print(
                    f"  {rates[-1]:.0f} logins/s; CPU per login: event loop {loop_ms[-1]:.2f} ms, "
                    f"other threads {other_ms[-1]:.2f} ms; the event loop woken {woken:.1f}, preempted "
                    f"{preempted:.1f} times per login" + (_against(rates[-1], bound) if bound is not None else "")
                )
        total = [a + b for a, b in zip(loop_ms, other_ms, strict=True)]
        print(
            f"{args.hash}: median {statistics.median(rates):.0f} logins/s, server CPU per login "
            f"{statistics.median(total):.2f} ms (event loop {statistics.median(loop_ms):.2f}, "
            f"other threads {statistics.median(other_ms):.2f}); min-max {min(total):.2f}-{max(total):.2f}"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
