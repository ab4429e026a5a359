"""The fixture site scaled to N lessons, generated lesson by lesson so nothing needs all N at once.

Round 0 is the fixture's own 54 lessons, verbatim (every quirk: a program typed two ways, curly
and straight apostrophes, a part that is never listed, a lesson robots.txt disallows, two
lessons sharing a title, short listing excerpts). Round k >= 1 copies each of them with the
round in the slug and the program name, so programs stay programs ("Let’s begin the day
(round 3), 2: …" and "Let's begin the day (round 3), 4: …" are still one program typed two
ways), and a sentence with a word made from the lesson's index, so full-text search has rare
terms as well as the common ones every round repeats.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from functools import cache

from tests.site import render
from tests.site.server import START_SLUG, Lesson, load_lessons

SITE_URL = "https://movementality.se"
# The same split rule as the site's titles: the program ends at the last ", <n>:".
_NUMBERED_TITLE = re.compile(r"^(?P<program>.*\S)\s*,\s*(?P<part>\d+)\s*:\s*(?P<subtitle>.*)$")
_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "vo", "ri", "pe", "du", "ga", "ho", "zi", "be")
# Each round is published a week before the one after it: rounds interleave in the newest-first
# listings, and 100 000 lessons (1 852 rounds) still fit in dates after 1985.
_ROUND_SHIFT = timedelta(days=7)
LISTING_PAGES = 18


@cache
def base_lessons() -> tuple[Lesson, ...]:
    """The fixture's lessons, the crawl's start lesson first so that any N contains it."""
    lessons = load_lessons()
    lessons.sort(key=lambda lesson: lesson.slug != START_SLUG)
    return tuple(lessons)


def rare_word(index: int) -> str:
    """A made-up word unique to one lesson index: 0 → "loka", 99 999 → "mipevoneho"."""
    digits = []
    index += len(_SYLLABLES)  # at least two syllables
    while index:
        index, digit = divmod(index, len(_SYLLABLES))
        digits.append(_SYLLABLES[digit])
    return "".join(reversed(digits))


def synthetic_lesson(index: int) -> Lesson:
    """Lesson number ``index`` of the scaled site; the same index always gives the same lesson."""
    base = base_lessons()
    lesson = base[index % len(base)]
    round_ = index // len(base)
    if round_ == 0:
        return dataclasses.replace(
            lesson,
            categories=list(lesson.categories),
            description=list(lesson.description),
            listing_description=list(lesson.listing_description),
        )
    tag = f"(round {round_})"
    if m := _NUMBERED_TITLE.match(lesson.title):
        title = f"{m['program']} {tag}, {m['part']}: {m['subtitle']}"
    else:
        title = f"{lesson.title} {tag}"
    extra = f"Round {round_} adds the {rare_word(index)} variation."
    description = [*lesson.description, extra]
    # A written excerpt (shorter than the text) stays one; otherwise WordPress derives it.
    excerpt = [] if lesson.listing_description == lesson.description else lesson.listing_description
    shift = _ROUND_SHIFT * round_
    published = date.fromisoformat(lesson.published) - shift
    modified = datetime.fromisoformat(lesson.modified.replace("Z", "+00:00")) - shift
    return dataclasses.replace(
        lesson,
        slug=f"{lesson.slug}-round-{round_}",
        title=title,
        published=published.isoformat(),
        modified=modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        categories=list(lesson.categories),
        description=description,
        listing_description=list(excerpt),
        post_id=lesson.post_id + 1000 * round_,
    )


def synthetic_lessons(n: int) -> list[Lesson]:
    """The first ``n`` lessons of the scaled site, for a FixtureSite to serve."""
    return [synthetic_lesson(i) for i in range(n)]


def new_lesson(n: int) -> Lesson:
    """A lesson not among the first ``n``, as an editor would publish it today."""
    lesson = synthetic_lesson(n)
    return dataclasses.replace(lesson, published="", modified="", post_id=0)


def lesson_pages(
    n: int, *, site_url: str = SITE_URL, listing_size: int = 3
) -> Iterator[tuple[str, str]]:
    """(url, html) of page 1 of each of ``n`` lessons, rendered as the site renders it, one at
    a time: nothing holds more than one page.

    Each page lists the ``listing_size`` lessons before it and says "Page 1 of 18", the longest
    listing the real site has: computing N listings of N lessons is the crawl benchmark's job,
    and the fixture's PageNavi would print a jump link per ten pages of a 20 000-page listing."""
    for i in range(n):
        lesson = _with_excerpt(synthetic_lesson(i))
        items = [_with_excerpt(synthetic_lesson(j % n)) for j in range(i - listing_size, i)]
        url = render.lesson_url(site_url, lesson.slug)
        yield url, render.lesson_page(site_url, lesson, items, 1, LISTING_PAGES)


def _with_excerpt(lesson: Lesson) -> Lesson:
    # What FixtureSite does on load: the listing shows the text unless an excerpt was written.
    if not lesson.listing_description:
        lesson.listing_description = lesson.description
    return lesson


# A members-only teaser WordPress shows as a sticky post on page 1 of every listing, and that
# robots.txt disallows: what a site with sticky posts adds to the scaled one.
TEASER_PATH = "/video/members-only-teaser/"


def members_only_teaser() -> Lesson:
    return Lesson(
        slug="members-only-teaser",
        title="Members only: the full programme",
        published="2025-12-24",
        modified="2025-12-24T12:00:00Z",
        categories=["Members"],
        description=["Become a member to see every lesson."],
        post_id=990_000,
    )
