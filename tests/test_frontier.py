"""The frontier's rules, pure, with no network: which URLs a crawl may ask for, the one spelling
of each, and what it fetches next given a page and what the archive knows."""

from dataclasses import replace

import pytest

from pipeline.archive import KnownPage, PageRecord
from pipeline.config import load_config
from pipeline.extract import MAX_LISTING_PAGES, ListingPage, RawLesson
from pipeline.frontier import (
    LOOKAHEAD,
    DeferredListing,
    Frontier,
    UrlScope,
    lesson_of,
    sitemap_read,
)
from tests.conftest import CONFIG_PATH

ORIGIN = "http://127.0.0.1:8765/video/start/"
CONFIG = load_config(CONFIG_PATH).with_start_urls((ORIGIN,))
SCOPE = UrlScope(CONFIG, ORIGIN)
# Every listing walked to its end, as with `listing_inference = false`.
WALKING = UrlScope(replace(CONFIG, scope=replace(CONFIG.scope, listing_inference=False)), ORIGIN)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://127.0.0.1:8765/video/a", "http://127.0.0.1:8765/video/a/"),
        ("http://127.0.0.1:8765/video/a/page/1/", "http://127.0.0.1:8765/video/a/"),
        ("http://127.0.0.1:8765/video/a/page/3/?x=1#y", "http://127.0.0.1:8765/video/a/page/3/"),
        # The configured site's own links point at the host being crawled.
        ("https://movementality.se/video/a/", "http://127.0.0.1:8765/video/a/"),
        (f"http://127.0.0.1:8765/video/a/page/{MAX_LISTING_PAGES}/", None),
    ],
)
def test_in_scope_urls_have_one_spelling(url, canonical):
    if canonical is None:
        canonical = url
    assert SCOPE.canonical(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/video/bad\x01link/",
        "http://127.0.0.1:8765/video/bad\x7flink/",
        "http://127.0.0.1:8765/video/bad link/",
        "http://127.0.0.1:8765/video/bad\u0085link/",
        "http://[127.0.0.1:8765/video/a/",
        f"http://127.0.0.1:8765/video/a/page/{MAX_LISTING_PAGES + 1}/",
        "http://127.0.0.1:8765/video/a/page/1000000000000000000000/",
        "http://127.0.0.1:8765/video/a/page/" + "9" * 5000 + "/",
        "http://127.0.0.1:8765/video/a/page/0/",
        "http://127.0.0.1:8765/about/",
        "http://127.0.0.2:8765/video/a/",
    ],
)
def test_urls_a_browser_would_not_send_or_past_any_listing_are_out_of_scope(url):
    assert SCOPE.canonical(url) is None


# -- what to fetch next: the frontier's rules, on plain pages ---------------------------------


def lesson_url(slug: str) -> str:
    return f"http://127.0.0.1:8765/video/{slug}/"


def listing_url(slug: str, n: int) -> str:
    return lesson_url(slug) if n == 1 else f"{lesson_url(slug)}page/{n}/"


def listing(slug: str, n: int, of: int | None, listed=(), title="A lesson") -> ListingPage:
    """Page ``n`` of ``slug``'s listing, as extract returns it (page 1 is the lesson itself)."""
    lesson = RawLesson(lesson_url(slug), title, "Text.", None, None) if n == 1 else None
    return ListingPage(
        url=listing_url(slug, n),
        lesson=lesson,
        listed=tuple(lesson_url(s) for s in listed),
        page=n if of else None,
        page_count=of,
        next_url=None,
        page_urls=(),
    )


def urls(links, kind=None) -> list[str]:
    return [link.url for link in links if kind is None or link.kind == kind]


def known(*slugs: str) -> dict[str, KnownPage]:
    return {lesson_url(s): KnownPage("lesson", f'"{s}"', None) for s in slugs}


def test_a_first_crawl_queues_the_listed_lessons_and_the_next_pages_of_the_listing():
    frontier = Frontier(WALKING)
    links = frontier.after_page(listing("a", 1, of=40, listed=("b", "c")), "lesson")
    assert urls(links, "lesson") == [lesson_url("b"), lesson_url("c")]
    assert urls(links, "listing") == [listing_url("a", n) for n in range(2, LOOKAHEAD + 2)]


def test_a_first_crawl_walks_a_listing_to_its_last_page_one_lookahead_at_a_time():
    frontier = Frontier(WALKING)
    assert urls(frontier.after_page(listing("a", 5, of=40), "listing")) == [
        listing_url("a", 5 + LOOKAHEAD)
    ]
    # Past the end there is nothing more to queue, whatever the page's own links say.
    assert urls(frontier.after_page(listing("a", 40 - LOOKAHEAD + 1, of=40), "listing")) == []


def test_a_short_listing_queues_only_the_pages_it_has():
    links = Frontier(WALKING).after_page(listing("a", 1, of=3), "lesson")
    assert urls(links, "listing") == [listing_url("a", 2), listing_url("a", 3)]


def test_a_page_without_a_page_count_queues_its_own_pagination_links():
    page = replace(
        listing("a", 1, of=None), next_url=listing_url("a", 2), page_urls=(listing_url("a", 9),)
    )
    assert urls(Frontier(WALKING).after_page(page, "lesson"), "listing") == [
        listing_url("a", 9),
        listing_url("a", 2),
    ]


def test_a_recrawl_reads_a_listing_on_only_while_it_shows_new_lessons():
    frontier = Frontier(SCOPE, known("a", "b"))
    with_new = frontier.after_page(listing("a", 1, of=10, listed=("new", "b")), "lesson")
    assert urls(with_new, "listing") == [listing_url("a", 2)]
    only_known = frontier.after_page(listing("a", 2, of=10, listed=("b",)), "listing")
    assert urls(only_known) == [lesson_url("b")]
    assert frontier.deferred == [DeferredListing(listing_url("a", 2), 3, 10)]


def test_a_lesson_robots_txt_forbids_is_not_a_new_lesson():
    frontier = Frontier(SCOPE, known("a"))
    page = listing("a", 1, of=10, listed=("private",))
    links = frontier.after_page(page, "lesson", disallowed={lesson_url("private")})
    assert urls(links, "listing") == []
    assert len(frontier.deferred) == 1


def test_deferred_listings_are_walked_only_when_no_sitemap_vouched_for_every_lesson():
    vouched = Frontier(SCOPE, known("a"))
    vouched.after_page(listing("a", 1, of=30, listed=("a",)), "lesson")
    assert vouched.after_drained(sitemap_read=True) == []

    unvouched = Frontier(SCOPE, known("a"))
    unvouched.after_page(listing("a", 1, of=30, listed=("a",)), "lesson")
    walk = unvouched.after_drained(sitemap_read=False)
    assert urls(walk) == [listing_url("a", n) for n in range(2, 2 + LOOKAHEAD)]
    assert unvouched.after_drained(sitemap_read=False) == [], "deferred once, walked once"
    # The walk goes on through pages that did not change (a 304) and pages that did.
    assert urls(unvouched.after_not_modified(listing_url("a", 2), "listing")) == [
        listing_url("a", 2 + LOOKAHEAD)
    ]
    assert urls(unvouched.after_page(listing("a", 3, of=30), "listing")) == [
        listing_url("a", 3 + LOOKAHEAD)
    ]


def test_an_unchanged_listing_page_that_is_not_being_walked_leads_nowhere():
    frontier = Frontier(SCOPE, known("a"))
    assert frontier.after_not_modified(listing_url("a", 2), "listing") == []
    assert frontier.after_not_modified(lesson_url("a"), "lesson") == []


def test_a_run_starts_from_its_start_urls_its_sitemaps_and_every_page_known_to_lead_to_lessons():
    pages = {
        **known("old"),
        "http://127.0.0.1:8765/wp-sitemap.xml": KnownPage("sitemap", None, None),
        listing_url("old", 2): KnownPage("listing", None, None),
    }
    sitemap = "http://127.0.0.1:8765/wp-sitemap.xml"
    links = Frontier(SCOPE, pages).start([ORIGIN], [sitemap, sitemap])
    assert [(link.url, link.kind) for link in links] == [
        (ORIGIN, "lesson"),
        (sitemap, "sitemap"),
        (lesson_url("old"), "lesson"),
        (sitemap, "sitemap"),  # asked again; the crawl's queue keeps each URL once
    ]


@pytest.mark.parametrize(
    ("answers", "read"),
    [
        ([], False),
        ([(200, 52, None)], True),
        ([(304, None, None)], True),
        ([(200, 0, None)], False),  # answered, but named no lesson
        ([(200, 52, None), (None, None, "timed out")], False),
        ([(404, None, None)], False),
    ],
)
def test_the_sitemap_vouches_only_when_every_sitemap_answered(answers, read):
    pages = [
        PageRecord(url=f"s{i}", kind="sitemap", status=status, listed=listed, error=error)
        for i, (status, listed, error) in enumerate(answers)
    ]
    pages.append(PageRecord(url="l", kind="listing", status=200, listed=5))
    assert sitemap_read(pages) is read


def test_a_lesson_is_named_by_the_url_it_was_fetched_from_and_needs_a_title():
    page = listing("a", 1, of=None)
    assert lesson_of(page, SCOPE).url == lesson_url("a")
    # Its canonical link naming another lesson is a claim, not its identity.
    claims = replace(page, lesson=replace(page.lesson, url="https://movementality.se/video/b"))
    assert lesson_of(claims, SCOPE).url == lesson_url("a")
    assert lesson_of(replace(page, lesson=replace(page.lesson, title="")), SCOPE) is None
