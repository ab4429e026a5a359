"""The archive: schema, migrations, and one transaction per run's writes.

A run's row is written when it starts (so a run killed mid-way is visible and the next run
closes it as interrupted); everything the run learned is written in one transaction when it
ends, so a failed or killed run leaves the previous archive exactly as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .captures import CaptureRef
from .crawl import CrawlResult, PageRecord
from .errors import ArchiveError, ArchiveWriteError, MicropauseError
from .normalise import Lesson, programs_of, slugify, split_title

DEFAULT_DB = Path("archive/micropause.db")
LESSON_CONTENT = ("title", "description", "author", "published")

migrations = Migrations("micropause")


# What each column of the two tables researchers use means: one place, read by the snapshot
# manifest and datapackage (export) and by Datasette's column descriptions (publish).
@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # a Frictionless Table Schema type
    description: str


LESSON_COLUMNS = (
    Column("id", "integer", "The lesson's id in the archive; never reused."),
    Column("url", "string", "Canonical URL of the lesson's page (with a trailing slash)."),
    Column("slug", "string", "Last segment of the URL's path."),
    Column("program_id", "integer", "programs.id of its program; empty if it has none."),
    Column("program", "string", "Canonical name of its program; empty if it has none."),
    Column("part", "integer", "Part number in the program, from the title; may have gaps."),
    Column("subtitle", "string", "Title after '<program>, <part>: '; empty if none."),
    Column("title", "string", "Title as published: entities decoded, typography kept."),
    Column(
        "description",
        "string",
        "Text of the lesson's own page as published; paragraphs separated by one blank line.",
    ),
    Column("author", "string", "Author shown on the page."),
    Column("published", "date", "Publication date shown on the page (ISO 8601)."),
    Column("first_seen", "datetime", "When a run first found the lesson (UTC)."),
    Column("last_seen", "datetime", "When a run last found the lesson (UTC)."),
    Column(
        "removed_at",
        "datetime",
        "When a complete, healthy run first no longer found it (UTC); empty while published.",
    ),
    Column(
        "content_hash",
        "string",
        "sha256 of title, description, author and published: changes exactly when they do.",
    ),
)
PROGRAM_COLUMNS = (
    Column("id", "integer", "The program's id in the archive; lessons.program_id refers to it."),
    Column("slug", "string", "Key shared by every spelling of the program's name."),
    Column("name", "string", "Canonical name: the spelling most of its lessons use."),
    Column("lesson_count", "integer", "Its lessons still published (removed ones not counted)."),
    Column(
        "parts_missing",
        "array",
        "Part numbers up to the highest part that no lesson has, as a JSON list, e.g. [2].",
    ),
)


@migrations()
def m001_core_tables(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE programs (
            id INTEGER PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            lesson_count INTEGER NOT NULL DEFAULT 0,
            parts_missing TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    db.execute(
        """
        CREATE TABLE lessons (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            slug TEXT NOT NULL,
            title TEXT NOT NULL,
            program_id INTEGER REFERENCES programs(id),
            part INTEGER,
            subtitle TEXT,
            description TEXT NOT NULL,
            author TEXT,
            published TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            removed_at TEXT,
            content_hash TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX lessons_program_part ON lessons(program_id, part)")
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            status TEXT NOT NULL,
            start_urls TEXT NOT NULL,
            complete INTEGER,
            requests INTEGER,
            retries INTEGER,
            bytes INTEGER,
            pages_fetched INTEGER,
            pages_not_modified INTEGER,
            pages_failed INTEGER,
            lessons_found INTEGER,
            lessons_new INTEGER,
            lessons_changed INTEGER,
            lessons_removed INTEGER,
            health TEXT,
            error TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE pages (
            url TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            status INTEGER,
            etag TEXT,
            last_modified TEXT,
            sha256 TEXT,
            bytes INTEGER,
            listed INTEGER,
            fetched_at TEXT,
            run_id INTEGER REFERENCES runs(id),
            error TEXT
        )"""
    )
    db.execute(
        """
        CREATE VIRTUAL TABLE lessons_fts USING fts5(
            title, subtitle, description, program,
            tokenize = 'porter unicode61 remove_diacritics 2'
        )"""
    )
    db.execute(
        """
        CREATE VIEW lessons_in_order AS
        SELECT lessons.id, programs.name AS program, lessons.part, lessons.subtitle,
               lessons.title, lessons.url, lessons.author, lessons.published,
               lessons.description, lessons.first_seen, lessons.last_seen, lessons.removed_at
        FROM lessons LEFT JOIN programs ON programs.id = lessons.program_id
        ORDER BY programs.name IS NULL, programs.name, lessons.part, lessons.published,
                 lessons.title"""
    )


@migrations()
def m002_history_and_captures(db: Database) -> None:
    # One row per observed change of a lesson, git-history style: what changed, from what,
    # to what, in which run. Version 1 is the lesson as first seen.
    db.execute(
        """
        CREATE TABLE lesson_versions (
            id INTEGER PRIMARY KEY,
            lesson_id INTEGER NOT NULL REFERENCES lessons(id),
            version INTEGER NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            observed_at TEXT NOT NULL,
            event TEXT NOT NULL,
            changed TEXT NOT NULL,
            old TEXT,
            new TEXT,
            UNIQUE (lesson_id, version)
        )"""
    )
    db.execute("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'crawl'")
    db.execute("ALTER TABLE runs ADD COLUMN captures TEXT")
    for column in ("capture_file TEXT", "capture_offset INTEGER", "capture_record_id TEXT"):
        db.execute(f"ALTER TABLE pages ADD COLUMN {column}")
    db.execute("ALTER TABLE pages ADD COLUMN capture_date TEXT")


@migrations()
def m003_index_published(db: Database) -> None:
    # The lessons page's default order (newest first): without it every page sorts the table.
    db.execute("CREATE INDEX lessons_published ON lessons(published)")


@migrations()
def m004_anomalies_and_warnings(db: Database) -> None:
    # What a hostile or odd page did that was survived rather than archived: numbers out of
    # range read as absent (counted per run), charset fallbacks and replaced bytes (per page).
    db.execute("ALTER TABLE runs ADD COLUMN anomalies INTEGER")
    db.execute("ALTER TABLE pages ADD COLUMN warning TEXT")


@dataclass(frozen=True)
class RunCounts:
    lessons_found: int
    new: int
    changed: int
    removed: int
    restored: int
    programs: int


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_archive(path: Path | str = DEFAULT_DB, *, create: bool = True) -> Database:
    """Open (or, with ``create``, make) the archive, in WAL mode, with every migration applied.

    A file that is not a micropause archive is refused with one ArchiveError and left exactly
    as it is, before anything writes to it: not SQLite at all, another application's SQLite
    database, a damaged or truncated archive (SQLite's quick_check, which reads every page:
    a fraction of a second for a few hundred MB), and, without ``create``, an empty file or an
    SQLite database with no tables. With ``create``, a missing or empty file becomes one."""
    path = Path(path)
    exists = path.exists() and path.stat().st_size > 0
    if not create and not exists:
        if path.exists() and not path.is_dir():
            raise ArchiveError(f"{path} is an empty file, not an archive")
        raise ArchiveError(f"no archive at {path} (run `micropause crawl` first)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if exists:
            _check_is_archive(path)
            # Read-only, like the check above: the file is not written until it passes.
            uri = f"{path.resolve().as_uri()}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                (problem,) = conn.execute("PRAGMA quick_check(1)").fetchone()
            if not tables and not create:
                raise ArchiveError(f"{path} is not a micropause archive (an empty SQLite database)")
            if problem != "ok":
                problem = " ".join(str(problem).split())
                raise ArchiveError(
                    f"{path} is damaged (SQLite quick_check: {problem}); it was left as it is: "
                    "restore it from a backup"
                )
        db = Database(path)
        db.execute("PRAGMA busy_timeout = 5000")
        db.enable_wal()
        db.execute("PRAGMA foreign_keys = ON")
        migrations.apply(db)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc}") from None
    return db


def _check_is_archive(path: Path) -> None:
    """Read-only: a file with tables but none of this tool's migrations is someone else's."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as c:
        tables = {name for (name,) in c.execute("SELECT name FROM sqlite_master")}
        ours = (
            "_sqlite_migrations" in tables
            and c.execute(
                "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = ?", [migrations.name]
            ).fetchone()[0]
        )
    if tables and not ours:
        raise ArchiveError(
            f"{path} is not a micropause archive (an SQLite database of other tables)"
        )


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
    except (KeyboardInterrupt, Exception) as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _end_if_possible(db, run_id, status, f"{type(exc).__name__}: {exc}".rstrip(": "))
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


def save_run(
    db: Database,
    run_id: int,
    result: CrawlResult,
    lessons: list[Lesson],
    *,
    mark_removed: bool,
    status: str = "ok",
    health: list[str] | None = None,
    captures: dict[str, CaptureRef] | None = None,
    capture_file: str | None = None,
    finished: str | None = None,
) -> RunCounts:
    """Write everything one run observed, in one transaction."""
    finished = finished or now_iso()
    with db.atomic():
        counts = save_lessons(
            db,
            lessons,
            run_id=run_id,
            now=finished,
            unchanged=result.not_modified,
            seen=result.lesson_urls if mark_removed else None,
        )
        _save_pages(db, run_id, result.pages.values(), captures or {})
        program_count = refresh_programs(db)
        refresh_search(db)
        stats = result.stats
        db["runs"].update(
            run_id,
            {
                "finished": finished,
                "status": status,
                "complete": int(result.complete),
                "requests": stats.requests,
                "retries": stats.retries,
                "bytes": stats.bytes,
                "pages_fetched": result.fetched,
                "pages_not_modified": stats.not_modified,
                "pages_failed": len(result.failed),
                "anomalies": result.anomalies,
                "lessons_found": len(result.lesson_urls),
                "lessons_new": counts.new,
                "lessons_changed": counts.changed,
                "lessons_removed": counts.removed,
                "health": json.dumps(health or []),
                "captures": capture_file,
            },
        )
    return dataclasses.replace(
        counts, lessons_found=len(result.lesson_urls), programs=program_count
    )


_LESSON_FIELDS = (
    "url",
    "slug",
    "title",
    "program_id",
    "part",
    "subtitle",
    "description",
    "author",
    "published",
    "last_seen",
    "removed_at",
    "content_hash",
)
# Plain prepared statements: sqlite-utils' Table.insert/update re-read the schema on every call,
# which was two thirds of storing 100 000 lessons (benchmarks/README.md).
_INSERT_LESSON = (
    f"INSERT INTO lessons ({', '.join(_LESSON_FIELDS)}, first_seen) "
    f"VALUES ({', '.join('?' * (len(_LESSON_FIELDS) + 1))})"
)
_INSERT_VERSION = (
    "INSERT INTO lesson_versions (lesson_id, version, run_id, observed_at, event, changed, old, "
    "new) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def save_lessons(
    db: Database,
    lessons: Iterable[Lesson],
    *,
    run_id: int | None,
    now: str,
    unchanged: Iterable[str] = (),
    seen: set[str] | None = None,
    observed: bool = True,
) -> RunCounts:
    """Upsert lessons and record a version for each new, changed, removed or restored one.

    ``unchanged`` are lesson URLs confirmed unchanged (a 304): only ``last_seen`` moves.
    ``seen`` is given only for a complete, healthy run: every lesson it does not contain is
    marked removed. ``observed=False`` (reparse) re-extracts without claiming the site was
    seen: ``last_seen`` and ``removed_at`` keep their values. Call inside a transaction.
    """
    conn = db.conn
    existing = {
        row[0]: row[1:]
        for row in conn.execute("SELECT url, id, content_hash, removed_at FROM lessons")
    }
    new = changed = restored = 0
    program_ids: dict[str, int] = {}
    for lesson in lessons:
        if lesson.program_slug and lesson.program_slug not in program_ids:
            program_ids.update(ensure_programs(db, [lesson.program_slug]))
        row = {
            "url": lesson.url,
            "slug": lesson.slug,
            "title": lesson.title,
            "program_id": program_ids.get(lesson.program_slug),
            "part": lesson.part,
            "subtitle": lesson.subtitle,
            "description": lesson.description,
            "author": lesson.author,
            "published": lesson.published,
            "last_seen": now,
            "removed_at": None,
            "content_hash": lesson.content_hash,
        }
        before = existing.get(lesson.url)
        if before is None:
            lesson_id = conn.execute(_INSERT_LESSON, [*row.values(), now]).lastrowid
            _version(db, lesson_id, run_id, now, "created", {}, _content(row), version=1)
            new += 1
            continue
        lesson_id, content_hash, removed_at = before
        if not observed:
            del row["last_seen"], row["removed_at"]
            removed_at = None
        if content_hash != lesson.content_hash or removed_at is not None:
            stored = conn.execute(
                f"SELECT {', '.join(LESSON_CONTENT)} FROM lessons WHERE id = ?", [lesson_id]
            ).fetchone()
            old = dict(zip(LESSON_CONTENT, stored, strict=True))
            changes = {k: v for k, v in _content(row).items() if old[k] != v}
            event = "restored" if removed_at is not None else "changed"
            event = event if observed else "reparsed"
            _version(db, lesson_id, run_id, now, event, {k: old[k] for k in changes}, changes)
            changed += bool(changes)
            restored += removed_at is not None
        conn.execute(
            f"UPDATE lessons SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
            [*row.values(), lesson_id],
        )
    conn.executemany(
        "UPDATE lessons SET last_seen = ? WHERE url = ?", [(now, url) for url in unchanged]
    )
    removed = 0
    if seen is not None:
        for url, (lesson_id, _hash, removed_at) in existing.items():
            if url not in seen and removed_at is None:
                conn.execute("UPDATE lessons SET removed_at = ? WHERE id = ?", [now, lesson_id])
                _version(db, lesson_id, run_id, now, "removed", {}, {})
                removed += 1
    return RunCounts(
        lessons_found=0, new=new, changed=changed, removed=removed, restored=restored, programs=0
    )


def _content(row: dict) -> dict:
    return {k: row[k] for k in LESSON_CONTENT}


def _version(db, lesson_id, run_id, now, event, old: dict, new: dict, version=None) -> None:
    """Record one version; ``version`` is known (1) for a lesson just inserted."""
    if version is None:
        (last,) = db.conn.execute(
            "SELECT coalesce(max(version), 0) FROM lesson_versions WHERE lesson_id = ?",
            [lesson_id],
        ).fetchone()
        version = last + 1
    db.conn.execute(
        _INSERT_VERSION,
        [
            lesson_id,
            version,
            run_id,
            now,
            event,
            json.dumps(sorted(new)),
            json.dumps(old, ensure_ascii=False) if old else None,
            json.dumps(new, ensure_ascii=False) if new else None,
        ],
    )


def ensure_programs(db: Database, slugs: Iterable[str | None]) -> dict[str, int]:
    """The id of each program slug, creating rows for programs not seen before. Names and
    counts are filled in by refresh_programs once all lessons are written."""
    wanted = sorted({s for s in slugs if s})
    db.conn.executemany(
        "INSERT INTO programs (slug, name) VALUES (?, ?) ON CONFLICT(slug) DO NOTHING",
        [(slug, slug) for slug in wanted],
    )
    marks = ", ".join("?" * len(wanted))
    return dict(db.conn.execute(f"SELECT slug, id FROM programs WHERE slug IN ({marks})", wanted))


def refresh_programs(db: Database) -> int:
    """Recompute each program's canonical name, lesson count and gaps from the lessons the
    archive currently holds (removed lessons no longer count). One program at a time, so
    memory stays flat however large the archive grows."""
    rows = db.conn.execute(
        "SELECT program_id, url, slug, title, published FROM lessons "
        "WHERE removed_at IS NULL AND program_id IS NOT NULL ORDER BY program_id"
    )
    db.conn.execute("UPDATE programs SET lesson_count = 0, parts_missing = '[]'")
    count = 0
    for _program_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        for program in programs_of(_lesson_of(*row[1:]) for row in group):
            db.conn.execute(
                "UPDATE programs SET name = ?, lesson_count = ?, parts_missing = ? WHERE slug = ?",
                [
                    program.name,
                    program.lesson_count,
                    json.dumps(list(program.parts_missing)),
                    program.slug,
                ],
            )
            count += 1
    return count


def _lesson_of(url: str, slug: str, title: str, published: str | None) -> Lesson:
    """Just enough of a stored lesson for programs_of: its title's program, part and date."""
    parts = split_title(title)
    return Lesson(
        url=url,
        slug=slug,
        title=title,
        program=parts.program,
        program_slug=slugify(parts.program) if parts.program else None,
        part=parts.part,
        subtitle=parts.subtitle,
        description="",
        author=None,
        published=published,
    )


def refresh_search(db: Database) -> None:
    """Rebuild the full-text index from the lessons table, inside the run's transaction."""
    db.execute("DELETE FROM lessons_fts")
    db.execute(
        """
        INSERT INTO lessons_fts (rowid, title, subtitle, description, program)
        SELECT lessons.id, lessons.title, lessons.subtitle, lessons.description, programs.name
        FROM lessons LEFT JOIN programs ON programs.id = lessons.program_id"""
    )


def _save_pages(
    db: Database, run_id: int, pages: Iterable[PageRecord], captures: dict[str, CaptureRef]
) -> None:
    """Upsert each fetched page. A page that failed this run keeps the validators, digest and
    capture of its last good fetch, so the next run can still ask conditionally."""
    fetched: list[dict] = []
    failed: list[dict] = []
    for p in pages:
        if p.error is not None:
            failed.append({"url": p.url, "kind": p.kind, "error": p.error, "run_id": run_id})
        elif p.status is not None:
            row = {
                "url": p.url,
                "kind": p.kind,
                "status": p.status,
                "etag": p.etag,
                "last_modified": p.last_modified,
                "sha256": p.sha256,
                "bytes": p.bytes,
                "listed": p.listed,
                "fetched_at": p.fetched_at,
                "run_id": run_id,
                "error": None,
                "warning": p.warning,
            }
            if p.status == 304:
                # Not modified: the digest, listing count and capture of the stored copy hold.
                row = {k: v for k, v in row.items() if v is not None or k in ("error", "warning")}
            elif (capture := captures.get(p.url)) is not None:
                row.update(
                    capture_file=capture.file,
                    capture_offset=capture.offset,
                    capture_record_id=capture.record_id,
                    capture_date=capture.date,
                )
            fetched.append(row)
    # upsert_all writes the same columns for every row of a call: group rows by their columns
    # so that a column a row leaves out keeps its stored value.
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in (*fetched, *failed):
        groups.setdefault(tuple(row), []).append(row)
    for rows in groups.values():
        db["pages"].upsert_all(rows, pk="url")


def earlier_captures(db: Database) -> dict[str, CaptureRef]:
    """Each URL's newest stored body, for 304s to be captured as revisits of it."""
    return {
        url: CaptureRef(file, offset, record_id, date)
        for url, file, offset, record_id, date in db.execute(
            "SELECT url, capture_file, capture_offset, capture_record_id, capture_date "
            "FROM pages WHERE capture_file IS NOT NULL"
        ).fetchall()
    }
