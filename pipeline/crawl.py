"""One run's crawl: a queue of URLs, a few workers fetching them politely, and the bookkeeping of
what each page gave. What to fetch next is the frontier's rule (``frontier``); what a page says
is ``page.read_page``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .archive import KnownPage, ListingWalks, PageRecord
from .config import Config
from .errors import ArchiveWriteError, FetchError, SiteUnreachable
from .extract import RawLesson, read_sitemap
from .fetch import Fetched, Fetcher, FetchStats
from .frontier import Frontier, Link, UrlScope, sitemap_read
from .inference import ListingCounts
from .page import read_page

log = logging.getLogger("micropause.crawl")


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
    # How the lessons' listings were settled: walked to their end, or proven from page 1.
    listings: ListingCounts = field(default_factory=ListingCounts)
    listings_settled: bool = True
    # The lessons whose listings were walked to their end, and those left for the next run.
    listings_walked: list[str] = field(default_factory=list)
    listings_to_walk: list[str] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        """Pages that got an answer (304s included)."""
        return sum(1 for p in self.pages.values() if p.status is not None)

    @property
    def failed(self) -> list[PageRecord]:
        return [p for p in self.pages.values() if p.error is not None]

    @property
    def complete(self) -> bool:
        """Every URL the run discovered was fetched, none finally failed, and every listing
        was read or proven."""
        return (
            not self.budget_exhausted
            and not self.deadline_passed
            and not self.failed
            and self.listings_settled
        )

    @property
    def lesson_urls(self) -> set[str]:
        return set(self.lessons) | self.not_modified


Progress = Callable[[int, int, int], None]  # pages done, pages known, pages failed


class Crawl:
    """One run's queue and workers. ``await Crawl(config, fetcher).run()`` returns a
    CrawlResult."""

    def __init__(
        self,
        config: Config,
        fetcher: Fetcher,
        *,
        known: dict[str, KnownPage] | None = None,
        max_pages: int | None = None,
        progress: Progress | None = None,
        listing_walks: ListingWalks | None = None,
    ):
        self.config = config
        self.fetcher = fetcher
        self.max_pages = max_pages
        self.progress = progress
        self.scope = UrlScope(config, config.site.start_urls[0])
        self.frontier = Frontier(self.scope, known or {}, walks_before=listing_walks)
        self._queue: asyncio.Queue[Link] = asyncio.Queue()
        self._seen: set[str] = set()
        self._done = 0
        self._failed = 0
        self._started = 0
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
        self.result.listings = self.frontier.listings
        self.result.listings_settled = self.frontier.settled
        self.result.listings_walked = self.frontier.listings_walked
        self.result.listings_to_walk = self.frontier.listings_to_walk
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
        sitemaps = (*self.config.sitemap_urls(), *robots.sitemaps)
        await self._enqueue(self.frontier.start(self.config.site.start_urls, sitemaps))
        # A worker that dies (only an ArchiveWriteError or a bug can end one) cancels the
        # others and the drain, and its error ends the run: the queue is never left waiting.
        try:
            async with asyncio.TaskGroup() as workers:
                tasks = [
                    workers.create_task(self._worker())
                    for _ in range(self.config.politeness.concurrency)
                ]
                while True:
                    await self._queue.join()
                    more = self.frontier.after_drained(sitemap_read(self.result.pages.values()))
                    if not more:
                        break
                    await self._enqueue(more)
                for task in tasks:
                    task.cancel()
        except BaseExceptionGroup as group:
            raise _first(group) from None

    async def _worker(self) -> None:
        while True:
            link = await self._queue.get()
            try:
                await self._visit(link.url, link.kind)
            except ArchiveWriteError:
                raise
            except Exception as exc:
                # Whatever one page does to fetch, capture, extract or the frontier, it is that
                # page's failure: recorded, and the run is incomplete (nothing marked removed).
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.result.pages[link.url].error = error[:1000]
                log.warning("page.failed url=%r error=%r", link.url, error[:300])
            finally:
                failed = self.result.pages[link.url].error is not None
                if failed:
                    await self._enqueue(self.frontier.after_failure(link.url, link.kind))
                self._done += 1
                self._failed += failed
                self._queue.task_done()
                if self.progress is not None:
                    self.progress(self._done, len(self.result.pages), self._failed)

    async def _visit(self, url: str, kind: str) -> None:
        record = self.result.pages[url]
        if self.max_pages is not None and self._started >= self.max_pages:
            self.result.budget_exhausted = True
            return
        self._started += 1
        known = None if url in self.frontier.unconditional else self.frontier.known.get(url)
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
            record.etag, record.last_modified = known.etag, known.last_modified
            if kind == "lesson":
                self.result.not_modified.add(url)
            await self._enqueue(self.frontier.after_not_modified(url, kind))
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
        read = read_page(
            response.url,
            response.body,
            response.header("content-type"),
            self.scope,
            self.config.selectors,
        )
        record.listed = len(read.page.listed)
        record.warning = "; ".join(read.warnings)[:1000] or None
        self.result.anomalies += len(read.page.anomalies)
        if kind == "lesson":
            if read.lesson is not None:
                self.result.lessons[read.lesson.url] = read.lesson
            elif not (read.page.lesson and read.page.lesson.title):
                self.result.untitled.add(self.scope.canonical(response.url) or response.url)
        await self._enqueue(self.frontier.after_page(read.page, kind, self.result.disallowed))

    async def _read_sitemap(self, response: Fetched, record: PageRecord) -> None:
        try:
            sitemap = read_sitemap(response.body)
        except ValueError as exc:
            record.error = str(exc)
            return
        record.listed = len(sitemap.locs)
        kind = "sitemap" if sitemap.index else "lesson"
        await self._enqueue([Link(loc, kind) for loc in sitemap.locs])

    async def _enqueue(self, links: list[Link]) -> None:
        """Queue each link once, if it is in scope and robots.txt allows it."""
        for proposed in links:
            link = self.scope.link(proposed.url, proposed.kind)
            if link is None or link.url in self._seen:
                continue
            self._seen.add(link.url)
            if not await self.fetcher.allowed(link.url):
                self.result.disallowed.add(link.url)
                continue
            self.result.pages[link.url] = PageRecord(url=link.url, kind=link.kind)
            self._queue.put_nowait(link)


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
    listing_walks: ListingWalks | None = None,
) -> CrawlResult:
    """Run one crawl to the end (synchronously) and return what it saw."""

    async def go() -> CrawlResult:
        async with Fetcher(config, on_response=on_response) as fetcher:
            return await Crawl(
                config,
                fetcher,
                known=known,
                max_pages=max_pages,
                progress=progress,
                listing_walks=listing_walks,
            ).run()

    return asyncio.run(go())
