"""How the archive keeps history: lessons upserted with a version row for every change,
programs and the search index recomputed from the lessons, pages with their validators and
captures. Plain functions over one connection; the caller holds the transaction."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable

from sqlite_utils import Database

from ..captures import CaptureRef
from ..normalise import Lesson, programs_of, slugify, split_title
from .records import LessonChanges, PageRecord
from .schema import LESSON_CONTENT

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
    "video_url",
    "video_provider",
    "video_id",
    "thumbnail_url",
    "last_seen",
    "removed_at",
    "content_hash",
)
# Plain prepared statements: sqlite-utils' Table.insert/update read the table's schema on every
# call, and a crawl stores every lesson of the site.
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
) -> LessonChanges:
    """Upsert lessons and record a version for each new, changed, removed or restored one.

    ``unchanged`` are lesson URLs confirmed unchanged (a 304): only ``last_seen`` moves.
    ``seen`` is given only for a complete, healthy run: every lesson it does not contain is
    marked removed. ``observed=False`` (reparse) re-extracts without claiming the site was
    seen: ``last_seen`` and ``removed_at`` keep their values. Call inside a transaction.
    """
    conn = db.conn
    existing = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT url, id, content_hash, removed_at, thumbnail_url FROM lessons"
        )
    }
    new = changed = restored = 0
    program_ids: dict[str, int] = {}
    for lesson in lessons:
        if lesson.program_slug and lesson.program_slug not in program_ids:
            program_ids.update(ensure_programs(db, [lesson.program_slug]))
        before = existing.get(lesson.url)
        if lesson.thumbnail_url is None and before is not None and before[3] is not None:
            # The listings that show a lesson's thumbnail may not have been read this run
            # (304s, listings proven rather than walked): not seeing it is not its removal.
            lesson = dataclasses.replace(lesson, thumbnail_url=before[3])
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
            "video_url": lesson.video_url,
            "video_provider": lesson.video_provider,
            "video_id": lesson.video_id,
            "thumbnail_url": lesson.thumbnail_url,
            "last_seen": now,
            "removed_at": None,
            "content_hash": lesson.content_hash,
        }
        if before is None:
            lesson_id = conn.execute(_INSERT_LESSON, [*row.values(), now]).lastrowid
            _version(db, lesson_id, run_id, now, "created", {}, _content(row), version=1)
            new += 1
            continue
        lesson_id, content_hash, removed_at, _thumbnail = before
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
        for url, (lesson_id, _hash, removed_at, _thumbnail) in existing.items():
            if url not in seen and removed_at is None:
                conn.execute("UPDATE lessons SET removed_at = ? WHERE id = ?", [now, lesson_id])
                _version(db, lesson_id, run_id, now, "removed", {}, {})
                removed += 1
    return LessonChanges(new=new, changed=changed, removed=removed, restored=restored)


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


def save_pages(
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
