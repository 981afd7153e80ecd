"""latest.md and latest.json say what the run measured: the verdicts first, every figure a ratio with its spread."""

from __future__ import annotations

import json

from bench.report import render_markdown, to_json
from bench.suite import SuiteResult

from tests.bench.results import http_outcome, login_storm, suite_result


def _result() -> SuiteResult:
    guard = http_outcome("guard-uvicorn-es256-repeated", [1000, 1000, 1000], [860, 870, 880])
    storm = login_storm([85, 90, 80], limits=[100, 100, 100], all_cores=[95, 96, 94])
    return suite_result([guard], [storm])


def _row(markdown: str, starts: str) -> list[str]:
    found = [line for line in markdown.splitlines() if line.startswith(f"| {starts}")]
    assert len(found) == 1, found
    return [cell.strip() for cell in found[0].strip("|").split("|")]


def test_the_markdown_opens_with_the_targets_and_their_verdicts() -> None:
    result = _result()
    markdown = render_markdown(result, {"git commit": "abc1234"}, "latest.png")
    assert markdown.index("## Targets") < markdown.index("## HTTP comparisons") < markdown.index("## Login storm")
    assert _row(markdown, "guarded ÷ unguarded, repeated token (uvicorn, ES256)") == [
        "guarded ÷ unguarded, repeated token (uvicorn, ES256)",
        "at least 0.9x",
        "**0.87x** (0.86-0.88)",
        "MISSED",
        "missed by 3%",
        "none",
    ]
    assert _row(markdown, "logins/s ÷ hash-bound limit")[2:] == ["**0.85x** (0.80-0.90)", "met", "met by 0.0%", "some"]
    assert _row(markdown, "refresh/s on PostgreSQL")[2:] == ["n/a", "not measured", "not measured", "not measured"]
    assert "deliver **0.95x** (0.94-0.96) of the limit" in markdown
    assert "![ratios](latest.png)" in markdown
    assert "| git commit | `abc1234` |" in markdown


def test_the_json_holds_every_round_and_the_same_verdicts() -> None:
    result = _result()
    data = json.loads(json.dumps(to_json(result, {"git commit": "abc1234"})))
    (http,) = data["http"]
    assert [run["requests_per_s"] for run in http["candidate"]["runs"]] == [860, 870, 880]
    assert http["throughput_ratio"]["median"] == 0.87
    (storm,) = data["storms"]
    assert storm["bound_ratio"] == {"median": 0.85, "low": 0.8, "high": 0.9}
    met = {target["target"]: target["met"] for target in data["targets"]}
    assert met["guarded ÷ unguarded, repeated token (uvicorn, ES256)"] is False
    assert met["logins/s ÷ hash-bound limit (storm alone)"] is True
    assert met["refresh/s on PostgreSQL (absolute)"] is None
    rounds = {target["target"]: target["rounds_meeting"] for target in data["targets"]}
    assert rounds["logins/s ÷ hash-bound limit (storm alone)"] == "some"
