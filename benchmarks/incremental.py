"""Incremental cost: what a re-crawl asks for and transfers, against the first, full crawl.

Four crawls of one synthetic site into one archive: the first (every listing walked), a
re-crawl of the unchanged site without audits, the same with the default audit (what it adds
to a run), and a re-crawl after 1 % of the lessons were edited and one new lesson was
published (FixtureSite's edit and publish, as an editor would). Bytes are counted by the
server as they leave it, headers included: a 304 has no body, but it is not free.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from .crawl import DISALLOWED, crawl_once, measure_crawl
from .siteproc import SiteProcess
from .synthetic import new_lesson, synthetic_lessons


def run(n: int = 300, *, concurrency: int = 8) -> dict[str, Any]:
    lessons = synthetic_lessons(n)
    crawlable = [x for x in lessons if x.listed and x.slug not in DISALLOWED]
    # Every hundredth crawlable lesson, spread over the site (at least one).
    edited = crawlable[:: max(1, round(len(crawlable) / max(1, round(n / 100))))][
        : max(1, round(n / 100))
    ]
    added = new_lesson(n)
    with SiteProcess(n) as site, tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "archive.db"
        first = measure_crawl(site, db_path, n, concurrency=concurrency)
        # Without audits: what conditional requests alone cost. Then the same with the
        # default audit, to state what it adds to a run.
        unchanged = _recrawl(site, db_path, n, first, concurrency, audits=0)
        audited = _recrawl(site, db_path, n, first, concurrency)
        audited["added_requests"] = audited["requests"] - unchanged["requests"]
        audited["added_wire_bytes"] = audited["wire_bytes"] - unchanged["wire_bytes"]
        for lesson in edited:
            site.edit(lesson.slug, description=[*lesson.description, "Edited for the benchmark."])
        site.publish(added)
        changed = _recrawl(site, db_path, n, first, concurrency, audits=0)
        archived = _slugs(db_path)
        versions = _changed_slugs(db_path, changed["run_id"])
    changed["edited"] = len(edited)
    changed["edited_detected"] = sum(1 for x in edited if x.slug in versions)
    changed["new_lesson"] = added.slug
    changed["new_lesson_found"] = added.slug in archived
    return {
        "lessons": n,
        "first": first,
        "unchanged": unchanged,
        "audited": audited,
        "changed": changed,
    }


def _recrawl(
    site: SiteProcess,
    db_path: Path,
    n: int,
    first: dict[str, Any],
    concurrency: int,
    audits: int | None = None,
) -> dict[str, Any]:
    site.reset()
    report, healthy = crawl_once(site, db_path, concurrency=concurrency, audits=audits)
    stats = site.stats()
    return {
        **_traffic(stats, n),
        "bytes_vs_first": stats["wire_bytes"] / first["wire_bytes"],
        "requests_vs_first": stats["requests"] / first["requests"],
        "conditional_share": stats["conditional"] / stats["requests"],
        "requisite_requests": report.result.requisite_stats.requests,
        "requisite_bytes": report.result.requisite_stats.bytes,
        "lessons_found": len(report.result.lesson_urls),
        "lessons_new": report.counts.new,
        "lessons_changed": report.counts.changed,
        "healthy": healthy,
        "run_id": report.run_id,
        "listings_audited": report.result.listings.audited,
    }


def _traffic(stats: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "requests": stats["requests"],
        "requests_per_lesson": stats["requests"] / n,
        "conditional": stats["conditional"],
        "unconditional_sample": stats["unconditional_sample"],
        "statuses": stats["statuses"],
        "wire_bytes": stats["wire_bytes"],
        "body_bytes": stats["body_bytes"],
    }


def _slugs(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT slug FROM lessons")}


def _changed_slugs(db_path: Path, run_id: int) -> set[str]:
    """Lessons the run recorded a 'changed' version for."""
    with sqlite3.connect(db_path) as conn:
        return {
            row[0]
            for row in conn.execute(
                "SELECT lessons.slug FROM lesson_versions JOIN lessons "
                "ON lessons.id = lesson_versions.lesson_id "
                "WHERE lesson_versions.run_id = ? AND lesson_versions.event = 'changed'",
                [run_id],
            )
        }
