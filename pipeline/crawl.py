"""The frontier: which URLs a run fetches, in what order, and whether the run saw everything.

Listings differ from lesson to lesson, so no single listing holds every lesson: the frontier
walks every lesson's listing to its last page, enqueues every lesson it finds, reads the sitemap
as a second source, and dedupes on canonical URL. Each lesson's own page is the authoritative
source for its text. Parsing is ``extract``'s job; this module only needs the links.

A re-crawl asks every known page conditionally and, since listings are newest first, reads a
changed listing only while it shows lessons the archive does not know (see ``Crawl._drain``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from .config import Config
from .errors import ArchiveWriteError, FetchError, SiteUnreachable
from .extract import ListingPage, RawLesson, bounded_page, extract
from .fetch import Fetched, Fetcher, FetchStats

_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
# Whitespace and control characters are never part of a URL (a browser strips or rejects
# them); a link holding one is not followed.
_NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f-\x9f]")
log = logging.getLogger("micropause.crawl")
# Listing pages queued ahead of the last one fetched: enough to keep every worker busy.
LOOKAHEAD = 16


@dataclass(frozen=True, slots=True)
class KnownPage:
    """What earlier runs learned about a URL: its validators go back as a conditional request."""

    kind: str
    etag: str | None
    last_modified: str | None


@dataclass(slots=True)
class PageRecord:
    """The outcome of one URL in a run: what the `pages` table keeps."""

    url: str
    kind: str  # lesson | listing | sitemap
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    fetched_at: str | None = None
    listed: int | None = None  # lessons found in the page's listing
    error: str | None = None
    # What was odd about a page that was still read: a charset fallback, replaced bytes, a
    # number out of range.
    warning: str | None = None


@dataclass
class CrawlResult:
    lessons: dict[str, RawLesson]
    pages: dict[str, PageRecord]
    stats: FetchStats
    # Lesson URLs whose page answered 304: unchanged since the run that stored them.
    not_modified: set[str] = field(default_factory=set)
    # Lesson URLs the site answered 404/410 for: a definite answer, not a failure.
    gone: set[str] = field(default_factory=set)
    budget_exhausted: bool = False
    disallowed: set[str] = field(default_factory=set)
    # Lesson pages whose title selector found nothing: the theme changed (a health check).
    untitled: set[str] = field(default_factory=set)
    # Numbers on pages that were out of range and read as absent.
    anomalies: int = 0
    # The run went on longer than politeness.max_run_seconds and was stopped.
    deadline_passed: bool = False
    elapsed: float = 0.0

    @property
    def fetched(self) -> int:
        """Pages that got an answer (304s included)."""
        return sum(1 for p in self.pages.values() if p.status is not None)

    @property
    def failed(self) -> list[PageRecord]:
        return [p for p in self.pages.values() if p.error is not None]

    @property
    def complete(self) -> bool:
        """Every URL the run discovered was fetched and none finally failed."""
        return not self.budget_exhausted and not self.deadline_passed and not self.failed

    @property
    def lesson_urls(self) -> set[str]:
        return set(self.lessons) | self.not_modified


class Scope:
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


def lesson_of(page: ListingPage, scope: Scope) -> RawLesson | None:
    """A lesson page's own lesson under its canonical URL (the page's rel=canonical, else the
    URL it was fetched from), or None when the page shows no titled lesson in scope."""
    if page.lesson is None or not page.lesson.title:
        return None
    canonical = scope.canonical(page.lesson.url) or scope.canonical(page.url)
    return replace(page.lesson, url=canonical) if canonical is not None else None


Progress = Callable[[int, int, int], None]  # pages done, pages known, pages failed


class Crawl:
    """One run's frontier. ``await Crawl(config, fetcher).run()`` returns a CrawlResult."""

    def __init__(
        self,
        config: Config,
        fetcher: Fetcher,
        *,
        known: dict[str, KnownPage] | None = None,
        max_pages: int | None = None,
        progress: Progress | None = None,
    ):
        self.config = config
        self.fetcher = fetcher
        self.known = known or {}
        self.max_pages = max_pages
        self.progress = progress
        self.scope = Scope(config, config.site.start_urls[0])
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._seen: set[str] = set()
        self._done = 0
        self._failed = 0
        self._started = 0
        # A re-crawl (the archive knows lessons) walks changed listings only as far as they
        # show lessons it does not know; the rest of each listing is deferred (see _drain).
        self._recrawl = any(page.kind == "lesson" for page in self.known.values())
        self._deferred: list[tuple[str, int, int]] = []  # listing, first page, last page
        # Listings (by their page 1) being walked to the end, and their last page.
        self._walked: dict[str, int] = {}
        self.result = CrawlResult(lessons={}, pages={}, stats=fetcher.stats)

    async def run(self) -> CrawlResult:
        """Crawl until the frontier is empty or the run's deadline passes. One page's error is
        that page's failure; an error writing the archive (ArchiveWriteError) ends the run."""
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.config.politeness.max_run_seconds):
                await self._crawl()
        except TimeoutError:
            self.result.deadline_passed = True
            log.warning(
                "run.deadline passed after %ss (politeness.max_run_seconds): stopped",
                self.config.politeness.max_run_seconds,
            )
        self.result.elapsed = time.monotonic() - began
        if not any(p.status == 200 or p.status == 304 for p in self.result.pages.values()):
            reasons = {p.error for p in self.result.failed}
            raise SiteUnreachable(
                f"nothing could be fetched from {self.config.host}: "
                + ("; ".join(sorted(r for r in reasons if r))[:300] or "no pages")
            )
        return self.result

    async def _crawl(self) -> None:
        try:
            robots = await self.fetcher.load_robots(self.config.site.start_urls[0])
        except FetchError as exc:
            raise SiteUnreachable(f"cannot reach {self.config.host}: {exc.reason}") from None
        for url in self.config.site.start_urls:
            await self._enqueue(url, "lesson")
        for url in dict.fromkeys((*self.config.sitemap_urls(), *robots.sitemaps)):
            await self._enqueue(url, "sitemap")
        # Every page known to lead to lessons is asked again (conditionally): a lesson that
        # vanished answers 404 and can be marked removed; one that changed answers 200.
        for url, known in self.known.items():
            if known.kind in ("lesson", "sitemap"):
                await self._enqueue(url, known.kind)
        # A worker that dies (only an ArchiveWriteError or a bug can end one) cancels the
        # others and the drain, and its error ends the run: the queue is never left waiting.
        try:
            async with asyncio.TaskGroup() as workers:
                tasks = [
                    workers.create_task(self._worker())
                    for _ in range(self.config.politeness.concurrency)
                ]
                await self._drain()
                for task in tasks:
                    task.cancel()
        except BaseExceptionGroup as group:
            raise _first(group) from None

    async def _drain(self) -> None:
        """Fetch until the frontier is empty. Listing pages deferred by a re-crawl are walked
        after all unless the sitemap vouched for every lesson: a lesson published with an old
        date lands deep in listings, and only the sitemap or a full walk can find it there."""
        while True:
            await self._queue.join()
            deferred, self._deferred = self._deferred, []
            if not deferred or self._sitemap_read():
                return
            for listing, first, last in deferred:
                self._walked[self.scope.listing_page(listing, 1)] = last
                for n in range(first, min(first + LOOKAHEAD - 1, last) + 1):
                    await self._enqueue(self.scope.listing_page(listing, n), "listing")

    def _sitemap_read(self) -> bool:
        """Every sitemap answered (200 or 304) and at least one named lessons or was unchanged."""
        sitemaps = [p for p in self.result.pages.values() if p.kind == "sitemap"]
        return (
            bool(sitemaps)
            and all(p.status in (200, 304) and p.error is None for p in sitemaps)
            and any(p.status == 304 or p.listed for p in sitemaps)
        )

    async def _worker(self) -> None:
        while True:
            url, kind = await self._queue.get()
            try:
                await self._visit(url, kind)
            except ArchiveWriteError:
                raise
            except Exception as exc:
                # Whatever one page does to fetch, capture, extract or the frontier, it is that
                # page's failure: recorded, and the run is incomplete (nothing marked removed).
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.result.pages[url].error = error[:1000]
                log.warning("page.failed url=%r error=%r", url, error[:300])
            finally:
                self._done += 1
                self._failed += self.result.pages[url].error is not None
                self._queue.task_done()
                if self.progress is not None:
                    self.progress(self._done, len(self.result.pages), self._failed)

    async def _visit(self, url: str, kind: str) -> None:
        record = self.result.pages[url]
        if self.max_pages is not None and self._started >= self.max_pages:
            self.result.budget_exhausted = True
            return
        self._started += 1
        known = self.known.get(url)
        try:
            response = await self.fetcher.get(
                url,
                etag=known.etag if known else None,
                last_modified=known.last_modified if known else None,
            )
        except FetchError as exc:
            record.error = exc.reason
            return
        record.status = response.status
        record.fetched_at = response.fetched_at
        if response.status == 304:
            # A listing is newest first: an unchanged page 1 means nothing was published into
            # it, so its later pages are not walked. The lessons they list are known already.
            record.etag, record.last_modified = known.etag, known.last_modified
            if kind == "lesson":
                self.result.not_modified.add(url)
            elif (last := self._walked.get(self.scope.listing_page(url, 1))) is not None:
                await self._walk_on(url, self.scope.page_number(url), last)
            return
        record.etag = response.header("etag")
        record.last_modified = response.header("last-modified")
        record.sha256 = hashlib.sha256(response.body).hexdigest()
        record.bytes = len(response.body)
        # 404/410 is a definite answer, not a failure: the lesson is gone, or the site has no
        # sitemap (it is optional). Counting either as failed would keep every run incomplete.
        if response.status in (404, 410) and kind in ("lesson", "sitemap"):
            if kind == "lesson":
                self.result.gone.add(url)
            return
        if response.status != 200:
            record.error = f"HTTP {response.status}"
            return
        if kind == "sitemap":
            await self._read_sitemap(response, record)
            return
        if not response.is_html:
            record.error = f"unexpected content type {response.content_type or 'none'}"
            return
        decoded = response.decode()
        page = extract(decoded.text, response.url, self.config.selectors)
        record.listed = len(page.listed)
        warnings = [w for w in (decoded.fallback, *page.anomalies) if w]
        self.result.anomalies += len(page.anomalies)
        record.warning = "; ".join(warnings)[:1000] or None
        await self._follow(page, kind)

    async def _follow(self, page: ListingPage, kind: str) -> None:
        lesson = lesson_of(page, self.scope) if kind == "lesson" else None
        if lesson is not None:
            self.result.lessons[lesson.url] = lesson
        elif kind == "lesson" and not (page.lesson and page.lesson.title):
            self.result.untitled.add(self.scope.canonical(page.url) or page.url)
        listed = [url for link in page.listed if (url := self.scope.canonical(link))]
        for url in listed:
            await self._enqueue(url, "lesson")
        base = self.scope.canonical(page.url)
        if base is None:
            return
        if self._recrawl and self.scope.listing_page(base, 1) not in self._walked:
            # A listing is newest first: lessons published since the last run are at its top.
            # Read on only while a page still shows a lesson the archive does not know.
            if page.page and page.page_count and page.page < page.page_count:
                # A lesson robots.txt keeps us from reading stays unknown: it is not new.
                disallowed = self.result.disallowed
                if any(url not in self.known and url not in disallowed for url in listed):
                    await self._enqueue(self.scope.listing_page(base, page.page + 1), "listing")
                else:
                    self._deferred.append((base, page.page + 1, page.page_count))
            return
        # "Page N of M" says how many pages the listing has: the next LOOKAHEAD pages are
        # queued at once rather than by following "next" one by one, so the pages of one
        # listing are fetched in parallel, and each page fetched queues the one LOOKAHEAD
        # further. The queue grows with the pages fetched, never with what a page claims.
        if page.page and page.page_count:
            if kind == "lesson":
                for n in range(2, min(1 + LOOKAHEAD, page.page_count) + 1):
                    await self._enqueue(self.scope.listing_page(base, n), "listing")
            else:
                await self._walk_on(base, page.page, page.page_count)
        for url in (*page.page_urls, page.next_url):
            if url:
                await self._enqueue(url, "listing")

    async def _walk_on(self, url: str, page: int, last: int) -> None:
        """Page ``page`` of a listing walked to its end was read: queue the page LOOKAHEAD on."""
        if page + LOOKAHEAD <= last:
            await self._enqueue(self.scope.listing_page(url, page + LOOKAHEAD), "listing")

    async def _read_sitemap(self, response: Fetched, record: PageRecord) -> None:
        try:
            root = ET.fromstring(response.body)
        except ET.ParseError as exc:
            record.error = f"unreadable sitemap: {exc}"
            return
        locs = [(loc.text or "").strip() for loc in root.iter(f"{_SITEMAP_NS}loc")]
        record.listed = len(locs)
        kind = "sitemap" if root.tag == f"{_SITEMAP_NS}sitemapindex" else "lesson"
        for loc in locs:
            await self._enqueue(loc, kind)

    async def _enqueue(self, url: str, kind: str) -> None:
        """Queue a URL once, if it is in scope and robots.txt allows it."""
        if kind != "sitemap":
            url = self.scope.canonical(url)
            if url is None:
                return
            kind = self.scope.kind(url) or kind
        else:
            url = self.scope.rebase(url)
            if not self.scope.on_host(url):
                return
        if url in self._seen:
            return
        self._seen.add(url)
        if not await self.fetcher.allowed(url):
            self.result.disallowed.add(url)
            return
        self.result.pages[url] = PageRecord(url=url, kind=kind)
        self._queue.put_nowait((url, kind))


def _first(group: BaseExceptionGroup) -> BaseException:
    """The error that ended a group of workers: the archive's own failure first."""
    leaves = []
    pending = [group]
    while pending:
        for exc in pending.pop().exceptions:
            (pending if isinstance(exc, BaseExceptionGroup) else leaves).append(exc)
    return next((e for e in leaves if isinstance(e, ArchiveWriteError)), leaves[0])


def crawl(
    config: Config,
    *,
    known: dict[str, KnownPage] | None = None,
    max_pages: int | None = None,
    progress: Progress | None = None,
    on_response: Callable[[Fetched], None] | None = None,
) -> CrawlResult:
    """Run one crawl to the end (synchronously) and return what it saw."""

    async def go() -> CrawlResult:
        async with Fetcher(config, on_response=on_response) as fetcher:
            return await Crawl(
                config, fetcher, known=known, max_pages=max_pages, progress=progress
            ).run()

    return asyncio.run(go())
