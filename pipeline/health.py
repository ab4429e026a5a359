"""Health checks: may this run be trusted to mark lessons removed and publish a snapshot?

A crawl can "succeed" and still be wrong. When the site's theme changes, selectors quietly find
nothing: listings yield no lessons, lesson pages no title, and a run that believed them would
mark the whole archive removed. Each check here looks at what one run saw and names what is
wrong; pure, so it is tested on plain dataclasses.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import Health
from .crawl import CrawlResult

# The names stored in `runs.health` and printed in summaries: part of the public interface.
LISTING_EMPTY = "listing_empty"
UNTITLED_LESSON = "untitled_lesson"
EMPTY_DESCRIPTIONS = "empty_descriptions"
LESSON_DROP = "lesson_drop"
FAILED_PAGES = "failed_pages"
FEWER_THAN_LISTED = "fewer_than_listed"
CHECKS = (
    LISTING_EMPTY,
    UNTITLED_LESSON,
    EMPTY_DESCRIPTIONS,
    LESSON_DROP,
    FAILED_PAGES,
    FEWER_THAN_LISTED,
)


@dataclass(frozen=True, slots=True)
class HealthFailure:
    name: str  # one of CHECKS
    detail: str  # what was seen, in one line, for the archivist

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}"


def check_health(
    result: CrawlResult, thresholds: Health, *, baseline: Collection[str] | None
) -> list[HealthFailure]:
    """The checks this run fails, in CHECKS order; empty when healthy.

    ``baseline`` is the lessons, by path, of the last complete, healthy run (None before the
    first one). A run stopped by its page budget (or its deadline) is partial by choice, so
    it is not held to the baseline, nor to what its listings promise.
    """
    failures = []
    # Every lesson page of the site is also page 1 of a "You may also like" listing of other
    # lessons, and a listing page exists only while it has items: an empty one means the
    # listing selector no longer matches. Pages answered 304 were not parsed, so they are not
    # counted either way.
    empty = [
        p.url
        for p in result.pages.values()
        if p.kind in ("lesson", "listing") and p.status == 200 and p.listed == 0
    ]
    if empty:
        failures.append(
            HealthFailure(
                LISTING_EMPTY,
                f"{_pages(len(empty))} listed no lessons, e.g. {min(empty)} "
                "(check selectors.listed_lesson)",
            )
        )
    if result.untitled:
        failures.append(
            HealthFailure(
                UNTITLED_LESSON,
                f"{_pages(len(result.untitled))} had no title, e.g. {min(result.untitled)} "
                "(check selectors.title)",
            )
        )
    # A title without its text: the description selector stopped matching while the title's
    # still does. One lesson may really have no text; most of them cannot.
    read = list(result.lessons.values())
    empty = sorted(lesson.url for lesson in read if not lesson.description)
    if read and len(empty) / len(read) > thresholds.max_empty_descriptions:
        failures.append(
            HealthFailure(
                EMPTY_DESCRIPTIONS,
                f"{len(empty)} of {len(read)} lesson pages read had no description, e.g. "
                f"{empty[0]} (check selectors.description)",
            )
        )
    found = {urlsplit(url).path for url in result.lesson_urls}
    partial = result.budget_exhausted or result.deadline_passed or result.capped
    if baseline and not partial:
        # Identities, not counts: a run whose lessons are all others (every lesson gone, as
        # many new ones) has lost them all, however many it found.
        missing = sorted(set(baseline) - found)
        drop = len(missing) / len(baseline)
        if drop > thresholds.max_lesson_drop:
            new = len(found - set(baseline))
            failures.append(
                HealthFailure(
                    LESSON_DROP,
                    f"{len(missing)} of the {len(baseline)} lessons of the last healthy run "
                    f"not found ({drop:.0%}, more than health.max_lesson_drop = "
                    f"{thresholds.max_lesson_drop:.0%}), e.g. {missing[0]}; {len(found)} found"
                    + (f", {new} of them new: the site may have moved" if new else ""),
                )
            )
    attempted = [p for p in result.pages.values() if p.status is not None or p.error]
    failed = sorted((p for p in attempted if p.error is not None), key=lambda p: p.url)
    if attempted and len(failed) / len(attempted) > thresholds.max_failed_pages:
        failures.append(
            HealthFailure(
                FAILED_PAGES,
                f"{len(failed)} of {len(attempted)} pages failed "
                f"({len(failed) / len(attempted):.0%}, more than health.max_failed_pages = "
                f"{thresholds.max_failed_pages:.0%}), e.g. {failed[0].url}: {failed[0].error}",
            )
        )
    # "Page 1 of 17" on a lesson's listing, 3 a page, means the site has some 50 lessons: a
    # first run that found far fewer (a start URL whose links lead elsewhere) missed them.
    # Later runs are held to the last healthy run's lessons instead.
    promised = result.promised.lessons
    accounted = len(found) + len({urlsplit(url).path for url in result.disallowed})
    if promised and accounted < promised and not partial and baseline is None:
        failures.append(
            HealthFailure(
                FEWER_THAN_LISTED,
                f"{len(found)} lessons found, but a listing of {result.promised.pages} pages "
                f"means at least {promised}: the crawl could not follow the site's own links",
            )
        )
    return failures


def _pages(n: int) -> str:
    return "1 page" if n == 1 else f"{n} pages"
