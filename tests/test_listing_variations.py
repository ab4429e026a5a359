"""Listings as a real WordPress site can show them, unlike the fixture's plain ones: sticky posts
on page 1, another per-page count, posts in many categories, a category of one post, posts
published on the same day in an order of each listing's own, a site that changes while it is
read. For each, a first crawl of about 150 lessons with no sitemap is as exact as walking every
listing, and costs about two requests a lesson."""

from __future__ import annotations

import dataclasses

import pytest
from sqlite_utils import Database

from benchmarks.synthetic import synthetic_lessons
from pipeline.run import crawl_into_archive
from tests.conftest import CONTENT, PROGRAMS, local_config, without_audits
from tests.site.server import DEFAULT_ROBOTS, FixtureSite, Lesson

SIZE = 150
# A proven first crawl asks each lesson's own page once, and walks a few listings, as many as
# it takes for every category to show in one: about one request more a lesson at 3 lessons a
# page (see benchmarks/README.md), more with fewer a page. Audits, stated apart there, are off.
WALKS_PER_LESSON = 1.0
# robots.txt, the sitemap's 404, and the few pages the walks add beyond one a lesson.
OVERHEAD = 15
MEMBERS_ONLY = "members-only-teaser"
TEASER = "/video/members-only-teaser/"


def archive_rows(db_path):
    db = Database(db_path)
    return list(db.query(CONTENT)), list(db.query(PROGRAMS))


def crawl(site, db_path, *, audits=True, **options):
    site.reset_stats()
    config = local_config(site, **options)
    if not audits:
        config = without_audits(config)
    report = crawl_into_archive(config, db_path)
    return report, site.request_count


def teaser(slug: str = MEMBERS_ONLY, n: int = 0, categories=("Members",)) -> Lesson:
    return Lesson(
        slug=slug,
        title=f"Members only: the full programme {n}",
        published="2025-12-24",
        modified="2025-12-24T12:00:00Z",
        categories=list(categories),
        description=["Become a member to see every lesson."],
        post_id=90_000 + n,
    )


def budget(lessons: int, per_page: int = 3, extra: int = 0) -> float:
    """What a first crawl of ``lessons`` may cost: ``extra`` for listings walked on purpose."""
    return lessons * (1 + WALKS_PER_LESSON * 3 / per_page) + OVERHEAD + extra


def exact_and_linear(tmp_path, lessons, *, extra=lambda site: 0, **site_options):
    """Crawl the site both ways: the archives are equal, and the proven crawl costs a small
    fraction of the walk and no more than ``budget``. Its report."""
    with FixtureSite(lessons, sitemap=False, **site_options) as site:
        truth, walked = crawl(site, tmp_path / "walked.db", listing_inference=False)
        report, requests = crawl(site, tmp_path / "proven.db", audits=False)
        allowed = budget(report.counts.lessons_found, site.per_page, extra(site))
    assert truth.result.complete and report.result.complete
    assert archive_rows(tmp_path / "proven.db") == archive_rows(tmp_path / "walked.db")
    assert requests <= allowed, (requests, allowed)
    assert requests < walked / 5
    return report


# A sticky post robots.txt allows is a lesson like any other, with a listing of its own.
WELCOME = teaser("a-sticky-welcome", 1, ["Members", "Everyday"])
STICKY_MODES = {
    # position, and which of the sticky posts robots.txt disallows
    "one-before-disallowed": ("before", [teaser()], True),
    "one-after-allowed": ("after", [WELCOME], False),
    "two-before-one-disallowed": ("before", [teaser(), WELCOME], True),
    "two-after-disallowed": ("after", [teaser(), teaser("members-only-more", 1)], "both"),
}


@pytest.mark.parametrize("mode", STICKY_MODES)
def test_sticky_posts_are_understood_not_contradicted(tmp_path, mode):
    position, stickies, disallowed = STICKY_MODES[mode]
    robots = DEFAULT_ROBOTS
    if disallowed:
        robots += f"Disallow: {TEASER}\n"
    if disallowed == "both":
        robots += "Disallow: /video/members-only-more/\n"
    report = exact_and_linear(
        tmp_path,
        [*synthetic_lessons(SIZE), *stickies],
        sticky=[x.slug for x in stickies],
        sticky_position=position,
        robots_txt=robots,
    )
    listings = report.result.listings
    assert listings.contradicted == 0
    assert listings.inferred > 10 * listings.walked


def in_many_categories(lessons):
    """Every third lesson in two more categories."""
    extra = ["Office", "Evening", "Travel"]
    return [
        dataclasses.replace(x, categories=[*x.categories, *extra[i % 3 : i % 3 + 2]])
        if i % 3 == 0
        else x
        for i, x in enumerate(lessons)
    ]


LONELY = (5, 60, 99)


def with_lonely_categories(lessons):
    """Three lessons each in a category no other post has."""
    return [
        dataclasses.replace(x, categories=[*x.categories, f"Only {x.slug}"]) if i in LONELY else x
        for i, x in enumerate(lessons)
    ]


def lonely_listings(site):
    """Only walking its listing tells that a category has no other post."""
    return sum(site.page_count(site.lessons[i].slug) - 1 for i in LONELY)


def on_the_same_days(lessons):
    """Lessons published in pairs on one day: WordPress orders each pair as it likes."""
    days = [x.published for x in lessons]
    return [dataclasses.replace(x, published=days[i - i % 2]) for i, x in enumerate(lessons)]


VARIATIONS = {
    "five-per-page": ({}, {"per_page": 5}),
    "two-per-page": ({}, {"per_page": 2}),
    "many-categories": ({"transform": in_many_categories}, {}),
    "a-category-of-one": ({"transform": with_lonely_categories, "extra": lonely_listings}, {}),
    "equal-dates": ({"transform": on_the_same_days}, {"ties": "per-listing"}),
}


@pytest.mark.parametrize("variation", VARIATIONS)
def test_listings_unlike_the_fixtures_are_proven_or_walked_alone(tmp_path, variation):
    lessons_options, site_options = VARIATIONS[variation]
    lessons = synthetic_lessons(SIZE)
    if transform := lessons_options.get("transform"):
        lessons = transform(lessons)
    extra = lessons_options.get("extra", lambda site: 0)
    report = exact_and_linear(tmp_path, lessons, extra=extra, **site_options)
    listings = report.result.listings
    # Whatever was contradicted was that listing alone, never the site at once.
    assert listings.inferred > 10 * max(1, listings.walked)


def test_a_listing_that_grows_while_it_is_read_is_read_to_its_end(tmp_path):
    lessons = synthetic_lessons(SIZE)
    news = dataclasses.replace(
        lessons[0],
        slug="published-during-the-crawl",
        title="Published during the crawl",
        published="2031-01-01",
        modified="2031-01-01T08:00:00Z",
        post_id=80_000,
    )
    with FixtureSite(lessons, sitemap=False) as site:
        # After every lesson's page 1 and some way into the walks.
        site.publish_after(200, news)
        report, requests = crawl(site, tmp_path / "proven.db", audits=False)
        assert requests <= budget(SIZE)
        assert report.result.listings.inferred > 10 * report.result.listings.walked
        # What the archive lacks, if anything, the next run finds: it equals a walk of the
        # site as it is now.
        crawl(site, tmp_path / "proven.db")
        crawl(site, tmp_path / "walked.db", listing_inference=False)
    assert archive_rows(tmp_path / "proven.db") == archive_rows(tmp_path / "walked.db")


def a_category_whose_walk_hides_its_owner() -> list[Lesson]:
    """Seven lessons of one category of their own. Its cheapest walk is the listing of the
    first by URL, and that lesson is the oldest, on no page 1: the walk leaves it out, as a
    listing leaves out its own lesson, and only a proven listing's later page shows it."""
    names = ["aa-solo-oldest", *(f"solo-{n}" for n in range(1, 7))]
    return [
        Lesson(
            slug=slug,
            title=f"Solo practice {i}",
            published=f"2024-03-{10 + i:02d}",
            modified=f"2024-03-{10 + i:02d}T08:00:00Z",
            categories=["Solo"],
            description=[f"A practice of its own, number {i}."],
            post_id=80_000 + i,
        )
        for i, slug in enumerate(names)
    ]


def test_a_lesson_only_a_proven_listing_shows_is_read_as_a_full_walk_reads_it(tmp_path):
    """With a sitemap every lesson is known from the start, so the walk for a category can be
    the listing of a lesson no page 1 shows. Its thumbnail, which only listings show, is still
    archived as a full walk archives it: one page of a proven listing is read for it, and the
    archives are equal row for row."""
    lessons = [*synthetic_lessons(SIZE), *a_category_whose_walk_hides_its_owner()]
    with FixtureSite(lessons, sitemap=True) as site:
        crawl(site, tmp_path / "walked.db", listing_inference=False)
        report, requests = crawl(site, tmp_path / "proven.db", audits=False)
    walked = {url[url.index("/video/") :] for url in report.result.listings_walked}
    assert "/video/aa-solo-oldest/" in walked  # the case this test is for
    assert archive_rows(tmp_path / "proven.db") == archive_rows(tmp_path / "walked.db")
    db = Database(tmp_path / "proven.db")
    (row,) = db.query("select thumbnail_url from lessons where slug = 'aa-solo-oldest'")
    assert row["thumbnail_url"]
    assert requests <= budget(report.counts.lessons_found)
