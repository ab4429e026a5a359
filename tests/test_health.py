"""Health checks: a run that cannot be trusted says why, and never marks lessons removed."""

from __future__ import annotations

import httpx
import pytest
from sqlite_utils import Database

from pipeline.archive import PageRecord
from pipeline.config import Health
from pipeline.crawl import CrawlResult
from pipeline.errors import HealthCheckFailed
from pipeline.extract import RawLesson, extract
from pipeline.fetch import FetchStats
from pipeline.health import check_health
from pipeline.run import crawl_into_archive
from tests.conftest import START_SLUG, local_config
from tests.site.server import FixtureSite

THRESHOLDS = Health(max_lesson_drop=0.2, max_failed_pages=0.05, max_empty_descriptions=0.5)
SITE = "http://site.test"


def lesson_page(slug, **fields):
    return PageRecord(url=f"{SITE}/video/{slug}/", kind="lesson", **{"status": 200, **fields})


def result_of(pages, lessons=None, **fields):
    """A crawl's result: lessons found on every lesson page unless ``lessons`` says otherwise."""
    if lessons is None:
        lessons = [p.url for p in pages if p.kind == "lesson" and p.status == 200]
    return CrawlResult(
        lessons={url: RawLesson(url, "Title", "Text.", None, None) for url in lessons},
        pages={p.url: p for p in pages},
        stats=FetchStats(),
        **fields,
    )


def healthy_pages(n=20):
    return [lesson_page(f"lesson-{i}", listed=3) for i in range(n)]


def paths(n):
    """The identities of ``n`` lessons of healthy_pages: what a healthy run left."""
    return {f"/video/lesson-{i}/" for i in range(n)}


def names(failures):
    return [f.name for f in failures]


def test_a_run_that_saw_what_it_expected_is_healthy():
    assert check_health(result_of(healthy_pages()), THRESHOLDS, baseline=paths(20)) == []


def test_a_listing_page_without_lessons_fails_and_is_named():
    pages = [*healthy_pages(), PageRecord(f"{SITE}/video/a/page/2/", "listing", 200, listed=0)]
    (failure,) = check_health(result_of(pages), THRESHOLDS, baseline=paths(20))
    assert failure.name == "listing_empty"
    assert f"{SITE}/video/a/page/2/" in failure.detail
    assert "selectors.listed_lesson" in failure.detail


def test_pages_answered_not_modified_are_not_read_as_empty():
    pages = [*healthy_pages(), lesson_page("unchanged", status=304, listed=None)]
    assert check_health(result_of(pages), THRESHOLDS, baseline=paths(20)) == []


def test_a_lesson_page_without_title_fails():
    untitled = f"{SITE}/video/lesson-3/"
    result = result_of(healthy_pages(), untitled={untitled})
    (failure,) = check_health(result, THRESHOLDS, baseline=paths(20))
    assert failure.name == "untitled_lesson" and untitled in failure.detail


@pytest.mark.parametrize(
    ("found", "baseline", "fails"),
    [
        (80, 100, False),  # a drop of exactly max_lesson_drop is allowed
        (79, 100, True),
        (150, 100, False),  # growth is never a problem
        (1, None, False),  # the first run has nothing to compare with
    ],
)
def test_lessons_dropping_more_than_the_threshold_fails(found, baseline, fails):
    known = paths(baseline) if baseline is not None else None
    failures = check_health(result_of(healthy_pages(found)), THRESHOLDS, baseline=known)
    assert names(failures) == (["lesson_drop"] if fails else [])
    if fails:
        assert failures[0].detail.startswith(
            f"{baseline - found} of the {baseline} lessons of the last healthy run not found"
        )


def test_a_run_cut_short_by_its_page_budget_is_not_held_to_the_baseline():
    result = result_of(healthy_pages(5), budget_exhausted=True)
    assert check_health(result, THRESHOLDS, baseline=paths(100)) == []


def test_too_many_failed_pages_fails():
    failed = PageRecord(f"{SITE}/video/x/", "lesson", error="HTTP 503")
    one_in_21 = result_of([*healthy_pages(20), failed])
    assert check_health(one_in_21, THRESHOLDS, baseline=paths(20)) == []  # 4.8% <= 5%
    two_in_22 = result_of(
        [*healthy_pages(20), failed, PageRecord(f"{SITE}/video/y/", "lesson", error="reset")]
    )
    (failure,) = check_health(two_in_22, THRESHOLDS, baseline=paths(20))
    assert failure.name == "failed_pages"
    assert failure.detail.startswith("2 of 22 pages failed")


def test_lesson_pages_without_descriptions_fail_when_most_are_empty():
    pages = healthy_pages(4)
    result = result_of(pages)
    for url in list(result.lessons)[:2]:
        result.lessons[url] = RawLesson(url, "Title", "", None, None)
    assert check_health(result, THRESHOLDS, baseline=paths(4)) == []  # half may be empty, not more
    last = list(result.lessons)[2]
    result.lessons[last] = RawLesson(last, "Title", "", None, None)
    (failure,) = check_health(result, THRESHOLDS, baseline=paths(4))
    assert failure.name == "empty_descriptions"
    assert failure.detail.startswith("3 of 4 lesson pages read had no description")
    assert "selectors.description" in failure.detail


def test_every_failed_check_is_reported_in_a_stable_order():
    pages = [PageRecord(f"{SITE}/video/x/", "lesson", error="reset"), lesson_page("a", listed=0)]
    result = result_of(pages, untitled={f"{SITE}/video/a/"}, lessons=[])
    result.lessons[f"{SITE}/video/b/"] = RawLesson(f"{SITE}/video/b/", "Title", "", None, None)
    assert names(check_health(result, THRESHOLDS, baseline=paths(50))) == [
        "listing_empty",
        "untitled_lesson",
        "empty_descriptions",
        "lesson_drop",
        "failed_pages",
    ]


# -- the fixture site's theme updates, which the end-to-end tests rely on -------------------


@pytest.mark.parametrize(
    ("theme", "has_title", "lists"), [("divi", True, True), ("renamed", True, False)]
)
def test_fixture_themes_break_exactly_the_selectors_they_rename(theme, has_title, lists):
    with FixtureSite(theme=theme) as site:
        config = local_config(site)
        url = site.lesson_url(START_SLUG)
        page = extract(httpx.get(url).text, url, config.selectors)
    assert (page.lesson is not None) == has_title
    assert bool(page.listed) == lists
    assert page.page_count and page.page_count > 1  # pagination is still found


def test_fixture_theme_without_titles_keeps_its_listings():
    with FixtureSite(theme="untitled") as site:
        url = site.lesson_url(START_SLUG)
        page = extract(httpx.get(url).text, url, local_config(site).selectors)
    assert page.lesson is None and page.listed


def test_unknown_fixture_theme_is_refused():
    with pytest.raises(ValueError, match="unknown theme"):
        FixtureSite(theme="nope")


# -- end to end: a theme update on the real (local) site --------------------------------------


def test_lesson_pages_without_titles_make_the_run_unhealthy_and_remove_nothing(tmp_path):
    db_path = tmp_path / "a.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.unpublish("lying-down-letting-go")  # a removal that must wait for a healthy run
        site.theme = "untitled"
        with pytest.raises(HealthCheckFailed) as raised:
            crawl_into_archive(config, db_path)
    report = raised.value.report
    assert "untitled_lesson" in str(raised.value)
    assert report.counts.removed == 0
    db = Database(db_path)
    assert db.execute("select count(*) from lessons where removed_at is not null").fetchone() == (
        0,
    )
    status, health = db.execute(
        "select status, health from runs where id = ?", [report.run_id]
    ).fetchone()
    assert status == "unhealthy"
    assert "untitled_lesson" in health


def test_a_broken_description_selector_never_blanks_stored_text(tmp_path):
    db_path = tmp_path / "a.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        before = list(Database(db_path).query("select url, description from lessons"))
        site.theme = "textless"
        with pytest.raises(HealthCheckFailed) as raised:
            crawl_into_archive(config, db_path)
    assert [f.name for f in raised.value.report.health] == ["empty_descriptions"]
    db = Database(db_path)
    assert list(db.query("select url, description from lessons")) == before
    assert (
        db.execute("select count(*) from lesson_versions where event != 'created'").fetchone()[0]
        == 0
    )
