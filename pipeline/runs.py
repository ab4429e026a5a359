"""One crawl into the archive: record the run, crawl, normalise, store. The CLI calls this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .crawl import CrawlResult, Progress, Validators, crawl
from .errors import SiteUnreachable
from .normalise import normalise
from .store import RunCounts, begin_run, end_run, open_archive, save_run


@dataclass(frozen=True)
class RunReport:
    run_id: int
    result: CrawlResult
    counts: RunCounts


def known_validators(db) -> dict[str, Validators]:
    """Validators of every page the archive has fetched before, for conditional requests."""
    return {
        url: Validators(etag, last_modified)
        for url, etag, last_modified in db.execute(
            "SELECT url, etag, last_modified FROM pages WHERE status IN (200, 304)"
        ).fetchall()
    }


def crawl_into_archive(
    config: Config,
    db_path: Path | str,
    *,
    max_pages: int | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Crawl the site and write what was seen as one run. On any failure the run is recorded
    as failed (or interrupted) and the lessons, programs and pages are left as they were."""
    db = open_archive(db_path)
    try:
        run_id = begin_run(db, config.site.start_urls)
        try:
            result = crawl(config, max_pages=max_pages, progress=progress)
            lessons = [normalise(raw) for raw in result.lessons.values()]
            status = "ok" if result.complete else "incomplete"
            counts = save_run(
                db, run_id, result, lessons, mark_removed=result.complete, status=status
            )
        except SiteUnreachable as exc:
            end_run(db, run_id, "failed", error=str(exc))
            raise
        except (KeyboardInterrupt, Exception) as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            end_run(db, run_id, status, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise
        return RunReport(run_id=run_id, result=result, counts=counts)
    finally:
        db.close()
