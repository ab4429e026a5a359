"""Listings proven instead of walked: a complete first crawl in about two requests per lesson.

The site's "You may also like" listing of a lesson lists the posts that share a category with
it, newest first, leaving the lesson itself out, and every lesson and every listed post carries
its categories as classes. So once one listing holding a category has been walked to its end,
every post of that category is known, with its own categories; and a lesson whose categories
are all known that way has a listing that can be predicted: every known post sharing a category
with it.

A prediction is a hypothesis, never a certainty. It is accepted only when the lesson's own page
(page 1 of its listing, fetched anyway) shows exactly what it predicts: the "Page 1 of M", as
many entries as a full page holds, each a predicted member, and none of them listed after a
predicted member that is not on page 1 in any listing walked. A lesson whose page 1 contradicts
the prediction is walked, and so is every lesson whose listing was inferred from the categories
it has: those are no longer trusted. Everything here is plain state over what pages showed; the
frontier asks, and queues the listing pages it answers.

Which lessons are walked is decided when the queue runs dry: from the lessons seen whose
categories are not yet all known, as few as cover them, short listings first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from .extract import ListingPage


@dataclass(frozen=True, slots=True)
class PageOne:
    """What a lesson's own page showed of its listing."""

    url: str  # the lesson, canonical
    categories: frozenset[str]
    listed: tuple[str, ...]  # canonical lesson URLs, as shown
    page_count: int


@dataclass(slots=True)
class Walk:
    """A lesson's listing being read to its last page."""

    lesson: PageOne
    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    failed: bool = False
    # position() as last worked out, and for how many pages: every lesson proven asks for it.
    _position: dict[str, int] = field(default_factory=dict, repr=False)
    _pages_read: int = field(default=0, repr=False)

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.pages) == self.lesson.page_count

    def position(self) -> dict[str, int]:
        """Each listed lesson's place in the listing, newest first, in that order. Pages are
        only ever added, so it is worked out again only when one was."""
        if self._pages_read != len(self.pages):
            seen: dict[str, None] = {}
            for n in range(1, self.lesson.page_count + 1):
                seen.update(dict.fromkeys(self.pages.get(n, ())))
            self._position = {url: i for i, url in enumerate(seen)}
            self._pages_read = len(self.pages)
        return self._position


@dataclass(frozen=True, slots=True)
class ListingCounts:
    """How each listing of a run was settled: what the `runs` table keeps."""

    walked: int = 0
    inferred: int = 0
    contradicted: int = 0


@dataclass
class ListingInference:
    """Which lessons' listings must be walked, and which are proven from those walked."""

    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    walks: dict[str, Walk] = field(default_factory=dict)
    # Lessons seen whose listings are not settled yet: waiting for their categories to be known.
    waiting: dict[str, PageOne] = field(default_factory=dict)
    inferred: dict[str, PageOne] = field(default_factory=dict)
    untrusted: set[str] = field(default_factory=set)  # categories a page 1 contradicted
    contradicted: int = 0
    per_page: int = 0  # the most entries a listing page that is not its last one showed

    # -- what pages showed -------------------------------------------------------------

    def learn(self, page: ListingPage, canonical: dict[str, str]) -> None:
        """The categories a page shows for its listed posts; ``canonical`` maps each listed
        link to its canonical URL."""
        for link, cats in zip(page.listed, page.listed_categories, strict=False):
            if (url := canonical.get(link)) is not None and cats:
                self.categories[url] = cats
        if page.page and page.page_count and page.page < page.page_count:
            self.per_page = max(self.per_page, len(page.listed))

    def lesson_seen(self, lesson: PageOne) -> list[str]:
        """A lesson's own page: the lessons whose listings must now be walked (this one, or
        the ones its page contradicts), or nothing while it can be proven or must wait."""
        self.categories[lesson.url] = lesson.categories
        self.waiting[lesson.url] = lesson
        return self._settle([lesson.url])

    def listing_page_seen(self, lesson_url: str, page: ListingPage, listed: Iterable[str]):
        """Page ``page.page`` of a walked listing: the lessons to walk now that it may have
        completed a walk (and so proven others)."""
        walk = self.walks.get(lesson_url)
        if walk is None or walk.failed:
            return []
        if page.page_count != walk.lesson.page_count or not page.page:
            # The listing changed while it was read: nothing is inferred from it.
            walk.failed = True
            return self._settle(list(self.waiting))
        walk.pages[page.page] = tuple(listed)
        return self._settle(list(self.waiting)) if walk.complete else []

    def listing_page_failed(self, lesson_url: str) -> list[str]:
        walk = self.walks.get(lesson_url)
        if walk is None or walk.failed:
            return []
        walk.failed = True
        return self._settle(list(self.waiting))

    def drained(self) -> list[str]:
        """The queue ran dry: walk as few waiting lessons as cover the categories still
        unknown, short listings first (each walked listing costs its page count)."""
        pending = [self.waiting[url] for url in self.waiting if url not in self.walks]
        uncovered = set().union(*(lesson.categories for lesson in pending)) - self._known()
        uncovered -= self._in_progress()
        chosen = []
        while uncovered:
            best = max(
                pending,
                key=lambda lesson: (
                    len(lesson.categories & uncovered) / lesson.page_count,
                    -lesson.page_count,
                ),
                default=None,
            )
            if best is None or not best.categories & uncovered:
                break
            chosen.append(best.url)
            uncovered -= best.categories
            pending.remove(best)
        return self._start_walks(chosen) + self._settle(list(self.waiting))

    # -- the counts ---------------------------------------------------------------------

    @property
    def counts(self) -> ListingCounts:
        return ListingCounts(
            walked=len(self.walks), inferred=len(self.inferred), contradicted=self.contradicted
        )

    @property
    def settled(self) -> bool:
        """Every listing seen was walked to its end or proven."""
        return not self.waiting and all(walk.complete for walk in self.walks.values())

    # -- the rules ---------------------------------------------------------------------

    def _settle(self, urls: list[str]) -> list[str]:
        """Prove what can be proven; walk what was contradicted or cannot be."""
        walk = []
        known = self._known()
        for url in urls:
            lesson = self.waiting.get(url)
            if lesson is None or url in self.walks:
                continue
            if not lesson.categories or lesson.categories & self.untrusted:
                walk.append(url)
            elif lesson.categories <= known:
                if self._predicts(lesson):
                    self.inferred[url] = self.waiting.pop(url)
                else:
                    walk += self._contradiction(lesson)
            # Otherwise it waits: for the walks in progress, or for the queue to run dry.
        return self._start_walks(walk)

    def _start_walks(self, urls: Iterable[str]) -> list[str]:
        started = []
        for url in dict.fromkeys(urls):
            lesson = self.waiting.pop(url, None) or self.inferred.pop(url, None)
            if lesson is None or url in self.walks:
                continue
            walk = self.walks[url] = Walk(lesson)
            walk.pages[1] = lesson.listed
            started.append(url)
        return started

    def _contradiction(self, lesson: PageOne) -> list[str]:
        """Its page 1 says the hypothesis is wrong for its categories: walk it, and every
        lesson proven through any of them."""
        self.contradicted += 1
        self.untrusted |= lesson.categories
        redo = [url for url, other in self.inferred.items() if other.categories & self.untrusted]
        return [lesson.url, *redo]

    def _known(self) -> set[str]:
        """Categories whose every post is known: some listing holding them was walked."""
        return set().union(*(w.lesson.categories for w in self.walks.values() if w.complete))

    def _in_progress(self) -> set[str]:
        return set().union(
            *(w.lesson.categories for w in self.walks.values() if not w.complete and not w.failed)
        )

    def _members(self, lesson: PageOne) -> set[str] | None:
        """Every known post sharing a category with ``lesson``, itself left out; None when a
        walked post's categories are not known."""
        members = set()
        for walk in self.walks.values():
            if not walk.complete or not walk.lesson.categories & lesson.categories:
                continue
            for url in (walk.lesson.url, *walk.position()):
                cats = self.categories.get(url)
                if cats is None:
                    return None
                if cats & lesson.categories and url != lesson.url:
                    members.add(url)
        return members

    def _predicts(self, lesson: PageOne) -> bool:
        members = self._members(lesson)
        if members is None or not self.per_page:
            return False
        shown = lesson.listed
        if lesson.page_count != max(1, math.ceil(len(members) / self.per_page)):
            return False
        if len(shown) != min(self.per_page, len(members)) or not set(shown) <= members:
            return False
        # Newest first: nothing left off page 1 may come before what is on it, in any listing
        # walked that shows both.
        rest = members - set(shown)
        for walk in self.walks.values():
            if not walk.complete:
                continue
            position = walk.position()
            on_page = [position[url] for url in shown if url in position]
            if on_page != sorted(on_page):
                return False
            later = [position[url] for url in rest if url in position]
            if on_page and later and min(later) < max(on_page):
                return False
        return True
