"""One HTML response read, whether it was just fetched or comes back from the captures: decoded
as a browser would, checked for structure no real page has, extracted, and its lesson named by
the URL it was fetched from. The crawl and `reparse` both read pages through here
(``read_page_bounded``: in a child process, within a time budget), so they cannot disagree about
what a page says."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from . import isolate
from .config import Selectors
from .decode import decode_html
from .extract import ListingPage, RawLesson, extract
from .frontier import CanonicalClaim, UrlScope, canonical_claim, lesson_of
from .requisites import page_requisites

# Chromium's HTML parser stops nesting elements at 512 (kMaximumHTMLParserDOMTreeDepth); a real
# lesson page nests about 30 deep. Lexbor's tree building grows with the square of the depth (a
# page of 200 000 nested <div>s took 204 s), so deeper pages are refused before it sees them.
MAX_DEPTH = 512
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)|<!--")
# Elements that never hold others, or whose end tag may be left out (the parser closes them):
# neither deepens the tree however many a page has.
_FLAT = frozenset(
    "area base br col embed hr img input link meta source track wbr param keygen "  # noqa: SIM905
    "p li dt dd option optgroup tr td th thead tbody tfoot colgroup caption rb rt rtc rp "
    "html head body".split()
)
# Lower-cases ASCII only, so every character stays where it was.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_RAW_TEXT = ("script", "style", "textarea", "title", "xmp", "noscript")


class PageRefused(isolate.PageFailed):
    """A page refused before it was parsed: its structure is not a page's."""


@dataclass(frozen=True, slots=True)
class PageRead:
    page: ListingPage
    lesson: RawLesson | None  # the page's own titled lesson, under the URL it was read from
    claim: CanonicalClaim | None  # its canonical link naming another URL: an anomaly
    replaced: bool  # invalid bytes were replaced while decoding
    warnings: tuple[str, ...]  # a charset fallback, numbers out of range
    # What the page loads (stylesheets, scripts, images), when asked for: read in the same
    # bounded child as the rest, since parsing a page is what a hostile page makes unbounded.
    requisites: tuple[str, ...] = ()


def read_page(
    url: str, body: bytes, content_type: str | None, scope: UrlScope, selectors: Selectors
) -> PageRead:
    decoded = decode_html(body, content_type)
    check_structure(decoded.text)
    page = extract(decoded.text, url, selectors)
    return PageRead(
        page=page,
        lesson=lesson_of(page, scope),
        claim=canonical_claim(page, scope),
        replaced=decoded.replaced,
        warnings=tuple(w for w in (decoded.fallback, *page.anomalies) if w),
    )


def listed_thumbnails(page: ListingPage, scope: UrlScope, into: dict[str, str]) -> None:
    """Add the thumbnails ``page`` shows for the lessons it lists, by their canonical URL,
    keeping any already found."""
    for listed, thumbnail in zip(page.listed, page.listed_thumbnails, strict=False):
        if thumbnail is not None and (url := scope.canonical(listed)) is not None:
            into.setdefault(url, thumbnail)


async def read_page_bounded(
    url: str,
    body: bytes,
    content_type: str | None,
    scope: UrlScope,
    selectors: Selectors,
    *,
    seconds: float,
    workers: isolate.Workers,
    requisites: bool = False,
) -> PageRead:
    """``read_page`` in one of ``workers`` (child processes), given at most ``seconds``;
    raises isolate.PageFailed with the page's error (a refused structure, the budget passed,
    an exception). With ``requisites``, the page's requisites are read there too."""
    reader = _read_with_requisites if requisites else read_page
    return await workers.run(reader, url, body, content_type, scope, selectors, seconds=seconds)


def _read_with_requisites(
    url: str, body: bytes, content_type: str | None, scope: UrlScope, selectors: Selectors
) -> PageRead:
    read = read_page(url, body, content_type, scope, selectors)
    return dataclasses.replace(read, requisites=page_requisites(body, url))


def check_structure(text: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH elements. One pass over its tags, in
    linear time: script and style text and comments are skipped (``a<b`` in a script is no
    tag), and so are elements that cannot nest (see _FLAT) and self-closed ones (``<path/>``)."""
    depth = pos = 0
    search = _TAG.search
    lower = None  # the text in lower case, made once if a raw-text element needs it
    while (m := search(text, pos)) is not None:
        pos = m.end()
        name = m[2]
        if name is None:  # a comment
            end = text.find("-->", pos)
            if end < 0:
                return
            pos = end + 3
            continue
        name = name.lower()
        if m[1]:
            depth = max(0, depth - 1) if name not in _FLAT else depth
            continue
        if name in _FLAT:
            continue
        close = text.find(">", pos)
        if close < 0:
            return
        pos = close + 1  # a tag's attributes end at its first ">", as a browser reads them
        if name in _RAW_TEXT:
            lower = text.translate(_ASCII_LOWER) if lower is None else lower
            end = lower.find(f"</{name}", pos)
            if end < 0:
                return
            pos = end
            continue
        if text[close - 1] == "/":
            continue
        depth += 1
        if depth > MAX_DEPTH:
            raise PageRefused(
                f"refused before parsing: elements nested more than {MAX_DEPTH} deep "
                f"(<{name[:40]}> at character {m.start()}); no real page nests so deep"
            )
