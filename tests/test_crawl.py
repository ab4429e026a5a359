"""Crawling the local fixture site end to end: real sockets, real status codes, real headers."""

from __future__ import annotations

import json
import socket

import pytest
from sqlite_utils import Database

from pipeline.run import crawl_into_archive
from tests.conftest import local_config
from tests.site.server import FixtureSite

# The fixture's robots.txt disallows this lesson although listings link to it.
DISALLOWED = {"staff-preview"}


def expected_lessons(site_lessons):
    """The lessons a polite crawler can find: listed somewhere and allowed by robots.txt."""
    return {
        lesson.slug: lesson
        for lesson in site_lessons
        if lesson.listed and lesson.slug not in DISALLOWED
    }


def rows(db_path, sql):
    return [dict(r) for r in Database(db_path).query(sql)]


def test_every_listed_lesson_is_archived_with_its_own_pages_text(crawled_archive, site_lessons):
    expected = expected_lessons(site_lessons)
    archived = {r["slug"]: r for r in rows(crawled_archive, "select * from lessons")}
    assert set(archived) == set(expected)
    for slug, lesson in expected.items():
        row = archived[slug]
        assert row["title"] == lesson.title
        # The lesson's own page is authoritative, not the (sometimes shorter) listing text.
        assert row["description"] == "\n\n".join(lesson.description)
        assert row["author"] == lesson.author
        assert row["published"] == lesson.published
        assert row["url"].endswith(f"/video/{slug}/")


@pytest.mark.parametrize("per_page", [3, 1])
def test_all_lessons_found_without_sitemap_though_no_listing_holds_them_all(tmp_path, per_page):
    # One lesson a page: listings run past the pages queued ahead at once (crawl.LOOKAHEAD).
    with FixtureSite(sitemap=False, per_page=per_page) as site:
        report = crawl_into_archive(local_config(site), tmp_path / "a.db")
        expected = expected_lessons(site.lessons)
        longest_listing = max(len(site.listing(slug)) for slug in expected)
        paths = {r.path for r in site.requests}
    archived = {r["slug"] for r in rows(tmp_path / "a.db", "select slug from lessons")}
    assert archived == set(expected)
    assert not any(p.endswith(".xml") and p != "/wp-sitemap.xml" for p in paths)
    # No single lesson's listing names every other lesson: the frontier had to combine them.
    assert longest_listing < len(expected) - 1
    # A site without a sitemap (404) is a complete run, not a failed page.
    assert report.result.complete


def test_program_typed_two_ways_is_one_program_with_parts_in_order_and_gap(crawled_archive):
    programs = rows(crawled_archive, "select * from programs")
    slugs = [p["slug"] for p in programs]
    assert len(slugs) == len(set(slugs))
    dive = [p for p in programs if "dive-deeper" in p["slug"]]
    assert len(dive) == 1
    (program,) = dive
    lessons = rows(
        crawled_archive,
        f"select title, part from lessons where program_id = {program['id']} order by part",
    )
    spellings = {t["title"].rsplit(",", 1)[0] for t in lessons}
    assert len(spellings) >= 2  # the site really typed it more than one way
    parts = [r["part"] for r in lessons]
    assert parts == sorted(parts)
    assert json.loads(program["parts_missing"]) == [
        n for n in range(1, max(parts) + 1) if n not in parts
    ]
    assert json.loads(program["parts_missing"])  # the never-listed part is a recorded gap
    assert program["lesson_count"] == len(lessons)


def test_program_name_with_a_comma_is_split_on_the_last_number(crawled_archive):
    names = [p["name"] for p in rows(crawled_archive, "select name from programs")]
    assert any(name.startswith("Neck, shoulders") for name in names)


def test_same_title_lessons_are_both_kept(crawled_archive):
    dupes = rows(
        crawled_archive,
        "select title, count(*) n, count(distinct description) d from lessons "
        "group by title having n > 1",
    )
    assert dupes and all(d["d"] == d["n"] for d in dupes)


def test_entities_are_decoded(crawled_archive):
    text = " ".join(
        r["title"] + r["description"] for r in rows(crawled_archive, "select * from lessons")
    )
    assert "&#8211;" not in text and "&amp;" not in text
    assert "\u2013" in text and "\u2019" in text


def test_robots_disallowed_urls_are_never_requested(site, config, tmp_path):
    crawl_into_archive(config, tmp_path / "a.db")
    paths = [r.path for r in site.requests]
    assert "/robots.txt" in paths
    assert not any(p.startswith("/video/staff-preview/") for p in paths)
    assert not any(p.startswith("/wp-admin/") for p in paths)


def test_concurrency_cap_and_user_agent_on_every_request(tmp_path):
    with FixtureSite(latency=0.02) as site:
        config = local_config(site, concurrency=3)
        crawl_into_archive(config, tmp_path / "a.db")
        assert site.max_in_flight == 3  # reached, never exceeded
        agents = {r.headers.get("user-agent") for r in site.requests}
    assert agents == {config.politeness.user_agent}


def test_a_crawl_with_a_delay_takes_at_least_the_delay_per_request(tmp_path):
    # A lower bound the schedule guarantees (tests/test_fetch.py checks the schedule itself):
    # no request starts before its turn, so n requests span at least n - 1 delays.
    with FixtureSite() as site:
        config = local_config(site, concurrency=2, delay=0.05)
        report = crawl_into_archive(config, tmp_path / "a.db", max_pages=8)
        requests = len(site.requests)
    assert requests >= 8
    assert report.result.elapsed >= (requests - 1) * 0.05


def test_retry_after_and_dropped_connection_are_retried(tmp_path):
    start = "/video/forward-fold-circle-the-knees/"
    faults = {start: ["503", "reset"], "/video/forward-fold-circle-the-knees/page/2/": ["429"]}
    with FixtureSite(faults=faults) as site:
        # Every listing walked, so that the listing page with the fault is asked for.
        config = local_config(site, listing_inference=False)
        report = crawl_into_archive(config, tmp_path / "a.db")
        times = [r.time for r in site.requests if r.path == start]
    assert report.result.complete
    assert report.result.stats.retries >= 3
    assert len(times) == 3
    # Retry-After: 1 is honoured up to the configured cap (0.2 s in tests).
    assert times[1] - times[0] >= 0.19


def test_second_crawl_of_same_site_changes_no_row(site, config, tmp_path):
    db_path = tmp_path / "a.db"
    crawl_into_archive(config, db_path)
    before = rows(db_path, "select * from lessons order by id")
    programs_before = rows(db_path, "select * from programs order by id")
    report = crawl_into_archive(config, db_path)
    after = rows(db_path, "select * from lessons order by id")
    for row in (*before, *after):
        row.pop("last_seen")
    assert after == before
    assert rows(db_path, "select * from programs order by id") == programs_before
    assert (report.counts.new, report.counts.changed, report.counts.removed) == (0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("max_pages", [5])
def test_budget_makes_run_incomplete_and_removes_nothing(site, config, tmp_path, max_pages):
    db_path = tmp_path / "a.db"
    crawl_into_archive(config, db_path)
    report = crawl_into_archive(config, db_path, max_pages=max_pages)
    assert not report.result.complete
    assert report.counts.removed == 0
    assert rows(db_path, "select count(*) n from lessons where removed_at is not null")[0]["n"] == 0
    assert rows(db_path, f"select status from runs where id = {report.run_id}")[0] == {
        "status": "incomplete"
    }
