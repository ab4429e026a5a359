"""`python -m benchmarks.hostile` still runs, at a tiny size: it asserts what the results say
(where each crawl stopped), never how fast or how big anything was."""

from __future__ import annotations

import json

import pytest

from benchmarks import hostile


@pytest.mark.timeout(180)
def test_the_hostile_benchmark_runs_and_says_where_each_crawl_stopped(tmp_path, capsys):
    assert hostile.main(["--listed", "20", "--max-lessons", "30", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "hostile.json").read_text(encoding="utf-8"))
    cases = results["cases"]
    assert set(cases) == {"endless", "deep-nesting", "whitespace-title"}
    assert "limits.max_lessons = 30" in cases["endless"]["stopped"]
    assert cases["endless"]["endless_pages"] < 30
    assert "INCOMPLETE" in cases["deep-nesting"]["summary"]
    assert "complete" in cases["whitespace-title"]["summary"]
    for case in cases.values():
        assert case["exit_code"] == 0 and case["peak_rss_mb"] > 0
    assert "| endless |" in capsys.readouterr().out
