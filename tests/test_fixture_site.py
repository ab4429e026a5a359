"""Tests of the fixture site itself: the crawler's tests are only as good as the site they crawl."""

from __future__ import annotations

import re
import threading
from collections import deque

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

from tests.site.server import (
    START_SLUG,
    FixtureSite,
    Lesson,
    load_lessons,
)

LOWER_BACK_8 = "body-intelligence-finding-ease-for-the-lower-back-8-the-inner-massage"
UNLISTED = "body-intelligence-dive-deeper-2-the-breathing-ribs"


@pytest.fixture
def fixture_site():
    with FixtureSite() as running:
        yield running


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c


def parse(response: httpx.Response) -> LexborHTMLParser:
    return LexborHTMLParser(response.text)


def listing_slugs(tree: LexborHTMLParser) -> list[str]:
    links = tree.css(".et_pb_blog_grid article h2.entry-title a")
    return [re.search(r"/video/([^/]+)/$", a.attributes["href"]).group(1) for a in links]


def test_data_file_has_the_quirks_the_crawler_must_survive():
    lessons = load_lessons()
    titles = [x.title for x in lessons]
    slugs = {x.slug for x in lessons}
    assert len(slugs) == len(lessons)
    assert 45 <= len(lessons) <= 60
    assert START_SLUG in slugs and "staff-preview" in slugs
    assert {"lying-down-letting-go", "lying-down-letting-go-2"} <= slugs
    assert any(t.startswith("Body Intelligence - Dive Deeper, ") for t in titles)
    assert any(t.startswith("Body Intelligence – Dive deeper, ") for t in titles)
    assert any(t.startswith("Neck, shoulders and upper back, 3: ") for t in titles)
    assert {"Standing, breathing rotation", "Breathe: head light, seat heavy"} <= set(titles)
    assert [x.slug for x in lessons if not x.listed] == [UNLISTED]
    text = "\n".join(p for x in lessons for p in x.description)
    for needle in ("it’s", "it's", "“", "hip joins", "  ", " ,", "&", "<", "\u00a0"):
        assert needle in text, needle


def test_missing_trailing_slash_redirects_to_absolute_slashed_url(fixture_site, client):
    for path in (f"/video/{START_SLUG}", f"/video/{START_SLUG}/page/2", "/video/no-such-lesson"):
        response = client.get(fixture_site.url + path)
        assert response.status_code == 301
        assert response.headers["location"] == f"{fixture_site.url}{path}/"


def test_page_one_redirects_and_out_of_range_pages_are_404(fixture_site, client):
    response = client.get(fixture_site.listing_url(START_SLUG, 2).replace("/2/", "/1/"))
    assert response.status_code == 301
    assert response.headers["location"] == fixture_site.lesson_url(START_SLUG)
    pages = fixture_site.page_count(START_SLUG)
    assert client.get(fixture_site.listing_url(START_SLUG, pages + 1)).status_code == 404
    assert client.get(fixture_site.lesson_url("no-such-lesson")).status_code == 404


def test_listing_pages_show_page_n_of_m_and_three_items(fixture_site, client):
    pages = fixture_site.page_count(START_SLUG)
    expected = [x.slug for x in fixture_site.listing(START_SLUG)]
    # The seed page: the newest lessons first, so a program's parts appear in reverse.
    assert expected[0] == LOWER_BACK_8
    for page in (1, 2, pages):
        tree = parse(client.get(fixture_site.listing_url(START_SLUG, page)))
        assert tree.css_first(".wp-pagenavi .pages").text() == f"Page {page} of {pages}"
        assert listing_slugs(tree) == expected[(page - 1) * 3 : page * 3]
        # WordPress renders the same post on every listing page.
        assert tree.css_first("h1.entry-title").text() == "Forward fold, circle the knees"
        canonical = tree.css_first('link[rel="canonical"]').attributes["href"]
        assert canonical == fixture_site.listing_url(START_SLUG, page)
        has_next = tree.css_first('link[rel="next"]') is not None
        assert has_next == (page < pages)
        assert (tree.css_first(".wp-pagenavi a.nextpostslink") is not None) == has_next
        assert (tree.css_first(".wp-pagenavi a.previouspostslink") is not None) == (page > 1)


def test_listings_differ_and_none_holds_every_lesson(fixture_site):
    listed = {x.slug for x in fixture_site.lessons if x.listed}
    listings = {slug: {x.slug for x in fixture_site.listing(slug)} for slug in listed}
    assert len({frozenset(v) for v in listings.values()}) > 10
    for slug, items in listings.items():
        assert items < listed - {slug}, f"{slug} lists every other lesson"
    counts = [fixture_site.page_count(slug) for slug in listed]
    assert min(counts) >= 7 and max(counts) <= 17 and max(counts) - min(counts) >= 5


def test_every_listed_lesson_is_reachable_from_the_start_lesson_over_http(fixture_site, client):
    # A breadth-first walk over every lesson's listing, following rel=next: the discovery a
    # crawler must do, and a check that every page renders the listing the data implies.
    seen = {START_SLUG}
    queue = deque([START_SLUG])
    while queue:
        slug = queue.popleft()
        url: str | None = fixture_site.lesson_url(slug)
        found = []
        while url:
            response = client.get(url)
            assert response.status_code == 200, url
            tree = parse(response)
            found += listing_slugs(tree)
            nxt = tree.css_first('link[rel="next"]')
            url = nxt.attributes["href"] if nxt is not None else None
        assert found == [x.slug for x in fixture_site.listing(slug)]
        for other in found:
            if other not in seen:
                seen.add(other)
                queue.append(other)
    listed = {x.slug for x in fixture_site.lessons if x.listed}
    assert seen == listed


def test_unlisted_lesson_is_served_but_never_linked(fixture_site, client):
    assert client.get(fixture_site.lesson_url(UNLISTED)).status_code == 200
    for lesson in fixture_site.lessons:
        assert UNLISTED not in {x.slug for x in fixture_site.listing(lesson.slug)}
    sitemap = client.get(f"{fixture_site.url}/wp-sitemap-posts-video-1.xml").text
    assert "/video/forward-fold-circle-the-knees/" in sitemap
    assert UNLISTED not in sitemap


def test_robots_txt(client):
    with FixtureSite() as site:
        response = client.get(f"{site.url}/robots.txt")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "Disallow: /video/staff-preview/" in response.text
        assert f"Sitemap: {site.url}/wp-sitemap.xml" in response.text
        assert "/video/staff-preview/" not in site.crawlable_paths()
    with FixtureSite(sitemap=False) as site:
        assert "Sitemap" not in client.get(f"{site.url}/robots.txt").text
        assert client.get(f"{site.url}/wp-sitemap.xml").status_code == 404
    with FixtureSite(robots_txt="User-agent: *\nDisallow: /\n# {url}\n") as site:
        assert client.get(f"{site.url}/robots.txt").text.endswith(f"# {site.url}\n")


def test_sitemaps_list_listed_lessons_and_pages(fixture_site, client):
    index = client.get(f"{fixture_site.url}/wp-sitemap.xml")
    assert index.headers["content-type"] == "application/xml; charset=UTF-8"
    assert "http://www.sitemaps.org/schemas/sitemap/0.9" in index.text
    locs = re.findall(r"<loc>([^<]+)</loc>", index.text)
    assert locs == [
        f"{fixture_site.url}/wp-sitemap-posts-video-1.xml",
        f"{fixture_site.url}/wp-sitemap-posts-page-1.xml",
    ]
    videos = re.findall(r"<loc>([^<]+)</loc>", client.get(locs[0]).text)
    expected = {fixture_site.lesson_url(x.slug) for x in fixture_site.lessons if x.listed}
    assert set(videos) == expected and len(videos) == len(expected)
    pages = re.findall(r"<loc>([^<]+)</loc>", client.get(locs[1]).text)
    assert pages == [f"{fixture_site.url}/about/", f"{fixture_site.url}/contact/"]
    assert all(client.get(url).status_code == 200 for url in pages)


def test_validators_give_304(fixture_site, client):
    url = fixture_site.lesson_url(START_SLUG)
    first = client.get(url)
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
    assert int(first.headers["content-length"]) == len(first.content)
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    head = client.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag


def test_mutations_change_pages_and_listings(fixture_site, client):
    url = fixture_site.lesson_url(START_SLUG)
    etag = client.get(url).headers["etag"]
    fixture_site.edit(LOWER_BACK_8, title="Body Intelligence – Finding ease, 8: renamed")
    # The start page lists lower back 8 first, so its page changes too.
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and "Finding ease, 8: renamed" in parse(changed).text()
    fixture_site.unpublish(LOWER_BACK_8)
    assert client.get(fixture_site.lesson_url(LOWER_BACK_8)).status_code == 404
    assert LOWER_BACK_8 not in listing_slugs(parse(client.get(url)))
    new = fixture_site.publish(
        Lesson(slug="brand-new", title="Brand new", categories=["Lower back"], description=["x"])
    )
    assert new.post_id > max(x.post_id for x in load_lessons())
    assert listing_slugs(parse(client.get(url)))[0] == "brand-new"


def test_entities_and_escaping_in_raw_bytes(fixture_site, client):
    raw = client.get(fixture_site.lesson_url(LOWER_BACK_8)).content
    assert b"Body Intelligence &#8211; Finding ease for the lower back, 8" in raw
    assert "–".encode() not in raw
    assert b"&#8220;stuck&#8221;" in raw and b"tell&nbsp;the" in raw
    hips = client.get(fixture_site.lesson_url("hips-knees-a-gentle-rotation")).content
    assert b'<h1 class="entry-title">Hips &amp; knees: a gentle rotation</h1>' in hips
    assert b"(often &lt;3)" in client.get(fixture_site.lesson_url("back-to-work-gently")).content


def test_fault_sequence_then_normal(client):
    path = f"/video/{START_SLUG}/page/2/"
    with FixtureSite(faults={path: ["503", "reset"]}) as site:
        first = client.get(site.url + path)
        assert first.status_code == 503 and first.headers["retry-after"] == "1"
        with pytest.raises(httpx.TransportError):
            client.get(site.url + path)
        assert client.get(site.url + path).status_code == 200
        assert [(r.status, r.fault) for r in site.requests] == [
            (503, "503"),
            (200, "reset"),
            (200, None),
        ]


def test_seeded_faults_are_deterministic():
    one = FixtureSite.seeded_faults(7, 0.1, ["503", "truncate"])
    assert one == FixtureSite.seeded_faults(7, 0.1, ["503", "truncate"])
    assert one != FixtureSite.seeded_faults(8, 0.1, ["503", "truncate"])
    assert 40 <= len(one) <= 70 and all(1 <= len(kinds) <= 2 for kinds in one.values())


def test_max_in_flight_counts_concurrent_requests():
    with FixtureSite(latency=0.2) as site:
        barrier = threading.Barrier(4)

        def fetch() -> None:
            with httpx.Client(timeout=5.0) as own:
                barrier.wait()
                own.get(site.lesson_url(START_SLUG))

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert site.max_in_flight == 4
        assert site.request_count == 4
        site.reset_stats()
        site.latency = 0.0
        with httpx.Client() as sequential:
            sequential.get(f"{site.url}/robots.txt")
            sequential.get(f"{site.url}/robots.txt")
        assert site.max_in_flight == 1 and site.request_count == 2
