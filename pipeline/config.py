"""Load a site's TOML configuration into frozen dataclasses, refusing anything it does not know.

Every error names the offending key (``politeness.delay``) in one line, so a typo in a cron job's
config fails loudly instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .errors import ConfigError

# The configuration of the real site, shipped inside the package (config/ in the repository,
# pipeline/defaults/ once installed): found wherever the tool is installed and run from.
DEFAULT_CONFIG: Traversable = resources.files(__package__) / "defaults" / "movementality.toml"


@dataclass(frozen=True)
class Site:
    name: str
    base_url: str
    start_urls: tuple[str, ...]
    sitemaps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scope:
    path_prefixes: tuple[str, ...]
    lesson_path: str
    listing_path: str
    # A first crawl proves most listings from the categories pages show instead of walking
    # them (see pipeline/inference.py); false walks every lesson's listing to its end.
    listing_inference: bool = True
    # A page's requisites (stylesheets, scripts, fonts, images) on the site's own host under
    # these paths are captured too, so a replayed page looks as it did; [] captures pages only.
    # Off-site embeds (the video player) are never fetched.
    requisite_prefixes: tuple[str, ...] = ("/wp-content/", "/wp-includes/")
    # Listings proven rather than walked that each run walks anyway, to check them (0: none).
    audit_listings: int = 1


@dataclass(frozen=True)
class Selectors:
    canonical: str
    title: str
    author: str
    published: str
    description: str
    listed_lesson: str
    listed_link: str
    page_count: str
    page_links: str
    next_link: str
    # Where a lesson's categories show: as classes with this prefix on its own article (the
    # first match of `categories`) and on each listed one. Empty: the site does not show them.
    categories: str = ""
    category_prefix: str = ""
    # The lesson's video: the player its own page embeds (an iframe's src, or a self-hosted
    # <video>'s src or first <source>). The video itself is never fetched.
    video: str = ""
    # The lesson's thumbnail on its own page, where the theme shows it; failing that, the one
    # each listing item shows (inside a `listed_lesson`).
    thumbnail: str = ""
    listed_thumbnail: str = ""


@dataclass(frozen=True)
class Politeness:
    user_agent: str
    delay: float = 1.0
    jitter: float = 0.5
    concurrency: int = 2
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_response_bytes: int = 5_000_000
    max_redirects: int = 5
    # A robots.txt Crawl-delay above this many seconds ends the run before its second request:
    # obeying it could keep a scheduled job asleep for a day.
    max_crawl_delay: float = 30.0
    # A run still crawling after this many seconds stops and is recorded as incomplete, so no
    # mix of slow answers and retries keeps a scheduled job going forever.
    max_run_seconds: float = 12 * 3600.0


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Limits:
    """What one page and one run may cost, whatever the site sends."""

    # Seconds one page's decoding, structure check and extraction may take (in a child
    # process, see pipeline/isolate.py); a page over it fails. A real page takes milliseconds.
    page_seconds: float = 5.0
    # Lessons and pages (lessons, listing pages, sitemaps) one run may discover: reaching
    # either stops discovery and the run is incomplete. The real site has ~60 lessons and a
    # full walk of its listings is ~1 000 pages.
    max_lessons: int = 10_000
    max_pages: int = 200_000


@dataclass(frozen=True)
class Health:
    """Thresholds a run must meet before it may mark lessons removed or publish a snapshot."""

    # A drop of more than this fraction of lessons against the last healthy run fails the run.
    max_lesson_drop: float = 0.2
    # More than this fraction of pages finally failing fails the run.
    max_failed_pages: float = 0.05
    # More than this fraction of the lesson pages read having no description fails the run.
    max_empty_descriptions: float = 0.5


@dataclass(frozen=True)
class Warc:
    """What each capture file's warcinfo record says about the crawl that wrote it, as
    Heritrix and Browsertrix Crawler name it: who ran it and what for."""

    operator: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class Config:
    site: Site
    scope: Scope
    selectors: Selectors
    politeness: Politeness
    retry: Retry = field(default_factory=Retry)
    health: Health = field(default_factory=Health)
    warc: Warc = field(default_factory=Warc)
    limits: Limits = field(default_factory=Limits)
    source: Path | Traversable | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.site.start_urls[0]).netloc

    def with_start_urls(self, urls: tuple[str, ...]) -> Config:
        """Point the crawl at other start URLs (a local copy, a mirror); their host becomes the
        scope and sitemap paths are resolved against it."""
        config = dataclasses.replace(self, site=dataclasses.replace(self.site, start_urls=urls))
        _check(config)
        return config

    def with_politeness(self, **changes) -> Config:
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        politeness = dataclasses.replace(self.politeness, **changes)
        _check_politeness(politeness, "option")
        return dataclasses.replace(self, politeness=politeness)

    def sitemap_urls(self) -> tuple[str, ...]:
        origin = f"{urlsplit(self.site.start_urls[0]).scheme}://{self.host}/"
        return tuple(urljoin(origin, s) for s in self.site.sitemaps)


def load_config(path: Path | str | Traversable | None = None) -> Config:
    """The configuration in ``path``, or the packaged one (``DEFAULT_CONFIG``) when None."""
    path = DEFAULT_CONFIG if path is None else Path(path) if isinstance(path, str) else path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    config = _build(Config, raw, "")
    config = dataclasses.replace(config, source=path)
    _check(config)
    return config


def _build(cls, raw, prefix: str):
    """Build dataclass ``cls`` from a TOML table, checking every key's presence and type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"unknown config key: {prefix}{key}")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing config key: {key}")
            continue
        values[name] = _coerce(hints[name], raw[name], key)
    return cls(**values)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        return tuple(_coerce(item, v, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key}: expected a finite number, got {value!r}")
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key}: expected {hint.__name__}, got {value!r}")
    return value


def _check(config: Config) -> None:
    if not config.site.start_urls:
        raise ConfigError("config key site.start_urls: at least one start URL is needed")
    for url in (config.site.base_url, *config.site.start_urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"config key site.start_urls: not an http(s) URL: {url!r}")
    if len({urlsplit(url).netloc for url in config.site.start_urls}) > 1:
        raise ConfigError("config key site.start_urls: all start URLs must be on one host")
    for key in ("lesson_path", "listing_path"):
        pattern = getattr(config.scope, key)
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"config key scope.{key}: invalid regex: {exc}") from None
        if "slug" not in compiled.groupindex:
            raise ConfigError(f"config key scope.{key}: needs a (?P<slug>...) group")
    for prefix in config.scope.requisite_prefixes:
        if not prefix.startswith("/"):
            raise ConfigError(f"config key scope.requisite_prefixes: not a path: {prefix!r}")
    if (audits := config.scope.audit_listings) < 0:
        raise ConfigError(f"config key scope.audit_listings: expected 0 or more, got {audits}")
    if "page" not in re.compile(config.scope.listing_path).groupindex:
        raise ConfigError("config key scope.listing_path: needs a (?P<page>...) group")
    _check_politeness(config.politeness, "config key politeness")
    retry = config.retry
    if retry.attempts < 1:
        raise ConfigError("config key retry.attempts: must be at least 1")
    if retry.attempts > 20:
        raise ConfigError("config key retry.attempts: at most 20")
    if min(retry.backoff_initial, retry.backoff_max, retry.retry_after_max) < 0:
        raise ConfigError("config key retry: backoff and Retry-After caps must be >= 0")
    limits = config.limits
    if not (math.isfinite(limits.page_seconds) and limits.page_seconds > 0):
        raise ConfigError("config key limits.page_seconds: must be a number of seconds > 0")
    if limits.max_lessons < 1 or limits.max_pages < 1:
        raise ConfigError("config key limits.max_lessons/max_pages: must be at least 1")
    for fraction in ("max_lesson_drop", "max_failed_pages", "max_empty_descriptions"):
        if not 0 <= getattr(config.health, fraction) <= 1:
            raise ConfigError(f"config key health.{fraction}: must be between 0 and 1")


# More requests in flight than this is no longer a polite crawl of one host, whatever the site.
MAX_CONCURRENCY = 32


def _check_politeness(p: Politeness, where: str) -> None:
    seconds = ("delay", "jitter", "connect_timeout", "read_timeout")
    for name in (*seconds, "max_crawl_delay", "max_run_seconds"):
        if not math.isfinite(getattr(p, name)):
            raise ConfigError(f"{where} {name}: must be a finite number of seconds")
    if p.delay < 0 or p.jitter < 0 or p.max_crawl_delay < 0:
        raise ConfigError(f"{where} delay/jitter/max_crawl_delay: must be >= 0")
    if not 1 <= p.concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"{where} concurrency: must be between 1 and {MAX_CONCURRENCY}")
    if p.connect_timeout <= 0 or p.read_timeout <= 0 or p.max_run_seconds <= 0:
        raise ConfigError(f"{where} timeouts and max_run_seconds: must be > 0")
    if p.max_response_bytes < 1 or p.max_redirects < 0:
        raise ConfigError(f"{where} max_response_bytes/max_redirects: out of range")
    if not p.user_agent.strip():
        raise ConfigError(f"{where} user_agent: must name the project and a contact URL")
