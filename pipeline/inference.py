"""Listings proven instead of walked: a complete first crawl in about two requests per lesson.

The site's "You may also like" listing of a lesson lists the posts that share a category with
it, newest first, leaving the lesson itself out, and every lesson and every listed post carries
its categories as classes. So once one listing holding a category has been walked to its end,
every post of that category is known, with its own categories; and a lesson whose categories
are all known that way has a listing that can be predicted: every known post sharing a category
with it.

A prediction is a hypothesis, never a certainty. It is accepted only when the lesson's own page
(page 1 of its listing, fetched anyway) shows exactly what it predicts: the "Page 1 of M", as
many regular entries as a full page holds, each a predicted member, and none of them listed
after a predicted member that is not on page 1 in any listing walked (posts published on the
same day may come in either order). A lesson whose page 1 contradicts the prediction has its own
listing walked, and nothing else: what that walk shows is known from then on, and every proof is
checked again against it.

Sticky posts: WordPress can show posts on page 1 of every listing, before or after the regular
items, outside the per-page count and "Page N of M" (a members-only teaser, often one robots.txt
disallows). What walked listings show decides which entries are sticky: regular items fill
every page but the last evenly, so page 1 of a listing of several pages that shows more entries
than that per-page count shows sticky posts, and they are the entries every such page 1 shows,
whatever its lesson's categories, and that no walked page after page 1 shows. A sticky post is
neither a predicted member nor a contradiction.

Audits close the blind spot of page 1: once every listing is settled, a few of the proven ones
(``audit_listings``, those with the fewest pages first) are walked anyway; an audit that finds
the listing other than predicted is counted, its categories are reported, and its walk is known
from then on like any other.

Everything is decided when the queue runs dry, over sorted candidates: which lessons are walked
does not depend on the order answers arrived in, so one site crawled at any concurrency makes
the same requests. Listings are walked for the categories one at a time, each walk showing
more lessons to choose the next from. Everything here is plain state over what pages showed;
the frontier asks, and queues the listing pages it answers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from .extract import ListingPage


@dataclass(frozen=True, slots=True)
class PageOne:
    """What a lesson's own page showed of its listing."""

    url: str  # the lesson, canonical
    categories: frozenset[str]
    listed: tuple[str, ...]  # canonical lesson URLs, as shown
    page_count: int
    published: str | None = None  # the lesson's date (ISO), as its page shows it


@dataclass(slots=True)
class Walk:
    """A lesson's listing being read to its last page."""

    lesson: PageOne
    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    failed: bool = False
    # Its pages disagreed (the site changed while it was read): it is read to its newest last
    # page.
    changed: bool = False
    last: int = 0  # the last page, as the newest page read says
    audit: bool = False  # a proven listing walked to check its proof
    predicted: frozenset[str] = frozenset()  # what the proof of an audited listing said
    # position() as last worked out, and for how many pages: every lesson proven asks for it.
    _position: dict[str, int] = field(default_factory=dict, repr=False)
    _pages_read: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.last = self.last or self.lesson.page_count

    @property
    def read(self) -> bool:
        """Every page of it was read: the listing is settled."""
        return not self.failed and all(n in self.pages for n in range(1, self.last + 1))

    @property
    def complete(self) -> bool:
        """Read to its end: it shows every post of its categories. A listing that changed
        while it was read still does: a post pushed onto the next page shows twice, and its
        pages are read to its newest end; only a post published meanwhile may be missing
        (see ``ListingInference._published_since``)."""
        return self.read

    def position(self) -> dict[str, int]:
        """Each listed lesson's place in the listing, newest first, in that order. Pages are
        only ever added, so it is worked out again only when one was."""
        if self._pages_read != len(self.pages):
            seen: dict[str, None] = {}
            for n in range(1, self.last + 1):
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
    audited: int = 0  # proven listings walked anyway, to check the proofs
    audits_contradicted: int = 0  # of those, the ones the walk showed other than predicted


@dataclass
class ListingInference:
    """Which lessons' listings must be walked, and which are proven from those walked."""

    audit_listings: int = 1  # proven listings each run walks to check them
    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    walks: dict[str, Walk] = field(default_factory=dict)
    # Lessons seen whose listings are not settled yet: waiting for their categories to be known.
    waiting: dict[str, PageOne] = field(default_factory=dict)
    inferred: dict[str, PageOne] = field(default_factory=dict)
    contradicted: set[str] = field(default_factory=set)  # lessons a page 1 contradicted
    audit_contradicted: set[str] = field(default_factory=set)
    # Categories of the listings a contradiction was found in: the next run walks them.
    untrusted: set[str] = field(default_factory=set)
    dates: dict[str, str] = field(default_factory=dict)
    per_page: int = 0  # regular entries on a full page; 0 until walked listings say
    sticky: frozenset[str] = frozenset()
    # How many times the queue ran dry so far; when each post was first seen, and in which of
    # those rounds each lesson's page 1 was read.
    phase: int = 0
    first_seen: dict[str, int] = field(default_factory=dict)
    read_in: dict[str, int] = field(default_factory=dict)
    _audited: bool = False
    _unlisted_asked: bool = False
    # The posts seen in each category, as of how many posts were seen.
    _by_category: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _by_category_of: int = field(default=-1, repr=False)
    _walked: set[str] = field(default_factory=set, repr=False)
    _walked_of: int = field(default=-1, repr=False)

    # -- what pages showed -------------------------------------------------------------

    def learn(self, page: ListingPage, canonical: dict[str, str]) -> None:
        """The categories a page shows for its listed posts; ``canonical`` maps each listed
        link to its canonical URL."""
        for link, cats in zip(page.listed, page.listed_categories, strict=False):
            if (url := canonical.get(link)) is not None:
                if url not in self.categories:
                    self.categories[url] = cats
                    self._by_category_of = -1
                self.first_seen.setdefault(url, self.phase)

    def lesson_seen(self, lesson: PageOne) -> None:
        """A lesson's own page: its listing is settled when the queue runs dry."""
        if self.categories.get(lesson.url) != lesson.categories:
            self.categories[lesson.url] = lesson.categories
            self._by_category_of = -1
        self.first_seen.setdefault(lesson.url, self.phase)
        self.read_in.setdefault(lesson.url, self.phase)
        if lesson.published:
            self.dates[lesson.url] = lesson.published
        if lesson.url not in self.walks:
            self.waiting[lesson.url] = lesson

    def listing_page_seen(self, lesson_url: str, page: ListingPage, listed: Iterable[str]) -> None:
        """Page ``page.page`` of a walked listing."""
        walk = self.walks.get(lesson_url)
        if walk is None or walk.failed or not page.page or not page.page_count:
            return
        listed = tuple(listed)
        shown_before = {
            url for n, entries in walk.pages.items() if n != page.page for url in entries
        }
        if page.page_count != walk.lesson.page_count or shown_before.intersection(listed):
            # The listing changed while it was read (it grew by a page, or a post published
            # meanwhile pushed one onto the next page): it is read to its newest end.
            walk.changed = True
            walk.last = max(walk.last, page.page_count)
        walk.pages[page.page] = listed

    def listing_page_failed(self, lesson_url: str) -> None:
        walk = self.walks.get(lesson_url)
        if walk is not None:
            walk.failed = True

    def drained(self) -> list[str]:
        """The queue ran dry: the lessons whose listings are to be walked now. Proofs are made
        (and those made before checked again) against every walk read so far; then as few
        waiting lessons are walked as cover the categories still unknown, short listings
        first; and when every listing is settled, the audits."""
        self.phase += 1
        self._learn_shape()
        walk = [url for url in sorted(self.waiting) if not self.waiting[url].categories]
        for url in sorted(self.waiting):
            lesson = self.waiting[url]
            if url in walk or not lesson.categories <= self._known():
                continue
            if self._predicts(lesson):
                self.inferred[url] = self.waiting.pop(url)
            else:
                walk.append(self._contradiction(lesson))
        for url in sorted(self.inferred):
            if not self._predicts(self.inferred[url]):
                walk.append(self._contradiction(self.inferred[url]))
        self._check_audits()
        walk += self._cover()
        if not walk and self.settled and not self._audited:
            self._audited = True
            return self._start_walks(self._audit_sample(), audit=True)
        return self._start_walks(walk)

    def pages_showing_unlisted(self) -> list[tuple[str, int]]:
        """Once every listing is settled, asked once: for each post that no page read has
        listed, the page of a proven listing that shows it, as (lesson URL, page number).

        A post is listed nowhere when its own listing is the only one walked for its
        categories (a listing leaves its lesson out) and it is not among the newest of any
        page 1; a full walk would still have read it in other lessons' listings, with the
        thumbnail and text they show of it. So the shortest proven listing that holds it has
        the one page read where, newest first by date, it stands (the pages it may stand on,
        where posts of the same day or of no known date straddle a page's end): a request or
        two for each such post, never a walk."""
        if self._unlisted_asked or not self.settled or not self.per_page:
            return []
        self._unlisted_asked = True
        shown = {url for w in self.walks.values() for e in w.pages.values() for url in e}
        for lesson in (*self.inferred.values(), *(w.lesson for w in self.walks.values())):
            shown.update(lesson.listed)
        pages: list[tuple[str, int]] = []
        for post in sorted(set(self.categories) - shown - self.sticky):
            holders = [lesson for lesson in self.inferred.values() if post in self._members(lesson)]
            if not holders or post not in self.dates:
                continue
            holder = min(holders, key=lambda lesson: (lesson.page_count, lesson.url))
            others = self._members(holder) - {post}
            day = self.dates[post]
            newer = sum(1 for url in others if self.dates.get(url, "") > day)
            # Posts of the same day, and posts whose page was not read (no date), may stand
            # before it or after it.
            unsure = sum(1 for url in others if self.dates.get(url, day) == day)
            first, last = newer // self.per_page + 1, (newer + unsure) // self.per_page + 1
            pages += [
                (holder.url, n) for n in range(max(first, 2), min(last, holder.page_count) + 1)
            ]
        return pages

    def to_walk_next(self) -> list[str]:
        """The lessons sharing a category with a listing found other than predicted (by its
        page 1 or by an audit), whose listings were not walked to their end now: the next run
        walks them in full."""
        return sorted(
            url
            for url in self.read_in
            if self.categories.get(url, frozenset()) & self.untrusted
            and not (url in self.walks and self.walks[url].read)
        )

    # -- the counts ---------------------------------------------------------------------

    @property
    def counts(self) -> ListingCounts:
        audits = [w for w in self.walks.values() if w.audit]
        return ListingCounts(
            walked=len(self.walks) - len(audits),
            inferred=len(self.inferred),
            contradicted=len(self.contradicted),
            audited=len(audits),
            audits_contradicted=len(self.audit_contradicted),
        )

    @property
    def settled(self) -> bool:
        """Every listing seen was walked to its end or proven."""
        return not self.waiting and all(walk.read for walk in self.walks.values())

    # -- the rules ---------------------------------------------------------------------

    def _learn_shape(self) -> None:
        """The per-page count and the sticky posts, from what walked listings show: regular
        items fill every page but the last, and a sticky post is on every page 1 that shows
        more than that, never on a later page."""
        full = Counter(
            len(entries)
            for walk in self.walks.values()
            for n, entries in walk.pages.items()
            if 1 < n < walk.last
        )
        later = {
            url for walk in self.walks.values() for n, e in walk.pages.items() if n > 1 for url in e
        }
        firsts = [w.lesson for w in self.walks.values() if w.lesson.page_count > 1]
        firsts += [x for x in (*self.waiting.values(), *self.inferred.values()) if x.page_count > 1]
        if not firsts:
            return
        if not full:
            # No walked listing has a page between its first and its last: page 1 says it,
            # and no post is believed sticky.
            self.per_page, self.sticky = min(len(x.listed) for x in firsts), frozenset()
            return
        per_page = full.most_common(1)[0][0]
        if {len(x.listed) - per_page for x in firsts} == {0}:
            self.per_page, self.sticky = per_page, frozenset()
            return
        # On every page 1 of several pages (a sticky post is left out of its own listing).
        on_all = set.intersection(*({*x.listed, x.url} for x in firsts)) - later
        sticky = frozenset(
            url for url in on_all if all(url in x.listed for x in firsts if x.url != url)
        )
        # As many on each page 1 as it shows above the per-page count, or none is believed
        # sticky (predictions then fail, and those listings are walked).
        fits = all(len(set(x.listed) & sticky) == len(x.listed) - per_page for x in firsts)
        self.per_page, self.sticky = per_page, (sticky if fits else frozenset())

    def _cover(self) -> list[str]:
        """The next listing to walk for the categories still unknown: of the cheapest set of
        waiting lessons' listings that covers them (in pages after the first; chosen greedily,
        short listings first, when there are many categories), the one that covers the most,
        ties by fewer pages, then URL. One at a time: each walk shows more lessons, and the
        next choice is made with them (a first crawl without a sitemap starts out knowing only
        the lessons page 1s show)."""
        pending = sorted(
            (self.waiting[url] for url in self.waiting if url not in self.walks),
            key=lambda lesson: lesson.url,
        )
        uncovered = set().union(*(lesson.categories for lesson in pending)) - self._known()
        uncovered -= self._in_progress()
        if not uncovered:
            return []
        if len(uncovered) <= EXACT_COVER_CATEGORIES:
            cheapest = set(_cheapest_cover(pending, uncovered))
            cover = [x for x in pending if x.url in cheapest]
        else:
            cover = _greedy_cover(pending, uncovered)
        best = min(
            cover,
            key=lambda x: (-len(x.categories & uncovered), x.page_count, x.url),
            default=None,
        )
        return [] if best is None else [best.url]

    def _audit_sample(self) -> list[str]:
        """The proven listings to walk anyway: the fewest pages first, ties by URL."""
        proven = sorted(self.inferred.values(), key=lambda x: (x.page_count, x.url))
        return [x.url for x in proven[: self.audit_listings]]

    def _check_audits(self) -> None:
        for url, walk in sorted(self.walks.items()):
            if not walk.audit or not walk.complete or url in self.audit_contradicted:
                continue
            listed = set(walk.position()) - self.sticky - {url}
            if listed != walk.predicted:
                self.audit_contradicted.add(url)
                self.untrusted |= walk.lesson.categories
                self.inferred.pop(url, None)

    def _start_walks(self, urls: Iterable[str], *, audit: bool = False) -> list[str]:
        started = []
        for url in sorted(set(urls)):
            lesson = self.waiting.pop(url, None) or self.inferred.get(url)
            if lesson is None or url in self.walks:
                continue
            if not audit:
                self.inferred.pop(url, None)
            walk = self.walks[url] = Walk(lesson, audit=audit)
            if audit:
                walk.predicted = frozenset(self._members(lesson))
            walk.pages[1] = lesson.listed
            started.append(url)
        return started

    def _contradiction(self, lesson: PageOne) -> str:
        """Its page 1 says the prediction is wrong: its own listing is walked."""
        self.contradicted.add(lesson.url)
        self.untrusted |= lesson.categories
        return lesson.url

    def _known(self) -> set[str]:
        """Categories whose every post is known: some listing holding them was walked."""
        return set().union(*(w.lesson.categories for w in self.walks.values() if w.complete))

    def _in_progress(self) -> set[str]:
        return set().union(
            *(w.lesson.categories for w in self.walks.values() if not w.read and not w.failed)
        )

    def _members(self, lesson: PageOne) -> set[str]:
        """Every post seen sharing a category with ``lesson``, itself and sticky posts left
        out: once its categories are known (walked), no other post can be in its listing."""
        by_category: dict[str, set[str]] = {}
        if self._by_category_of < 0:
            for url, cats in self.categories.items():
                for category in cats:
                    by_category.setdefault(category, set()).add(url)
            self._by_category, self._by_category_of = by_category, 0
        index = self._by_category
        members = set().union(*(index.get(c, ()) for c in lesson.categories))
        return members - self.sticky - {lesson.url}

    def _predicts(self, lesson: PageOne) -> bool:
        members = self._members(lesson)
        if not self.per_page:
            return False
        shown = [url for url in lesson.listed if url not in self.sticky]
        members -= self._published_since(lesson, members, shown)
        if lesson.page_count != max(1, math.ceil(len(members) / self.per_page)):
            return False
        if len(shown) != min(self.per_page, len(members)) or not set(shown) <= members:
            return False
        # Newest first: nothing left off page 1 may come before what is on it, in any listing
        # walked that shows both, unless the two were published on the same day (WordPress
        # orders those as it likes, and not always alike in two listings).
        rest = members - set(shown)
        for walk in self.walks.values():
            if not walk.complete:
                continue
            position = walk.position()
            on_page = [url for url in shown if url in position]
            for a, b in pairwise(on_page):
                if position[a] > position[b] and not self._same_day(a, b):
                    return False
            later = [position[url] for url in rest if url in position]
            if not on_page or not later or min(later) > max(position[a] for a in on_page):
                continue
            for a in on_page:
                for b in rest:
                    if b in position and position[b] < position[a] and not self._same_day(a, b):
                        return False
        return True

    def _published_since(self, lesson: PageOne, members: set[str], shown: list[str]) -> set[str]:
        """Members that page 1 of ``lesson`` could not show yet: posts published while the
        site was read. Such a post was first seen no earlier than that page 1 was read (one
        published before would have been on the page 1s read with it: page 1 shows each
        category's newest posts), and it is newer than a post that page 1 shows, or no
        walked listing shows it at all."""
        read = self.read_in.get(lesson.url, 0)
        late = {url for url in members if self.first_seen.get(url, 0) >= read} - set(shown)
        if not late or not shown:
            return set()
        oldest = min((self.dates[url] for url in shown if url in self.dates), default=None)
        walked = self._walked_posts()
        return {
            url
            for url in late
            if (oldest is not None and self.dates.get(url, "") > oldest) or url not in walked
        }

    def _walked_posts(self) -> set[str]:
        """Every post a complete walk shows, or whose listing it is (worked out again only
        when a page was read)."""
        read = sum(len(walk.pages) for walk in self.walks.values())
        if self._walked_of != read:
            self._walked = set()
            for walk in self.walks.values():
                if walk.complete:
                    self._walked.add(walk.lesson.url)
                    self._walked.update(walk.position())
            self._walked_of = read
        return self._walked

    def _same_day(self, a: str, b: str) -> bool:
        day = self.dates.get(a)
        return day is not None and day == self.dates.get(b)


# Up to this many categories to cover, the cheapest cover is worked out over every subset of
# them (2^16 states for each distinct set of categories); past it, a greedy one.
EXACT_COVER_CATEGORIES = 16


def _cheapest_cover(lessons: list[PageOne], uncovered: set[str]) -> list[str]:
    """The lessons whose listings cover ``uncovered`` for the fewest pages after page 1."""
    bit = {category: 1 << i for i, category in enumerate(sorted(uncovered))}
    options: dict[int, PageOne] = {}  # a set of categories, as bits: its cheapest lesson
    for lesson in lessons:
        mask = sum(bit[c] for c in lesson.categories if c in bit)
        held = options.get(mask)
        if mask and (held is None or (lesson.page_count, lesson.url) < (held.page_count, held.url)):
            options[mask] = lesson
    states = 1 << len(bit)
    cost = [math.inf] * states
    cost[0] = 0
    came_from: list[tuple[int, PageOne] | None] = [None] * states
    for mask, lesson in sorted(options.items()):
        price = lesson.page_count - 1
        for state in range(states):
            if cost[state] + price < cost[state | mask]:
                cost[state | mask] = cost[state] + price
                came_from[state | mask] = (state, lesson)
    target = 0
    for mask in options:
        target |= mask
    chosen = []
    while target and (step := came_from[target]) is not None:
        target, lesson = step
        chosen.append(lesson.url)
    return sorted(chosen)


def _greedy_cover(lessons: list[PageOne], uncovered: set[str]) -> list[PageOne]:
    """Lessons whose listings cover ``uncovered``, each the most categories a page."""
    pending, uncovered, chosen = list(lessons), set(uncovered), []
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
        chosen.append(best)
        uncovered -= best.categories
        pending.remove(best)
    return chosen
