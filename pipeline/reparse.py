"""Rebuild lessons and programs from the captures alone: no network.

When the extractor or normaliser improves, `micropause reparse` applies it to everything the
archive ever fetched. Each lesson's newest captured page is read exactly as a crawl reads it
(``page.read_page``) and saved as a run like a crawl's; only where the responses come from
differs. History columns (`first_seen`, `last_seen`, `removed_at`) stay as the crawls recorded
them, and any lesson whose text comes out different gets a version row saying it was reparsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import isolate
from .archive import Archive, RunCounts, RunOutcome
from .captures import ReadStats, read_responses
from .config import Config
from .decode import header, is_html, not_html
from .errors import ArchiveError
from .extract import RawLesson
from .frontier import UrlScope
from .normalise import normalise
from .page import listed_thumbnails, read_page


@dataclass(frozen=True)
class ReparseReport:
    run_id: int
    captures_read: int
    captures_skipped: int  # records cut short or corrupt
    pages_refused: int  # pages over limits.page_seconds or nested deeper than a page is
    lessons: int
    counts: RunCounts


def lessons_from_captures(
    config: Config,
    directory: Path,
    stats: ReadStats | None = None,
    refused: list[str] | None = None,
) -> tuple[dict[str, RawLesson], int]:
    """The newest capture of each lesson page, read exactly as a crawl reads it, within the
    same limits; ``refused`` collects the pages that failed them."""
    lessons: dict[str, RawLesson] = {}
    thumbnails: dict[str, str] = {}
    scopes: dict[str, UrlScope] = {}
    clean: set[str] = set()
    read = 0
    for captured in read_responses(directory, stats):
        read += 1
        host = urlsplit(captured.url).netloc
        scope = scopes.get(host) or scopes.setdefault(host, UrlScope(config, captured.url))
        content_type = header(captured.headers, "content-type")
        kind = scope.kind(captured.url)
        if captured.status != 200 or kind not in ("lesson", "listing"):
            continue
        if not is_html(content_type) or not_html(captured.body, content_type) is not None:
            continue
        try:
            page = isolate.run_sync(
                read_page,
                captured.url,
                captured.body,
                content_type,
                scope,
                config.selectors,
                seconds=config.limits.page_seconds,
            )
        except isolate.PageFailed:
            # What the crawl recorded as that page's failure: its stored lesson stands.
            if refused is not None:
                refused.append(captured.url)
            continue
        # Newest captures come last: the thumbnails they show replace older ones.
        found: dict[str, str] = {}
        listed_thumbnails(page.page, scope, found)
        thumbnails.update(found)
        lesson = page.lesson
        if kind != "lesson":
            continue
        # Captures keep every response, including a corrupted one the crawl then retried: a
        # body with replaced bytes is used only while no clean capture of the page exists.
        if lesson is None:
            continue
        # A lesson is its path: captures of one lesson read on two hosts (the site moved) are
        # one lesson, the newest capture winning.
        path = urlsplit(lesson.url).path
        if page.replaced and path in clean:
            continue
        lessons[path] = lesson
        if not page.replaced:
            clean.add(path)
    lessons = {
        path: lesson.with_thumbnail(thumbnails.get(lesson.url)) for path, lesson in lessons.items()
    }
    return lessons, read


def reparse(config: Config, db_path: Path | str) -> ReparseReport:
    # The archive first: a file that is not one is refused before its captures are looked at.
    with Archive.open(db_path, create=False) as archive:
        directory = archive.layout.captures
        if not any(directory.glob("*.warc.gz")):
            raise ArchiveError(f"no captures in {directory}: nothing to reparse")
        with archive.recorded_run([], kind="reparse") as run_id:
            stats, refused = ReadStats(), []
            raw, read = lessons_from_captures(config, directory, stats, refused)
            counts = archive.save_run(
                run_id,
                RunOutcome(
                    status="ok",
                    lessons=[normalise(lesson) for lesson in raw.values()],
                    lessons_found=len(raw),
                    observed=False,
                ),
            )
    return ReparseReport(
        run_id=run_id,
        captures_read=read,
        captures_skipped=stats.skipped,
        pages_refused=len(refused),
        lessons=len(raw),
        counts=counts,
    )
