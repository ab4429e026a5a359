"""The archive's schema: its tables, their migrations, what each column means, and how a
file is opened as an archive (or refused as not being one)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from ..errors import ArchiveError

DEFAULT_DB = Path("archive/micropause.db")
LESSON_CONTENT = (
    "title",
    "description",
    "author",
    "published",
    "video_url",
    "video_provider",
    "video_id",
    "thumbnail_url",
)

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
    Column(
        "url",
        "string",
        "URL the lesson's page was last read from (trailing slash, no query); the lesson is "
        "its path, so a move of the site changes it and keeps the lesson.",
    ),
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
    Column("video_url", "string", "The video player its page embeds (the URL, as published)."),
    Column("video_provider", "string", "vimeo or youtube; empty for any other player or file."),
    Column("video_id", "string", "The video's id at its provider (Vimeo's or YouTube's)."),
    Column(
        "thumbnail_url",
        "string",
        "Its thumbnail image: from its own page, else from the listings that show it.",
    ),
    Column("first_seen", "datetime", "When a run first found the lesson (UTC)."),
    Column("last_seen", "datetime", "When a run last found the lesson (UTC)."),
    Column(
        "removed_at",
        "datetime",
        "When a complete, healthy run found its page answering 404 or 410 (UTC); empty while "
        "published.",
    ),
    Column(
        "content_hash",
        "string",
        "sha256 of title, description, author, published, video and thumbnail: changes exactly "
        "when they do.",
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


@migrations()
def m005_listings_settled(db: Database) -> None:
    # How a first crawl settled each lesson's listing: walked to its end, proven from page 1
    # (inferred), or walked because page 1 contradicted the prediction.
    for column in ("listings_walked", "listings_inferred", "listings_contradicted"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER")


@migrations()
def m006_lessons_not_read(db: Database) -> None:
    # A lesson is marked removed only when its own URL answers 404 or 410; one the run did
    # not read is kept as last archived, and the run says why (robots.txt, failed, stopped).
    db.execute("ALTER TABLE runs ADD COLUMN not_read TEXT")


@migrations()
def m008_listing_audits(db: Database) -> None:
    # Proven listings a run walked anyway to check its proofs, and how many of those the walk
    # showed other than predicted (their categories are walked in full by the next run).
    for column in ("listings_audited", "audits_contradicted"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER")
    # The lessons (JSON lists of URLs) whose listings the run walked to their end, which the
    # audits of later runs rotate over, and those it leaves the next run to walk in full.
    for column in ("listings_read", "listings_to_walk"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")


@migrations()
def m009_requisites(db: Database) -> None:
    # A page's requisites (stylesheets, scripts, fonts, images) are fetched and counted apart
    # from the pages: `requests` and `pages_*` stay the pages' own.
    for column in (
        "requisite_requests",
        "requisites_fetched",
        "requisites_not_modified",
        "requisites_failed",
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER")


@migrations()
def m010_lesson_media(db: Database) -> None:
    # Each lesson's video (the player's URL, its provider and id) and thumbnail. Lessons
    # stored before keep NULLs until their page changes or `micropause reparse` reads them
    # from the captures.
    for column in ("video_url", "video_provider", "video_id", "thumbnail_url"):
        db.execute(f"ALTER TABLE lessons ADD COLUMN {column} TEXT")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_only_uri(path: Path) -> str:
    """An SQLite URI that reads ``path`` and can never write it. Where the file or its folder
    is read-only, SQLite cannot make WAL's shared-memory file, so the file is opened
    immutable: nothing else may write it then, and nothing can."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        uri += "&immutable=1"
    return uri


def missing(path: Path) -> ArchiveError:
    return ArchiveError(f"no archive at {path} (run `micropause crawl` first)")


def verify_archive(path: Path, *, empty_ok: bool = False) -> None:
    """Refuse, with one ArchiveError and without writing a byte, a file that is not a whole
    micropause archive: missing, not SQLite at all, another application's SQLite database,
    damaged or truncated (SQLite's quick_check, which reads every page: a fraction of a
    second for a few hundred MB). With ``empty_ok``, an empty file or an SQLite database with
    no tables passes: it is where a new archive can be made."""
    if not path.is_file():
        raise missing(path)
    if path.stat().st_size == 0:
        if empty_ok:
            return
        raise ArchiveError(f"{path} is an empty file, not an archive")
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            ours = (
                "_sqlite_migrations" in tables
                and conn.execute(
                    "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = ?",
                    [migrations.name],
                ).fetchone()[0]
            )
            if tables and not ours:
                raise ArchiveError(
                    f"{path} is not a micropause archive (an SQLite database of other tables)"
                )
            if not tables and not empty_ok:
                raise ArchiveError(f"{path} is not a micropause archive (an empty SQLite database)")
            (problem,) = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc}") from None
    if problem != "ok":
        problem = " ".join(str(problem).split())
        raise ArchiveError(
            f"{path} is damaged (SQLite quick_check: {problem}); it was left as it is: "
            "restore it from a backup"
        )


def writable(path: Path) -> bool:
    """Whether the archive's file and folder can be written here (so its WAL files can be)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def open_read_only(path: Path) -> Database | None:
    """The archive at ``path`` on a connection that can never write it (immutable where the
    file system cannot be written, see read_only_uri), or None when it must be upgraded first
    and can be: a migration is a write, for ``open_database``."""
    verify_archive(path)
    try:
        db = Database(sqlite3.connect(read_only_uri(path), uri=True))
        pending = migrations.pending(db)
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc}") from None
    if not pending:
        return db
    db.close()
    if writable(path):
        return None
    raise ArchiveError(
        f"{path} cannot be written and is from an older micropause: it needs "
        f"{len(pending)} upgrade(s) that write it; run any command on a writable copy first"
    )


def open_database(path: Path, *, create: bool) -> Database:
    """The archive's database in WAL mode with every migration applied; with ``create``, a
    missing or empty file becomes a new archive. Anything else is checked first
    (verify_archive) and left exactly as it is when refused."""
    if not create or path.exists():
        verify_archive(path, empty_ok=create)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Database(path)
        db.execute("PRAGMA busy_timeout = 5000")
        db.enable_wal()
        db.execute("PRAGMA foreign_keys = ON")
        migrations.apply(db)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc}") from None
    return db
