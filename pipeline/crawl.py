"""One run's crawl: a queue of URLs, a few workers fetching them politely, and the bookkeeping of
what each page gave. What to fetch next is the frontier's rule (``frontier``); what a page says
is ``page.read_page``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .archive import KnownPage, ListingWalks, PageRecord
from .config import Config
from .decode import not_html
from .errors import ArchiveWriteError, CrawlRefused, FetchError, Interrupted, SiteUnreachable
from .extract import RawLesson, read_sitemap
from .fetch import Fetched, Fetcher, FetchStats, StoredRobots
from .frontier import Frontier, Link, UrlScope, sitemap_read
from .inference import ListingCounts
from .isolate import PageFailed, Workers
from .page import listed_thumbnails, read_page_bounded
from .requisites import RequisiteScope, is_versioned, stylesheet_requisites

log = logging.getLogger("micropause.crawl")


@dataclass
class ListingPromise:
    """The fewest lessons a site can have whose lesson's listing says "Page 1 of M": M - 1
    full pages and at least one more lesson, besides the lesson itself. A full page holds the
    fewest lessons a page 2 .. M-1 was seen to list, or one if none was read: page 1 may hold
    sticky posts besides its regular items, and a page can list links that are not followed."""

    pages: int = 0  # the most pages one lesson's listing has
    full_page: int | None = None  # fewest lessons listed on a page 2 .. M-1

    def saw(self, page: int | None, pages: int | None, listed: int) -> None:
        if not page or not pages or page >= pages or listed < 1:
            return
        if page == 1:
            self.pages = max(self.pages, pages)
        else:
            self.full_page = min(self.full_page or listed, listed)

    @property
    def lessons(self) -> int:
        if not self.pages:
            return 0
        return (self.pages - 1) * (self.full_page or 1) + 1 + 1


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
    # The cap (limits.max_lessons or limits.max_pages) that stopped discovery, if one did.
    capped: str | None = None
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
    # What was wrong with a start URL (it answered 404, is not a lesson page, ...): a wrong
    # start URL must be named, never pass as a run that found little.
    start_problems: list[str] = field(default_factory=list)
    # Lessons the site's listings say it has at least ("Page 1 of 17", 3 a page).
    promised: ListingPromise = field(default_factory=ListingPromise)
    # Hosts the crawled pages link their lessons to instead of their own, with counts.
    foreign_links: dict[str, int] = field(default_factory=dict)
    own_links: int = 0
    # The thumbnail listings showed for each lesson URL they listed (the first one seen).
    thumbnails: dict[str, str] = field(default_factory=dict)
    # Page requisites (stylesheets, scripts, fonts, images) fetched this run, apart from the
    # pages: one that fails is recorded, but the run's pages, health and completeness do not
    # depend on them. A versioned one captured in an earlier run is not asked again.
    requisites: dict[str, PageRecord] = field(default_factory=dict)
    requisite_stats: FetchStats = field(default_factory=FetchStats)
    requisites_kept: int = 0  # versioned requisites already captured, not asked again
    robots: PageRecord | None = None  # robots.txt's answer (asked conditionally)
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
            and self.capped is None
            and not self.deadline_passed
            and not self.failed
            and self.listings_settled
        )

    @property
    def lesson_urls(self) -> set[str]:
        return set(self.lessons) | self.not_modified

    def not_read(self, urls: Iterable[str]) -> dict[str, list[str]]:
        """Why each of ``urls`` (lessons the archive holds, on any host: a lesson is its path)
        was not read by this run, by reason; a lesson read, unchanged or gone is not in it."""
        answered = {_path(url) for url in self.lesson_urls | self.gone}
        pages = {_path(url): page for url, page in self.pages.items()}
        disallowed = {_path(url) for url in self.disallowed}
        reasons: dict[str, list[str]] = {}
        for url in sorted(urls):
            if (path := _path(url)) in answered:
                continue
            page = pages.get(path)
            if path in disallowed:
                reason = "disallowed by robots.txt"
            elif page is not None and page.error is not None:
                reason = "failed"
            elif page is not None and page.status is None:
                reason = "not fetched before the run stopped"
            elif page is not None:
                reason = f"answered HTTP {page.status} with no lesson of its own"
            else:
                reason = "not linked from any page read"
            reasons.setdefault(reason, []).append(url)
        return reasons


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
        stored_body: Callable[[str], bytes | None] | None = None,
        listing_walks: ListingWalks | None = None,
    ):
        self.config = config
        # The body an earlier run captured for a URL, for a 304 the crawl must read (robots.txt).
        self.stored_body = stored_body
        self.fetcher = fetcher
        self.max_pages = max_pages
        self.progress = progress
        self.scope = UrlScope(config, config.site.start_urls[0])
        # A lesson is its path on the site: what was learned of it on another host (before
        # the site moved, or from another copy) holds here, and this host's own entries win.
        # Not its validators: a 304 from this host would leave it with no capture of its own.
        rebased = sorted((known or {}).items(), key=lambda item: self.scope.on_host(item[0]))
        self.frontier = Frontier(
            self.scope,
            {
                self.scope.on_origin(url): page
                if self.scope.on_host(url)
                else KnownPage(page.kind, None, None)
                for url, page in rebased
            },
            walks_before=listing_walks,
        )
        self._starts = set(config.site.start_urls)
        self._queue: asyncio.Queue[Link] = asyncio.Queue()
        self._seen: set[str] = set()
        self._lessons_found = 0
        self._done = 0
        self._failed = 0
        self._started = 0
        self.requisite_scope = RequisiteScope(config, config.site.start_urls[0])
        self._requisites_seen: set[str] = set()
        self.result = CrawlResult(
            lessons={}, pages={}, stats=fetcher.stats, requisite_stats=fetcher.requisite_stats
        )

    async def run(self) -> CrawlResult:
        """Crawl until the frontier is empty or the run's deadline passes. One page's error is
        that page's failure; an error writing the archive (ArchiveWriteError) ends the run."""
        began = time.monotonic()
        try:
            async with (
                asyncio.timeout(self.config.politeness.max_run_seconds),
                Workers(self.config.politeness.concurrency) as self.workers,
            ):
                await self._crawl()
        except TimeoutError:
            self.result.deadline_passed = True
            log.warning(
                "run.deadline passed after %ss (politeness.max_run_seconds): stopped",
                self.config.politeness.max_run_seconds,
            )
        self.result.elapsed = time.monotonic() - began
        thumbnails = self.result.thumbnails
        self.result.lessons = {
            url: lesson.with_thumbnail(thumbnails.get(url))
            for url, lesson in self.result.lessons.items()
        }
        self.result.listings = self.frontier.listings
        self.result.listings_settled = self.frontier.settled
        self.result.listings_walked = self.frontier.listings_walked
        self.result.listings_to_walk = self.frontier.listings_to_walk
        problems = "; ".join(self.result.start_problems)[:600]
        if not any(p.status == 200 or p.status == 304 for p in self.result.pages.values()):
            reasons = {p.error for p in self.result.failed}
            raise SiteUnreachable(
                f"nothing could be fetched from {self.config.host}: "
                + (problems or "; ".join(sorted(r for r in reasons if r))[:300] or "no pages")
            )
        if self.result.foreign_links and not self.result.own_links:
            raise CrawlRefused(self._foreign_hosts())
        # Other pages without a title too: the theme changed, which the health checks name.
        theme_changed = bool(self.result.untitled - self._starts)
        if problems and not self.result.lesson_urls and not theme_changed:
            raise SiteUnreachable(f"no lessons found: {problems}")
        return self.result

    def _foreign_hosts(self) -> str:
        hosts = sorted(self.result.foreign_links, key=lambda h: -self.result.foreign_links[h])
        return (
            f"the pages of {self.scope.host} link their lessons to {', '.join(hosts)}, never "
            f"to {self.scope.host}: start from a URL on {hosts[0]} (the host the pages name), "
            "or serve the copy under that name; nothing was archived"
        )

    async def _crawl(self) -> None:
        start = self.config.site.start_urls[0]
        robots_url = urljoin(start, "/robots.txt")
        known = self.frontier.known.get(robots_url)
        earlier = None
        if known is not None and known.kind == "robots" and self.stored_body is not None:
            stored = self.stored_body
            earlier = StoredRobots(known.etag, known.last_modified, lambda: stored(robots_url))
        try:
            robots = await self.fetcher.load_robots(start, earlier)
        except FetchError as exc:
            raise SiteUnreachable(f"cannot reach {self.config.host}: {exc.reason}") from None
        finally:
            self._record_robots(robots_url, known)
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
            self._start_problem(url, f"failed: {exc.reason}")
            return
        record.status = response.status
        record.fetched_at = response.fetched_at
        if response.status == 304:
            # The fetcher never returns a 304 to a request that sent no validator (see
            # fetch.odd_answer), so the page is known.
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
                self._start_problem(url, f"answered {response.status}")
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
        if (reason := not_html(response.body, response.header("content-type"))) is not None:
            record.error = reason
            return
        try:
            read = await read_page_bounded(
                response.url,
                response.body,
                response.header("content-type"),
                self.scope,
                self.config.selectors,
                seconds=self.config.limits.page_seconds,
                workers=self.workers,
                requisites=self.requisite_scope.enabled,
            )
        except PageFailed as exc:
            record.error = str(exc)[:1000]
            log.warning("page.failed url=%r error=%r", url, record.error[:300])
            return
        record.listed = len(read.page.listed)
        listed_thumbnails(read.page, self.scope, self.result.thumbnails)
        record.warning = "; ".join(read.warnings)[:1000] or None
        if self.requisite_scope.enabled:
            await self._fetch_requisites(read.requisites)
        self.result.anomalies += len(read.page.anomalies)
        self._count_links(read.page.listed)
        self.result.promised.saw(read.page.page, read.page.page_count, len(read.page.listed))
        if kind == "lesson":
            if read.lesson is not None:
                self.result.lessons[read.lesson.url] = read.lesson
            elif not (read.page.lesson and read.page.lesson.title):
                self.result.untitled.add(self.scope.canonical(response.url) or response.url)
                self._start_problem(url, "is not a lesson page (no title)")
            if read.claim is not None:
                # The page stays under its own URL; the other lesson it names is a link.
                self.result.anomalies += 1
                record.warning = "; ".join(filter(None, (record.warning, read.claim.anomaly)))
                if read.claim.lesson is not None:
                    await self._enqueue([Link(read.claim.lesson, "lesson")])
        await self._enqueue(self.frontier.after_page(read.page, kind, self.result.disallowed))

    def _count_links(self, listed: Iterable[str]) -> None:
        """Tell listed lessons on the crawled host from lesson paths on another host: pages
        that name only another host (a copy served as localhost whose pages say 127.0.0.1)
        would leave the run with its start page alone."""
        foreign = self.result.foreign_links
        for link in listed:
            if self.scope.canonical(link) is not None:
                self.result.own_links += 1
            elif (host := _host(link)) not in ("", self.scope.host) and self.scope.kind(link):
                foreign[host] = foreign.get(host, 0) + 1

    def _start_problem(self, url: str, problem: str) -> None:
        if url in self._starts:
            self.result.start_problems.append(f"start URL {url} {problem}")

    def _record_robots(self, url: str, known: KnownPage | None) -> None:
        """robots.txt's answer, kept in `pages` like a page's: its validators go back next
        run, and its capture is what a 304 is a revisit of."""
        response = self.fetcher.robots_answers.get(url)
        if response is None:
            return
        record = PageRecord(url=url, kind="robots", status=response.status)
        record.fetched_at = response.fetched_at
        if response.status == 304 and known is not None:
            record.etag, record.last_modified = known.etag, known.last_modified
        else:
            record.etag = response.header("etag")
            record.last_modified = response.header("last-modified")
            record.sha256 = hashlib.sha256(response.body).hexdigest()
            record.bytes = len(response.body)
        self.result.robots = record

    async def _fetch_requisites(self, urls: tuple[str, ...]) -> None:
        """Capture what the page loads, each URL once per run, conditionally when an earlier
        run captured it, and not at all when it is versioned (``?ver=``) and captured. A
        stylesheet's own fonts and images follow it. Its failure is the requisite's alone."""
        pending = list(urls)
        while pending:
            url = self.requisite_scope.accepts(pending.pop(0))
            if url is None or url in self._requisites_seen:
                continue
            self._requisites_seen.add(url)
            known = self.frontier.known.get(url)
            if known is not None and known.kind == "requisite" and is_versioned(url):
                self.result.requisites_kept += 1
                continue
            if not await self.fetcher.allowed(url):
                continue  # as for pages: not the crawl's to fetch, and no failure
            record = self.result.requisites[url] = PageRecord(url=url, kind="requisite")
            try:
                response = await self.fetcher.get(
                    url,
                    etag=known.etag if known else None,
                    last_modified=known.last_modified if known else None,
                    requisite=True,
                )
            except FetchError as exc:
                record.error = exc.reason
                continue
            except ArchiveWriteError:
                raise
            except Exception as exc:  # a requisite never fails its page
                record.error = f"{type(exc).__name__}: {exc}"[:1000]
                continue
            record.status = response.status
            record.fetched_at = response.fetched_at
            if response.status == 304 and known is not None:
                record.etag, record.last_modified = known.etag, known.last_modified
                continue
            record.etag = response.header("etag")
            record.last_modified = response.header("last-modified")
            record.sha256 = hashlib.sha256(response.body).hexdigest()
            record.bytes = len(response.body)
            if response.status != 200:
                record.error = f"HTTP {response.status}"
            elif response.content_type == "text/css":
                pending.extend(stylesheet_requisites(response.body, response.url))

    async def _read_sitemap(self, response: Fetched, record: PageRecord) -> None:
        try:
            sitemap = await self.workers.run(
                _sitemap, response.body, seconds=self.config.limits.page_seconds
            )
        except PageFailed as exc:
            record.error = str(exc)[:1000]
            return
        record.listed = len(sitemap.locs)
        kind = "sitemap" if sitemap.index else "lesson"
        await self._enqueue([Link(loc, kind) for loc in sitemap.locs])

    async def _enqueue(self, links: list[Link]) -> None:
        """Queue each link once, if it is in scope and robots.txt allows it, until the run has
        discovered as many lessons or pages as its limits allow."""
        for proposed in links:
            link = self.scope.link(proposed.url, proposed.kind)
            if link is None or link.url in self._seen or not self.frontier.within_count(link):
                if link is None and proposed.url in self._starts:
                    self.result.start_problems.append(
                        f"start URL {proposed.url} is not a lesson page of the site "
                        "(scope.lesson_path, scope.path_prefixes)"
                    )
                continue
            if self._over_cap(link):
                continue
            if proposed.url in self._starts and link.url != proposed.url:
                self._starts.add(link.url)
            self._seen.add(link.url)
            if not await self.fetcher.allowed(link.url):
                self.result.disallowed.add(link.url)
                self._start_problem(link.url, "is disallowed by robots.txt")
                continue
            self.result.pages[link.url] = PageRecord(url=link.url, kind=link.kind)
            self._lessons_found += link.kind == "lesson"
            self._queue.put_nowait(link)

    def _over_cap(self, link: Link) -> bool:
        """Whether queueing ``link`` would pass limits.max_lessons or limits.max_pages. The
        first time, the run stops discovering (nothing more is queued, so memory stays what
        the cap allows) and says so in one line."""
        limits = self.config.limits
        if link.kind == "lesson" and self._lessons_found >= limits.max_lessons:
            cap = f"limits.max_lessons = {limits.max_lessons}"
        elif len(self.result.pages) >= limits.max_pages:
            cap = f"limits.max_pages = {limits.max_pages}"
        else:
            return False
        if self.result.capped is None:
            self.result.capped = cap
            log.warning(
                "run.capped: discovered as many as %s; discovery stopped, the run is "
                "incomplete (nothing is marked removed)",
                cap,
            )
        return True


def _sitemap(body: bytes):
    try:
        return read_sitemap(body)
    except ValueError as exc:
        raise PageFailed(str(exc)) from None


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def _path(url: str) -> str:
    return urlsplit(url).path


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
    stored_body: Callable[[str], bytes | None] | None = None,
    listing_walks: ListingWalks | None = None,
) -> CrawlResult:
    """Run one crawl to the end (synchronously) and return what it saw. SIGTERM or SIGHUP
    while it runs stops it as Ctrl-C does: its requests are cancelled, and Interrupted is
    raised once the event loop has closed."""
    signals: list[int] = []

    async def go() -> CrawlResult:
        async with Fetcher(config, on_response=on_response) as fetcher:
            return await Crawl(
                config,
                fetcher,
                known=known,
                max_pages=max_pages,
                progress=progress,
                stored_body=stored_body,
                listing_walks=listing_walks,
            ).run()

    async def stoppable() -> CrawlResult | None:
        # A signal is turned into a cancellation of the crawl, as asyncio.run does with
        # SIGINT: an exception raised by a Python signal handler at an arbitrary point of
        # the loop can land inside httpx's own bookkeeping and be lost there.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        installed = {}
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signum, lambda s=signum: (signals.append(s), task.cancel()))
                installed[signum] = previous
        try:
            return await go()
        except asyncio.CancelledError:
            if signals:
                return None
            raise
        finally:
            for signum, previous in installed.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, previous)  # whoever handled it before, again

    result = asyncio.run(stoppable())
    if signals:
        raise Interrupted(signals[0], signal.Signals(signals[0]).name)
    return result
