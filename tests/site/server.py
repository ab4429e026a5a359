"""A local stand-in for movementality.se that tests and ``make demo`` crawl instead of the internet.

``FixtureSite`` serves the lessons in ``lessons.json`` with the real site's URLs, markup and
quirks (see ``render.py``): per-lesson "You may also like" listings
paginated under ``/video/<slug>/page/<N>/``, trailing-slash redirects, ``robots.txt``, WordPress
core sitemaps, ETag/Last-Modified validators, plus test hooks: request records, a concurrency
high-water mark, content mutations between crawls, and injected faults.

Standard library only, so the fixture cannot break when the project's dependencies change.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import render

DEFAULT_DATA = Path(__file__).with_name("lessons.json")
DEFAULT_ROBOTS = (
    "User-agent: *\n"
    "Disallow: /wp-admin/\n"
    "Disallow: /video/staff-preview/\n"
    "Allow: /wp-admin/admin-ajax.php\n"
)
DEFAULT_OFFSITE_URL = "http://127.0.0.2:9/elsewhere/"
# Where the site's page requisites live (stylesheets, scripts, fonts, images).
REQUISITE_PATHS = ("/wp-content/", "/wp-includes/")
START_SLUG = "forward-fold-circle-the-knees"

FAULT_KINDS = (
    "503",
    "429",
    "500",
    "reset",
    "truncate",
    "slow",
    "offsite",
    "loop",
    "not-html",
    "bad-utf8",
    "huge",
)
# Faults a retrying crawler is expected to get past; the default for seeded_faults().
TRANSIENT_FAULTS = ("503", "429", "500", "reset", "truncate")
HUGE_BODY_BYTES = 20 * 1024 * 1024
# Theme updates that break the crawler's selectors, for health-check tests: each maps a piece of
# the lesson page markup to what the updated theme prints instead.
THEMES = {
    "divi": {},
    # The listing grid's class renamed: lesson pages still work, listings look empty.
    "renamed": {"et_pb_blog_grid": "et_pb_posts_grid"},
    # The lesson title's heading class renamed: lesson pages seem to have no title.
    "untitled": {'<h1 class="entry-title">': '<h1 class="et_pb_post_title">'},
    # The text module's inner class renamed: titles and listings still work, descriptions
    # come out empty.
    "textless": {"et_pb_text_inner": "et_pb_text_body"},
}

HTML = "text/html; charset=UTF-8"
XML = "application/xml; charset=UTF-8"
TEXT = "text/plain; charset=utf-8"

_SIMPLE_PAGES = {
    "/about/": (
        "About",
        [
            "Movementality is Josefine&#8217;s studio for movement, body awareness and rest.",
            "The Micro Pause lessons are short videos you can follow wherever you are.",
        ],
    ),
    "/contact/": ("Contact", ["Write to us at hello@movementality.invalid."]),
}
_SITE_MODIFIED = datetime(2023, 8, 14, 9, 30, tzinfo=UTC)
# A 1x1 transparent GIF, served for every theme image so browser-driven tests see no 404 noise.
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_PDF = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"
)


@dataclass
class Lesson:
    slug: str
    title: str
    author: str = "josefine"
    published: str = ""  # YYYY-MM-DD; "" lets publish() use today's date
    modified: str = ""  # YYYY-MM-DDTHH:MM:SSZ; "" lets publish() use the current time
    categories: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    # What other lessons' listings show; load_lessons()/publish() fill it from description.
    listing_description: list[str] = field(default_factory=list)
    listed: bool = True  # False: the page exists but no listing or sitemap links to it
    post_id: int = 0  # 0 lets publish() pick the next id
    # The video its page embeds: "" is the site's usual Vimeo player (an id derived from
    # post_id); an http(s) URL is embedded as that player's iframe; a path ending in a video
    # file's extension is a self-hosted <video>. edit(slug, video=…) changes it between crawls.
    video: str = ""


@dataclass
class RequestRecord:
    method: str
    path: str  # as requested, query string included
    headers: dict[str, str]  # names lower-cased
    time: float  # time.monotonic() when the request was read
    status: int = 0  # 0 until the response is decided; set before any byte is sent
    bytes_sent: int = 0  # body bytes (grows while a "huge" body streams)
    fault: str | None = None


def load_lessons(path: str | os.PathLike[str] = DEFAULT_DATA) -> list[Lesson]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return [_with_defaults(Lesson(**raw)) for raw in doc["lessons"]]


def _with_defaults(lesson: Lesson) -> Lesson:
    # WordPress shows the content as the listing excerpt unless an excerpt was written.
    if not lesson.listing_description:
        lesson.listing_description = list(lesson.description)
    return lesson


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _disallowed(robots_text: str) -> list[str]:
    # Good enough for the fixture's own robots.txt: every Disallow applies to every agent.
    prefixes = []
    for line in robots_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "disallow" and value.strip():
            prefixes.append(value.strip())
    return prefixes


# How a listing chooses its lessons. "categories" is the site's own rule; "tags" is a related-
# posts module that ignores the categories the pages show (each lesson gets two hidden tags
# from its slug), so a crawler reasoning from categories must notice its predictions fail.
RELATED = ("categories", "tags")


def _hidden_tags(slug: str) -> set[str]:
    digest = hashlib.sha256(slug.encode()).digest()
    return {f"a{digest[0] % 4}", f"b{digest[1] % 5}"}


# How posts published on the same day are ordered: by post id ("post_id", the same in every
# listing), or in an order of each listing's own ("per-listing"), as a query ordered by date
# alone may return them.
TIES = ("post_id", "per-listing")
STICKY_POSITIONS = ("before", "after")


def _tie_break(slug: str, other: Lesson, ties: str) -> int | bytes:
    if ties == "per-listing":
        return hashlib.sha256(f"{slug} {other.slug}".encode()).digest()
    return other.post_id


def _listing(
    lessons: Mapping[str, Lesson],
    hidden: set[str],
    slug: str,
    related: str = "categories",
    extra: Mapping[str, list[str]] | None = None,
    *,
    sticky: Sequence[str] = (),
    ties: str = "post_id",
) -> list[Lesson]:
    """Lessons shown under ``slug``: published, listed, related; newest first. ``extra`` adds
    lessons at the end of a lesson's listing, as an odd related-posts rule might. Sticky posts
    are not among a listing's regular items (page 1 shows them besides)."""

    def terms(lesson: Lesson) -> set[str]:
        return set(lesson.categories) if related == "categories" else _hidden_tags(lesson.slug)

    own = terms(lessons[slug])
    items = [
        other
        for other in lessons.values()
        if other.slug != slug
        and other.listed
        and other.slug not in hidden
        and other.slug not in sticky
        and own.intersection(terms(other))
    ]
    items.sort(key=lambda item: (item.published, _tie_break(slug, item, ties)), reverse=True)
    shown = {item.slug for item in items}
    for added in (extra or {}).get(slug, []):
        if added not in shown and added in lessons and added not in hidden:
            items.append(lessons[added])
    return items


def _crawlable_paths(
    lessons: Mapping[str, Lesson],
    hidden: set[str],
    per_page: int,
    robots_text: str,
    listing: Callable[[str], list[Lesson]] | None = None,
) -> list[str]:
    disallowed = _disallowed(robots_text)
    paths = []
    for lesson in lessons.values():
        if not lesson.listed or lesson.slug in hidden:
            continue
        base = f"/video/{lesson.slug}/"
        if any(base.startswith(prefix) for prefix in disallowed):
            continue
        items = listing(lesson.slug) if listing else _listing(lessons, hidden, lesson.slug)
        count = len(items)
        paths.append(base)
        paths.extend(f"{base}page/{n}/" for n in range(2, _pages(count, per_page) + 1))
    return sorted(paths)


def _pages(count: int, per_page: int) -> int:
    return max(1, math.ceil(count / per_page))


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    last_modified: datetime | None = None
    validators: bool = False  # send ETag/Last-Modified and honour conditional requests
    stream: Iterator[bytes] | None = None  # body of unknown length, delimited by closing


class FixtureSite:
    """The fixture web server. Use as a context manager, or call start() and stop().

    ``theme`` (one of THEMES, settable between crawls) renames markup the way a theme update
    would, so health checks can be tested against a site whose selectors stopped matching.

    ``faults`` maps a request path (no query string) to the faults its 1st, 2nd, ... requests
    meet; afterwards the path answers normally. Kinds:

    - ``"503"``, ``"429"``: that status with ``Retry-After: 1``; ``"500"``: a plain 500.
    - ``"reset"``: headers and half the body, then a TCP reset.
    - ``"truncate"``: the full Content-Length, half the body, then a clean close.
    - ``"slow"``: wait ``slow_seconds`` before answering (to exceed a client's read timeout).
    - ``"offsite"``: 302 to ``offsite_url``.
    - ``"loop"``: 301 to ``path?loop=1``, which 301s back to ``path``. Never used up, so a
      client that follows redirects loops until its own limit; clear it with set_faults().
    - ``"not-html"``: 200 ``application/pdf``.
    - ``"bad-utf8"``: the normal page with invalid UTF-8 inside the first description paragraph.
    - ``"huge"``: 200 with a 20 MB body, no Content-Length, ``Connection: close``.

    ``canonicals`` (settable between crawls) maps a lesson's slug to the ``rel=canonical``
    its own page prints instead of its URL, as an editor can set it with an SEO plugin:
    another lesson, a listing page, a URL that answers 404, another site. ``{url}`` in it is
    replaced by the site's URL.

    ``link_base`` (e.g. ``"http://localhost:{port}"`` or ``"https://movementality.se"``) is
    the site URL every URL the pages print (links, canonical, sitemap, redirects) starts with,
    instead of the address the server listens on, as a WordPress copy prints its configured
    siteurl: a copy served as 127.0.0.1 whose pages say localhost, or still name the real site.
    ``{port}`` is the server's port.
    """

    def __init__(
        self,
        lessons: list[Lesson] | None = None,
        *,
        per_page: int = 3,
        sitemap: bool = True,
        robots_txt: str | None = None,
        latency: float = 0.0,
        faults: dict[str, list[str]] | None = None,
        slow_seconds: float = 3.0,
        offsite_url: str = DEFAULT_OFFSITE_URL,
        host: str = "127.0.0.1",
        port: int = 0,
        theme: str = "divi",
        related: str = "categories",
        extra_listed: Mapping[str, list[str]] | None = None,
        canonicals: Mapping[str, str] | None = None,
        link_base: str | None = None,
        own_thumbnails: bool = False,
        inline_style_bytes: int = 0,
        sticky: Sequence[str] = (),
        sticky_position: str = "after",
        ties: str = "post_id",
        replaced_listed: Mapping[str, Mapping[str, str]] | None = None,
        latency_spread: float = 0.0,
    ) -> None:
        source = load_lessons() if lessons is None else lessons
        if related not in RELATED:
            raise ValueError(f"unknown related-posts rule {related!r}; choose from {RELATED}")
        if sticky_position not in STICKY_POSITIONS:
            raise ValueError(f"unknown sticky position {sticky_position!r}")
        if ties not in TIES:
            raise ValueError(f"unknown order of ties {ties!r}; choose from {TIES}")
        self.related = related
        self.extra_listed = dict(extra_listed or {})
        self.canonicals = dict(canonicals or {})
        self.link_base = link_base
        # True: a lesson's page shows its own featured image too, as Divi does when the theme
        # option is on (the real site's pages show it only in other lessons' listings).
        self.own_thumbnails = own_thumbnails
        # Divi prints each page's module styles inline, tens of kilobytes of them: the real
        # pages weigh that much more than the fixture's (opt-in; 0 keeps the pages small).
        self.inline_style_bytes = inline_style_bytes
        # WordPress's sticky posts: on page 1 of every listing, before or after its regular
        # items, not counted in "Page N of M" (the slugs of lessons of the site).
        self.sticky = tuple(sticky)
        self.sticky_position = sticky_position
        self.ties = ties
        # slug → {listed slug: slug shown in its place}: one listing unlike the rule, in
        # places page 1 does not show, with the same page count.
        self.replaced_listed = {k: dict(v) for k, v in (replaced_listed or {}).items()}
        # (requests, lesson): published when the server has received that many requests.
        self._scheduled: list[tuple[int, Lesson]] = []
        # Deep copies: mutations between crawls must never leak into the caller's objects.
        self._lessons: dict[str, Lesson] = {}
        for lesson in source:
            if lesson.slug in self._lessons:
                raise ValueError(f"duplicate slug {lesson.slug!r}")
            self._lessons[lesson.slug] = _with_defaults(copy.deepcopy(lesson))
        self._hidden: set[str] = set()  # unpublished slugs
        self.per_page = per_page
        self.sitemap = sitemap
        self.robots_txt = robots_txt
        self.latency = latency
        # Each answer waits up to this many seconds more, at random: answers then arrive in
        # an order of their own on every crawl.
        self.latency_spread = latency_spread
        self._spread = random.Random()
        self.slow_seconds = slow_seconds
        self.offsite_url = offsite_url
        self.host = host
        self.port = port
        if theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; choose from {sorted(THEMES)}")
        self.theme = theme  # may be reassigned between crawls: the site's theme was updated

        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        # Page requests (what a crawl's page counts compare with); the requests for page
        # requisites (REQUISITE_PATHS: the theme's files, the logo, thumbnails) are kept apart.
        self.requests: list[RequestRecord] = []
        self.requisite_requests: list[RequestRecord] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: dict[str, list[str]] = {}
        self._fault_pos: dict[str, int] = {}
        self.set_faults(faults or {})

        # Mutations stamp times that strictly increase, so Last-Modified always moves forward
        # even when two edits land in the same second.
        stamps = [_parse_time(x.modified) for x in self._lessons.values() if x.modified]
        self._last_stamp = max(stamps, default=datetime(2023, 1, 1, tzinfo=UTC))
        # Unpublishing removes a lesson from listings without touching any remaining lesson's
        # `modified`; listing pages fold this in so Last-Modified still moves forward.
        self._structure_changed: datetime | None = None

        self._httpd: _Server | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FixtureSite:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self.host, self.port), _Handler)
        httpd.site = self
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        # Kept after stop() so handlers finishing late can still render absolute URLs.
        self._url = f"http://{host}:{port}"
        # A short poll interval keeps stop() fast; tests start and stop many servers.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fixture-site-{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency / "slow"
        httpd.shutdown()
        httpd.server_close()
        # Keep-alive connections would otherwise keep handler threads waiting for a next
        # request that never comes.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FixtureSite:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FixtureSite is not running; call start() first")
        return self._url

    def lesson_url(self, slug: str) -> str:
        return f"{self.url}/video/{slug}/"

    def listing_url(self, slug: str, page: int) -> str:
        """URL of listing page ``page`` of ``slug`` (page 1 is the lesson URL itself)."""
        return render.lesson_url(self.url, slug, page)

    # -- observation -----------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset_stats(self) -> None:
        """Forget recorded requests and the in-flight high-water mark (e.g. between crawls)."""
        with self._lock:
            self.requests.clear()
            self.requisite_requests.clear()
            self.max_in_flight = self._in_flight

    # -- content queries (what the site currently publishes) ----------------------------------

    @property
    def lessons(self) -> list[Lesson]:
        """Copies of all published lessons, listed or not."""
        with self._lock:
            return [copy.deepcopy(x) for x in self._lessons.values() if x.slug not in self._hidden]

    def lesson(self, slug: str) -> Lesson | None:
        with self._lock:
            found = self._lessons.get(slug)
            return None if found is None or slug in self._hidden else copy.deepcopy(found)

    def listing(self, slug: str) -> list[Lesson]:
        """The full "You may also like" listing of ``slug``, newest first (all pages)."""
        with self._lock:
            return [copy.deepcopy(x) for x in self._listing_of(slug)]

    def _listing_of(self, slug: str) -> list[Lesson]:
        items = _listing(
            self._lessons,
            self._hidden,
            slug,
            self.related,
            self.extra_listed,
            sticky=self.sticky,
            ties=self.ties,
        )
        replaced = self.replaced_listed.get(slug, {})
        return [self._lessons[replaced[x.slug]] if x.slug in replaced else x for x in items]

    def _sticky_of(self, slug: str) -> list[Lesson]:
        """The sticky posts page 1 of ``slug``'s listing shows (never the lesson itself)."""
        return [
            self._lessons[x]
            for x in self.sticky
            if x != slug and x in self._lessons and x not in self._hidden
        ]

    def publish_after(self, requests: int, lesson: Lesson) -> None:
        """Publish ``lesson`` when the server has received ``requests`` requests in all: the
        site changes while a crawl reads it."""
        with self._lock:
            self._scheduled.append((requests, lesson))

    def page_count(self, slug: str) -> int:
        with self._lock:
            return _pages(len(self._listing_of(slug)), self.per_page)

    def crawlable_paths(self) -> list[str]:
        """Every lesson and listing page a polite crawler can discover (robots.txt honoured)."""
        with self._lock:
            return _crawlable_paths(
                self._lessons,
                self._hidden,
                self.per_page,
                self._robots_text(""),
                self._listing_of,
            )

    # -- mutations (take effect on the next request) ---------------------------------------

    def edit(self, slug: str, **fields: Any) -> Lesson:
        """Change fields of a lesson, as an editor would; bumps ``modified`` unless given."""
        names = {f.name for f in dataclasses.fields(Lesson)}
        unknown = set(fields) - names
        if unknown:
            raise TypeError(f"unknown Lesson fields: {sorted(unknown)}")
        if "slug" in fields and fields["slug"] != slug:
            raise ValueError("changing a slug is not supported (WordPress would redirect)")
        with self._lock:
            lesson = self._lessons[slug]
            # WordPress derives the listing excerpt from the content unless one was written.
            if (
                "description" in fields
                and "listing_description" not in fields
                and lesson.listing_description == lesson.description
            ):
                fields["listing_description"] = list(fields["description"])
            for name, value in fields.items():
                setattr(lesson, name, copy.deepcopy(value))
            if "modified" not in fields:
                lesson.modified = _iso(self._stamp())
            if {"categories", "listed", "published", "post_id"} & set(fields):
                self._structure_changed = self._stamp()
            return copy.deepcopy(lesson)

    def unpublish(self, slug: str) -> None:
        with self._lock:
            if slug not in self._lessons:
                raise KeyError(slug)
            self._hidden.add(slug)
            self._structure_changed = self._stamp()

    def publish(self, lesson: Lesson | str) -> Lesson:
        """Publish a new lesson, or re-publish an unpublished one (by slug or with new data).

        A new lesson without ``published``/``modified``/``post_id`` gets today's date, the
        current time and the next post id, so it becomes the newest lesson.
        """
        with self._lock:
            slug = lesson if isinstance(lesson, str) else lesson.slug
            if slug in self._lessons and slug not in self._hidden:
                raise ValueError(f"{slug!r} is already published")
            if isinstance(lesson, str):
                if slug not in self._hidden:
                    raise KeyError(slug)
                stored = self._lessons[slug]
                stored.modified = _iso(self._stamp())
            else:
                stored = _with_defaults(copy.deepcopy(lesson))
                if not stored.post_id:
                    stored.post_id = 1 + max((x.post_id for x in self._lessons.values()), default=0)
                if not stored.published:
                    stored.published = date.today().isoformat()
                if not lesson.modified or slug in self._lessons:
                    stored.modified = _iso(self._stamp())
                self._lessons.pop(slug, None)
                self._lessons[slug] = stored
            self._hidden.discard(slug)
            self._structure_changed = self._stamp()
            return copy.deepcopy(stored)

    def replace_every_lesson(self, prefix: str = "new-") -> list[str]:
        """Unpublish every lesson and publish as many others (the same text under slugs
        starting with ``prefix``): the site's lessons all vanished and were replaced, so the
        count stays the same while no lesson does. Returns the new slugs."""
        with self._lock:
            old = [x for x in self._lessons.values() if x.slug not in self._hidden]
            for lesson in old:
                self.unpublish(lesson.slug)
            fresh = []
            for lesson in old:
                new = dataclasses.replace(
                    copy.deepcopy(lesson), slug=prefix + lesson.slug, post_id=0, modified=""
                )
                fresh.append(self.publish(new).slug)
            return fresh

    def set_faults(self, faults: Mapping[str, Sequence[str]]) -> None:
        """Replace all faults; each path's list starts again from its first entry."""
        for path, kinds in faults.items():
            bad = [k for k in kinds if k not in FAULT_KINDS]
            if bad:
                raise ValueError(f"unknown fault kinds for {path}: {bad}")
        with self._lock:
            self._faults = {path: list(kinds) for path, kinds in faults.items()}
            self._fault_pos = {}

    @classmethod
    def seeded_faults(
        cls,
        seed: int,
        fraction: float,
        kinds: Sequence[str] = TRANSIENT_FAULTS,
        *,
        lessons: list[Lesson] | None = None,
        per_page: int = 3,
    ) -> dict[str, list[str]]:
        """Deterministically give ~``fraction`` of the crawlable pages 1-2 faults each."""
        source = load_lessons() if lessons is None else lessons
        by_slug = {x.slug: x for x in source}
        paths = _crawlable_paths(by_slug, set(), per_page, DEFAULT_ROBOTS)
        rng = random.Random(seed)
        chosen = sorted(rng.sample(paths, round(fraction * len(paths))))
        return {path: [rng.choice(kinds) for _ in range(rng.randint(1, 2))] for path in chosen}

    # -- internals -------------------------------------------------------------------------

    def _stamp(self) -> datetime:
        now = datetime.now(UTC).replace(microsecond=0)
        self._last_stamp = max(now, self._last_stamp + timedelta(seconds=1))
        return self._last_stamp

    def _robots_text(self, base: str) -> str:
        if self.robots_txt is not None:
            return self.robots_txt.replace("{url}", base)
        text = DEFAULT_ROBOTS
        if self.sitemap:
            text += f"\nSitemap: {base}/wp-sitemap.xml\n"
        return text

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> bool:
        """Block until the server has received ``count`` requests (True) or ``timeout`` passes
        (False): lets a test act at an exact point of a crawl instead of sleeping."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def _begin(self, record: RequestRecord) -> None:
        with self._lock:
            if record.path.startswith(REQUISITE_PATHS):
                self.requisite_requests.append(record)
            else:
                self.requests.append(record)
            self._arrived.notify_all()
            due = [x for x in self._scheduled if x[0] <= len(self.requests)]
            for entry in due:
                self._scheduled.remove(entry)
                self.publish(entry[1])
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            kinds = self._faults.get(path)
            pos = self._fault_pos.get(path, 0)
            if not kinds or pos >= len(kinds):
                return None
            kind = kinds[pos]
            # "loop" never gets used up: a redirect loop is a standing misconfiguration, and
            # a client following redirects must keep meeting it (set_faults() clears it).
            if kind != "loop":
                self._fault_pos[path] = pos + 1
            return kind

    def _respond(self, path: str, query: str, fault: str | None) -> _Response:
        if fault == "loop":
            target = path if "loop=1" in query else f"{path}?loop=1"
            return _redirect(f"{self.url}{target}")
        if fault in ("503", "429"):
            return _Response(
                int(fault),
                _error_html(fault),
                HTML,
                headers=[("Retry-After", "1")],
            )
        if fault == "500":
            return _Response(500, _error_html("500"), HTML)
        if fault == "offsite":
            return _redirect(self.offsite_url, status=302)
        if fault == "not-html":
            return _Response(200, _PDF, "application/pdf")
        if fault == "huge":
            return _Response(200, content_type=HTML, stream=_huge_body(HUGE_BODY_BYTES))
        with self._lock:
            response = self._route(path, query)
        if fault == "bad-utf8" and response.status == 200:
            response.body = _corrupt_utf8(response.body)
        return response

    def _route(self, path: str, query: str) -> _Response:
        base = self.url
        if self.link_base is not None:
            base = self.link_base.replace("{port}", self.url.rsplit(":", 1)[1])
        if path == "/robots.txt":
            text = self._robots_text(base).encode()
            return _Response(200, text, TEXT, last_modified=_SITE_MODIFIED, validators=True)
        if path.startswith("/wp-sitemap") and path.endswith(".xml"):
            return self._sitemap(base, path)
        if path.startswith("/video/"):
            return self._video(base, path)
        if path == "/":
            post_id = parse_qs(query).get("p", [""])[0]
            for lesson in self._lessons.values():
                if str(lesson.post_id) == post_id and lesson.slug not in self._hidden:
                    return _redirect(f"{base}/video/{lesson.slug}/")
            paragraphs = [
                "Short lessons in movement and body awareness.",
                f'<a href="{base}/video/{START_SLUG}/">Start with a Micro Pause</a>',
            ]
            return _page(render.simple_page(base, "/", render.SITE_NAME, paragraphs, "home"))
        if path in _SIMPLE_PAGES:
            title, paragraphs = _SIMPLE_PAGES[path]
            return _page(render.simple_page(base, path, title, paragraphs, "page"))
        if path.rstrip("/") + "/" in _SIMPLE_PAGES:
            return _redirect(f"{base}{path}/")
        if path.startswith(REQUISITE_PATHS):
            return _asset(path)
        return self._not_found(base)

    def _video(self, base: str, path: str) -> _Response:
        if not path.endswith("/"):
            return _redirect(f"{base}{path}/")
        parts = path.strip("/").split("/")  # ["video", slug] or ["video", slug, "page", N]
        slug = parts[1] if len(parts) > 1 else ""
        lesson = self._lessons.get(slug)
        if lesson is None or slug in self._hidden:
            return self._not_found(base)
        if len(parts) == 2:
            page = 1
        elif len(parts) == 4 and parts[2] == "page" and parts[3].isdigit():
            page = int(parts[3])
        else:
            return self._not_found(base)
        items = self._listing_of(slug)
        pages = _pages(len(items), self.per_page)
        if page == 1 and len(parts) == 4:
            return _redirect(f"{base}/video/{slug}/")
        if not 1 <= page <= pages:
            return self._not_found(base)
        shown = items[(page - 1) * self.per_page : page * self.per_page]
        if page == 1 and (sticky := self._sticky_of(slug)):
            shown = [*sticky, *shown] if self.sticky_position == "before" else [*shown, *sticky]
        html = render.lesson_page(
            base, lesson, shown, page, pages, own_thumbnail=self.own_thumbnails
        )
        if page == 1 and slug in self.canonicals:
            claimed = self.canonicals[slug].replace("{url}", base)
            html = html.replace(
                f'<link rel="canonical" href="{render.lesson_url(base, slug)}" />',
                f'<link rel="canonical" href="{claimed}" />',
            )
        for old, new in THEMES[self.theme].items():
            html = html.replace(old, new)
        if self.inline_style_bytes:
            html = html.replace(
                "</head>", _inline_styles(path, self.inline_style_bytes) + "</head>", 1
            )
        # The page shows the lesson, its page of items and "Page N of M", which depends on
        # every listed lesson, so all of them (and unpublishing) count towards Last-Modified.
        stamps = [_parse_time(x.modified) for x in [lesson, *items, *self._sticky_of(slug)]]
        if self._structure_changed is not None:
            stamps.append(self._structure_changed)
        return _page(html, max(stamps))

    def _sitemap(self, base: str, path: str) -> _Response:
        if not self.sitemap:
            return self._not_found(base)
        listed = sorted(
            (x for x in self._lessons.values() if x.listed and x.slug not in self._hidden),
            key=lambda x: x.post_id,
        )
        newest = max((_parse_time(x.modified) for x in listed), default=None)
        if self._structure_changed is not None and newest is not None:
            newest = max(newest, self._structure_changed)
        if path == "/wp-sitemap.xml":
            names = ["wp-sitemap-posts-video-1.xml", "wp-sitemap-posts-page-1.xml"]
            return _xml(render.sitemap_index(base, names), newest)
        if path == "/wp-sitemap-posts-video-1.xml":
            entries = [(f"{base}/video/{x.slug}/", x.modified) for x in listed]
            return _xml(render.sitemap_urlset(base, entries), newest)
        if path == "/wp-sitemap-posts-page-1.xml":
            entries = [(f"{base}{p}", _iso(_SITE_MODIFIED)) for p in _SIMPLE_PAGES]
            return _xml(render.sitemap_urlset(base, entries), _SITE_MODIFIED)
        return self._not_found(base)

    def _not_found(self, base: str) -> _Response:
        html = render.simple_page(
            base,
            "/404/",
            "No Results Found",
            ["The page you requested could not be found."],
            "error404",
        )
        return _Response(404, html.encode(), HTML)


def _page(html: str, last_modified: datetime = _SITE_MODIFIED) -> _Response:
    return _Response(200, html.encode(), HTML, last_modified=last_modified, validators=True)


def _xml(text: str, last_modified: datetime | None) -> _Response:
    return _Response(200, text.encode(), XML, last_modified=last_modified, validators=True)


def _redirect(location: str, status: int = 301) -> _Response:
    return _Response(status, headers=[("Location", location)], content_type=HTML)


def _asset(path: str) -> _Response:
    """The theme's files, the logo and the thumbnails: tiny but real, each of the type its name
    says, with validators, as Apache serves static files. The stylesheet loads a font and a
    background image by url(), as Divi's does."""
    kind = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    body, content_type = _ASSETS.get(kind, (_PIXEL, "image/gif"))
    return _Response(200, body, content_type, last_modified=_SITE_MODIFIED, validators=True)


def _inline_styles(path: str, size: int) -> str:
    """About ``size`` bytes of module styles as Divi prints them inline: the same for a page
    whenever it is served, different from page to page."""
    rng = random.Random(path)
    rules, total = [], 0
    while total < size:
        n = rng.randrange(100)
        rule = (
            f".et_pb_section_{n}.et_pb_section{{padding-top:{rng.randrange(90)}px;"
            f"margin-bottom:{rng.randrange(60)}px;background-color:#{rng.randrange(1 << 24):06x}}}"
        )
        rules.append(rule)
        total += len(rule)
    return f'<style id="et-builder-module-design-cached-inline-styles">{"".join(rules)}</style>\n'


def _png() -> bytes:
    """A 1x1 white PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# A 1x1 baseline JPEG (what WordPress serves for a thumbnail, only smaller).
_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c19"
    "12130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b08"
    "0001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b51000"
    "02010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768"
    "696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fb"
    "d3ffd9"
)
FONT_PATH = "/wp-content/themes/Divi/core/admin/fonts/modules/all/modules.woff"
BACKGROUND_PATH = "/wp-content/themes/Divi/images/menu-background.png"
_STYLESHEET = (
    "/* Divi (fixture) */\n"
    f"@font-face{{font-family:ETmodules;src:url('../../..{FONT_PATH}') format('woff')}}\n"
    "body{font-family:Georgia,serif;color:#333;background:#fff}\n"
    f"#main-header{{background:url({BACKGROUND_PATH}) repeat-x}}\n"
    "h1.entry-title{color:#2ea3f2;font-size:30px}\n"
    ".et_pb_blog_grid article{display:inline-block;width:30%}\n"
).encode()
# Not a usable font, only its signature: nothing in the tests renders with it.
_WOFF = b"wOFF\x00\x01\x00\x00" + bytes(36)
_ASSETS = {
    "css": (_STYLESHEET, "text/css"),
    "js": (
        b"/* Divi (fixture) */\ndocument.documentElement.className += ' js';\n",
        "application/javascript",
    ),
    "png": (_png(), "image/png"),
    "jpg": (_JPEG, "image/jpeg"),
    "jpeg": (_JPEG, "image/jpeg"),
    "gif": (_PIXEL, "image/gif"),
    "woff": (_WOFF, "font/woff"),
}


def _error_html(code: str) -> bytes:
    page = f"<!DOCTYPE html><html><head><title>{code}</title></head><body>{code}</body></html>\n"
    return page.encode()


def _corrupt_utf8(body: bytes) -> bytes:
    """Insert invalid UTF-8 inside the first description paragraph (or the title)."""
    anchor = body.find(b"et_pb_text_0")
    start = body.find(b"<p>", anchor) if anchor >= 0 else -1
    at = body.find(b" ", start) if start >= 0 else body.find(b"</title>")
    return body[:at] + b"\xc3\x28\xff\xfe" + body[at:]


def _huge_body(total: int) -> Iterator[bytes]:
    head = b"<!DOCTYPE html><html><head><title>Huge</title></head><body>\n"
    chunk = b"<p>" + b"Micro Pause " * 5400 + b"</p>\n"
    yield head
    sent = len(head)
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for clients that keep idle keep-alive connections open.
    block_on_close = False
    site: FixtureSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (timeouts, size caps) are expected, not errors.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections end eventually, like Apache's KeepAliveTimeout
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.site._lock:
            self.server.site._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.site._lock:
            self.server.site._connections.discard(self.connection)
        super().finish()

    def version_string(self) -> str:
        return self.server_version  # the real site says "Apache", without a Python version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test and demo output clean

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        site = self.server.site
        split = urlsplit(self.path)
        record = RequestRecord(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            time=time.monotonic(),
        )
        site._begin(record)
        try:
            site._pause(site.latency + site._spread.uniform(0, site.latency_spread))
            fault = site._next_fault(split.path)
            record.fault = fault
            if fault == "slow":
                site._pause(site.slow_seconds)
            if site._stopping.is_set():
                self.close_connection = True  # woken by stop(): hang up without answering
                return
            self._write(site._respond(split.path, split.query, fault), record, head, fault)
        finally:
            site._end()

    def _write(
        self, response: _Response, record: RequestRecord, head: bool, fault: str | None
    ) -> None:
        status, body = response.status, response.body
        headers = list(response.headers)
        if response.content_type:
            headers.append(("Content-Type", response.content_type))
        if response.validators and status == 200:
            etag = f'"{hashlib.sha1(body).hexdigest()}"'
            headers.append(("ETag", etag))
            if response.last_modified is not None:
                headers.append(("Last-Modified", format_datetime(response.last_modified, True)))
            if self._not_modified(etag, response.last_modified):
                status, body = 304, b""
                headers = [(k, v) for k, v in headers if k in ("ETag", "Last-Modified")]
        if response.stream is not None:
            headers.append(("Connection", "close"))
        elif status != 304:
            headers.append(("Content-Length", str(len(body))))

        payload = b"" if head else body
        if fault in ("reset", "truncate"):
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        # The record is complete before the first byte leaves, so a client that has its
        # response can rely on site.requests.
        record.status = status
        record.bytes_sent = len(payload)

        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)
        if fault == "reset":
            self._reset_connection()
        elif response.stream is not None and not head:
            self._stream(response.stream, record)

    def _stream(self, chunks: Iterator[bytes], record: RequestRecord) -> None:
        self.close_connection = True
        site = self.server.site
        try:
            for chunk in chunks:
                if site._stopping.is_set():
                    break
                self.wfile.write(chunk)
                with site._lock:
                    record.bytes_sent += len(chunk)
        except OSError:
            pass  # the client stopped reading, which is what a size cap should do

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN, so the client
        # sees "connection reset by peer" rather than a clean end of stream.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # detach() + os.close() closes the descriptor now, even though rfile/wfile still
            # reference the socket object.
            os.close(self.connection.detach())

    def _not_modified(self, etag: str, last_modified: datetime | None) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            # Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter for GET.
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            return "*" in tags or etag in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since and last_modified is not None:
            try:
                since = parsedate_to_datetime(if_modified_since)
            except (TypeError, ValueError):
                return False
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            return last_modified <= since
        return False
