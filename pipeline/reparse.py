"""Rebuild lessons and programs from the captures alone: no network.

When the extractor or normaliser improves, `micropause reparse` applies it to everything the
archive ever fetched. Each lesson's newest captured page is re-extracted; history columns
(`first_seen`, `last_seen`, `removed_at`) stay as the crawls recorded them, and any lesson whose
text comes out different gets a version row saying it was reparsed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from .captures import ReadStats, read_responses
from .config import Config
from .crawl import Scope, lesson_of
from .decode import decode_html
from .errors import ArchiveError
from .extract import RawLesson, extract
from .fetch import HTML_TYPES
from .normalise import normalise
from .runs import captures_dir
from .store import (
    RunCounts,
    now_iso,
    open_archive,
    recorded_run,
    refresh_programs,
    refresh_search,
    save_lessons,
)


@dataclass(frozen=True)
class ReparseReport:
    run_id: int
    captures_read: int
    captures_skipped: int  # records cut short or corrupt
    lessons: int
    counts: RunCounts


def lessons_from_captures(
    config: Config, directory: Path, stats: ReadStats | None = None
) -> tuple[dict[str, RawLesson], int]:
    """The newest capture of each lesson page, extracted exactly as a crawl extracts it."""
    lessons: dict[str, RawLesson] = {}
    scopes: dict[str, Scope] = {}
    clean: set[str | None] = set()
    read = 0
    for captured in read_responses(directory, stats):
        read += 1
        if captured.status != 200:
            continue
        host = urlsplit(captured.url).netloc
        scope = scopes.get(host) or scopes.setdefault(host, Scope(config, captured.url))
        if scope.kind(captured.url) != "lesson":
            continue
        content_type = next((v for k, v in captured.headers if k.lower() == "content-type"), "")
        if content_type.split(";")[0].strip().lower() not in HTML_TYPES:
            continue
        decoded = decode_html(captured.body, content_type)
        page_url = scope.canonical(captured.url)
        # Captures keep every response, including a corrupted one the crawl then retried: a
        # body with replaced bytes is used only while no clean capture of the page exists.
        if decoded.replaced and page_url in clean:
            continue
        listing = extract(decoded.text, captured.url, config.selectors)
        lesson = lesson_of(listing, scope)
        if lesson is not None:
            lessons[lesson.url] = lesson
            if not decoded.replaced:
                clean.add(page_url)
    return lessons, read


def reparse(config: Config, db_path: Path | str) -> ReparseReport:
    import sqlite3

    from .errors import ArchiveWriteError

    directory = captures_dir(db_path)
    # The archive first: a file that is not one is refused before its captures are looked at.
    db = open_archive(db_path, create=False)
    try:
        if not any(directory.glob("*.warc.gz")):
            raise ArchiveError(f"no captures in {directory}: nothing to reparse")
        with recorded_run(db, [], kind="reparse") as run_id:
            stats = ReadStats()
            raw, read = lessons_from_captures(config, directory, stats)
            now = now_iso()
            with db.atomic():
                counts = save_lessons(
                    db,
                    (normalise(lesson) for lesson in raw.values()),
                    run_id=run_id,
                    now=now,
                    observed=False,
                )
                programs = refresh_programs(db)
                refresh_search(db)
                db["runs"].update(
                    run_id,
                    {
                        "status": "ok",
                        "finished": now,
                        "lessons_found": len(raw),
                        "lessons_new": counts.new,
                        "lessons_changed": counts.changed,
                    },
                )
    except sqlite3.DatabaseError as exc:
        # Damage open_archive's check cannot see until the page holding it is read; the
        # run's writes were rolled back with its transaction.
        raise ArchiveWriteError(
            f"cannot write the archive {db_path}: {exc}; the run's writes were rolled back"
        ) from None
    finally:
        db.close()
    return ReparseReport(
        run_id=run_id,
        captures_read=read,
        captures_skipped=stats.skipped,
        lessons=len(raw),
        counts=replace(counts, lessons_found=len(raw), programs=programs),
    )
