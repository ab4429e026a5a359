"""A first crawl that proves listings instead of walking them, against the fixture site: about
two requests per lesson, and the same archive as walking every listing, also when the site's
listings do not follow its categories."""

from __future__ import annotations

import dataclasses

import pytest
from sqlite_utils import Database

from pipeline.run import crawl_into_archive
from tests.conftest import CONTENT, PROGRAMS, local_config
from tests.site.server import FixtureSite, Lesson, load_lessons

# Requests that are not lessons' pages: robots.txt, sitemaps, redirects.
OVERHEAD = 10


def archive_rows(db_path):
    db = Database(db_path)
    return list(db.query(CONTENT)), list(db.query(PROGRAMS))


def first_crawl(site, db_path, **options):
    site.reset_stats()
    report = crawl_into_archive(local_config(site, **options), db_path)
    return report, site.request_count


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """The fixture site crawled the old way, every listing walked: what must be matched."""
    rows = {}
    for sitemap in (True, False):
        db_path = tmp_path_factory.mktemp("walked") / "micropause.db"
        with FixtureSite(sitemap=sitemap) as site:
            report, requests = first_crawl(site, db_path, listing_inference=False)
        assert report.result.complete
        rows[sitemap] = archive_rows(db_path), requests
    return rows


@pytest.mark.parametrize("sitemap", [True, False], ids=["sitemap", "no-sitemap"])
def test_a_first_crawl_costs_about_two_requests_a_lesson_and_archives_the_same(
    walked, tmp_path, sitemap
):
    with FixtureSite(sitemap=sitemap) as site:
        report, requests = first_crawl(site, tmp_path / "micropause.db")
    lessons = report.counts.lessons_found
    assert report.result.complete
    assert requests <= 3 * lessons + OVERHEAD
    (walked_rows, walked_requests) = walked[sitemap]
    assert requests < walked_requests / 3
    assert archive_rows(tmp_path / "micropause.db") == walked_rows
    listings = report.result.listings
    assert listings.inferred > listings.walked > 0 and listings.contradicted == 0
    (run,) = Database(tmp_path / "micropause.db").query("select * from runs")
    assert (run["listings_walked"], run["listings_inferred"], run["listings_contradicted"]) == (
        listings.walked,
        listings.inferred,
        0,
    )


def test_listings_that_ignore_the_categories_are_noticed_and_walked(tmp_path):
    with FixtureSite(sitemap=False, related="tags") as site:
        truth, _ = first_crawl(site, tmp_path / "walked.db", listing_inference=False)
        report, _ = first_crawl(site, tmp_path / "inferred.db")
    assert report.result.complete and truth.result.complete
    assert report.result.listings.contradicted > 0
    assert archive_rows(tmp_path / "inferred.db") == archive_rows(tmp_path / "walked.db")


def test_a_lesson_found_only_past_page_one_of_one_odd_listing_is_still_found(tmp_path):
    # Four lessons in a category of their own, so no other listing shows them; one lesson's
    # listing ends with them (more than a page's worth, so its page count says so).
    loners = [
        Lesson(
            slug=f"loner-{n}",
            title=f"Loner {n}",
            published=f"2019-01-0{n}",
            modified=f"2019-01-0{n}T12:00:00Z",
            categories=["Solitary"],
            description=[f"Only one listing shows loner {n}."],
        )
        for n in range(1, 5)
    ]
    lessons = [*load_lessons(), *loners]
    odd = "back-to-work-gently"
    with FixtureSite(
        lessons, sitemap=False, extra_listed={odd: [lesson.slug for lesson in loners]}
    ) as site:
        assert [item.slug for item in site.listing(odd)[-4:]] == [x.slug for x in loners]
        report, _ = first_crawl(site, tmp_path / "micropause.db")
    assert report.result.complete
    slugs = {row["slug"] for row in Database(tmp_path / "micropause.db").query(CONTENT)}
    assert {lesson.slug for lesson in loners} <= slugs
    assert report.result.listings.contradicted >= 1


def test_listing_inference_off_walks_every_listing(tmp_path):
    with FixtureSite() as site:
        report, _ = first_crawl(site, tmp_path / "micropause.db", listing_inference=False)
        asked = {r.path for r in site.requests}
        every_listing_page = {p for p in site.crawlable_paths() if "/page/" in p}
    assert report.result.listings.inferred == 0
    assert every_listing_page <= asked


def test_a_site_whose_pages_show_no_categories_gets_the_full_walk(tmp_path):
    with FixtureSite() as site:
        config = local_config(site)
        selectors = dataclasses.replace(config.selectors, category_prefix="")
        config = dataclasses.replace(config, selectors=selectors)
        site.reset_stats()
        report = crawl_into_archive(config, tmp_path / "micropause.db")
    assert report.result.complete
    assert report.result.listings.inferred == 0
