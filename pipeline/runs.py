"""One crawl into the archive: record the run, crawl, normalise, store. The CLI calls this."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .captures import CaptureWriter
from .config import Config
from .crawl import CrawlResult, KnownPage, Progress, crawl
from .errors import ArchiveWriteError, HealthCheckFailed
from .health import EMPTY_DESCRIPTIONS, HealthFailure, check_health
from .normalise import normalise
from .store import RunCounts, earlier_captures, open_archive, recorded_run, save_run


@dataclass(frozen=True)
class RunReport:
    run_id: int
    result: CrawlResult
    counts: RunCounts
    captures: Path
    health: tuple[HealthFailure, ...] = ()  # the checks it failed; empty when healthy


def known_pages(db) -> dict[str, KnownPage]:
    """Every page the archive has fetched successfully, with its validators, and the pages of
    removed lessons: a lesson re-published with its old date lands deep in listings whose
    page 1 does not change, so it is only found again by asking for its page."""
    known = {
        url: KnownPage("lesson", None, None)
        for (url,) in db.execute("SELECT url FROM lessons WHERE removed_at IS NOT NULL")
    }
    known.update(
        (url, KnownPage(kind, etag, last_modified))
        for url, kind, etag, last_modified in db.execute(
            "SELECT url, kind, etag, last_modified FROM pages WHERE status IN (200, 304)"
        )
    )
    return known


def healthy_baseline(db) -> int | None:
    """Lessons found by the last complete, healthy run: what the next run is compared with."""
    row = db.execute(
        "SELECT lessons_found FROM runs WHERE status = 'ok' AND lessons_found IS NOT NULL "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def captures_dir(db_path: Path | str) -> Path:
    """Captures live beside the database: archive/micropause.db → archive/captures/."""
    return Path(db_path).parent / "captures"


def run_status(result: CrawlResult, health) -> str:
    return "unhealthy" if health else "ok" if result.complete else "incomplete"


def _open_captures(directory: Path, run_id: int, earlier) -> CaptureWriter:
    try:
        return CaptureWriter(directory, run_id, earlier)
    except OSError as exc:
        raise ArchiveWriteError(
            f"cannot write captures to {directory}: {exc.strerror or exc}"
        ) from None


def _close_captures(capture: CaptureWriter) -> None:
    try:
        capture.close()
    except OSError as exc:
        raise ArchiveWriteError(
            f"cannot write captures to {capture.path}: {exc.strerror or exc}"
        ) from None


def _writing(db_path, write):
    """``write`` with SQLite's failures (disk full, locked, corrupt) as one ArchiveWriteError:
    its transaction has rolled back, so the archive is as it was before the run."""

    def guarded(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        except sqlite3.Error as exc:
            raise ArchiveWriteError(
                f"cannot write the archive {db_path}: {exc}; the run's writes were rolled back"
            ) from None

    return guarded


def crawl_into_archive(
    config: Config,
    db_path: Path | str,
    *,
    max_pages: int | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Crawl the site and write what was seen as one run. On any failure the run is recorded
    as failed (or interrupted) and the lessons, programs and pages are left as they were.

    Pages fetched before are asked for conditionally; every response is captured as WARC.
    A run that fails a health check is saved as 'unhealthy' and raises HealthCheckFailed."""
    db = open_archive(db_path)
    try:
        with recorded_run(db, config.site.start_urls) as run_id:
            capture = _open_captures(captures_dir(db_path), run_id, earlier_captures(db))

            def keep(response) -> None:
                try:
                    capture(response)
                except OSError as exc:
                    raise ArchiveWriteError(
                        f"cannot write captures to {capture.path}: {exc.strerror or exc}; "
                        "the run stopped and nothing else was written"
                    ) from None

            try:
                result = crawl(
                    config,
                    known=known_pages(db),
                    max_pages=max_pages,
                    progress=progress,
                    on_response=keep,
                )
            finally:
                _close_captures(capture)
            health = check_health(result, config.health, baseline=healthy_baseline(db))
            lessons = [normalise(raw) for raw in result.lessons.values()]
            for lesson in lessons:
                if lesson.anomaly is not None:
                    result.anomalies += 1
                    if (page := result.pages.get(lesson.url)) is not None:
                        page.warning = "; ".join(filter(None, (page.warning, lesson.anomaly)))
            if any(failure.name == EMPTY_DESCRIPTIONS for failure in health):
                # The description selector is broken: saving would blank good stored text.
                # Those pages stay in the captures, for `reparse` once the selector is fixed.
                lessons = [lesson for lesson in lessons if lesson.description]
            status = run_status(result, health)
            counts = _writing(db_path, save_run)(
                db,
                run_id,
                result,
                lessons,
                # Only a complete run that passed every check may conclude a lesson is gone.
                mark_removed=result.complete and not health,
                status=status,
                health=[str(failure) for failure in health],
                captures=capture.latest,
                capture_file=capture.name,
            )
        report = RunReport(
            run_id=run_id,
            result=result,
            counts=counts,
            captures=capture.path,
            health=tuple(health),
        )
        if health:
            raise HealthCheckFailed(report)
        return report
    finally:
        db.close()
