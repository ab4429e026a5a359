"""Pure extraction: one fetched page's HTML in, a ``ListingPage`` out (and a sitemap's XML in,
its links out). No network, no database.

Every lesson page on the site is also page 1 of a "You may also like" listing of other lessons,
so a page yields two things: the page's own lesson (authoritative for its text) and the lessons
it lists (used to discover more URLs). Selectors come from the site's configuration.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from .config import Selectors

# Line breaks and indentation of the HTML source are layout, not text: a run of whitespace that
# holds one becomes a single space. Runs of plain spaces are kept ("Socks are  ok" is how the
# author typed it), and so is a no-break space (&nbsp;). Each whitespace run is matched once,
# whole: a pattern that had to find a line break inside the run retried at every one of its
# spaces, quadratic in the run (9 s for a title of 32 000 spaces and a soft hyphen).
_WHITESPACE_RUN = re.compile(r"[ \t\n\r\f]+")
# Matched from the start of a run of digits only, never inside one: a long run of digits with no
# "of" after it is then one attempt, not one per digit.
_PAGE_OF = re.compile(r"(?<![0-9])([0-9]+)\s+of\s+([0-9]+)")
# A listing longer than this is not believed: "Page 1 of 1000000" would size the crawl's
# frontier. 10 000 pages of 10 lessons is well past any lesson site.
MAX_LISTING_PAGES = 10_000
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
# Stands in for <br> while whitespace is collapsed, then becomes a newline.
_BREAK = "\ue000"
_AROUND_BREAK = re.compile(r" ?\ue000 ?")
# An absolute http(s) URL with a host, in printable ASCII, and nothing urljoin would rewrite (no
# query, fragment, params or brackets): urljoin returns it unchanged, so it is returned as is. Every
# link on the site is absolute, and urljoin's parse and re-assembly costs more than the match.
_PLAIN_ABSOLUTE = re.compile(
    r"https?://[^\x00-\x20\x7f-\U0010ffff/?#;\[\]\\]+(?:/[^\x00-\x20\x7f-\U0010ffff?#;\[\]\\]*)?\Z"
)


@dataclass(frozen=True, slots=True)
class RawLesson:
    """A lesson as its own page shows it, text decoded but not yet interpreted."""

    url: str
    title: str
    description: str
    author: str | None
    published: str | None
    # The player the page embeds and the page's own thumbnail, as absolute URLs. A thumbnail
    # the page does not show may come from the listings that list the lesson (with_thumbnail).
    video_url: str | None = None
    thumbnail_url: str | None = None

    def with_thumbnail(self, listed: str | None) -> RawLesson:
        """The lesson with the thumbnail a listing showed for it, unless its page shows one."""
        if self.thumbnail_url is not None or listed is None:
            return self
        return dataclasses.replace(self, thumbnail_url=listed)


@dataclass(frozen=True, slots=True)
class ListingPage:
    url: str
    lesson: RawLesson | None
    # The URLs of the lessons the page lists. Their titles and excerpts are not read: a lesson's
    # own page is the authoritative text, and the listing's excerpt is sometimes shortened.
    listed: tuple[str, ...]
    page: int | None
    page_count: int | None
    next_url: str | None
    page_urls: tuple[str, ...]
    # What the page said that could not be believed (a number out of range): read as absent.
    anomalies: tuple[str, ...] = ()
    # The categories of the page's own lesson, and of each listed one (in ``listed`` order).
    categories: frozenset[str] = frozenset()
    listed_categories: tuple[frozenset[str], ...] = ()
    # The thumbnail each listed lesson is shown with (in ``listed`` order), None where none is.
    listed_thumbnails: tuple[str | None, ...] = ()


def extract(html: str | bytes, url: str, selectors: Selectors) -> ListingPage:
    """Read a lesson or listing page. Missing parts come back empty, never as an exception:
    the crawl's health checks decide whether an empty page means the theme changed."""
    tree = LexborHTMLParser(html)
    # One query for the whole page instead of one per text node: most pages have no <br> at all.
    breaks = tree.css_first("br") is not None
    canonical = _attr(tree.css_first(selectors.canonical), "href")
    canonical_url = _join(url, canonical) if canonical else None

    lesson = None
    title_node = tree.css_first(selectors.title)
    if title_node is not None:
        lesson = RawLesson(
            url=canonical_url or url,
            title=_text(title_node, breaks),
            description=_paragraphs(tree.css(selectors.description), breaks),
            author=_text_or_none(tree.css_first(selectors.author), breaks),
            published=_text_or_none(tree.css_first(selectors.published), breaks),
            video_url=_media_url(tree, selectors.video, url),
            thumbnail_url=_media_url(tree, selectors.thumbnail, url),
        )

    listed, listed_categories, listed_thumbnails = [], [], []
    prefix = selectors.category_prefix
    for item in tree.css(selectors.listed_lesson):
        href = _attr(item.css_first(selectors.listed_link), "href")
        if href:
            listed.append(_join(url, href))
            listed_categories.append(_categories(item, prefix))
            listed_thumbnails.append(_media_url(item, selectors.listed_thumbnail, url))
    categories = frozenset()
    if selectors.categories and prefix:
        categories = _categories(tree.css_first(selectors.categories), prefix)

    page = page_count = None
    anomalies = []
    pages_node = tree.css_first(selectors.page_count)
    if pages_node is not None and (m := _PAGE_OF.search(pages_node.text())):
        page, page_count = bounded_page(m[1]), bounded_page(m[2])
        if page is None or page_count is None or page > page_count:
            anomalies.append(f"page count out of range: {m[0][:80]!r}")
            page = page_count = None
    next_href = _attr(tree.css_first(selectors.next_link), "href")
    page_urls = tuple(
        dict.fromkeys(
            _join(url, href)
            for node in tree.css(selectors.page_links)
            if (href := _attr(node, "href"))
        )
    )
    return ListingPage(
        url=url,
        lesson=lesson,
        listed=tuple(listed),
        page=page,
        page_count=page_count,
        next_url=_join(url, next_href) if next_href else None,
        page_urls=page_urls,
        anomalies=tuple(anomalies),
        categories=categories,
        listed_categories=tuple(listed_categories) if prefix else (),
        listed_thumbnails=tuple(listed_thumbnails) if selectors.listed_thumbnail else (),
    )


# Where an embed or image names its source: lazy-loading themes and plugins move `src` to a
# data attribute until the element scrolls into view.
_SOURCE_ATTRIBUTES = ("src", "data-src", "data-lazy-src")
# A source longer than this is not a player's or an image's address (browsers and servers
# commonly stop near 8 KB): it is not archived as one.
MAX_MEDIA_URL = 8192


def _media_url(node: LexborHTMLParser | LexborNode, selector: str, base: str) -> str | None:
    """The absolute URL of the first element ``selector`` matches: an iframe's or image's
    source, or a <video>'s own source or else its first <source>'s. None when nothing
    matches, the selector is empty, or the element names no http(s) source."""
    if not selector:
        return None
    found = node.css_first(selector)
    if found is None:
        return None
    for candidate in (found, *found.css("source")):
        for name in _SOURCE_ATTRIBUTES:
            value = _attr(candidate, name)
            if value and not value.startswith(("data:", "javascript:")):
                joined = _join(base, value)
                if joined.startswith(("http://", "https://")) and len(joined) <= MAX_MEDIA_URL:
                    return joined
    return None


def _categories(node: LexborNode | None, prefix: str) -> frozenset[str]:
    """The ``<prefix><slug>`` classes of a node, as slugs."""
    classes = node.attributes.get("class") if node is not None and prefix else None
    start = classes.find(prefix) if classes else -1
    if start < 0:
        return frozenset()
    # Only the classes from the first that holds the prefix (from that class's start):
    # WordPress writes the categories last, after a dozen classes of the theme's.
    start = max(classes.rfind(" ", 0, start), classes.rfind("\t", 0, start)) + 1
    return frozenset(
        name[len(prefix) :]
        for name in classes[start:].split()
        if name.startswith(prefix) and len(name) > len(prefix)
    )


@dataclass(frozen=True, slots=True)
class Sitemap:
    locs: tuple[str, ...]
    index: bool  # a sitemap index: its locs are further sitemaps, not pages


def read_sitemap(xml: bytes) -> Sitemap:
    """The URLs a sitemap (or sitemap index) names. Raises ValueError on unreadable XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"unreadable sitemap: {exc}") from None
    return Sitemap(
        locs=tuple((loc.text or "").strip() for loc in root.iter(f"{_SITEMAP_NS}loc")),
        index=root.tag == f"{_SITEMAP_NS}sitemapindex",
    )


def bounded_page(digits: str) -> int | None:
    """A page number from the site (ASCII digits), or None if it is not 1..MAX_LISTING_PAGES.
    The length is checked first, so a thousand-digit number is never even converted."""
    if not digits or len(digits) > len(str(MAX_LISTING_PAGES)):
        return None
    number = int(digits)
    return number if 1 <= number <= MAX_LISTING_PAGES else None


def _text(node: LexborNode, breaks: bool) -> str:
    """The node's text as published: entities decoded, the source's line breaks and indentation
    folded to single spaces, <br> kept as a line break, everything else verbatim. ``breaks`` is
    False when the document is known to hold no <br> to look for."""
    if breaks:
        for br in node.css("br"):
            br.insert_before(_BREAK)
    text = node.text(deep=True)
    # A printable text holds none of \t\n\r\f: most texts need no substitution at all.
    if not text.isprintable():
        text = _WHITESPACE_RUN.sub(_layout_to_space, text)
    text = text.strip(" \t\n\r\f")
    return _AROUND_BREAK.sub("\n", text) if _BREAK in text else text


def _layout_to_space(run: re.Match) -> str:
    """A whitespace run holding a line break, tab or form feed is layout: one space. A run of
    plain spaces is kept as typed."""
    return run[0] if not run[0].strip(" ") else " "


def _paragraphs(nodes: list[LexborNode], breaks: bool) -> str:
    """Non-empty paragraphs joined by one blank line (the site puts an empty <p> first)."""
    return "\n\n".join(t for t in (_text(n, breaks) for n in nodes) if t)


def _text_or_none(node: LexborNode | None, breaks: bool) -> str | None:
    return (_text(node, breaks) or None) if node is not None else None


def _join(base: str, href: str) -> str:
    """urljoin(base, href), skipping its parse and re-assembly when href is plainly absolute.
    An href no parser accepts (``http://[oops/``, an unclosed IPv6 host) is kept as it is: a
    link or canonical the scope then refuses, never an exception that fails the page."""
    if _PLAIN_ABSOLUTE.match(href):
        return href
    try:
        return urljoin(base, href)
    except ValueError:
        return href


def _attr(node: LexborNode | None, name: str) -> str | None:
    if node is None:
        return None
    value = node.attributes.get(name)
    return value.strip() if value else None
