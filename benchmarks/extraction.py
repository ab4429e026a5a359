"""Extraction speed: our ``extract`` against BeautifulSoup and lxml doing the same extraction on
the same pages, and against a bare selectolax parse (the floor: extract cannot beat its parser).

The pages are fetched from the synthetic site as the crawler sees them: every lesson's page 1
and one later page of its listing. BS4 and lxml are the ``bench`` extra, never runtime
dependencies; each comparator is checked to return exactly what ``extract`` returns, so the
race is over the same work.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser

from pipeline.config import Selectors, load_config
from pipeline.extract import ListingPage, RawLesson, extract
from tests.conftest import CONFIG_PATH
from tests.site.server import FixtureSite

from .synthetic import synthetic_lessons

# The text rules of pipeline.extract.text_of, restated for the other parsers' nodes: layout
# whitespace (a run holding a line break or tab) becomes one space, <br> a newline.
_SOURCE_LAYOUT = re.compile(r"[ \t\n\r\f]*[\t\n\r\f][ \t\n\r\f]*")
_PAGE_OF = re.compile(r"(\d+)\s+of\s+(\d+)")
_BREAK = "\ue000"
_AROUND_BREAK = re.compile(r" ?\ue000 ?")

Extractor = Callable[[str, str, Selectors], Any]


def run(*, site_lessons: int = 150, pages: int = 200, repetitions: int = 7) -> dict[str, Any]:
    selectors = load_config(CONFIG_PATH).selectors
    corpus = sample_pages(site_lessons, pages)
    expected = [extract(html, url, selectors) for html, url in corpus]
    # What reading the categories (for listing inference) adds to a page's extraction.
    uncategorised = dataclasses.replace(selectors, categories="", category_prefix="")
    implementations: dict[str, Extractor] = {
        "selectolax bare parse (floor)": lambda html, _url, _sel: LexborHTMLParser(html),
        QUERIES_ONLY: select_only,
        WALK_ONLY: walk_only,
        "pipeline.extract (selectolax/lexbor)": extract,
        WITHOUT_CATEGORIES: lambda html, url, _sel: extract(html, url, uncategorised),
    }
    try:
        import lxml.html  # noqa: F401

        implementations["lxml.html + XPath"] = extract_lxml
    except ImportError:
        pass
    try:
        import bs4  # noqa: F401

        implementations["BeautifulSoup(html.parser)"] = extract_bs4
    except ImportError:
        pass
    agrees: dict[str, int | None] = {}
    for name, function in implementations.items():
        outputs = [function(html, url, selectors) for html, url in corpus]  # also warms up
        agrees[name] = (
            None
            if name.startswith("selectolax ") or name == WITHOUT_CATEGORIES
            else sum(map(_same, outputs, expected))
        )
    # Round-robin, every implementation as often: the shared machine's drift during the run
    # reaches them all alike, so their ratios hold even when the absolute times wander.
    times: dict[str, list[float]] = {name: [] for name in implementations}
    for _ in range(repetitions):
        for name, function in implementations.items():
            began = time.perf_counter()
            for html, url in corpus:
                function(html, url, selectors)
            times[name].append((time.perf_counter() - began) / len(corpus))
    best = {name: min(runs) for name, runs in times.items()}
    floor = best["selectolax bare parse (floor)"]
    ours = best["pipeline.extract (selectolax/lexbor)"]
    ratios = {
        "extract_vs_bare_parse": ours / floor,
        "queries_vs_bare_parse": best[QUERIES_ONLY] / floor,
        "walk_vs_bare_parse": best[WALK_ONLY] / floor,
    }
    if "BeautifulSoup(html.parser)" in best:
        ratios["bs4_vs_extract"] = best["BeautifulSoup(html.parser)"] / ours
    if "lxml.html + XPath" in best:
        ratios["lxml_vs_extract"] = best["lxml.html + XPath"] / ours
    return {
        "site_lessons": site_lessons,
        "pages": len(corpus),
        "mean_page_kb": sum(len(html.encode()) for html, _ in corpus) / len(corpus) / 1024,
        "repetitions": repetitions,
        "implementations": {
            name: {
                "us_per_page": seconds * 1e6,
                "vs_bare_parse": seconds / floor,
                "agrees": agrees[name],
            }
            for name, seconds in best.items()
        },
        "ratios": ratios,
    }


QUERIES_ONLY = "selectolax parse + extract's CSS queries, no text"
WITHOUT_CATEGORIES = "pipeline.extract without reading categories"


def select_only(html: str, _url: str, selectors: Selectors) -> int:
    """The CSS queries ``extract`` makes on a page, and nothing else: what the configured
    selectors cost before any text, URL or result is built. selectolax compiles a selector on
    every call, so this is the least ``extract`` can cost while its selectors are configuration."""
    root = LexborHTMLParser(html).root
    root.css_first("br")
    root.css_first(selectors.canonical)
    if root.css_first(selectors.title) is not None:
        root.css(selectors.description)
        root.css_first(selectors.author)
        root.css_first(selectors.published)
    items = root.css(selectors.listed_lesson)
    for item in items:
        item.css_first(selectors.listed_link)
    if selectors.categories:
        root.css_first(selectors.categories)
    root.css_first(selectors.page_count)
    root.css_first(selectors.next_link)
    root.css(selectors.page_links)
    return len(items)


WALK_ONLY = "selectolax parse + one Python pass reading each element's tag and class"


def walk_only(html: str, _url: str, _selectors: Selectors) -> int:
    """What a hand-written extractor would cost before it extracted anything: one pass over
    every node in Python, reading the tag and the class of each element, matching nothing."""
    elements = 0
    for node in LexborHTMLParser(html).root.traverse():
        if node.tag and node.tag[0] != "-":  # "-text", "-comment": not elements
            node.attrs.get("class")
            elements += 1
    return elements


def sample_pages(site_lessons: int, count: int, seed: int = 8) -> list[tuple[str, str]]:
    """(html, url) of ``count`` pages served by a synthetic site: page 1 of a lesson and one
    later listing page of it, lesson after lesson."""
    rng = random.Random(seed)
    with FixtureSite(synthetic_lessons(site_lessons)) as site:
        urls = []
        for path in site.crawlable_paths():
            if "/page/" not in path:
                urls.append(site.url + path)
                slug = path.split("/")[2]
                if (last := site.page_count(slug)) > 1:
                    urls.append(site.listing_url(slug, rng.randint(2, last)))
        corpus = []
        for url in urls[:count]:
            with urllib.request.urlopen(url) as response:
                corpus.append((response.read().decode("utf-8"), url))
    return corpus


def _same(got: ListingPage, want: ListingPage) -> bool:
    return got == want


# -- BeautifulSoup ------------------------------------------------------------------------------


def extract_bs4(html: str, url: str, selectors: Selectors) -> ListingPage:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")

    def text(node) -> str:
        for br in node.find_all("br"):
            br.insert_before(_BREAK)
        return _finish(node.get_text())

    return _listing_page(
        url,
        selectors,
        select_one=soup.select_one,
        select=soup.select,
        scoped_one=lambda node, css: node.select_one(css),
        scoped=lambda node, css: node.select(css),
        text=text,
    )


# -- lxml ---------------------------------------------------------------------------------------


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


# lxml's own CSS support needs cssselect, which is not installed: the configured selectors,
# translated by hand. A selector not in this table stops the benchmark rather than compare
# different work.
XPATHS = {
    'link[rel="canonical"]': "//link[@rel='canonical']",
    "h1.entry-title": f"//h1[{_has_class('entry-title')}]",
    "p.post-meta span.author": f"//p[{_has_class('post-meta')}]//span[{_has_class('author')}]",
    "p.post-meta span.published": (
        f"//p[{_has_class('post-meta')}]//span[{_has_class('published')}]"
    ),
    "div.entry-content div.et_pb_text_inner > p": (
        f"//div[{_has_class('entry-content')}]//div[{_has_class('et_pb_text_inner')}]/p"
    ),
    "div.et_pb_blog_grid article.et_pb_post": (
        f"//div[{_has_class('et_pb_blog_grid')}]//article[{_has_class('et_pb_post')}]"
    ),
    "h2.entry-title a": f".//h2[{_has_class('entry-title')}]//a",
    "article.et_pb_post": f"//article[{_has_class('et_pb_post')}]",
    "div.post-content-inner p": f".//div[{_has_class('post-content-inner')}]//p",
    "div.wp-pagenavi span.pages": (
        f"//div[{_has_class('wp-pagenavi')}]//span[{_has_class('pages')}]"
    ),
    "div.wp-pagenavi a": f"//div[{_has_class('wp-pagenavi')}]//a",
    "div.et_pb_video_box iframe, div.et_pb_video_box video": (
        f"//div[{_has_class('et_pb_video_box')}]//*[self::iframe or self::video]"
    ),
    "div.et_post_meta_wrapper img": f"//div[{_has_class('et_post_meta_wrapper')}]//img",
    "a.entry-featured-image-url img": f".//a[{_has_class('entry-featured-image-url')}]//img",
    "source": ".//source",
    "div.wp-pagenavi a.nextpostslink": (
        f"//div[{_has_class('wp-pagenavi')}]//a[{_has_class('nextpostslink')}]"
    ),
}


def extract_lxml(html: str, url: str, selectors: Selectors) -> ListingPage:
    import lxml.html

    root = lxml.html.document_fromstring(html)

    def select(css: str, node=root) -> list:
        return node.xpath(XPATHS[css])

    def select_one(css: str, node=root):
        found = select(css, node)
        return found[0] if found else None

    def text(node) -> str:
        for br in node.iter("br"):
            br.tail = _BREAK + (br.tail or "")
        return _finish(node.text_content())

    return _listing_page(
        url,
        selectors,
        select_one=select_one,
        select=select,
        scoped_one=lambda node, css: select_one(css, node),
        scoped=lambda node, css: select(css, node),
        text=text,
    )


# -- shared shape ---------------------------------------------------------------------------------


def _attr(node, name: str) -> str | None:
    """An attribute, stripped: BS4 tags and lxml elements both answer ``.get``."""
    value = node.get(name) if node is not None else None
    return value.strip() if value else None


def _categories(node, prefix: str) -> frozenset[str]:
    """``category-<slug>`` classes as slugs: BS4 answers a list, lxml a string."""
    value = node.get("class") if node is not None and prefix else None
    names = value if isinstance(value, list) else (value or "").split()
    return frozenset(n[len(prefix) :] for n in names if n.startswith(prefix) and n != prefix)


def _finish(text: str) -> str:
    text = _SOURCE_LAYOUT.sub(" ", text).strip(" \t\n\r\f")
    return _AROUND_BREAK.sub("\n", text) if _BREAK in text else text


def _listing_page(url, selectors, *, select_one, select, scoped_one, scoped, text) -> ListingPage:
    """pipeline.extract.extract's assembly, over another parser's select and text."""

    def media(node) -> str | None:
        if node is None:
            return None
        for candidate in (node, *scoped(node, "source")):
            for name in ("src", "data-src", "data-lazy-src"):
                value = _attr(candidate, name)
                if value and not value.startswith(("data:", "javascript:")):
                    joined = urljoin(url, value)
                    if joined.startswith(("http://", "https://")) and len(joined) <= 8192:
                        return joined
        return None

    def paragraphs(nodes) -> str:
        return "\n\n".join(t for t in map(text, nodes) if t)

    canonical = _attr(select_one(selectors.canonical), "href")
    canonical_url = urljoin(url, canonical) if canonical else None
    lesson = None
    title = select_one(selectors.title)
    if title is not None:
        author, published = select_one(selectors.author), select_one(selectors.published)
        lesson = RawLesson(
            url=canonical_url or url,
            title=text(title),
            description=paragraphs(select(selectors.description)),
            author=(text(author) or None) if author is not None else None,
            published=(text(published) or None) if published is not None else None,
            video_url=media(select_one(selectors.video)) if selectors.video else None,
            thumbnail_url=media(select_one(selectors.thumbnail)) if selectors.thumbnail else None,
        )
    listed, listed_categories, listed_thumbnails = [], [], []
    prefix = selectors.category_prefix
    for item in select(selectors.listed_lesson):
        href = _attr(scoped_one(item, selectors.listed_link), "href")
        if href:
            listed.append(urljoin(url, href))
            listed_categories.append(_categories(item, prefix))
            listed_thumbnails.append(
                media(scoped_one(item, selectors.listed_thumbnail))
                if selectors.listed_thumbnail
                else None
            )
    own = select_one(selectors.categories) if selectors.categories and prefix else None
    page = page_count = None
    pages_node = select_one(selectors.page_count)
    if pages_node is not None and (m := _PAGE_OF.search(text(pages_node))):
        page, page_count = int(m[1]), int(m[2])
    next_href = _attr(select_one(selectors.next_link), "href")
    page_urls = tuple(
        dict.fromkeys(
            urljoin(url, href)
            for node in select(selectors.page_links)
            if (href := _attr(node, "href"))
        )
    )
    return ListingPage(
        url=url,
        lesson=lesson,
        listed=tuple(listed),
        page=page,
        page_count=page_count,
        next_url=urljoin(url, next_href) if next_href else None,
        page_urls=page_urls,
        categories=_categories(own, prefix),
        listed_categories=tuple(listed_categories) if prefix else (),
        listed_thumbnails=tuple(listed_thumbnails) if selectors.listed_thumbnail else (),
    )
