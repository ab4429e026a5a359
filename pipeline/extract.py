"""Pure extraction: one fetched page's HTML in, a ``ListingPage`` out. No network, no database.

Every lesson page on the site is also page 1 of a "You may also like" listing of other lessons,
so a page yields two things: the page's own lesson (authoritative for its text) and the lessons
it lists (used to discover more URLs). Selectors come from the site's configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from .config import Selectors

# Line breaks and indentation of the HTML source are layout, not text: a run of whitespace that
# holds one becomes a single space. Runs of plain spaces are kept ("Socks are  ok" is how the
# author typed it), and so is a no-break space (&nbsp;).
_SOURCE_LAYOUT = re.compile(r"[ \t\n\r\f]*[\t\n\r\f][ \t\n\r\f]*")
_PAGE_OF = re.compile(r"(\d+)\s+of\s+(\d+)")
# Stands in for <br> while whitespace is collapsed, then becomes a newline.
_BREAK = "\ue000"
_AROUND_BREAK = re.compile(r" ?\ue000 ?")


@dataclass(frozen=True, slots=True)
class RawLesson:
    """A lesson as its own page shows it, text decoded but not yet interpreted."""

    url: str
    title: str
    description: str
    author: str | None
    published: str | None


@dataclass(frozen=True, slots=True)
class ListedLesson:
    """A lesson as another lesson's listing shows it: a link to follow."""

    url: str
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class ListingPage:
    url: str
    canonical_url: str | None
    lesson: RawLesson | None
    listed: tuple[ListedLesson, ...]
    page: int | None
    page_count: int | None
    next_url: str | None
    page_urls: tuple[str, ...]


def extract(html: str | bytes, url: str, selectors: Selectors) -> ListingPage:
    """Read a lesson or listing page. Missing parts come back empty, never as an exception:
    the crawl's health checks decide whether an empty page means the theme changed."""
    tree = LexborHTMLParser(html)
    canonical = _attr(tree.css_first(selectors.canonical), "href")
    canonical_url = urljoin(url, canonical) if canonical else None

    lesson = None
    title_node = tree.css_first(selectors.title)
    if title_node is not None:
        lesson = RawLesson(
            url=canonical_url or url,
            title=text_of(title_node),
            description=paragraphs(tree.css(selectors.description)),
            author=_text_or_none(tree.css_first(selectors.author)),
            published=_text_or_none(tree.css_first(selectors.published)),
        )

    listed = []
    for item in tree.css(selectors.listed_lesson):
        link = item.css_first(selectors.listed_link)
        href = _attr(link, "href")
        if not href:
            continue
        listed.append(
            ListedLesson(
                url=urljoin(url, href),
                title=text_of(link),
                description=paragraphs(item.css(selectors.listed_description)),
            )
        )

    page = page_count = None
    pages_node = tree.css_first(selectors.page_count)
    if pages_node is not None and (m := _PAGE_OF.search(pages_node.text())):
        page, page_count = int(m[1]), int(m[2])
    next_href = _attr(tree.css_first(selectors.next_link), "href")
    page_urls = tuple(
        dict.fromkeys(
            urljoin(url, href)
            for node in tree.css(selectors.page_links)
            if (href := _attr(node, "href"))
        )
    )
    return ListingPage(
        url=url,
        canonical_url=canonical_url,
        lesson=lesson,
        listed=tuple(listed),
        page=page,
        page_count=page_count,
        next_url=urljoin(url, next_href) if next_href else None,
        page_urls=page_urls,
    )


def text_of(node: LexborNode) -> str:
    """The node's text as published: entities decoded, the source's line breaks and indentation
    folded to single spaces, <br> kept as a line break, everything else verbatim."""
    for br in node.css("br"):
        br.insert_before(_BREAK)
    text = _SOURCE_LAYOUT.sub(" ", node.text(deep=True)).strip(" \t\n\r\f")
    return _AROUND_BREAK.sub("\n", text) if _BREAK in text else text


def paragraphs(nodes: list[LexborNode]) -> str:
    """Non-empty paragraphs joined by one blank line (the site puts an empty <p> first)."""
    return "\n\n".join(t for t in (text_of(n) for n in nodes) if t)


def _text_or_none(node: LexborNode | None) -> str | None:
    return (text_of(node) or None) if node is not None else None


def _attr(node: LexborNode | None, name: str) -> str | None:
    if node is None:
        return None
    value = node.attributes.get(name)
    return value.strip() if value else None
