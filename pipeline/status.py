"""What the archive holds and how its last runs went: `micropause status`."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .errors import ArchiveError
from .store import open_archive

RUN_COLUMNS = (
    "id, kind, started, finished, status, complete, pages_fetched, pages_not_modified, "
    "pages_failed, lessons_found, lessons_new, lessons_changed, lessons_removed, health, error"
)


@dataclass(frozen=True)
class ArchiveStatus:
    runs: list[dict]  # newest first
    lessons: int
    removed: int
    programs: int
    versions: int
    pages: int
    failed_pages: int


def archive_status(db_path: Path | str, *, last: int = 10) -> ArchiveStatus:
    db = open_archive(db_path, create=False)
    try:
        runs = [
            {**row, "health": _health(row["health"])}
            for row in db.query(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", [last])
        ]

        def count(sql: str) -> int:
            return db.execute(sql).fetchone()[0]

        return ArchiveStatus(
            runs=runs,
            lessons=count("SELECT count(*) FROM lessons WHERE removed_at IS NULL"),
            removed=count("SELECT count(*) FROM lessons WHERE removed_at IS NOT NULL"),
            programs=count("SELECT count(*) FROM programs WHERE lesson_count > 0"),
            versions=count("SELECT count(*) FROM lesson_versions"),
            pages=count("SELECT count(*) FROM pages"),
            failed_pages=count("SELECT count(*) FROM pages WHERE error IS NOT NULL"),
        )
    except sqlite3.DatabaseError as exc:
        # Damage open_archive's check cannot see until the page holding it is read.
        raise ArchiveError(f"cannot read archive {db_path}: {exc}") from None
    finally:
        db.close()


def _health(stored) -> list[str]:
    """A run's health problems as stored (a JSON list); anything else is shown as it is."""
    if not stored:
        return []
    try:
        problems = json.loads(stored)
    except (TypeError, ValueError):
        return [str(stored)]
    return [str(p) for p in problems] if isinstance(problems, list) else [str(problems)]
