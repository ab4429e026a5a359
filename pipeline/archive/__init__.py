"""The archive: one object that owns its files on disk and every SQL statement on its tables.

An archive is a folder: the database (``micropause.db``), beside it ``captures/`` (the WARC
files of every run), ``exports/`` (dated snapshots) and the lock file. Other modules ask the
``Archive`` what they need (the pages a crawl should ask for again, a run's row, the rows of a
snapshot) and hand it what a run saw to save in one transaction; none of them holds SQL.

A run's row is written when it starts; everything it learned is written in one transaction
when it ends, so a failed or killed run leaves the archive exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from ..captures import CaptureRef
from ..errors import ArchiveError, ArchiveWriteError
from . import history, runs
from .layout import Layout
from .lock import archive_lock
from .records import (
    ArchiveStatus,
    KnownPage,
    LessonChanges,
    ListingWalks,
    PageRecord,
    Run,
    RunCounts,
    RunOutcome,
    SnapshotRows,
    Version,
)
from .runs import run_status
from .schema import (
    DEFAULT_DB,
    LESSON_COLUMNS,
    PROGRAM_COLUMNS,
    Column,
    now_iso,
    open_database,
    open_read_only,
    read_only_uri,
    verify_archive,
    writable,
)

__all__ = [
    "DEFAULT_DB",
    "LESSON_CAPTURES_SQL",
    "LESSON_COLUMNS",
    "LESSON_COUNTS_SQL",
    "LESSON_PAGE_SQL",
    "LESSON_PART_SQL",
    "LESSON_VERSIONS_SQL",
    "PROGRAM_COLUMNS",
    "PROGRAM_COUNT_SQL",
    "PROGRAM_SLUG_SQL",
    "START_PROGRAMS_SQL",
    "Archive",
    "ArchiveStatus",
    "Column",
    "KnownPage",
    "Layout",
    "LessonChanges",
    "ListingWalks",
    "PageRecord",
    "Run",
    "RunCounts",
    "RunOutcome",
    "SnapshotRows",
    "Version",
    "archive_lock",
    "latest_saved_run_of",
    "now_iso",
    "read_only_uri",
    "read_snapshot",
    "run_status",
    "verify_archive",
    "writable",
]

T = TypeVar("T")

# A snapshot's rows, in an order that depends on nothing but their content.
_SNAPSHOT_LESSONS = """
    SELECT lessons.id, lessons.url, lessons.slug, lessons.program_id, programs.name,
           lessons.part, lessons.subtitle, lessons.title, lessons.description, lessons.author,
           lessons.published, lessons.video_url, lessons.video_provider, lessons.video_id,
           lessons.thumbnail_url, lessons.first_seen, lessons.last_seen, lessons.removed_at,
           lessons.content_hash
    FROM lessons LEFT JOIN programs ON programs.id = lessons.program_id
    ORDER BY programs.name IS NULL, programs.name, programs.slug, lessons.part IS NULL,
             lessons.part, lessons.published, lessons.title, lessons.url"""
_SNAPSHOT_PROGRAMS = """
    SELECT id, slug, name, lesson_count, parts_missing FROM programs ORDER BY name, slug"""
_RUN_SUMMARIES = "SELECT id, kind, status, complete, finished FROM runs ORDER BY id"
# Only lessons with a version between the two runs can differ; their versions up to the
# later run are all a replay needs.
_VERSIONS_BETWEEN = """
    SELECT v.lesson_id, lessons.url, v.version, coalesce(v.run_id, 0), v.event, v.new
    FROM lesson_versions v JOIN lessons ON lessons.id = v.lesson_id
    WHERE coalesce(v.run_id, 0) <= :last AND v.lesson_id IN (
        SELECT lesson_id FROM lesson_versions
        WHERE coalesce(run_id, 0) > :first AND coalesce(run_id, 0) <= :last)
    ORDER BY v.lesson_id, v.version"""
# For Datasette's pages (the home page's "Start here"), which run them on their own connection.
START_PROGRAMS_SQL = "SELECT slug, name, lesson_count FROM programs ORDER BY name, id LIMIT ?"
PROGRAM_COUNT_SQL = "SELECT count(*) FROM programs"
LESSON_COUNTS_SQL = "SELECT count(*), count(removed_at) FROM lessons"
PROGRAM_SLUG_SQL = "SELECT slug FROM programs WHERE id = ?"
# A lesson's own page (Datasette's row page of lessons): the lesson with its program and the
# program's highest part, the lessons before and after it, its versions and its captures.
LESSON_PAGE_SQL = """
    SELECT lessons.*, programs.name AS program, programs.slug AS program_slug,
           (SELECT max(part) FROM lessons l WHERE l.program_id = lessons.program_id) AS last_part
    FROM lessons LEFT JOIN programs ON programs.id = lessons.program_id
    WHERE lessons.id = ?"""
LESSON_PART_SQL = """
    SELECT id, title, subtitle, part, removed_at FROM lessons
    WHERE program_id = ? AND part = ?
    ORDER BY removed_at IS NOT NULL, published, id LIMIT 1"""
LESSON_VERSIONS_SQL = """
    SELECT version, run_id, observed_at, event, changed FROM lesson_versions
    WHERE lesson_id = ? ORDER BY version"""
LESSON_CAPTURES_SQL = """
    SELECT url, kind, status, fetched_at, capture_file, capture_date, capture_record_id
    FROM pages WHERE url = ? AND capture_file IS NOT NULL"""


class Archive:
    """Use as ``with Archive.open(path) as archive: ...``."""

    def __init__(self, db: Database, layout: Layout):
        self.db = db
        self.layout = layout

    @classmethod
    def open(
        cls, path: Path | str = DEFAULT_DB, *, create: bool = True, read_only: bool = False
    ) -> Archive:
        """Open the archive at ``path`` (or, with ``create``, make it). A file that is not a
        micropause archive is refused with one ArchiveError and left exactly as it is.
        ``read_only`` (status, diff, export) opens an existing archive on a connection that
        cannot write, so a read-only file system or a published copy is read as it is."""
        path = Path(path)
        if read_only and not create and (db := open_read_only(path)) is not None:
            return cls(db, Layout(path))
        return cls(open_database(path, create=create), Layout(path))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------

    def recorded_run(
        self, start_urls: Iterable[str], kind: str = "crawl"
    ) -> AbstractContextManager[int]:
        """A run's row for the duration of the block: whatever ends the block early (an
        error, Ctrl-C) is recorded on the run as failed or interrupted, and re-raised."""
        return runs.recorded_run(self.db, start_urls, kind)

    # -- what a crawl needs ------------------------------------------------------------

    def known_pages(self) -> dict[str, KnownPage]:
        """Every page the archive has fetched successfully, with its validators, and the
        page of every lesson it holds. A removed lesson re-published with its old date lands
        deep in listings whose page 1 does not change, so it is only found by asking for its
        page; a lesson is only marked removed when its own page answers 404 or 410 in a
        complete run, so a lesson that answered that in an incomplete one is asked again."""
        known = {
            url: KnownPage("lesson", None, None)
            for (url,) in self.db.execute("SELECT url FROM lessons")
        }
        known.update(
            (url, KnownPage(kind, etag, last_modified))
            for url, kind, etag, last_modified in self.db.execute(
                "SELECT url, kind, etag, last_modified FROM pages WHERE status IN (200, 304)"
            )
        )
        return known

    def listing_walks(self) -> ListingWalks:
        """When each lesson's listing was last walked to its end, and what the last run left
        for the next to walk: what a run's audits choose from."""
        return runs.listing_walks(self.db)

    def healthy_baseline(self) -> set[str] | None:
        """The lessons (by path) the archive held as published after its last complete,
        healthy run: what the next run is compared with (None before there was one)."""
        return runs.healthy_baseline(self.db)

    def published_lessons(self) -> set[str]:
        """The URLs of every lesson the archive holds as published (not removed)."""
        rows = self.db.execute("SELECT url FROM lessons WHERE removed_at IS NULL")
        return {url for (url,) in rows}

    def earlier_captures(self) -> dict[str, CaptureRef]:
        """Each URL's newest stored body, for 304s to be captured as revisits of it."""
        return {
            url: CaptureRef(file, offset, record_id, date)
            for url, file, offset, record_id, date in self.db.execute(
                "SELECT url, capture_file, capture_offset, capture_record_id, capture_date "
                "FROM pages WHERE capture_file IS NOT NULL"
            ).fetchall()
        }

    # -- saving a run ------------------------------------------------------------------

    def save_run(self, run_id: int, outcome: RunOutcome, *, finished: str | None = None):
        """Write everything one run saw in one transaction, and close its row. SQLite's
        failures (disk full, locked, corrupt) come out as one ArchiveWriteError: the
        transaction has rolled back, so the archive is as it was before the run."""
        return self._writing(self._save_run, run_id, outcome, finished or now_iso())

    def _save_run(self, run_id: int, outcome: RunOutcome, finished: str) -> RunCounts:
        db = self.db
        with db.atomic():
            changes = history.save_lessons(
                db,
                outcome.lessons,
                run_id=run_id,
                now=finished,
                unchanged=outcome.unchanged,
                gone=outcome.gone,
                observed=outcome.observed,
            )
            history.save_pages(db, run_id, outcome.pages, outcome.captures)
            programs = history.refresh_programs(db)
            history.refresh_search(db)
            db["runs"].update(
                run_id,
                {
                    **outcome.figures,
                    "finished": finished,
                    "status": outcome.status,
                    "lessons_found": outcome.lessons_found,
                    "lessons_new": changes.new,
                    "lessons_changed": changes.changed,
                    "lessons_removed": changes.removed,
                },
            )
        return RunCounts(
            lessons_found=outcome.lessons_found,
            new=changes.new,
            changed=changes.changed,
            removed=changes.removed,
            restored=changes.restored,
            programs=programs,
            moved=changes.moved,
        )

    def _writing(self, write: Callable[..., T], *args) -> T:
        try:
            return write(*args)
        except sqlite3.Error as exc:
            raise ArchiveWriteError(
                f"cannot write the archive {self.layout.db}: {exc}; "
                "the run's writes were rolled back"
            ) from None

    # -- reading -----------------------------------------------------------------------

    def status(self, *, last: int = 10) -> ArchiveStatus:
        def count(sql: str) -> int:
            return self.db.execute(sql).fetchone()[0]

        return self._reading(
            lambda: ArchiveStatus(
                runs=runs.recent_runs(self.db, last),
                lessons=count("SELECT count(*) FROM lessons WHERE removed_at IS NULL"),
                removed=count("SELECT count(*) FROM lessons WHERE removed_at IS NOT NULL"),
                programs=count("SELECT count(*) FROM programs WHERE lesson_count > 0"),
                versions=count("SELECT count(*) FROM lesson_versions"),
                pages=count("SELECT count(*) FROM pages"),
                failed_pages=count("SELECT count(*) FROM pages WHERE error IS NOT NULL"),
            )
        )

    def run_summaries(self) -> list[Run]:
        """Every run, oldest first."""
        return self._reading(
            lambda: [
                Run(run_id, kind, status, bool(complete), finished)
                for run_id, kind, status, complete, finished in self.db.execute(_RUN_SUMMARIES)
            ]
        )

    def versions_between(self, a: int, b: int) -> list[Version]:
        """Every version, up to the later of two runs, of the lessons that have one after the
        earlier: what replaying the archive's state at both runs needs."""

        def read() -> list[Version]:
            rows = self.db.execute(_VERSIONS_BETWEEN, {"first": min(a, b), "last": max(a, b)})
            return [
                Version(lesson_id, url, version, run_id, event, _version_values(new))
                for lesson_id, url, version, run_id, event, new in rows
            ]

        return self._reading(read)

    def latest_saved_run(self) -> dict:
        """The newest run that wrote lessons: whose content the archive now holds."""
        return self._reading(lambda: runs.latest_saved_run(self.db))

    def copy_as_of(self, run_id: int, target: Path) -> None:
        """The archive as it stood after run ``run_id``, into ``target``: one self-contained
        file (no WAL), read-only, the same bytes whenever the same run is copied. Runs after
        it wrote no lessons (they failed or were interrupted), so dropping their rows is all
        that differs."""
        try:
            self._reading(lambda: self._copy(run_id, target))
        except _CopyNotWritten as exc:
            # The copy, not the archive, failed (disk full, no permission): an OSError, so
            # the caller reports it as the snapshot that could not be written.
            raise OSError(exc.errno, f"cannot write {target}: {exc.reason}") from None
        # The header's file change counter (offset 24) and version-valid-for number (offset
        # 92) carry on from the source's change counter, which moves with every write, even a
        # failed run's row. Equal, they stay valid (SQLite's file format, "The Database
        # Header"), and fixed, the same run always gives the same bytes.
        with open(target, "r+b") as f:
            for offset in (24, 92):
                f.seek(offset)
                f.write((1).to_bytes(4, "big"))
        target.chmod(0o444)

    def _copy(self, run_id: int, target: Path) -> None:
        try:
            self.db.execute("VACUUM INTO ?", [str(target)])
            with contextlib.closing(sqlite3.connect(target, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode = DELETE")
                conn.execute("BEGIN")
                conn.execute("DELETE FROM runs WHERE id > ?", [run_id])
                conn.execute("COMMIT")
                conn.execute("VACUUM")
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _WRITE_FAILURES:
                raise _CopyNotWritten(_WRITE_FAILURES[code], str(exc)) from None
            raise

    def _reading(self, read: Callable[[], T]) -> T:
        return _reading(self.layout.db, read)


# SQLite's primary result codes for a file it could not write, as the errno they mean.
_WRITE_FAILURES = {
    13: errno.ENOSPC,  # SQLITE_FULL
    10: errno.EIO,  # SQLITE_IOERR
    14: errno.EACCES,  # SQLITE_CANTOPEN
    8: errno.EROFS,  # SQLITE_READONLY
}


class _CopyNotWritten(Exception):
    def __init__(self, errno_: int, reason: str):
        super().__init__(reason)
        self.errno, self.reason = errno_, reason


def read_snapshot(path: Path) -> SnapshotRows:
    """What a snapshot holds, read from a copy made by ``Archive.copy_as_of``."""

    def read() -> SnapshotRows:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as conn:
            return _snapshot_rows(conn)

    return _reading(path, read)


def latest_saved_run_of(path: Path) -> dict | None:
    """The newest run that wrote lessons into the archive at ``path``, read without writing;
    None before any did."""

    def read() -> dict | None:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as conn:
            try:
                return runs.latest_saved_run(conn)
            except ArchiveError:
                return None

    return _reading(path, read)


def _snapshot_rows(conn: sqlite3.Connection) -> SnapshotRows:
    placeholders = ", ".join("?" for _ in runs.SAVED)
    return SnapshotRows(
        run=runs.latest_saved_run(conn),
        tables={
            "lessons": conn.execute(_SNAPSHOT_LESSONS).fetchall(),
            "programs": conn.execute(_SNAPSHOT_PROGRAMS).fetchall(),
        },
        captures=[
            name
            for (name,) in conn.execute(
                f"SELECT captures FROM runs WHERE status IN ({placeholders}) AND kind = 'crawl' "
                "AND captures IS NOT NULL ORDER BY id",
                runs.SAVED,
            )
        ],
        lesson_pages=conn.execute(
            "SELECT id, url, title, description FROM lessons ORDER BY id"
        ).fetchall(),
    )


def _version_values(stored: str | None) -> dict[str, str | None]:
    """A version's ``new`` column: the values it set (anything unreadable: none)."""
    try:
        values = json.loads(stored) if stored else {}
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _reading(path: Path, read: Callable[[], T]) -> T:
    try:
        return read()
    except sqlite3.DatabaseError as exc:
        # Damage the opening check cannot see until the page holding it is read.
        raise ArchiveError(f"cannot read archive {path}: {exc}") from None
