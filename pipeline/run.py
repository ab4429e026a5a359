"""One crawl into the archive, from start to saved run: the `crawl` and `run` commands.

Record the run, crawl (every response captured as WARC), check its health, normalise, and save
what it saw in one transaction. On any failure the run is recorded as failed (or interrupted)
and the lessons, programs and pages are left as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .archive import Archive, RunCounts, RunOutcome, run_status
from .captures import CaptureWriter, read_body, warcinfo_fields
from .config import Config
from .crawl import CrawlResult, Progress, crawl
from .errors import ArchiveWriteError, HealthCheckFailed
from .fetch import Fetched
from .health import EMPTY_DESCRIPTIONS, HealthFailure, check_health
from .normalise import normalise


@dataclass(frozen=True)
class RunReport:
    run_id: int
    result: CrawlResult
    counts: RunCounts
    captures: Path
    health: tuple[HealthFailure, ...] = ()  # the checks it failed; empty when healthy
    # Lessons the archive holds that the run did not read, by reason: kept as last archived.
    not_read: dict[str, list[str]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return run_status(complete=self.result.complete, healthy=not self.health)


def crawl_into_archive(
    config: Config,
    db_path: Path | str,
    *,
    max_pages: int | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Crawl the site and save what was seen as one run. Pages fetched before are asked for
    conditionally. A run that fails a health check is saved as 'unhealthy' and raises
    HealthCheckFailed."""
    with Archive.open(db_path) as archive, archive.recorded_run(config.site.start_urls) as run_id:
        with _captures(archive, run_id, warcinfo_fields(config)) as capture:
            result = crawl(
                config,
                known=archive.known_pages(),
                max_pages=max_pages,
                progress=progress,
                on_response=capture,
                stored_body=capture.stored_body,
                listing_walks=archive.listing_walks(),
            )
        health = tuple(check_health(result, config.health, baseline=archive.healthy_baseline()))
        not_read = result.not_read(archive.published_lessons())
        lessons = [normalise(raw) for raw in result.lessons.values()]
        for lesson in lessons:
            if lesson.anomaly is not None:
                result.anomalies += 1
                if (page := result.pages.get(lesson.url)) is not None:
                    page.warning = "; ".join(filter(None, (page.warning, lesson.anomaly)))
        if any(failure.name == EMPTY_DESCRIPTIONS for failure in health):
            # The description selector is broken: saving would blank good stored text. Those
            # pages stay in the captures, for `reparse` once the selector is fixed.
            lessons = [lesson for lesson in lessons if lesson.description]
        stats = result.stats
        counts = archive.save_run(
            run_id,
            RunOutcome(
                status=run_status(complete=result.complete, healthy=not health),
                lessons=lessons,
                lessons_found=len(result.lesson_urls),
                unchanged=result.not_modified,
                # Only a complete run that passed every check may conclude a lesson is gone.
                gone=result.gone if result.complete and not health else (),
                pages=[
                    *result.pages.values(),
                    *result.requisites.values(),
                    *filter(None, [result.robots]),
                ],
                captures=capture.latest,
                figures={
                    "complete": int(result.complete),
                    "requests": stats.requests,
                    "retries": stats.retries,
                    "bytes": stats.bytes,
                    "pages_fetched": result.fetched,
                    "pages_not_modified": stats.not_modified,
                    "pages_failed": len(result.failed),
                    "anomalies": result.anomalies,
                    "listings_walked": result.listings.walked,
                    "listings_inferred": result.listings.inferred,
                    "listings_contradicted": result.listings.contradicted,
                    "requisite_requests": result.requisite_stats.requests,
                    "requisites_fetched": sum(
                        1 for r in result.requisites.values() if r.status is not None
                    ),
                    "requisites_not_modified": result.requisite_stats.not_modified,
                    "requisites_failed": sum(
                        1 for r in result.requisites.values() if r.error is not None
                    ),
                    "listings_audited": result.listings.audited,
                    "audits_contradicted": result.listings.audits_contradicted,
                    "listings_read": json.dumps(result.listings_walked),
                    "listings_to_walk": json.dumps(result.listings_to_walk),
                    "health": json.dumps([str(failure) for failure in health]),
                    "captures": capture.name,
                    "not_read": json.dumps(not_read) if not_read else None,
                    "error": incomplete_reason(result, config),
                },
            ),
        )
    report = RunReport(run_id, result, counts, capture.path, health, not_read)
    if health:
        raise HealthCheckFailed(report)
    return report


def incomplete_reason(result: CrawlResult, config: Config) -> str | None:
    """Why a run that saved lessons is incomplete, in one line (None when complete)."""
    if result.deadline_passed:
        return (
            f"stopped at its deadline (politeness.max_run_seconds = "
            f"{config.politeness.max_run_seconds:g} s) before every page was read"
        )
    if result.budget_exhausted:
        return "stopped at its page budget (--max-pages) before every page was read"
    if result.failed:
        return f"{len(result.failed)} pages failed"
    if not result.listings_settled:
        return "some listings were neither walked nor proven"
    return None


class _captures:
    """The run's WARC writer for the block: a capture that cannot be written (disk full) stops
    the run as an ArchiveWriteError, and nothing else is written."""

    def __init__(self, archive: Archive, run_id: int, info: dict[str, str]):
        self.directory = archive.layout.captures
        self.run_id = run_id
        self.earlier = archive.earlier_captures()
        self.info = info

    def __enter__(self) -> _captures:
        try:
            self.writer = CaptureWriter(self.directory, self.run_id, self.earlier, self.info)
        except OSError as exc:
            raise self._error(exc) from None
        self.name, self.path, self.latest = self.writer.name, self.writer.path, self.writer.latest
        return self

    def stored_body(self, url: str) -> bytes | None:
        """The body an earlier run captured for ``url``, or None."""
        ref = self.earlier.get(url)
        return read_body(self.directory, ref) if ref is not None else None

    def __call__(self, response: Fetched) -> None:
        try:
            self.writer(response)
        except OSError as exc:
            raise self._error(exc) from None

    def __exit__(self, *exc) -> None:
        try:
            self.writer.close()
        except OSError as error:
            raise self._error(error) from None

    def _error(self, exc: OSError) -> ArchiveWriteError:
        return ArchiveWriteError(
            f"cannot write captures to {self.directory}: {exc.strerror or exc}; "
            "the run stopped and nothing else was written"
        )
