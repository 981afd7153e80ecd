"""``python -m bench.profile KEY``: where a server under test spends its time, as top frames.

Starts the server of one comparison or storm of the suite (``KEY`` as in ``latest.json``, e.g.
``guard-uvicorn-es256-repeated``, ``keyturn-login-storm``, ``refresh-postgresql-vs-sqlite``), loads
it with wrk exactly as the suite does, and samples it with py-spy (``pip install py-spy``; it needs
ptrace rights: root, or ``kernel.yama.ptrace_scope=0``). Prints, and writes to
``bench/results/profiles/KEY-SIDE.txt``, the frames with the most samples: *self* (where the CPU
was when sampled) and *inclusive* (what the samples were inside), both as shares of all samples.
docs/performance.md quotes these for the targets the suite misses.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.harness import Contender, expect_success
from bench.servers import REPO_ROOT, RunningServer, ServerSpec, running
from bench.suite import Context, SuiteConfig, http_comparisons, storm_comparisons
from bench.wrk import LoadSettings, LoadSpec, finish_wrk, start_wrk

#: ``:123)`` at the end of a frame: samples are summed per function, not per line.
_LINE = re.compile(r":\d+\)$")
#: Frames that are only the way in (the interpreter, the CLI, the server's loop), not a cost.
_PLUMBING = ("<module>", "_run_code", "_run_module_as_main", "click/core.py", "asyncio/runners.py", "main (")


@dataclass(frozen=True)
class Profile:
    """Sample counts of one py-spy recording, by frame."""

    total: int
    own: collections.Counter[str]
    inclusive: collections.Counter[str]

    @classmethod
    def parse(cls, raw: str) -> Profile:
        """Read py-spy's ``--format raw`` output (collapsed stacks: ``frame;frame;... count``)."""
        own: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        total = 0
        for line in raw.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit() or line.startswith("py-spy>"):  # py-spy's own summary line
                continue
            samples = int(count)
            frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
            total += samples
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
        return cls(total, own, inclusive)

    def render(self, title: str, top: int = 25) -> str:
        """Two ranked lists, as plain text."""
        lines = [f"# {title}", f"{self.total} samples", "", "## self (where the CPU was)"]
        lines += [f"{100 * n / self.total:5.1f}%  {frame}" for frame, n in self.own.most_common(top)]
        lines += ["", "## inclusive (what the samples were inside)"]
        interesting = [(f, n) for f, n in self.inclusive.most_common() if not any(p in f for p in _PLUMBING)]
        lines += [f"{100 * n / self.total:5.1f}%  {frame}" for frame, n in interesting[:top]]
        lines += ["", "## keyturn's own functions, inclusive"]
        own = [(f, n) for f, n in self.inclusive.most_common() if "keyturn/" in f and "keyturn serve" not in f]
        lines += [f"{100 * n / self.total:5.1f}%  {frame}" for frame, n in own[:top]]
        return "\n".join(lines) + "\n"


def find_target(key: str, side: str, config: SuiteConfig) -> tuple[ServerSpec, Contender | None, LoadSpec | None]:
    """The server (and its contender or storm load) the suite would run for ``key``."""
    ctx = Context(config)
    comparisons, _ = http_comparisons(ctx)
    for comparison in comparisons:
        if comparison.key == key:
            contender = comparison.candidate if side == "candidate" else comparison.baseline
            return contender.server, contender, None
    storms, _ = storm_comparisons(ctx)
    for storm in storms:
        if storm.key == key and isinstance(storm.storm, LoadSpec):
            return storm.server, None, storm.storm
    raise SystemExit(f"no comparison or storm named {key!r}")


def _load_for(server: RunningServer, contender: Contender | None, storm: LoadSpec | None) -> LoadSpec:
    if contender is None:
        if storm is None:
            raise ValueError("nothing to load the server with")
        expect_success(server, storm)
        return storm
    load = contender.resolve_load(server)
    if not contender.single_use:
        contender.check(server, load)
    return load


def record(server: RunningServer, load: LoadSpec, settings: LoadSettings, seconds: float) -> Profile:
    """Load ``server`` for ``seconds`` (+ ramp) and sample its process tree meanwhile."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--duration", f"{seconds:g}"]
    argv += ["--rate", "250", "--format", "raw", "--output", "/dev/stdout", "--nonblocking"]
    wrk = start_wrk(server.base_url + load.path, load, replace(settings, duration_s=seconds + 2))
    try:
        time.sleep(1)
        process = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        finish_wrk(wrk, settings)
    return Profile.parse(process.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one suite target and write its top frames."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("key", help="comparison or storm key, as in latest.json")
    parser.add_argument("--side", choices=("candidate", "baseline"), default="candidate")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=None, help="wrk connections (default: as the suite)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = SuiteConfig(match=[args.key], unique_tokens=20_000)
    spec, contender, storm = find_target(args.key, args.side, config)
    connections = args.connections or (config.storm_connections if storm is not None else 64)
    settings = replace(config.settings.load, connections=connections)
    with running(spec, config.settings.log_dir) as server:
        load = _load_for(server, contender, storm)
        profile = record(server, load, settings, args.seconds)
    text = profile.render(f"{args.key} ({args.side}: {spec.name}), {connections} connections, {args.seconds:g} s")
    out = REPO_ROOT / "bench" / "results" / "profiles" / f"{args.key}-{args.side}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
