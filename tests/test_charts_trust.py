"""Charts a reader can trust: counts with whole-number ticks, program names in full, and pages
per crawl drawn as the parts of one whole."""

from __future__ import annotations

import sqlite3

import pytest

from tests.test_charts import DASHBOARD, chart_rows
from tests.test_charts import datasette as datasette

CHARTS = DASHBOARD["charts"]


def axis(chart: str, channel: str) -> dict:
    return CHARTS[chart]["display"]["encoding"][channel].get("axis") or {}


@pytest.mark.parametrize(
    ("chart", "channel"), [("published-per-month", "y"), ("crawl-history", "y")]
)
def test_counts_have_whole_number_ticks(chart, channel):
    encoding = CHARTS[chart]["display"]["encoding"][channel]
    assert encoding["type"] == "quantitative"
    # Vega-Lite: ticks no closer than 1 apart, and labelled as integers.
    assert axis(chart, channel)["tickMinStep"] == 1
    assert axis(chart, channel)["format"] == "d"


def test_program_names_are_drawn_in_full(datasette, recrawled_archive):
    with sqlite3.connect(recrawled_archive.db_path) as db:
        longest = max(len(name) for (name,) in db.execute("select name from programs"))
    db.close()
    # At most ~10 px a character in the chart's font: the limit is past the longest name.
    assert axis("program-parts", "y")["labelLimit"] >= 10 * longest
    names = {r["program"] for r in chart_rows(datasette, "program-parts")}
    assert max(len(n) for n in names) == longest


def test_pages_per_crawl_stack_as_parts_of_the_pages_the_crawl_asked_for(
    datasette,
    recrawled_archive,
):
    spec = CHARTS["crawl-history"]["display"]
    assert "xOffset" not in spec["encoding"]  # side by side would read as separate totals
    assert spec["encoding"]["y"].get("stack") in (None, "zero", True)
    rows = chart_rows(datasette, "crawl-history")
    with sqlite3.connect(recrawled_archive.db_path) as db:
        runs = db.execute(
            "select id, pages_fetched, pages_not_modified, pages_failed from runs "
            "where kind = 'crawl'"
        ).fetchall()
    db.close()
    for run, fetched, not_modified, failed in runs:
        parts = {r["pages"]: r["count"] for r in rows if r["run"] == run}
        assert set(parts) == {"fetched in full", "not modified", "failed"}
        assert sum(parts.values()) == fetched + failed  # the bar is every page asked for
        assert parts["not modified"] == not_modified
    second = {r["pages"]: r["count"] for r in rows if r["run"] == recrawled_archive.second_run}
    assert second["not modified"] > 0 and second["fetched in full"] > 0
