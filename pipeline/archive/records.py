"""The plain data that goes into the archive and comes out of it."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..captures import CaptureRef
from ..normalise import Lesson


@dataclass(frozen=True, slots=True)
class KnownPage:
    """What earlier runs learned about a URL: its validators go back as a conditional request."""

    kind: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class ListingWalks:
    """What earlier runs read of the lessons' listings: when each was last walked to its end
    (the run's id), and the listings the last run asks the next one to walk in full (those
    sharing a category with a listing found other than predicted)."""

    last_walked: dict[str, int] = field(default_factory=dict)
    to_walk: frozenset[str] = frozenset()


@dataclass(slots=True)
class PageRecord:
    """The outcome of one URL in a run: what the `pages` table keeps."""

    url: str
    kind: str  # lesson | listing | sitemap | requisite
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


@dataclass(frozen=True)
class RunOutcome:
    """Everything one run saves, crawl or reparse: written in one transaction.

    ``gone`` is given only when the run may conclude that a lesson is gone (a complete,
    healthy crawl): the lesson URLs the site answered 404 or 410 for, which are marked
    removed; a lesson the run did not read is kept as last archived. A reparse is
    not ``observed``: it re-extracts without claiming the site was seen, so ``last_seen`` and
    ``removed_at`` keep their values."""

    status: str
    lessons: Sequence[Lesson]
    lessons_found: int
    observed: bool = True
    unchanged: Collection[str] = ()  # lesson URLs that answered 304: only last_seen moves
    gone: Collection[str] = ()
    pages: Sequence[PageRecord] = ()
    captures: Mapping[str, CaptureRef] = field(default_factory=dict)
    # The run's own counters, as the `runs` columns of the same names (requests, bytes, …).
    figures: Mapping[str, int | str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LessonChanges:
    new: int = 0
    changed: int = 0
    removed: int = 0
    restored: int = 0
    moved: int = 0  # read under another scheme, host or port than stored: its url changed


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What a saved run did to the archive."""

    lessons_found: int
    new: int
    changed: int
    removed: int
    restored: int
    programs: int
    moved: int = 0


@dataclass(frozen=True)
class ArchiveStatus:
    """`micropause status`: the last runs (newest first) and what the archive holds."""

    runs: list[dict]
    lessons: int
    removed: int
    programs: int
    versions: int
    pages: int
    failed_pages: int


@dataclass(frozen=True)
class SnapshotRows:
    """The archive as one read saw it: the run whose content it is, each table's rows, the
    capture files of its crawls (oldest first), and each lesson's (id, url, title,
    description)."""

    run: dict
    tables: dict[str, list[tuple]]
    captures: list[str] = field(default_factory=list)
    lesson_pages: list[tuple[int, str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """A run, as far as choosing two of them to compare needs."""

    id: int
    kind: str  # crawl or reparse
    status: str
    complete: bool
    finished: str | None


@dataclass(frozen=True)
class Version:
    """One row of lesson_versions, as far as the diff needs it."""

    lesson_id: int
    url: str
    version: int
    run_id: int
    event: str  # created, changed, removed, restored, reparsed
    new: dict[str, str | None]  # the values this version set
