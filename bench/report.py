"""Writes a run's results: ``latest.md`` (tables), ``latest.png`` (ratio chart), ``latest.json`` (raw).

The markdown leads with ratios and shows absolute numbers only as context, because only ratios
taken in the same run carry over from one machine to another. The chart shows the same ratios with
their min-max spread as error bars, and a line at 1.0 (parity).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.floor import OpOutcome
from bench.harness import ContenderRuns, HttpOutcome, StormOutcome
from bench.servers import EXPRESS_DIR, REPO_ROOT, PeakRss
from bench.stats import Spread
from bench.suite import SuiteResult
from bench.targets import Verdict, login_host_ceiling, verdicts

PYTHON_PACKAGES = ("cryptography", "joserfc", "starlette", "uvicorn", "granian", "uvloop", "httptools")
NODE_PACKAGES = ("express", "jsonwebtoken", "bcryptjs")

if TYPE_CHECKING:  # matplotlib (the ``bench`` extra) is needed for the chart only, not for the tables
    from matplotlib.axes import Axes


# --- environment -----------------------------------------------------------------------------


def _command_output(argv: Sequence[str], *, any_status: bool = False) -> str:
    """First line a command prints; ``any_status`` for tools like wrk whose --version exits 1."""
    try:
        process = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    text = (process.stdout or process.stderr).strip()
    return text.splitlines()[0] if (process.returncode == 0 or any_status) and text else "n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _python_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _node_package_version(package: str) -> str:
    try:
        manifest = json.loads((EXPRESS_DIR / "node_modules" / package / "package.json").read_text())
    except (OSError, ValueError):
        return "not installed"
    return str(manifest.get("version", "?"))


def collect_environment() -> dict[str, str]:
    """Machine and versions, so that a later reader knows what produced the figures."""
    environment = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "git commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "node": _command_output(["node", "--version"]),
        "wrk": _command_output(["wrk", "--version"], any_status=True).split(" [")[0],
    }
    environment |= {package: _python_version(package) for package in PYTHON_PACKAGES}
    environment |= {f"{package} (npm)": _node_package_version(package) for package in NODE_PACKAGES}
    return environment


# --- markdown --------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _ratio(spread: Spread | None) -> str:
    return "n/a" if spread is None else f"**{spread.median:.2f}x** ({spread.low:.2f}-{spread.high:.2f})"


def _validity(outcome_valid: bool, runs: Sequence[ContenderRuns]) -> str:
    if outcome_valid:
        return "ok"
    return "INVALID: " + ", ".join(f"{r.label} {r.failures} failed requests" for r in runs if r.failures)


def _settings_lines(result: SuiteResult) -> list[str]:
    settings, floor = result.config.settings, result.config.floor
    load = settings.load
    return [
        f"- HTTP: wrk `-t{load.threads} -c{load.connections} -d{load.duration_s:g}s`, "
        f"{settings.rounds} rounds (ABBA interleaved) after a {settings.warmup_s:g} s warm-up per server; "
        f"{result.config.unique_tokens:,} unique tokens per key; login storms with {result.config.storm_connections} "
        f"connections and a 1-connection probe",
        f"- Token operations: {floor.rounds} interleaved rounds of ~{floor.sample_s * 1000:g} ms timed loops",
    ]


HTTP_HEADER = (
    "comparison",
    "req/s ratio",
    "p99 ratio",
    "CPU/req ratio",
    "baseline req/s",
    "candidate req/s",
    "baseline p99 ms",
    "candidate p99 ms",
    "server CPU µs/req (baseline, candidate)",
    "check",
)


def _cpu_pair(outcome: HttpOutcome) -> str:
    base, cand = outcome.baseline.cpu_per_request, outcome.candidate.cpu_per_request
    if base is None or cand is None:
        return "n/a"
    return f"{base.median:,.0f}, {cand.median:,.0f}"


def _http_row(outcome: HttpOutcome) -> list[str]:
    return [
        outcome.comparison.title,
        _ratio(outcome.throughput_ratio),
        _ratio(outcome.p99_ratio),
        _ratio(outcome.cpu_ratio),
        outcome.baseline.throughput.fmt(),
        outcome.candidate.throughput.fmt(),
        outcome.baseline.p99_ms.fmt(2),
        outcome.candidate.p99_ms.fmt(2),
        _cpu_pair(outcome),
        _validity(outcome.valid, (outcome.baseline, outcome.candidate)),
    ]


def _http_section(outcomes: Sequence[HttpOutcome]) -> list[str]:
    lines: list[str] = ["## HTTP comparisons", ""]
    lines += [
        "Ratios are candidate ÷ baseline: for req/s above 1 means the candidate serves more, for p99",
        "above 1 means the candidate is slower at the tail. CPU/req is the servers' own CPU time per",
        "request (all their processes, from /proc): what a request costs, unaffected by the time a",
        "server spent waiting for a core while other processes ran -- the steadier figure on a shared machine.",
        "",
    ]
    for group in dict.fromkeys(o.comparison.group for o in outcomes):
        members = [o for o in outcomes if o.comparison.group == group]
        lines += [f"### {group}", ""]
        lines += _table(HTTP_HEADER, [_http_row(o) for o in members])
        lines += [f"- {o.comparison.title}: {o.comparison.note}" for o in members if o.comparison.note]
        lines += [_reuse_line(o) for o in members if _reuse_line(o)]
        lines += [""]
    return lines


def _reuse_line(outcome: HttpOutcome) -> str:
    reuse = max((r.token_reuse or 0.0) for r in (outcome.baseline, outcome.candidate))
    if reuse <= 1.0:
        return ""
    return (
        f"- {outcome.comparison.title}: each unique token was sent up to {reuse:.1f} times (run longer than the list)"
    )


STORM_HEADER = (
    "server",
    "logins/s (storm alone)",
    "hash-bound limit /s",
    "logins ÷ limit",
    "logins ÷ all cores hashing",
    "all cores hashing ÷ limit",
    "logins/s with the probe",
    "with the probe ÷ limit",
    "probe p99 idle ms",
    "probe p99 storm ms",
    "p99 storm ÷ idle",
    "check",
)


def _storm_row(outcome: StormOutcome) -> list[str]:
    bound = outcome.hash_bound_per_s
    alone = outcome.alone_throughput
    return [
        outcome.comparison.title,
        alone.fmt(1) if alone else "n/a",
        bound.fmt(1) if bound else "n/a",
        _ratio(outcome.bound_ratio),
        _ratio(outcome.all_cores_ratio),
        _ratio(outcome.host_ceiling_ratio),
        outcome.storm_throughput.fmt(1),
        _ratio(outcome.probed_bound_ratio),
        Spread.of([r.p99_ms for r in outcome.idle]).fmt(2),
        Spread.of([r.p99_ms for r in outcome.stormy]).fmt(2) + _starved(outcome),
        _ratio(outcome.p99_ratio),
        "ok" if outcome.valid else "INVALID: failed requests",
    ]


def _starved(outcome: StormOutcome) -> str:
    """Flag probes the storm starved: their p99 is a lower bound (they waited out the window)."""
    if not outcome.unanswered:
        return ""
    return f" (at least: {outcome.unanswered} probe(s) unanswered when the window closed)"


def _storm_section(outcomes: Sequence[StormOutcome]) -> list[str]:
    lines = ["## Login storm", ""]
    lines += [
        "Storm: closed-loop logins (wrk). Probe: one GET every 10 ms on a cheap endpoint of the same server,",
        "idle vs during the storm, corrected for coordinated omission (a stalled request also stands for",
        "the requests that would have been sent meanwhile). The hash-bound limit is what password hashing",
        'alone allows (cores ÷ one verification\'s time); "all cores hashing" is the rate measured with',
        "every core verifying at once and nothing else running, which is what the cores really deliver;",
        "all cores hashing ÷ limit is therefore the most of the limit any server could reach on this host.",
        "Both are measured just before and just after each storm run, with the server idle, and each run's",
        "logins/s is divided by their mean: the figures of its own moment. Each round runs the storm twice:",
        "alone (logins ÷ limit: the limit is a bound for logins only) and with the probe (its p99; the",
        "probe's ~100 requests/s take their share of the same two cores, hence the lower logins/s).",
        "",
    ]
    lines += _table(STORM_HEADER, [_storm_row(o) for o in outcomes])
    lines += [
        f"- {o.comparison.title}: limit = {o.comparison.hash_bound_note}"
        for o in outcomes
        if o.comparison.hash_bound_note
    ]
    return [*lines, ""]


def _rss_rows(result: SuiteResult) -> list[tuple[str, str, PeakRss]]:
    rows: list[tuple[str, str, PeakRss]] = []
    for outcome in result.http:
        rows += [(outcome.comparison.title, side.server, side.rss) for side in (outcome.baseline, outcome.candidate)]
    rows += [(o.comparison.title, o.comparison.server.name, o.rss) for o in result.storms]
    return rows


def _rss_section(result: SuiteResult) -> list[str]:
    lines = ["## Peak RSS under load", "", "VmHWM read from /proc before each server stopped.", ""]
    lines += _table(
        ["during", "server", "processes", "largest process MiB", "all processes MiB"],
        [
            [
                during,
                server,
                str(len(rss.per_process)),
                f"{rss.max_process_kib / 1024:.1f}",
                f"{rss.total_kib / 1024:.1f}",
            ]
            for during, server, rss in _rss_rows(result)
        ],
    )
    return lines


def _floor_section(outcomes: Sequence[OpOutcome]) -> list[str]:
    contenders = [c for c in dict.fromkeys(o.contender for o in outcomes) if c != "floor"]
    lines = ["## Token operations vs the cryptography floor", ""]
    lines += [
        "Floor: the bare `cryptography` primitive on a ready signing input (no base64, JSON or DER/raw",
        "conversion). Ratios are contender ops/s ÷ floor ops/s per round: 1.0 is the floor, lower is overhead.",
        "",
    ]
    header = ["algorithm", "operation", "floor ops/s"]
    for name in contenders:
        header += [f"{name} ops/s", f"{name} ÷ floor"]
    rows = []
    for algorithm, operation in dict.fromkeys((o.algorithm, o.operation) for o in outcomes):
        cell = {o.contender: o for o in outcomes if (o.algorithm, o.operation) == (algorithm, operation)}
        row = [algorithm, operation, cell["floor"].throughput.fmt()]
        for name in contenders:
            row += [cell[name].throughput.fmt(), _ratio(cell[name].ratio)] if name in cell else ["n/a", "n/a"]
        rows.append(row)
    return lines + _table(header, rows)


def _target_row(verdict: Verdict) -> list[str]:
    target, measured = verdict.target, verdict.measured
    value = "n/a"
    if measured is not None:
        value = f"**{measured.median:,.2f}{target.unit}** ({measured.low:,.2f}-{measured.high:,.2f})"
    status = {True: "met", False: "MISSED", None: "not measured"}[verdict.met]
    bound = f"{target.direction} {target.threshold:g}{target.unit}"
    return [target.name, bound, value, status, verdict.margin, verdict.rounds]


def _targets_section(result: SuiteResult) -> list[str]:
    lines = ["## Targets", ""]
    lines += [
        "The issue's targets against this run (median, min-max over rounds; a failed or invalid comparison",
        "counts as not measured). The verdict is the median's; the last column says whether all, some or",
        "none of the rounds (for memory: of keyturn's servers) were on the bound's good side: with some,",
        "the line runs through this run's spread and another run of the same code can give the other",
        "verdict. docs/performance.md says what bounds each miss.",
        "",
    ]
    rows = [_target_row(verdict) for verdict in verdicts(result)]
    lines += _table(["target", "bound", "measured", "verdict", "margin", "rounds meeting it"], rows)
    ceiling = login_host_ceiling(result)
    if ceiling is not None:
        lines += [
            "- logins/s ÷ hash-bound limit: this host's cores, all hashing at once with nothing else running,",
            f"  deliver {_ratio(ceiling)} of the limit (the most any server could reach here).",
            "",
        ]
    return lines


def render_markdown(result: SuiteResult, environment: dict[str, str], chart_name: str | None) -> str:
    """The whole ``latest.md`` document."""
    lines = ["# keyturn benchmark: latest run", ""]
    lines += [
        "Every figure below is a ratio measured in this run, A/B interleaved, as median (min-max) over",
        "rounds. Absolute numbers are context only: none of them is a pass/fail criterion.",
        "",
        *_settings_lines(result),
        *[f"- {note}" for note in result.notes],
        "",
    ]
    lines += _targets_section(result)
    if chart_name:
        lines += [f"![ratios]({chart_name})", ""]
    if result.http:
        lines += _http_section(result.http)
    if result.storms:
        lines += _storm_section(result.storms)
    if result.http or result.storms:
        lines += _rss_section(result)
    if result.floor:
        lines += _floor_section(result.floor)
    if result.skipped:
        lines += ["## Not measured in this run", "", *[f"- {item}" for item in result.skipped], ""]
    lines += ["## Environment", "", *_table(["", ""], [[k, f"`{v}`"] for k, v in environment.items()])]
    return "\n".join(lines)


# --- chart ---------------------------------------------------------------------------------

#: Tick values offered on the log-scale ratio axes (the ones inside the data range are shown).
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class Bar:
    """One bar of the chart: a row label, the series it belongs to (legend), a ratio and its spread."""

    row: str
    series: str
    ratio: Spread


@dataclass(frozen=True)
class Panel:
    """One chart panel: bars that share a meaning (throughput, tail latency, token ops)."""

    title: str
    bars: Sequence[Bar]


def throughput_bars(result: SuiteResult) -> list[Bar]:
    """req/s ratios of the HTTP comparisons, and logins/s relative to the hash-bound limit."""
    bars = [Bar(o.comparison.title, "req/s", o.throughput_ratio) for o in result.http]
    bars += [
        Bar(f"{o.comparison.title}: logins/s ÷ hash-bound limit", "logins/s", o.bound_ratio)
        for o in result.storms
        if o.bound_ratio is not None
    ]
    return bars


def latency_bars(result: SuiteResult) -> list[Bar]:
    """p99 ratios of the HTTP comparisons, and the probe's p99 during a storm vs idle."""
    bars = [Bar(o.comparison.title, "p99", o.p99_ratio) for o in result.http]
    bars += [Bar(f"{o.comparison.title}: probe p99 storm ÷ idle", "p99", o.p99_ratio) for o in result.storms]
    return bars


def floor_bars(result: SuiteResult) -> list[Bar]:
    """Every non-floor contender's ratio to the floor, one row per algorithm and operation."""
    return [Bar(f"{o.algorithm} {o.operation}", o.contender, o.ratio) for o in result.floor if o.contender != "floor"]


def panels_of(result: SuiteResult) -> list[Panel]:
    """The non-empty panels, in reading order."""
    panels = [
        Panel("Throughput: candidate ÷ baseline (higher = candidate serves more)", throughput_bars(result)),
        Panel("Tail latency: candidate ÷ baseline (higher = candidate slower at p99)", latency_bars(result)),
        Panel("Token operations: contender ÷ cryptography floor (1.0 = the floor)", floor_bars(result)),
    ]
    return [panel for panel in panels if panel.bars]


def render_chart(result: SuiteResult, path: Path) -> bool:
    """Draw the ratio chart to ``path``; False when there is nothing to draw."""
    panels = panels_of(result)
    if not panels:
        return False
    heights = [0.32 * len({bar.row for bar in panel.bars}) * _series_count(panel) ** 0.5 + 1.1 for panel in panels]
    from matplotlib.figure import Figure  # noqa: PLC0415 - the chart alone needs the bench extra

    # A bare Figure, not pyplot: no global state and no GUI backend, on servers and CI alike.
    figure = Figure(figsize=(11, sum(heights)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for axis, panel in zip(axes[:, 0], panels, strict=True):
        _draw_panel(axis, panel)
    figure.savefig(path, dpi=110)
    return True


def _series_count(panel: Panel) -> int:
    """Bars side by side per row: >1 only when some row holds several series (contenders)."""
    per_row: dict[str, set[str]] = {}
    for bar in panel.bars:
        per_row.setdefault(bar.row, set()).add(bar.series)
    return max(len(series) for series in per_row.values())


def _draw_panel(axis: Axes, panel: Panel) -> None:
    """Bars grow from parity (1.0) on a log axis, so 0.5x and 2x look equally far from it."""
    rows = list(dict.fromkeys(bar.row for bar in panel.bars))
    grouped = _series_count(panel) > 1
    series = list(dict.fromkeys(bar.series for bar in panel.bars)) if grouped else [""]
    thickness = 0.8 / len(series)
    for index, name in enumerate(series):
        members = [bar for bar in panel.bars if bar.series == name or not grouped]
        offset = (len(series) - 1) / 2 * thickness - index * thickness
        positions = [len(rows) - 1 - rows.index(bar.row) + offset for bar in members]
        medians = [bar.ratio.median for bar in members]
        errors = [
            [bar.ratio.median - bar.ratio.low for bar in members],
            [bar.ratio.high - bar.ratio.median for bar in members],
        ]
        axis.barh(positions, [m - 1 for m in medians], left=1, height=thickness, xerr=errors, capsize=2, label=name)
        for position, bar in zip(positions, members, strict=True):
            tip = max(bar.ratio.high, 1.0) if bar.ratio.median >= 1 else min(bar.ratio.low, 1.0)
            axis.annotate(
                f"{bar.ratio.median:.2f}x",
                (tip, position),
                xytext=(4 if bar.ratio.median >= 1 else -4, 0),
                textcoords="offset points",
                ha="left" if bar.ratio.median >= 1 else "right",
                va="center",
                fontsize=7,
            )
    _style_axis(axis, panel, rows, legend=grouped)


def _style_axis(axis: Axes, panel: Panel, rows: Sequence[str], *, legend: bool) -> None:
    low = min(1.0, *(bar.ratio.low for bar in panel.bars)) / 1.6
    high = max(1.0, *(bar.ratio.high for bar in panel.bars)) * 1.6
    axis.set_xscale("log")
    axis.set_xlim(low, high)
    ticks = [tick for tick in RATIO_TICKS if low <= tick <= high]
    axis.set_xticks(ticks, [f"{tick:g}x" for tick in ticks], fontsize=8)
    axis.minorticks_off()
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_yticks(range(len(rows))[::-1], list(rows), fontsize=8)
    axis.set_ylim(-0.6, len(rows) - 0.4)
    axis.set_title(panel.title, fontsize=10)
    axis.set_xlabel("ratio, log scale (median; whiskers: min-max over rounds)", fontsize=8)
    if legend:
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


# --- json ------------------------------------------------------------------------------------


def _spread_dict(spread: Spread | None) -> dict[str, float] | None:
    return None if spread is None else {"median": spread.median, "low": spread.low, "high": spread.high}


def _runs_dict(side: ContenderRuns) -> dict[str, object]:
    return {
        "label": side.label,
        "server": side.server,
        "peak_rss_kib": side.rss.total_kib,
        "peak_rss_largest_process_kib": side.rss.max_process_kib,
        "token_count": side.token_count,
        "cpu_us_per_request": list(side.cpu_us_per_request),
        "runs": [
            {
                "requests_per_s": r.requests_per_s,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "socket_errors": r.socket_errors,
                "bad_status": r.bad_status,
            }
            for r in side.runs
        ],
    }


def to_json(result: SuiteResult, environment: dict[str, str]) -> dict[str, object]:
    """Raw per-round figures, for anyone who wants to re-analyse a run."""
    return {
        "environment": environment,
        "http": [
            {
                "key": o.comparison.key,
                "title": o.comparison.title,
                "valid": o.valid,
                "throughput_ratio": _spread_dict(o.throughput_ratio),
                "p99_ratio": _spread_dict(o.p99_ratio),
                "cpu_per_request_ratio": _spread_dict(o.cpu_ratio),
                "baseline": _runs_dict(o.baseline),
                "candidate": _runs_dict(o.candidate),
            }
            for o in result.http
        ],
        "storms": [
            {
                "key": o.comparison.key,
                "title": o.comparison.title,
                "valid": o.valid,
                "logins_per_s": _spread_dict(o.alone_throughput),
                "logins_per_s_with_probe": _spread_dict(o.storm_throughput),
                "hash_bound_per_s": _spread_dict(o.hash_bound_per_s),
                "bound_ratio": _spread_dict(o.bound_ratio),
                "bound_ratio_with_probe": _spread_dict(o.probed_bound_ratio),
                "all_cores_hashing_per_s": _spread_dict(o.all_cores_hashing_per_s),
                "all_cores_ratio": _spread_dict(o.all_cores_ratio),
                "host_ceiling_ratio": _spread_dict(o.host_ceiling_ratio),
                "p99_ratio": _spread_dict(o.p99_ratio),
                "peak_rss_kib": o.rss.total_kib,
            }
            for o in result.storms
        ],
        "floor": [
            {
                "algorithm": o.algorithm,
                "operation": o.operation,
                "contender": o.contender,
                "ops_per_s": list(o.ops_per_s),
                "ratio": _spread_dict(o.ratio),
            }
            for o in result.floor
        ],
        "targets": [
            {
                "target": v.target.name,
                "bound": f"{v.target.direction} {v.target.threshold:g}{v.target.unit}",
                "measured": _spread_dict(v.measured),
                "met": v.met,
                "rounds_meeting": v.rounds,
            }
            for v in verdicts(result)
        ],
        "skipped": result.skipped,
    }


def write_report(result: SuiteResult, out_dir: Path) -> list[Path]:
    """Write latest.md, latest.png (when there is anything to chart) and latest.json; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    environment = collect_environment()
    chart = out_dir / "latest.png"
    has_chart = render_chart(result, chart)
    markdown = out_dir / "latest.md"
    markdown.write_text(render_markdown(result, environment, chart.name if has_chart else None))
    raw = out_dir / "latest.json"
    raw.write_text(json.dumps(to_json(result, environment), indent=2) + "\n")
    return [markdown, raw, *([chart] if has_chart else [])]
