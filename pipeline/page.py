"""One HTML response read, whether it was just fetched or comes back from the captures: decoded
as a browser would, extracted, and its lesson named by the URL it was fetched from. The crawl and
`reparse` both read pages through here, so they cannot disagree about what a page says."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Selectors
from .decode import decode_html
from .extract import ListingPage, RawLesson, extract
from .frontier import CanonicalClaim, UrlScope, canonical_claim, lesson_of


@dataclass(frozen=True, slots=True)
class PageRead:
    page: ListingPage
    lesson: RawLesson | None  # the page's own titled lesson, under the URL it was read from
    claim: CanonicalClaim | None  # its canonical link naming another URL: an anomaly
    replaced: bool  # invalid bytes were replaced while decoding
    warnings: tuple[str, ...]  # a charset fallback, numbers out of range


def read_page(
    url: str, body: bytes, content_type: str | None, scope: UrlScope, selectors: Selectors
) -> PageRead:
    decoded = decode_html(body, content_type)
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
