"""A start URL that cannot give the archive its lessons fails loudly: one line naming the
cause and a non-zero exit, never an "ok" run that found little. Against the fixture site on
127.0.0.1."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.crawl import CrawlResult, ListingPromise
from pipeline.extract import RawLesson
from pipeline.fetch import FetchStats
from pipeline.health import check_health
from tests.conftest import CONFIG_PATH, START_SLUG
from tests.site.hostile import HostileSite
from tests.site.server import FixtureSite
from tests.test_health import THRESHOLDS


def crawl(db_path, start_url, *extra):
    return CliRunner().invoke(
        main,
        [
            "crawl",
            "--config",
            str(CONFIG_PATH),
            "--db",
            str(db_path),
            "--start-url",
            start_url,
            "--delay",
            "0",
            *extra,
        ],
    )


def runs(db_path):
    with sqlite3.connect(db_path) as db:
        found = db.execute("select status, error from runs order by id").fetchall()
    db.close()
    return found


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "micropause.db"


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/video/no-such-lesson/", "answered 404"),
        ("/about/", "is not a lesson page of the site"),
        ("/video/staff-preview/", "is disallowed by robots.txt"),
    ],
    ids=["404", "not-a-lesson", "disallowed"],
)
def test_a_start_url_that_gives_no_lessons_fails_with_exit_2_naming_it(db_path, path, cause):
    with FixtureSite(sitemap=False) as site:
        result = crawl(db_path, site.url + path)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"start URL {site.url}{path} {cause}" in line
    assert runs(db_path)[0][0] == "failed"
    with sqlite3.connect(db_path) as db:
        assert db.execute("select count(*) from lessons").fetchone() == (0,)
    db.close()


def test_a_404_start_url_is_named_even_when_the_sitemap_gives_the_lessons(db_path):
    with FixtureSite() as site:
        result = crawl(db_path, site.url + "/video/no-such-lesson/")
    assert result.exit_code == 0, result.output
    assert f"start URL {site.url}/video/no-such-lesson/ answered 404" in result.output


def test_pages_that_link_to_another_host_are_refused_naming_both_hosts(db_path):
    with FixtureSite(link_base="http://localhost:{port}") as site:
        port = site.url.rsplit(":", 1)[1]
        result = crawl(db_path, site.url + "/video/forward-fold-circle-the-knees/")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"the pages of 127.0.0.1:{port} link their lessons to localhost:{port}" in line
    assert runs(db_path)[0][0] == "failed"


def test_a_copy_whose_pages_name_the_real_site_is_crawled_in_place(db_path, crawled_archive):
    with FixtureSite(link_base="https://movementality.se") as site:
        result = crawl(db_path, site.url + "/video/forward-fold-circle-the-knees/")
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db_path) as db:
        urls = [url for (url,) in db.execute("select url from lessons order by slug")]
    db.close()
    with sqlite3.connect(crawled_archive) as db:
        (expected,) = db.execute("select count(*) from lessons").fetchone()
    db.close()
    assert len(urls) == expected and all(url.startswith(site.url) for url in urls)


def one_lesson_run(pages: int, full_page: int | None) -> CrawlResult:
    url = "http://site.test/video/start/"
    return CrawlResult(
        lessons={url: RawLesson(url, "Title", "Text.", None, None)},
        pages={},
        stats=FetchStats(),
        promised=ListingPromise(pages=pages, full_page=full_page),
    )


def test_a_first_run_that_found_fewer_lessons_than_its_listings_promise_is_unhealthy():
    # "Page 1 of 17", 3 a page: at least 16 * 3 + 1 others, and the lesson itself.
    (failure,) = check_health(one_lesson_run(17, 3), THRESHOLDS, baseline=None)
    assert failure.name == "fewer_than_listed"
    assert failure.detail.startswith("1 lessons found, but a listing of 17 pages means at least 50")
    # Without a page 2 .. 16 read, a page holds at least one lesson (page 1 may hold sticky
    # posts besides its own three).
    (failure,) = check_health(one_lesson_run(17, None), THRESHOLDS, baseline=None)
    assert "at least 18" in failure.detail
    assert check_health(one_lesson_run(0, None), THRESHOLDS, baseline=None) == []  # no listing
    # Once a healthy run exists, the run is held to its lessons instead.
    assert check_health(one_lesson_run(17, 3), THRESHOLDS, baseline={"/video/start/"}) == []


def test_a_full_first_crawl_finds_what_its_listings_promise(crawled_archive):
    with sqlite3.connect(crawled_archive) as db:
        assert db.execute("select status, health from runs").fetchall() == [("ok", "[]")]
    db.close()


def test_a_partial_copy_whose_other_lessons_answer_404_fails_its_first_health_check(db_path):
    # Only the start page and its listing answer, as a copy saved from one page would.
    others = [x.slug for x in FixtureSite().lessons if x.slug != START_SLUG]
    cases = {f"/video/{slug}/": ["redirect-to-404"] * 5 for slug in others}
    with HostileSite(cases=cases, sitemap=False) as site:
        result = crawl(db_path, site.lesson_url(START_SLUG))
    assert result.exit_code == 3, result.output
    assert "UNHEALTHY fewer_than_listed: 1 lessons found, but a listing of" in result.output
    with sqlite3.connect(db_path) as db:
        assert db.execute("select status from runs").fetchall() == [("unhealthy",)]
        # What it did read is saved: the run is kept, marked unhealthy, never "ok".
        assert db.execute("select slug from lessons").fetchall() == [(START_SLUG,)]
    db.close()
