"""One polite HTTP client for a crawl, in layers, outermost first:

- ``Fetcher.get``: only URLs on the site, conditional requests;
- ``_follow_redirects``: same-site redirects followed (the one redirect loop), robots.txt asked
  before every hop (``read_robots`` turns a robots.txt answer into rules, or a refusal);
- ``_get_with_retries``: transient failures retried with backoff (``retry_reason`` judges);
- ``_attempt``: per-host concurrency and pacing (``Pacer``), and a deadline per exchange;
- ``_exchange`` / ``_decompress``: the body read up to a size cap, and decoded whole or not at
  all.

It never parses HTML. Every HTTP response it receives (retried ones and redirects included) is
handed to ``on_response`` so that captures can keep the raw exchange.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx
from protego import Protego
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from .config import Config, Politeness
from .decode import Decoded, decode_html, header, is_html, media_type
from .errors import CrawlRefused, FetchError

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Which FetchStats the exchange under way counts in: set by Fetcher.get for its own task, so
# concurrent page and requisite fetches never count in each other's.
_COUNTED_IN: contextvars.ContextVar[FetchStats | None] = contextvars.ContextVar("counted_in")
# RFC 9309 §2.5: a crawler must parse at least 500 KiB of robots.txt and may ignore the rest.
ROBOTS_MAX_BYTES = 500 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """One HTTP exchange as received: what a capture stores and what extraction reads."""

    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_headers: tuple[tuple[str, str], ...]
    http_version: str
    fetched_at: str
    raw: bytes | None = None  # the body as transferred, before Content-Encoding is undone
    ip_address: str | None = None  # the server's address, where the connection tells it

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def content_type(self) -> str:
        return media_type(self.header("content-type"))

    @property
    def is_html(self) -> bool:
        return is_html(self.header("content-type"))

    def decode(self) -> Decoded:
        """The body as text, decoded as a browser would (see ``decode``): never raises."""
        return decode_html(self.body, self.header("content-type"))


@dataclass(frozen=True)
class StoredRobots:
    """robots.txt as an earlier run received it: its validators, and its body on demand (from
    the captures; None when that cannot be read)."""

    etag: str | None
    last_modified: str | None
    body: Callable[[], bytes | None]


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    not_modified: int = 0


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class Pacer:
    """Spaces the starts of requests to one host by ``delay`` seconds plus up to ``jitter``."""

    def __init__(self, delay: float, jitter: float, rng: random.Random):
        self.delay = delay
        self.jitter = jitter
        self._rng = rng
        self._next_start = 0.0

    async def turn(self) -> float:
        """Wait for this request's turn; returns the loop time it was given."""
        loop = asyncio.get_running_loop()
        # Reserved before sleeping, with no await in between: concurrent callers are given
        # successive turns, never the same one.
        now = loop.time()
        start = max(now, self._next_start)
        jitter = self._rng.uniform(0, self.jitter) if self.delay else 0.0
        self._next_start = start + self.delay + jitter
        if start > now:
            await asyncio.sleep(start - now)
        return start


@dataclass
class _Host:
    slots: asyncio.Semaphore
    pacer: Pacer
    robots: Protego | None = None


class Fetcher:
    """Use as ``async with Fetcher(config) as fetcher: await fetcher.get(url)``."""

    def __init__(
        self,
        config: Config,
        *,
        on_response: Callable[[Fetched], None] | None = None,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.politeness = config.politeness
        self.retry = config.retry
        self.on_response = on_response
        self.stats = FetchStats()
        self.robots_answers: dict[str, Fetched] = {}
        # Page requisites' requests (stylesheets, images …) are counted apart from the pages'.
        self.requisite_stats = FetchStats()
        self._rng = rng or random.Random()
        self._hosts: dict[str, _Host] = {}
        self._client = httpx.AsyncClient(
            # Only encodings the standard library can undo, so `raw` can always be decoded.
            headers={"User-Agent": self.politeness.user_agent, "Accept-Encoding": "gzip, deflate"},
            timeout=httpx.Timeout(
                self.politeness.read_timeout, connect=self.politeness.connect_timeout
            ),
            limits=httpx.Limits(
                max_connections=self.politeness.concurrency,
                max_keepalive_connections=self.politeness.concurrency,
            ),
            follow_redirects=False,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    def in_site(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed "[" where an IPv6 host would be
            return False
        return parts.scheme in ("http", "https") and parts.netloc == self.config.host

    async def load_robots(self, url: str, earlier: StoredRobots | None = None) -> Protego:
        """Fetch and parse the host's robots.txt once (see ``read_robots``); no answer at all
        raises FetchError. With ``earlier`` (what a previous run received) it is asked for
        conditionally, and a 304 is read as the stored copy. The answer is kept in
        ``robots_answers`` (the 304 as it came), for the run to record."""
        host = self._host(url)
        if host.robots is None:
            parts = urlsplit(url)
            robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
            headers = {}
            if earlier is not None and earlier.etag:
                headers["If-None-Match"] = earlier.etag
            if earlier is not None and earlier.last_modified:
                headers["If-Modified-Since"] = earlier.last_modified
            try:
                response = await self._follow_redirects(robots_url, headers, robots=True)
                self.robots_answers[robots_url] = response
                if response.status == 304:
                    body = earlier.body() if earlier is not None and headers else None
                    if body is None:  # the stored copy is unreadable: ask again in full
                        response = await self._follow_redirects(robots_url, {}, robots=True)
                        self.robots_answers[robots_url] = response
                    else:
                        response = dataclasses.replace(response, status=200, body=body)
            except FetchError as exc:
                if exc.status is None or exc.status < 500:
                    raise
                raise CrawlRefused(
                    f"{robots_url} answered {exc.reason}: while robots.txt cannot be read "
                    "the crawl is not allowed (RFC 9309)"
                ) from None
            host.robots = read_robots(response, self.politeness)
            crawl_delay = host.robots.crawl_delay(self.politeness.user_agent)
            if crawl_delay:
                host.pacer.delay = max(host.pacer.delay, float(crawl_delay))
        return host.robots

    async def allowed(self, url: str) -> bool:
        robots = await self.load_robots(url)
        return robots.can_fetch(url, self.politeness.user_agent)

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        requisite: bool = False,
    ):
        """GET ``url`` within the site: robots.txt obeyed, same-site redirects followed,
        transient failures retried. Returns the final response (2xx, 304 or a 4xx the caller
        judges); raises FetchError when the URL cannot be fetched. A ``requisite``'s
        requests are counted in ``requisite_stats``."""
        token = _COUNTED_IN.set(self.requisite_stats if requisite else self.stats)
        try:
            return await self._get(url, etag, last_modified)
        finally:
            _COUNTED_IN.reset(token)

    def _stats(self) -> FetchStats:
        return _COUNTED_IN.get(None) or self.stats

    async def _get(self, url: str, etag: str | None, last_modified: str | None) -> Fetched:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if not self.in_site(url):
            raise FetchError(url, "not on the site being crawled")
        response = await self._follow_redirects(url, headers)
        if response.status in _REDIRECTS and response.header("location"):
            target = urljoin(response.url, response.header("location") or "")
            raise FetchError(url, f"redirect leaves the site: {target}")
        if response.status == 304:
            self._stats().not_modified += 1
        return response

    async def _follow_redirects(
        self, url: str, headers: dict[str, str], *, robots: bool = False
    ) -> Fetched:
        """The response at the end of ``url``'s same-site redirects. A redirect off the site
        is returned as it is, for the caller to judge; robots.txt itself is not subject to
        robots rules."""
        current = url
        for _hop in range(self.politeness.max_redirects + 1):
            if not robots and not await self.allowed(current):
                raise FetchError(url, f"disallowed by robots.txt: {current}")
            response = await self._get_with_retries(current, headers, robots=robots)
            location = response.header("location")
            if response.status not in _REDIRECTS or not location:
                return response
            target = urljoin(current, location)
            if not self.in_site(target):
                return response
            current = target
        raise FetchError(url, f"more than {self.politeness.max_redirects} redirects")

    async def _get_with_retries(
        self, url: str, headers: dict[str, str], *, robots: bool = False
    ) -> Fetched:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if number > 1:
                        self._stats().retries += 1
                    final = number >= self.retry.attempts
                    return await self._attempt(url, headers, final=final, robots=robots)
        except _Retryable as exc:
            raise FetchError(
                url, f"{exc.reason} (gave up after {self.retry.attempts} attempts)", exc.status
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.retry_after_max)
        backoff = self.retry.backoff_initial * 2 ** (state.attempt_number - 1)
        return min(backoff, self.retry.backoff_max) * (0.5 + self._rng.random() / 2)

    async def _attempt(
        self, url: str, headers: dict[str, str], *, final: bool, robots: bool
    ) -> Fetched:
        host = self._host(url)
        async with host.slots:
            await host.pacer.turn()
            self._stats().requests += 1
            try:
                # httpx's read timeout is per read; a server dripping bytes could hold a slot
                # forever, so the whole exchange has a deadline too.
                async with asyncio.timeout(
                    self.politeness.connect_timeout + 2 * self.politeness.read_timeout
                ):
                    response = await self._exchange(url, headers, robots=robots)
            except (httpx.TransportError, TimeoutError) as exc:
                raise _Retryable(_describe(exc)) from None
        if self.on_response is not None:
            self.on_response(response)
        if not robots and (odd := odd_answer(response)) is not None:
            raise _Retryable(odd, status=response.status)
        if (retry := retry_reason(response, self.retry.statuses, final=final)) is not None:
            raise retry
        return response

    async def _exchange(self, url: str, headers: dict[str, str], *, robots: bool) -> Fetched:
        cap = self.politeness.max_response_bytes
        if robots:
            # Only a prefix is read, so it has to arrive uncompressed.
            headers = {**headers, "Accept-Encoding": "identity"}
        async with self._client.stream("GET", url, headers=headers) as response:
            declared = response.headers.get("content-length")
            if not robots and declared and declared.isdigit() and int(declared) > cap:
                raise FetchError(url, f"response too large: {declared} bytes (cap {cap})")
            chunks, size = [], 0
            # Raw bytes, as they crossed the wire: captures keep them so, and the cap counts them
            # before anything is decompressed.
            async for chunk in response.aiter_raw():
                size += len(chunk)
                chunks.append(chunk)
                if robots and size >= ROBOTS_MAX_BYTES:
                    break
                if size > cap:
                    raise FetchError(url, f"response too large: over {cap} bytes")
            self._stats().bytes += size
            raw = b"".join(chunks)
            encoding = response.headers.get("content-encoding", "").strip().lower()
            return Fetched(
                ip_address=_server_address(response),
                url=url,
                status=response.status_code,
                headers=tuple(response.headers.multi_items()),
                body=_decompress(url, raw, encoding, cap),
                request_headers=tuple(response.request.headers.multi_items()),
                http_version=response.http_version,
                # Microseconds: two fetches of one URL within a second (two runs, a retry) must
                # still sort in the order they happened, in the WARC and in replay tools.
                fetched_at=datetime.now(UTC).isoformat(timespec="microseconds"),
                raw=raw,
            )

    def _host(self, url: str) -> _Host:
        netloc = urlsplit(url).netloc
        if netloc not in self._hosts:
            self._hosts[netloc] = _Host(
                slots=asyncio.Semaphore(self.politeness.concurrency),
                pacer=Pacer(self.politeness.delay, self.politeness.jitter, self._rng),
            )
        return self._hosts[netloc]


def read_robots(response: Fetched, politeness: Politeness) -> Protego:
    """The rules of a robots.txt answer (RFC 9309): a missing file allows everything; a server
    error or a redirect off the site forbids the crawl, and so does a Crawl-delay above
    politeness.max_crawl_delay. Only the first ROBOTS_MAX_BYTES are read."""
    if response.status in _REDIRECTS:
        target = urljoin(response.url, response.header("location") or "")
        raise CrawlRefused(
            f"{response.url} redirects off the site ({target}): robots.txt cannot be "
            "read, so the crawl is not allowed"
        )
    if response.status >= 500:
        raise CrawlRefused(
            f"{response.url} answered HTTP {response.status}: while robots.txt cannot be "
            "read the crawl is not allowed (RFC 9309)"
        )
    text = ""
    if response.status == 200:
        text = response.body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace")
    robots = Protego.parse(text)
    crawl_delay = robots.crawl_delay(politeness.user_agent)
    if crawl_delay and crawl_delay > politeness.max_crawl_delay:
        raise CrawlRefused(
            f"{response.url} asks for Crawl-delay: {crawl_delay:g} s, more than "
            f"politeness.max_crawl_delay = {politeness.max_crawl_delay:g} s; "
            "nothing was crawled (raise the setting to crawl this slowly)"
        )
    return robots


def odd_answer(response: Fetched) -> str | None:
    """What is wrong with an answer no correct server gives, in the words of what it did, or
    None. Each is retried (a cache or proxy in between may answer right next time):

    - a 304 Not Modified to a request that sent no validator (If-None-Match or
      If-Modified-Since): there is nothing it could be unchanged from;
    - a 200 with an empty body: a page is never empty, and reading it as one would look like
      a theme change (no title, no listing)."""
    if response.status == 304:
        sent = {name.lower() for name, _ in response.request_headers}
        if not sent & {"if-none-match", "if-modified-since"}:
            return "HTTP 304 Not Modified to a request that sent no validator"
    if response.status == 200 and not response.body:
        return "HTTP 200 with an empty body"
    return None


def retry_reason(response: Fetched, statuses: Iterable[int], *, final: bool) -> _Retryable | None:
    """Why ``response`` deserves another attempt, or None when it is the answer: a status
    configured as transient (with its Retry-After), or a page whose bytes do not decode, which
    is usually corruption on the way (only the last attempt's body is kept, bytes replaced)."""
    if response.status in statuses:
        return _Retryable(
            f"HTTP {response.status}",
            _retry_after(response.header("retry-after")),
            status=response.status,
        )
    if response.status == 200 and response.is_html and not final:
        decoded = response.decode()
        if decoded.replaced:
            return _Retryable(f"undecodable body: {decoded.fallback}")
    return None


def _decompress(url: str, raw: bytes, encoding: str, cap: int) -> bytes:
    """Undo Content-Encoding, refusing a body that inflates past the cap (a zip bomb)."""
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(url, f"unsupported Content-Encoding {encoding!r}")
    # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
    choices = [16 + zlib.MAX_WBITS] if "gzip" in encoding else [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    for wbits in choices:
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(raw, cap + 1)
        except zlib.error:
            continue
        if len(body) > cap:
            raise FetchError(url, f"response too large: inflates past {cap} bytes")
        if not inflater.eof:
            # The stream stops before its end: the body was cut short on the way, exactly like
            # a short Content-Length, however complete the HTTP exchange looked.
            raise _Retryable(f"truncated {encoding} body ({len(raw)} bytes)")
        return body
    raise _Retryable(f"corrupt {encoding} body")


def _server_address(response: httpx.Response) -> str | None:
    """The IP address the exchange went to (WARC-IP-Address), or None where the transport
    does not say."""
    stream = response.extensions.get("network_stream")
    try:
        address = stream.get_extra_info("server_addr") if stream is not None else None
    except Exception:  # a transport's own extension: it may not know the key
        return None
    return str(address[0]) if isinstance(address, tuple) and address else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
