"""How the archive keeps history: lessons upserted with a version row for every change,
programs and the search index recomputed from the lessons, pages with their validators and
captures. Plain functions over one connection; the caller holds the transaction."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlite_utils import Database

from ..captures import CaptureRef
from ..normalise import Lesson, on_host_path, programs_of, slugify, split_title
from .records import LessonChanges, PageRecord
from .schema import LESSON_CONTENT

# Plain prepared statements: sqlite-utils' Table.insert/update read the table's schema on every
# call, and a crawl stores every lesson of the site.
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
    gone: Iterable[str] = (),
    observed: bool = True,
) -> LessonChanges:
    """Upsert lessons and record a version for each new, changed, moved, removed or restored
    one.

    A lesson is its path on the site: a lesson read under another scheme, host or port than
    its stored URL is the same lesson, and its ``url`` changes (a "moved" version when nothing
    else did). ``unchanged`` are lesson URLs confirmed unchanged (a 304): only ``last_seen``
    (and a moved URL) change. ``gone`` are lesson URLs the site answered 404 or 410 for, given
    only for a complete, healthy run: those lessons are marked removed, and no other.
    ``observed=False`` (reparse) re-extracts without claiming the site was seen: ``last_seen``
    and ``removed_at`` keep their values. Call inside a transaction.
    """
    conn = db.conn
    stored = StoredLessons(conn)
    new = changed = restored = moved = 0
    program_ids: dict[str, int] = {}
    for lesson in lessons:
        if lesson.program_slug and lesson.program_slug not in program_ids:
            program_ids.update(ensure_programs(db, [lesson.program_slug]))
        before = stored.take(lesson.url)
        if lesson.thumbnail_url is None and before is not None and before[4] is not None:
            # The listings that show a lesson's thumbnail may not have been read this run
            # (304s, listings proven rather than walked): not seeing it is not its removal.
            lesson = dataclasses.replace(lesson, thumbnail_url=before[4])
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
            lesson_id = conn.execute(
                f"INSERT INTO lessons ({', '.join(row)}, first_seen) "
                f"VALUES ({', '.join('?' * (len(row) + 1))})",
                [*row.values(), now],
            ).lastrowid
            _version(db, lesson_id, run_id, now, "created", {}, _content(row), version=1)
            new += 1
            continue
        lesson_id, url, content_hash, removed_at, _thumbnail = before
        if not observed:
            del row["last_seen"], row["removed_at"]
            removed_at = None
        if content_hash != lesson.content_hash or removed_at is not None or url != lesson.url:
            values = conn.execute(
                f"SELECT {', '.join(LESSON_CONTENT)} FROM lessons WHERE id = ?", [lesson_id]
            ).fetchone()
            old = {**dict(zip(LESSON_CONTENT, values, strict=True)), "url": url}
            new_values = {**_content(row), "url": lesson.url}
            changes = {k: v for k, v in new_values.items() if old[k] != v}
            move = _moved(old, new_values)
            event = "restored" if removed_at is not None else "changed"
            event = "moved" if changes.keys() <= move and removed_at is None else event
            event = event if observed else "reparsed"
            _version(db, lesson_id, run_id, now, event, {k: old[k] for k in changes}, changes)
            changed += bool(changes.keys() - move)
            moved += "url" in changes
            restored += removed_at is not None
        conn.execute(
            f"UPDATE lessons SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
            [*row.values(), lesson_id],
        )
    for url in unchanged:
        if (before := stored.take(url)) is None:
            continue
        lesson_id, old_url, _hash, _removed, _thumbnail = before
        if old_url != url:
            _version(db, lesson_id, run_id, now, "moved", {"url": old_url}, {"url": url})
            moved += 1
        conn.execute(
            "UPDATE lessons SET last_seen = ?, url = ? WHERE id = ?", [now, url, lesson_id]
        )
    removed = 0
    for url in gone:
        before = stored.take(url)
        if before is not None and before[3] is None:
            conn.execute("UPDATE lessons SET removed_at = ? WHERE id = ?", [now, before[0]])
            _version(db, before[0], run_id, now, "removed", {}, {})
            removed += 1
    return LessonChanges(new=new, changed=changed, removed=removed, restored=restored, moved=moved)


# What a move of the site changes: the lesson's URL and the media its own host serves (a
# listing's thumbnail under /wp-content/uploads/), each on the same path under the new host.
_MOVABLE = ("url", "video_url", "thumbnail_url")


def _moved(old: dict, new: dict) -> set[str]:
    """The fields that differ between ``old`` and ``new`` only as the lesson's host does."""
    old_host, new_host = urlsplit(old["url"]).netloc, urlsplit(new["url"]).netloc
    return {
        k
        for k in _MOVABLE
        if old[k] != new[k] and on_host_path(old[k], old_host) == on_host_path(new[k], new_host)
    }


def lesson_path(url: str) -> str:
    """A lesson's identity: its URL's path, whatever scheme, host and port it was read from."""
    return urlsplit(url).path


class StoredLessons:
    """The archive's lessons by identity, each handed out once per run: two pages read in
    one run never write one row. A lesson stored under this very URL is preferred to one
    stored under the same path on another host (an archive may already hold both, from
    before lessons were identified by path)."""

    def __init__(self, conn):
        self._by_url: dict[str, tuple] = {}
        self._by_path: dict[str, list[str]] = {}
        rows = conn.execute(
            "SELECT id, url, content_hash, removed_at, thumbnail_url FROM lessons ORDER BY id"
        )
        for row in rows:
            self._by_url[row[1]] = row
            # Newest last: a path stored twice resolves to the lesson stored last.
            self._by_path.setdefault(lesson_path(row[1]), []).append(row[1])
        self._taken: set[str] = set()

    def take(self, url: str) -> tuple | None:
        """(id, stored url, content_hash, removed_at, thumbnail_url) of the lesson ``url``
        names, or None."""
        if url in self._by_url and url not in self._taken:
            return self._claim(url)
        for stored in reversed(self._by_path.get(lesson_path(url), [])):
            if stored not in self._taken:
                return self._claim(stored)
        return None

    def _claim(self, url: str) -> tuple:
        self._taken.add(url)
        return self._by_url[url]


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
