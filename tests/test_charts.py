"""The charts page, /-/dashboards/micropause: its queries and its scripts, all from the archive.
(tests/test_browser.py draws it in Chromium.)"""

from __future__ import annotations

import asyncio
import re

import pytest

from pipeline.publish import build_datasette, load_metadata

DASHBOARD = load_metadata()["plugins"]["datasette-dashboards"]["micropause"]


def get(datasette, path, **params):
    return asyncio.run(datasette.client.get(path, params=params))


@pytest.fixture(scope="module")
def datasette(recrawled_archive):
    return build_datasette(recrawled_archive.db_path)


def chart_rows(datasette, chart: str) -> list[dict]:
    query = DASHBOARD["charts"][chart]["query"]
    response = get(datasette, "/micropause.json", sql=query, _shape="array")
    assert response.status_code == 200, response.text
    return response.json()


def test_charts_page_loads_its_scripts_from_the_archive_itself(datasette):
    page = get(datasette, "/-/dashboards/micropause")
    assert page.status_code == 200
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert any(src.endswith("/vega.min.js") for src in scripts)
    for src in scripts:
        assert src.startswith("/"), src  # no CDN
        assert get(datasette, src).status_code == 200, src


def test_lessons_published_per_month(datasette, recrawled_archive):
    rows = chart_rows(datasette, "published-per-month")
    assert {"month": "2030-01", "lessons": 1} in rows  # the lesson added before the recrawl
    assert [r["month"] for r in rows] == sorted(r["month"] for r in rows)


def test_program_parts_show_the_gap_the_site_has(datasette):
    rows = chart_rows(datasette, "program-parts")
    dive = {
        r["part"]: r["status"] for r in rows if r["program"].startswith("Body Intelligence – Dive")
    }
    assert dive[2] == "missing"
    assert dive[1] == "on the site"


def test_crawl_history_has_each_run_fetched_not_modified_failed(datasette, recrawled_archive):
    rows = chart_rows(datasette, "crawl-history")
    second = {r["pages"]: r["count"] for r in rows if r["run"] == recrawled_archive.second_run}
    assert set(second) == {"fetched in full", "not modified", "failed"}
    assert second["not modified"] > 0 and second["failed"] == 0
