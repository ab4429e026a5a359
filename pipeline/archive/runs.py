"""A run's row in the archive: written when the run starts (so a run killed mid-way is
visible, and the next run closes it as interrupted), closed with its outcome, and read back."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from sqlite_utils import Database

from ..errors import ArchiveError, ArchiveWriteError, MicropauseError
from .records import ListingWalks
from .schema import now_iso

# Statuses of runs that wrote lessons: 'failed', 'interrupted' and 'running' runs wrote
# nothing, so the archive's content is that of the newest run with one of these.
SAVED = ("ok", "incomplete", "unhealthy")
RECENT_COLUMNS = (
    "id, kind, started, finished, status, complete, pages_fetched, pages_not_modified, "
    "pages_failed, lessons_found, lessons_new, lessons_changed, lessons_removed, health, error"
)


def run_status(*, complete: bool, healthy: bool) -> str:
    """The status a finished crawl is saved with."""
    return "unhealthy" if not healthy else "ok" if complete else "incomplete"


def begin_run(
    db: Database, start_urls: Iterable[str], started: str | None = None, kind: str = "crawl"
) -> int:
    """Record a run as running. A run still 'running' from before was killed: close it."""
    started = started or now_iso()
    with db.atomic():
        db.execute(
            "UPDATE runs SET status = 'interrupted', finished = ?, "
            "error = coalesce(error, 'the process ended before the run finished') "
            "WHERE status = 'running'",
            [started],
        )
        cursor = db.execute(
            "INSERT INTO runs (started, status, start_urls, kind) VALUES (?, 'running', ?, ?)",
            [started, json.dumps(list(start_urls)), kind],
        )
    return cursor.lastrowid


@contextmanager
def recorded_run(db: Database, start_urls: Iterable[str], kind: str = "crawl") -> Iterator[int]:
    """A run's row for the duration of the block: whatever ends the block early (an error,
    Ctrl-C) is recorded on the run as failed or interrupted, and re-raised."""
    try:
        run_id = begin_run(db, start_urls, kind=kind)
    except sqlite3.Error as exc:
        raise ArchiveWriteError(f"cannot write the archive: {exc}; nothing was done") from None
    try:
        yield run_id
    except MicropauseError as exc:
        _end_if_possible(db, run_id, "failed", str(exc))
        raise
    except KeyboardInterrupt as exc:
        # Ctrl-C, or SIGTERM/SIGHUP (errors.Interrupted, named by its signal).
        _end_if_possible(db, run_id, "interrupted", f"interrupted by {exc or 'Ctrl-C'}")
        raise
    except Exception as exc:
        _end_if_possible(db, run_id, "failed", f"{type(exc).__name__}: {exc}".rstrip(": "))
        raise


def _end_if_possible(db: Database, run_id: int, status: str, error: str) -> None:
    """Record why a run ended. When the archive cannot be written (the disk is full) that
    fails too: the run stays 'running', and the next run closes it as interrupted."""
    with contextlib.suppress(sqlite3.Error):
        end_run(db, run_id, status, error=error[:2000])


def end_run(
    db: Database,
    run_id: int,
    status: str,
    *,
    error: str | None = None,
    health: list[str] | None = None,
    finished: str | None = None,
) -> None:
    """Close a run that wrote nothing (failed, interrupted) or set its final status."""
    with db.atomic():
        db.execute(
            "UPDATE runs SET status = ?, finished = ?, error = coalesce(?, error), "
            "health = coalesce(?, health) WHERE id = ?",
            [
                status,
                finished or now_iso(),
                error,
                json.dumps(health) if health is not None else None,
                run_id,
            ],
        )


def healthy_baseline(db: Database) -> set[str] | None:
    """The lessons, by path, the archive held as published once its last complete, healthy
    crawl had saved (those created up to that run and not removed since): what the next run
    is compared with. Identities, not a count: a run that finds as many lessons, all of
    them others, has lost every lesson."""
    row = db.execute(
        "SELECT id FROM runs WHERE status = 'ok' AND kind = 'crawl' AND lessons_found IS NOT NULL "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    urls = db.execute(
        "SELECT url FROM lessons WHERE removed_at IS NULL AND id IN (SELECT lesson_id FROM "
        "lesson_versions WHERE event = 'created' AND coalesce(run_id, 0) <= ?)",
        [row[0]],
    )
    return {urlsplit(url).path for (url,) in urls}


def latest_saved_run(db: Database | sqlite3.Connection) -> dict:
    """The newest run that wrote lessons, whose content the archive now holds."""
    placeholders = ", ".join("?" for _ in SAVED)
    cursor = db.execute(
        "SELECT id, started, finished, status, complete, start_urls, health, error FROM runs "
        f"WHERE status IN ({placeholders}) AND finished IS NOT NULL ORDER BY id DESC LIMIT 1",
        SAVED,
    )
    row = cursor.fetchone()
    if row is None:
        raise ArchiveError("nothing to export: no run has saved lessons into this archive yet")
    run = dict(zip([d[0] for d in cursor.description], row, strict=True))
    run["complete"] = bool(run["complete"])
    run["start_urls"] = json.loads(run["start_urls"])
    run["health"] = health_of(run["health"])
    return run


def recent_runs(db: Database, last: int) -> list[dict]:
    return [
        {**row, "health": health_of(row["health"])}
        for row in db.query(f"SELECT {RECENT_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", [last])
    ]


def health_of(stored) -> list[str]:
    """A run's health problems as stored (a JSON list); anything else is shown as it is."""
    if not stored:
        return []
    try:
        problems = json.loads(stored)
    except (TypeError, ValueError):
        return [str(stored)]
    return [str(p) for p in problems] if isinstance(problems, list) else [str(problems)]


def listing_walks(db: Database) -> ListingWalks:
    """Which listings runs that saved lessons walked to their end, and what the newest of them
    left to walk."""
    placeholders = ", ".join("?" for _ in SAVED)
    last_walked: dict[str, int] = {}
    to_walk: frozenset[str] = frozenset()
    for run_id, read, left in db.execute(
        f"SELECT id, listings_read, listings_to_walk FROM runs WHERE status IN ({placeholders}) "
        "ORDER BY id",
        SAVED,
    ):
        last_walked.update(dict.fromkeys(_urls(read), run_id))
        to_walk = frozenset(_urls(left))
    return ListingWalks(last_walked, to_walk)


def _urls(stored: str | None) -> list[str]:
    try:
        urls = json.loads(stored) if stored else []
    except ValueError:
        return []
    return [url for url in urls if isinstance(url, str)] if isinstance(urls, list) else []
