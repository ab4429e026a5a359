"""The benchmarks still run, end to end, at a tiny size: a smoke test, so they cannot silently
rot. It asserts what the results say, never how fast anything was (timings belong to
`python -m benchmarks`, on a quiet machine, not to the test suite)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.extraction import sample_pages, select_only
from benchmarks.runner import PROFILES, run
from pipeline.config import load_config
from pipeline.extract import extract
from tests.conftest import CONFIG_PATH


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # In this process (isolate=False): the separate process per suite is for clean RSS
    # numbers, and would only make the test slower.
    run("smoke", out_dir=out, isolate=False, log=lambda message: None)
    return out


def load(out):
    return json.loads((out / "latest.json").read_text(encoding="utf-8"))


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_result_files_say_what_was_measured_and_on_what(results):
    data = load(results)
    assert data["profile"] == "smoke"
    assert {"crawl", "extraction", "scale", "incremental", "targets", "machine"} <= set(data)
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpu_model"] and machine["python"]
    assert machine["packages"]["selectolax"] and machine["packages"]["httpx"]
    markdown = (results / "latest.md").read_text(encoding="utf-8")
    for heading in ("## Targets", "## First crawl", "## Extraction", "## Scale", "## Incremental"):
        assert heading in markdown
    for target in data["targets"]:
        assert set(target) == {"name", "target", "measured", "met"}


def test_crawl_measures_both_processes_and_finds_every_lesson(results):
    runs = load(results)["crawl"]["runs"]
    # Each size walked (and with a sticky post before and after the items, without a sitemap),
    # then proven without audits: with and without a sitemap, with each sticky post; then once
    # with the default audit.
    assert [(r["mode"], r["sitemap"], r["sticky"], r["audits"]) for r in runs] == [
        ("walked", True, None, None),
        ("walked", False, "before", None),
        ("walked", False, "after", None),
        ("inferred", True, None, 0),
        ("inferred", False, None, 0),
        ("inferred", False, "before", 0),
        ("inferred", False, "after", 0),
        ("inferred", False, None, None),
    ]
    for crawl in runs:
        assert crawl["lessons"] == PROFILES["smoke"]["crawl"]["sizes"][0]
        assert crawl["complete"]
        assert crawl["lessons_found"] == crawl["lessons_expected"] > 0
        # Every page answered 200 but the sitemap where the site has none (a 404).
        missing = {} if crawl["sitemap"] else {"404": 1}
        assert crawl["statuses"] == {"200": crawl["requests"] - len(missing), **missing}
        for key in ("wall_s", "requests_per_s", "crawler_cpu_ms_per_request", "server_cpu_s"):
            assert positive(crawl[key]), key
        assert 1 <= crawl["max_in_flight"] <= 8
    walked, inferred, audited = runs[0], runs[3:-1], runs[-1]
    for crawl in inferred:
        assert crawl["same_archive_as_walked"]
        assert crawl["listings_inferred"] + crawl["listings_walked"] <= walked["listings_walked"]
        assert crawl["listings_audited"] == 0
    assert audited["listings_audited"] == 1
    assert audited["audit_added_requests"] >= 0


def test_extraction_comparators_do_the_same_work(results):
    extraction = load(results)["extraction"]
    rows = extraction["implementations"]
    assert extraction["pages"] == PROFILES["smoke"]["extraction"]["pages"]
    assert rows["selectolax bare parse (floor)"]["vs_bare_parse"] == 1.0
    for name, row in rows.items():
        assert positive(row["us_per_page"]), name
        # BS4 and lxml (the optional `bench` extra) must return exactly what extract returns.
        assert row["agrees"] in (None, extraction["pages"]), name
    assert positive(extraction["ratios"]["extract_vs_bare_parse"])
    assert positive(extraction["ratios"]["queries_vs_bare_parse"])
    assert positive(extraction["ratios"]["walk_vs_bare_parse"])


def test_the_query_floor_runs_the_queries_extract_runs():
    """The "CSS queries alone" row is a floor for extract only if it selects what extract
    selects: the same listed lessons on every page."""
    selectors = load_config(CONFIG_PATH).selectors
    pages = sample_pages(12, 6)
    listed = [len(extract(html, url, selectors).listed) for html, url in pages]
    assert sum(listed) > 0
    assert [select_only(html, url, selectors) for html, url in pages] == listed


def test_scale_streams_into_a_searchable_archive(results):
    scale = load(results)["scale"]
    assert scale["lessons"] == scale["lessons_new"] == PROFILES["smoke"]["scale"]["n"]
    assert scale["programs"] > 0
    for key in ("rows_per_s", "peak_rss_mb", "db_mb", "refresh_search_s"):
        assert positive(scale[key]), key
    for name, stats in scale["latency_ms"].items():
        assert stats["count"] > 0 and stats["p50"] <= stats["p95"] <= stats["max"], name


def test_incremental_recrawls_are_conditional_and_find_the_new_lesson(results):
    incremental = load(results)["incremental"]
    first, unchanged, changed = (incremental[k] for k in ("first", "unchanged", "changed"))
    assert unchanged["requests"] < first["requests"]
    assert unchanged["wire_bytes"] < first["wire_bytes"]
    # Everything, robots.txt too, is asked conditionally, and nothing has changed.
    assert unchanged["unconditional_sample"] == []
    # Page requisites: captured by the first crawl, none asked again by an unchanged re-crawl.
    assert first["requisite_requests"] > 0
    assert unchanged["requisite_requests"] == 0
    assert unchanged["lessons_new"] == unchanged["lessons_changed"] == 0
    assert changed["new_lesson_found"] is True
    assert changed["edited_detected"] == changed["edited"] >= 1
