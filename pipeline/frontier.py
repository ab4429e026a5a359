"""The frontier's rules: which URLs belong to the crawl, the one spelling of each, and what to
fetch next given what a page showed and what the archive already knows. Plain code over plain
data, with no network and no queue: ``Crawl`` asks, and queues what the answer names.

Listings differ from lesson to lesson, so no single listing holds every lesson: a first crawl
walks every lesson's listing to its last page, enqueues every lesson it finds, reads the
sitemap as a second source, and dedupes on canonical URL. A re-crawl asks every known page
conditionally and, since listings are newest first, reads a changed listing only while it
shows lessons the archive does not know; the rest of such a listing is deferred, and walked
only if no sitemap vouched for every lesson.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from .archive import KnownPage, ListingWalks, PageRecord
from .config import Config
from .extract import ListingPage, RawLesson, bounded_page
from .inference import ListingCounts, ListingInference, PageOne
from .normalise import parse_date

# Whitespace and control characters are never part of a URL (a browser strips or rejects
# them); a link holding one is not followed.
_NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f-\x9f]")
# Listing pages queued ahead of the last one fetched: enough to keep every worker busy, while
# the queue grows with the pages fetched, never with what a page claims.
LOOKAHEAD = 16


@dataclass(frozen=True, slots=True)
class Link:
    """A URL to fetch, and what the frontier expects it to be: lesson, listing or sitemap."""

    url: str
    kind: str


class UrlScope:
    """Which URLs belong to a crawl of one host, and the one spelling of each."""

    def __init__(self, config: Config, origin_url: str):
        self.config = config
        self._lesson_path = re.compile(config.scope.lesson_path)
        self._listing_path = re.compile(config.scope.listing_path)
        origin = urlsplit(origin_url)
        self._origin = (origin.scheme, origin.netloc)
        self._site_host = urlsplit(config.site.base_url).netloc

    def canonical(self, url: str) -> str | None:
        """The one spelling of an in-scope lesson or listing URL, or None if out of scope:
        no query or fragment, a trailing slash, and page 1 of a listing is the lesson itself.
        A listing page numbered past MAX_LISTING_PAGES is out of scope."""
        if _NOT_IN_URLS.search(url):
            return None
        try:
            parts = urlsplit(self.rebase(url))
        except ValueError:  # e.g. an unclosed "[" where an IPv6 host would be
            return None
        if (parts.scheme, parts.netloc) != self._origin:
            return None
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if not any(path.startswith(p) for p in self.config.scope.path_prefixes):
            return None
        listing = self._listing_path.match(path)
        if listing and (page := bounded_page(listing["page"])) is None:
            return None
        if listing and page == 1:
            path = path[: listing.start("page")].removesuffix("page/")
        if not (self._lesson_path.match(path) or self._listing_path.match(path)):
            return None
        return urlunsplit((*self._origin, path, "", ""))

    def link(self, url: str, kind: str) -> Link | None:
        """``url`` as the frontier queues it, or None when it is not the crawl's to fetch: a
        lesson or listing by its canonical URL and the kind its path says; a sitemap as long
        as it is on the host."""
        if kind == "sitemap":
            url = self.rebase(url)
            return Link(url, kind) if self.on_host(url) else None
        canonical = self.canonical(url)
        if canonical is None:
            return None
        return Link(canonical, self.kind(canonical) or kind)

    def listing_page(self, url: str, n: int) -> str:
        """Page ``n`` of the listing that ``url`` (a lesson or one of its pages) belongs to."""
        path = urlsplit(url).path
        listing = self._listing_path.match(path)
        if listing:
            path = path[: listing.start("page")].removesuffix("page/")
        return urlunsplit((*self._origin, f"{path}page/{n}/" if n > 1 else path, "", ""))

    def page_number(self, url: str) -> int:
        """Which page of its listing ``url`` is: 1 for the lesson itself."""
        listing = self._listing_path.match(urlsplit(url).path)
        return (bounded_page(listing["page"]) or 1) if listing else 1

    def kind(self, url: str) -> str | None:
        path = urlsplit(url).path
        if self._lesson_path.match(path):
            return "lesson"
        if self._listing_path.match(path):
            return "listing"
        return None

    def on_host(self, url: str) -> bool:
        try:
            return not _NOT_IN_URLS.search(url) and urlsplit(url).netloc == self._origin[1]
        except ValueError:
            return False

    @property
    def host(self) -> str:
        """The host (and port) being crawled."""
        return self._origin[1]

    def same_site(self, url: str) -> bool:
        """``url`` names the crawled host or the configured site's, up to its scheme and a
        leading ``www.``: what a site move or a canonical link's trivial variant changes."""
        try:
            host = urlsplit(url).netloc.removeprefix("www.")
        except ValueError:
            return False
        return host in (self._origin[1].removeprefix("www."), self._site_host.removeprefix("www."))

    def on_origin(self, url: str) -> str:
        """``url``'s path on the host being crawled: a lesson is its path on the site, so what
        was learned about it on another host (before a move, or from the real site while a
        copy is crawled) is what is known about it here."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        return urlunsplit((*self._origin, parts.path, parts.query, parts.fragment))

    def rebase(self, url: str) -> str:
        """Links to the configured site's own host point at the host being crawled, so a local
        copy or mirror whose pages still say https://movementality.se/ is crawled in place."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        if parts.netloc == self._site_host and parts.netloc != self._origin[1]:
            return urlunsplit((*self._origin, parts.path, parts.query, parts.fragment))
        return url


def lesson_of(page: ListingPage, scope: UrlScope) -> RawLesson | None:
    """A lesson page's own lesson under the URL it was fetched from (canonicalised), or None
    when the page shows no titled lesson in scope. Its rel=canonical is a claim, not its
    identity: an editor can point it at another lesson, and storing the page there would
    overwrite that lesson (see ``canonical_claim``)."""
    if page.lesson is None or not page.lesson.title:
        return None
    url = scope.canonical(page.url)
    return replace(page.lesson, url=url) if url is not None else None


@dataclass(frozen=True, slots=True)
class CanonicalClaim:
    """A page's rel=canonical naming a URL other than the page's own: an anomaly to report.
    ``lesson`` is the other lesson it names, if it names one, to be queued like any link."""

    anomaly: str
    lesson: str | None = None


def canonical_claim(page: ListingPage, scope: UrlScope) -> CanonicalClaim | None:
    """What the page's canonical link claims, when it is more than a trivial variant of the
    URL the page was fetched from (another scheme or query on the same path folds away)."""
    if page.lesson is None or page.lesson.url == page.url:
        return None  # no canonical link: nothing claimed
    own = scope.canonical(page.url)
    claimed = (
        scope.canonical(scope.on_origin(page.lesson.url))
        if scope.same_site(page.lesson.url)
        else None
    )
    if claimed == own:
        return None
    shown = page.lesson.url[:200]
    if claimed is None:
        return CanonicalClaim(f"canonical names a URL outside the site's lessons: {shown}")
    if scope.kind(claimed) == "listing":
        return CanonicalClaim(f"canonical names a listing page: {shown}")
    return CanonicalClaim(f"canonical names another lesson: {shown}", lesson=claimed)


@dataclass(frozen=True, slots=True)
class DeferredListing:
    """The unread rest of a listing whose first pages showed only lessons the archive knew."""

    url: str
    first: int
    last: int


@dataclass
class Frontier:
    """What a run fetches next. Each ``after_*`` answers the links a fetched page leads to;
    the state kept between answers is plain data (which listings are being walked to their
    end, which were deferred)."""

    scope: UrlScope
    known: Mapping[str, KnownPage] = field(default_factory=dict)
    # Listings (by their page 1) being walked to the end, and their last page.
    walked: dict[str, int] = field(default_factory=dict)
    deferred: list[DeferredListing] = field(default_factory=list)
    # A first crawl's proofs of listings (None: every listing is walked).
    inference: ListingInference | None = None
    # What earlier runs walked of the listings: a re-crawl's audits rotate over them (None:
    # no history to rotate over, no audits).
    walks_before: ListingWalks | None = None

    listings_read: int = 0  # lessons' listings read (without inference)
    # How many pages each listing (by its page 1) says it has: the first "Page N of M" read of
    # it, its page 1's when that was read first. No page past it is ever queued.
    page_counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recrawl = any(page.kind == "lesson" for page in self.known.values())
        inferring = self.scope.config.scope.listing_inference and not self.recrawl
        if inferring and self.scope.config.selectors.category_prefix:
            self.inference = ListingInference(self.scope.config.scope.audit_listings)
        # A re-crawl walks in full what the last run left to walk (listings sharing a
        # category with one found other than predicted), and audits the listings walked
        # longest ago (never walked first, ties by URL): each of N listings is walked at
        # least once in N / scope.audit_listings runs. Their page 1 is asked without
        # validators: a 304 would not say how many pages the listing has.
        lessons = sorted(url for url, page in self.known.items() if page.kind == "lesson")
        before = self.walks_before if self.recrawl else None
        last = before.last_walked if before else {}
        by_age = sorted(lessons, key=lambda url: (last.get(url, 0), url)) if before else []
        self.audits = set(by_age[: self.scope.config.scope.audit_listings])
        self.walk_in_full = set(before.to_walk).intersection(lessons) if before else set()
        self.unconditional = self.audits | self.walk_in_full
        self.read_in_full: set[str] = set()
        self._audit_unknown: dict[str, set[str]] = {}
        self._disallowed: Container[str] = frozenset()
        self._audit_members: dict[str, set[str]] = {}
        self._page_one_known: dict[str, bool] = {}

    def start(self, start_urls: Iterable[str], sitemap_urls: Iterable[str]) -> list[Link]:
        """The first links of a run: its start URLs and sitemaps, and every page known to lead
        to lessons, asked again (conditionally): a lesson that vanished answers 404 and can be
        marked removed; one that changed answers 200."""
        links = [Link(url, "lesson") for url in start_urls]
        links += [Link(url, "sitemap") for url in dict.fromkeys(sitemap_urls)]
        links += [
            Link(url, known.kind)
            for url, known in self.known.items()
            if known.kind in ("lesson", "sitemap")
        ]
        return links

    def after_page(
        self, page: ListingPage, kind: str, disallowed: Container[str] = frozenset()
    ) -> list[Link]:
        """The links a lesson or listing page leads to: the lessons it lists, and the pages of
        its listing still to read. ``disallowed`` are URLs robots.txt keeps the crawl from:
        such a lesson stays unknown, but it is not new."""
        canonical = {link: url for link in page.listed if (url := self.scope.canonical(link))}
        listed = list(dict.fromkeys(canonical.values()))
        links = [Link(url, "lesson") for url in listed]
        base = self.scope.canonical(page.url)
        if base is None:
            return links
        if page.page and page.page_count:
            listing = self.scope.listing_page(base, 1)
            if kind == "lesson":
                self.page_counts[listing] = page.page_count
            else:
                self.page_counts.setdefault(listing, page.page_count)
        if self.inference is not None and page.page and page.page_count:
            return links + self._inferring(page, kind, base, canonical)
        if kind == "lesson" and page.page_count:
            self.listings_read += 1
            if not self.recrawl:
                self.read_in_full.add(base)
        if self.recrawl:
            self._audit(page, kind, base, listed, disallowed)
        if self.recrawl and self.scope.listing_page(base, 1) not in self.walked:
            # Lessons published since the last run are at the top of a listing: read on only
            # while a page still shows a lesson the archive does not know.
            if page.page and page.page_count and page.page < page.page_count:
                if any(url not in self.known and url not in disallowed for url in listed):
                    links.append(Link(self.scope.listing_page(base, page.page + 1), "listing"))
                else:
                    self.deferred.append(DeferredListing(base, page.page + 1, page.page_count))
            return links
        # "Page N of M" says how many pages the listing has: the next LOOKAHEAD pages are
        # queued at once rather than by following "next" one by one, so the pages of one
        # listing are fetched in parallel, and each page fetched queues the one LOOKAHEAD on.
        if page.page and page.page_count:
            if kind == "lesson":
                links += self._walk_from(base, 2, page.page_count)
            else:
                links += self._walk_on(base, page.page, page.page_count)
        links += [Link(url, "listing") for url in (*page.page_urls, page.next_url) if url]
        return links

    def _audit(
        self, page: ListingPage, kind: str, base: str, listed: list[str], disallowed: Container[str]
    ) -> None:
        """A re-crawl's listing walked in full: what it shows past page 1 that the archive
        did not know, after a lesson it knew (new lessons come first), is what its proof
        missed."""
        lesson = self.scope.listing_page(base, 1)
        if lesson not in self.unconditional or not page.page:
            return
        if kind == "lesson" and page.page_count:
            self.walked[lesson] = page.page_count
            self.read_in_full.add(lesson)
            self._page_one_known[lesson] = any(url in self.known for url in listed)
        self._audit_members.setdefault(lesson, set()).update(listed)
        if kind != "listing" or lesson not in self.audits:
            return
        # robots.txt's verdict on a lesson listed here for the first time comes after this
        # page: which unknown lessons count is decided when asked (``audit_found``).
        self._disallowed = disallowed
        known_before = self._page_one_known.get(lesson, False)
        for url in listed:
            if url in self.known:
                known_before = True
            elif known_before:
                self._audit_unknown.setdefault(lesson, set()).add(url)

    @property
    def audit_found(self) -> set[str]:
        """The audited listings that showed, past page 1, lessons the archive did not know
        (robots.txt allowing them)."""
        return {
            lesson
            for lesson, urls in self._audit_unknown.items()
            if any(url not in self._disallowed for url in urls)
        }

    @property
    def audited(self) -> int:
        return len(self.audits & self.read_in_full)

    @property
    def listings_walked(self) -> list[str]:
        """The lessons whose listings this run walked to their end."""
        if self.inference is not None:
            return sorted(url for url, walk in self.inference.walks.items() if walk.read)
        return sorted(self.read_in_full | {url for url in self.walked if url in self.known})

    @property
    def listings_to_walk(self) -> list[str]:
        """What the next run is to walk in full: the listings sharing a category with one a
        page 1 or an audit found other than predicted (and not walked to its end now)."""
        if self.inference is not None:
            return self.inference.to_walk_next()
        shared = set().union(*(self._audit_members.get(url, set()) for url in self.audit_found))
        shared = {url for url in shared if url not in self._disallowed}
        return sorted((shared | self.audit_found) - self.read_in_full)

    def _inferring(
        self, page: ListingPage, kind: str, base: str, canonical: dict[str, str]
    ) -> list[Link]:
        """A first crawl's page, when listings may be proven: only the listings that must be
        walked are, and which those are is decided when the queue runs dry (see
        ``inference``)."""
        inference = self.inference
        inference.learn(page, canonical)
        shown = tuple(canonical[link] for link in page.listed if link in canonical)
        if kind == "lesson" and page.page == 1:
            published = parse_date(page.lesson.published) if page.lesson else None
            inference.lesson_seen(PageOne(base, page.categories, shown, page.page_count, published))
            return []
        lesson_url = self.scope.listing_page(base, 1)
        inference.listing_page_seen(lesson_url, page, shown)
        walk = inference.walks.get(lesson_url)
        if walk is None:
            return []
        if walk.changed:
            # It grew while it was read: its pages up to the newest last one are read too.
            last = min(page.page + LOOKAHEAD, walk.last)
            return [
                Link(self.scope.listing_page(base, n), "listing")
                for n in range(page.page + 1, last + 1)
            ]
        return self._walk_on(base, page.page, walk.last)

    @property
    def listings(self) -> ListingCounts:
        """How the run's listings were settled."""
        if self.inference is None:
            return ListingCounts(
                walked=self.listings_read,
                audited=self.audited,
                audits_contradicted=len(self.audit_found),
            )
        return self.inference.counts

    @property
    def settled(self) -> bool:
        """Every listing seen was read, walked to its end or proven."""
        return self.inference is None or self.inference.settled

    def within_count(self, link: Link) -> bool:
        """A listing page is fetched only up to the "Page N of M" its own listing showed: a
        page linking to page 9 999 of a listing of 2 does not send the crawl there."""
        if link.kind != "listing":
            return True
        count = self.page_counts.get(self.scope.listing_page(link.url, 1))
        return count is None or self.scope.page_number(link.url) <= count

    def after_failure(self, url: str, kind: str) -> list[Link]:
        """A page that finally failed: a walk it belonged to proves nothing."""
        if self.inference is not None and kind == "listing":
            self.inference.listing_page_failed(self.scope.listing_page(url, 1))
        return []

    def _walks(self, lesson_urls: list[str]) -> list[Link]:
        """The first LOOKAHEAD pages after page 1 of each listing to walk."""
        links = []
        for url in lesson_urls:
            links += self._walk_from(url, 2, self.inference.walks[url].last)
        return links

    def after_not_modified(self, url: str, kind: str) -> list[Link]:
        """A 304: nothing was published into the page since it was stored, so a listing that
        is not being walked to its end is read no further (the lessons it lists are known)."""
        if kind != "listing":
            return []
        last = self.walked.get(self.scope.listing_page(url, 1))
        return [] if last is None else self._walk_on(url, self.scope.page_number(url), last)

    def after_drained(self, sitemap_read: bool) -> list[Link]:
        """Every queued page was fetched. The deferred rests of listings are walked after all
        unless the sitemap vouched for every lesson: a lesson published with an old date lands
        deep in listings, and only the sitemap or a full walk can find it there."""
        if self.inference is not None:
            # A listing of one page is walked as soon as it is chosen: decide again, until
            # some page is to be fetched or nothing is left to decide.
            while started := self.inference.drained():
                if links := self._walks(started):
                    return links
            return [
                Link(self.scope.listing_page(url, n), "listing")
                for url, n in self.inference.pages_showing_unlisted()
            ]
        deferred, self.deferred = self.deferred, []
        if sitemap_read:
            return []
        links = []
        for listing in deferred:
            self.walked[self.scope.listing_page(listing.url, 1)] = listing.last
            links += self._walk_from(listing.url, listing.first, listing.last)
        return links

    def _walk_from(self, url: str, first: int, last: int) -> list[Link]:
        """A walk of ``url``'s listing from page ``first`` to ``last`` begins: its next
        LOOKAHEAD pages at once (each page read then queues the one LOOKAHEAD on)."""
        return [
            Link(self.scope.listing_page(url, n), "listing")
            for n in range(first, min(first + LOOKAHEAD - 1, last) + 1)
        ]

    def _walk_on(self, url: str, page: int, last: int) -> list[Link]:
        """Page ``page`` of a listing walked to its end was read: the page LOOKAHEAD on."""
        if page + LOOKAHEAD <= last:
            return [Link(self.scope.listing_page(url, page + LOOKAHEAD), "listing")]
        return []


def sitemap_read(pages: Iterable[PageRecord]) -> bool:
    """Every sitemap answered (200 or 304) and at least one named lessons or was unchanged."""
    sitemaps = [p for p in pages if p.kind == "sitemap"]
    return (
        bool(sitemaps)
        and all(p.status in (200, 304) and p.error is None for p in sitemaps)
        and any(p.status == 304 or p.listed for p in sitemaps)
    )
