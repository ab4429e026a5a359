"""Every cost of a crawl is bounded, whatever the site sends: the work of one page (a parse runs in
a child process with a time budget, and structure no real page has is refused before parsing),
the work of one run (caps on what it discovers, no listing page past its own "Page N of M"),
and the run's deadline always fires. Odd answers fail their page with what the server did.

Against the hostile copy of the fixture site (tests/site/hostile.py), never a mock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time

import pytest
from sqlite_utils import Database

from pipeline import isolate
from pipeline import page as page_module
from pipeline.extract import extract
from pipeline.frontier import UrlScope
from pipeline.page import MAX_DEPTH, PageRefused, check_structure, read_page
from pipeline.reparse import reparse
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, START_SLUG, local_config
from tests.site.hostile import CASES, ENDLESS_PREFIX, EndlessSite, HostileSite
from tests.test_hostile_site import MAX_RSS_MB, crawl_process

VICTIM = "soft-eyes"
VICTIM_PATH = f"/video/{VICTIM}/"


def rows(db_path, sql, params=()):
    return [dict(r) for r in Database(db_path).query(sql, params)]


def page_row(db_path, path):
    (row,) = rows(db_path, "select * from pages where url like ?", [f"%{path}"])
    return row


def last_run(db_path):
    return rows(db_path, "select * from runs order by id desc limit 1")[0]


def lesson_slugs(db_path):
    return {r["slug"] for r in rows(db_path, "select slug from lessons")}


def limited(config, **limits):
    return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))


def hostile_response(case: str, site: HostileSite, slug: str = VICTIM) -> bytes:
    """The body the hostile site sends for ``slug``'s page under ``case``."""
    response = site._route(f"/video/{slug}/", "")
    return CASES[case](response, site.url).body


# -- the work of one page ----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_deeply_nested_page_is_refused_and_the_run_goes_on_within_its_deadline(tmp_path):
    db_path = tmp_path / "micropause.db"
    with HostileSite(cases={VICTIM_PATH: ["deep-nesting"] * 10}) as site:
        config = local_config(site, concurrency=2, max_run_seconds=60.0)
        began = time.monotonic()
        report = crawl_into_archive(config, db_path)
        took = time.monotonic() - began
        assert (VICTIM_PATH, "deep-nesting") in site.served
    # Lexbor took 204 s over this page; the run's deadline of 60 s never had to fire.
    assert took < 60 and not report.result.deadline_passed
    error = page_row(db_path, VICTIM_PATH)["error"]
    assert error.startswith("refused before parsing: elements nested more than 512 deep")
    assert last_run(db_path)["status"] == "incomplete"
    # Every lesson beside it is archived.
    assert {START_SLUG, "the-heavy-arms"} <= lesson_slugs(db_path)
    assert VICTIM not in lesson_slugs(db_path)
    # reparse reads the same capture within the same bounds: refused, counted, no lesson.
    again = reparse(config, db_path)
    assert again.pages_refused == 1
    assert VICTIM not in lesson_slugs(db_path)


@pytest.mark.timeout(120)
def test_a_title_of_megabytes_of_whitespace_is_read_in_linear_time(tmp_path):
    db_path = tmp_path / "micropause.db"
    with HostileSite(cases={VICTIM_PATH: ["whitespace-title"] * 10}) as site:
        body = hostile_response("whitespace-title", site)
        assert 4_900_000 < len(body) < local_config(site).politeness.max_response_bytes
        report = crawl_into_archive(local_config(site, max_run_seconds=60.0), db_path)
    assert report.result.complete and report.result.elapsed < 60
    assert page_row(db_path, VICTIM_PATH)["error"] is None
    # The spaces were typed (kept inside the text); only the ends are trimmed.
    (title,) = [
        r["title"] for r in rows(db_path, "select title from lessons where slug = ?", [VICTIM])
    ]
    assert title == "\u00ad"


@pytest.mark.parametrize(
    ("run", "read"),
    [
        (" " * 2_000_000, " " * 2_000_000),
        ("\n" * 2_000_000, " "),
        (" \t " * 700_000, " "),
        ("\u00ad" * 2_000_000, "\u00ad" * 2_000_000),
        ("\u00ad\n" * 1_000_000, "\u00ad " * 1_000_000),
    ],
    ids=["spaces", "newlines", "tabs", "soft-hyphens", "soft-hyphen-newlines"],
)
def test_whitespace_runs_of_any_kind_are_folded_in_linear_time(site, run, read):
    """Runs of millions of characters, read well inside the page budget (the fold was
    quadratic: 9 s at 32 000 characters). Typed spaces are kept; layout is one space."""
    config = local_config(site)
    html = f'<h1 class="entry-title">a{run}b\u00ad{" " * 1_000_000}c</h1>'
    began = time.monotonic()
    page = extract(html, site.lesson_url(VICTIM), config.selectors)
    assert time.monotonic() - began < config.limits.page_seconds
    assert page.lesson.title == f"a{read}b\u00ad{' ' * 1_000_000}c"


def test_a_page_count_of_a_million_digits_is_read_in_linear_time(site):
    config = local_config(site)
    html = f'<div class="wp-pagenavi"><span class="pages">Page {"1" * 3_000_000}</span></div>'
    began = time.monotonic()
    page = extract(html, site.lesson_url(VICTIM), config.selectors)
    assert time.monotonic() - began < config.limits.page_seconds
    assert page.page_count is None


@pytest.mark.parametrize(
    ("html", "deep"),
    [
        ("<div>" * (MAX_DEPTH + 1), True),
        ("<span><b>" * (MAX_DEPTH // 2 + 1), True),
        ("<div>" * MAX_DEPTH, False),
        # Elements that cannot nest, however many.
        ("<p>" * 100_000 + "<li>" * 100_000 + "<br>" * 100_000 + "<img src=x>" * 10_000, False),
        ('<svg><path d="M0"/>' + '<path d="M1"/>' * 100_000 + "</svg>", False),
        # Tags inside scripts, styles and comments are text.
        ("<script>" + "if (a<b) {}" * 100_000 + "</script>", False),
        ("<STYLE>" + "<div>" * 10_000 + "</STYLE><div>", False),
        ("<!--" + "<div>" * 10_000 + "-->", False),
        # Closed as it goes: as deep as the widest, not as long.
        ("<div></div>" * 100_000, False),
        # "<div <div ..." is one tag with odd attributes, as a browser reads it.
        ("<div " * 100_000 + ">", False),
    ],
    ids=[
        "div-past",
        "inline-past",
        "div-at-limit",
        "flat",
        "self-closed",
        "script",
        "style-upper",
        "comment",
        "siblings",
        "attrs",
    ],
)
def test_structure_deeper_than_any_page_is_refused_before_parsing(html, deep):
    began = time.monotonic()
    if deep:
        with pytest.raises(PageRefused, match="nested more than 512 deep"):
            check_structure(html)
    else:
        check_structure(html)
    assert time.monotonic() - began < 5


def test_every_fixture_page_passes_the_structure_check(site):
    config = local_config(site)
    scope = UrlScope(config, site.url)
    for path in site.crawlable_paths()[:40]:
        response = site._route(path, "")
        if response.status == 200 and b"<html" in response.body:
            read_page(site.url + path, response.body, "text/html", scope, config.selectors)


@pytest.mark.timeout(120)
def test_a_page_whose_parse_never_returns_fails_at_its_budget(archived_hostile, monkeypatch):
    site, db_path = archived_hostile
    real_extract = page_module.extract

    def stuck(html, url, selectors):
        if url.endswith(VICTIM_PATH):
            time.sleep(3600)  # stands in for C code that does not return to Python
        return real_extract(html, url, selectors)

    monkeypatch.setattr(page_module, "extract", stuck)
    site.edit(VICTIM, description=["Changed, so the page is read again (not a 304)."])
    config = limited(local_config(site, concurrency=2), page_seconds=1.0)
    report = crawl_into_archive(config, db_path)
    assert not report.result.complete and not report.result.deadline_passed
    assert page_row(db_path, VICTIM_PATH)["error"] == (
        "reading the page took longer than its budget of 1 s (limits.page_seconds): stopped"
    )
    assert last_run(db_path)["status"] == "incomplete"
    assert rows(db_path, "select slug from lessons where removed_at is not null") == []


@pytest.mark.timeout(120)
def test_the_runs_deadline_fires_whatever_a_page_is_doing(archived_hostile, monkeypatch):
    site, db_path = archived_hostile
    real_extract = page_module.extract

    def stuck(html, url, selectors):
        if url.endswith(VICTIM_PATH):
            time.sleep(3600)
        return real_extract(html, url, selectors)

    monkeypatch.setattr(page_module, "extract", stuck)
    site.edit(VICTIM, description=["Changed, so the page is read again (not a 304)."])
    config = limited(local_config(site, max_run_seconds=3.0), page_seconds=600.0)
    began = time.monotonic()
    report = crawl_into_archive(config, db_path)
    # Generous: the deadline is 3 s, the stuck parse would take an hour.
    assert time.monotonic() - began < 60
    assert report.result.deadline_passed and not report.result.complete
    assert last_run(db_path)["status"] == "incomplete"


@pytest.fixture
def archived_hostile(tmp_path):
    db_path = tmp_path / "micropause.db"
    with HostileSite() as site:
        crawl_into_archive(local_config(site), db_path)
        yield site, db_path


# -- the work of one run -----------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_site_that_never_ends_stops_at_the_lesson_cap_with_flat_memory(tmp_path):
    config_path = tmp_path / "site.toml"
    text = CONFIG_PATH.read_text()
    config_path.write_text(text.replace("max_lessons = 10_000", "max_lessons = 400"))
    db_path = tmp_path / "micropause.db"
    with EndlessSite(listed=500) as site:
        code, output, rss_mb = crawl_process(
            site, db_path, "--config", str(config_path), "--concurrency", "4", timeout=200
        )
        endless = [r for r in site.requests if r.path.startswith(ENDLESS_PREFIX)]
    assert code == 0, output
    assert "stopped discovering at limits.max_lessons = 400" in output
    assert rss_mb < MAX_RSS_MB
    assert len(endless) < 400
    run = last_run(db_path)
    assert run["status"] == "incomplete"
    assert rows(db_path, "select slug from lessons where removed_at is not null") == []


def test_the_page_cap_stops_discovery_and_the_run_is_incomplete(archived_hostile):
    site, db_path = archived_hostile
    site.unpublish("jaw-and-tongue")  # gone, but a capped run must not say so
    config = limited(local_config(site), max_pages=20)
    report = crawl_into_archive(config, db_path)
    assert report.result.capped == "limits.max_pages = 20"
    assert len(report.result.pages) == 20
    assert not report.result.complete
    assert last_run(db_path)["status"] == "incomplete"
    assert rows(db_path, "select slug from lessons where removed_at is not null") == []


_LISTING = re.compile(r"^/video/([^/]+)/page/(\d+)/$")


@pytest.mark.parametrize("listing_inference", [True, False], ids=["inference", "walk"])
def test_no_listing_page_past_its_own_page_count_is_requested(tmp_path, listing_inference):
    with HostileSite() as site:
        slugs = [lesson.slug for lesson in site.lessons]
        site._cases = {f"/video/{slug}/": ["pages-past-count"] * 5 for slug in slugs}
        site._cases.update(
            {
                f"/video/{slug}/page/{n}/": ["pages-past-count"] * 5
                for slug in slugs
                for n in range(2, site.page_count(slug) + 1)
            }
        )
        config = local_config(site, listing_inference=listing_inference)
        crawl_into_archive(config, tmp_path / "micropause.db")
        asked = [(m[1], int(m[2])) for r in site.requests if (m := _LISTING.match(r.path))]
        assert any(case == "pages-past-count" for _path, case in site.served)
        past = [(slug, n) for slug, n in asked if n > site.page_count(slug)]
    assert asked and past == []


# -- odd answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "error"),
    [
        (
            "unsolicited-304",
            "HTTP 304 Not Modified to a request that sent no validator (gave up after 4 attempts)",
        ),
        ("empty-200", "HTTP 200 with an empty body (gave up after 4 attempts)"),
        ("binary-as-html", "body is not HTML though sent as HTML: binary data, starting"),
    ],
)
def test_an_odd_answer_fails_its_page_with_what_the_server_did(tmp_path, case, error):
    db_path = tmp_path / "micropause.db"
    with HostileSite(cases={VICTIM_PATH: [case] * 10}) as site:
        report = crawl_into_archive(local_config(site), db_path)
    assert page_row(db_path, VICTIM_PATH)["error"].startswith(error)
    assert not report.result.complete
    # Not read as a theme change (a page with no title).
    assert report.result.untitled == set() and report.health == ()
    assert START_SLUG in lesson_slugs(db_path)


@pytest.mark.parametrize("case", ["unsolicited-304", "empty-200"])
def test_an_odd_answer_once_is_retried_and_the_page_kept(tmp_path, case):
    db_path = tmp_path / "micropause.db"
    with HostileSite(cases={VICTIM_PATH: [case]}) as site:
        report = crawl_into_archive(local_config(site), db_path)
        assert (VICTIM_PATH, case) in site.served
    assert report.result.complete and report.result.stats.retries >= 1
    assert VICTIM in lesson_slugs(db_path)


# -- the child a page is read in ---------------------------------------------------------------


def _slow(seconds):
    time.sleep(seconds)
    return "late"


def _dies():
    os._exit(3)


def _raises():
    raise RuntimeError("a bug on this page")


def _big():
    return "x" * 5_000_000  # more than a pipe holds: read while the child writes


async def _in_workers(fn, *args, seconds):
    async with isolate.Workers(2) as workers:
        # Twice: the second time the same worker answers, or a new one after a failure.
        await asyncio.gather(
            *(workers.run(fn, *args, seconds=seconds) for _ in range(3)), return_exceptions=True
        )
        return await workers.run(fn, *args, seconds=seconds)


@pytest.mark.parametrize("run", ["sync", "async", "workers"])
def test_the_child_answers_fails_or_is_stopped_with_a_message(run):
    def call(fn, *args, seconds=5.0):
        if run == "sync":
            return isolate.run_sync(fn, *args, seconds=seconds)
        if run == "workers":
            return asyncio.run(_in_workers(fn, *args, seconds=seconds))
        return asyncio.run(isolate.run_async(fn, *args, seconds=seconds))

    assert call(len, "abc") == 3
    assert len(call(_big)) == 5_000_000
    with pytest.raises(isolate.PageFailed, match=r"^RuntimeError: a bug on this page$"):
        call(_raises)
    with pytest.raises(isolate.PageFailed, match="ended without an answer"):
        call(_dies)
    began = time.monotonic()
    with pytest.raises(isolate.BudgetExceeded, match=r"budget of 0\.5 s"):
        call(_slow, 60, seconds=0.5)
    assert time.monotonic() - began < 30
