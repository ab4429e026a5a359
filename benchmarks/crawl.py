"""Crawl cost: first crawls of synthetic sites, the crawler's CPU and the server's apart.

The crawl is the one users run (``crawl_into_archive``: frontier, fetch, WARC captures, extract,
normalise, store) at concurrency 8 with no delay, against the fixture server in its own process
with no added latency. Each size is crawled two ways: every lesson's listing walked to its last
page (``listing_inference = false``: requests grow with the square of the lesson count), and
with listings proven from each lesson's page 1 (the default), with and without a sitemap; the
archives are compared row for row.
"""

from __future__ import annotations

import cProfile
import dataclasses
import hashlib
import json
import pstats
import re
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from pipeline.errors import HealthCheckFailed
from pipeline.run import RunReport, crawl_into_archive
from tests.conftest import CONTENT, PROGRAMS, local_config

from .results import ROOT
from .siteproc import SiteProcess
from .synthetic import synthetic_lessons

# What robots.txt of the fixture site disallows although listings link to it.
DISALLOWED = {"staff-preview"}
# Where a sticky post shows on page 1 of every listing, in the sticky variants.
STICKY = ("before", "after")


def run(
    sizes: tuple[int, ...] = (150, 300),
    *,
    inferred_sizes: tuple[int, ...] = (),
    profile_size: int | None = 150,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Walked and proven first crawls at each size. Proven ones without audits (what the
    per-lesson target is judged on), with and without a sitemap and with a sticky post before
    and after the items; and once more with the default audit, to state what it adds."""
    runs = []
    sticky_walked: dict[str, dict[str, Any]] = {}
    smallest = min(sizes, default=None)
    for n in sorted({*sizes, *inferred_sizes}):
        walked = measure(n, concurrency=concurrency, inference=False) if n in sizes else None
        if walked is not None:
            runs.append(walked)
        if n == smallest and n in inferred_sizes:
            for position in STICKY:
                sticky_walked[position] = measure(
                    n, concurrency=concurrency, inference=False, sitemap=False, sticky=position
                )
                runs.append(sticky_walked[position])
        if n not in inferred_sizes:
            continue
        variants = [
            {"sitemap": True},
            {"sitemap": False},
            *({"sitemap": False, "sticky": position} for position in STICKY),
        ]
        unaudited = {}
        for variant in variants:
            inferred = measure(n, concurrency=concurrency, inference=True, audits=0, **variant)
            truth = sticky_walked.get(variant.get("sticky")) if "sticky" in variant else walked
            if truth is not None and (n == smallest or "sticky" not in variant):
                inferred["same_archive_as_walked"] = (
                    inferred["archive_digest"] == truth["archive_digest"]
                )
            unaudited[json.dumps(variant, sort_keys=True)] = inferred
            runs.append(inferred)
        audited = measure(n, concurrency=concurrency, inference=True, audits=None, sitemap=False)
        base = unaudited[json.dumps({"sitemap": False}, sort_keys=True)]
        audited["audit_added_requests"] = audited["requests"] - base["requests"]
        runs.append(audited)
    result: dict[str, Any] = {"concurrency": concurrency, "runs": runs}
    if profile_size:
        result["profile"] = profile(profile_size, concurrency=concurrency)
    return result


def expected_lessons(n: int) -> int:
    """Lessons a polite crawler can find: listed somewhere and allowed by robots.txt."""
    return sum(1 for x in synthetic_lessons(n) if x.listed and x.slug not in DISALLOWED)


def crawl_once(
    site: SiteProcess,
    db_path: Path,
    *,
    concurrency: int,
    inference: bool = True,
    audits: int | None = None,
) -> tuple[RunReport, bool]:
    """One crawl into ``db_path``; a run that fails a health check still has a report.
    ``audits``: scope.audit_listings (None: the configured default)."""
    # The tests' 2 s read timeout is short for two busy cores: a retry would be counted as a
    # request and distort what is measured.
    config = local_config(
        site, listing_inference=inference, concurrency=concurrency, read_timeout=30.0
    )
    if audits is not None:
        scope = dataclasses.replace(config.scope, audit_listings=audits)
        config = dataclasses.replace(config, scope=scope)
    try:
        return crawl_into_archive(config, db_path), True
    except HealthCheckFailed as exc:
        return exc.report, False


def measure(
    n: int,
    *,
    concurrency: int = 8,
    inference: bool = False,
    sitemap: bool = True,
    sticky: str | None = None,
    audits: int | None = None,
) -> dict[str, Any]:
    with (
        SiteProcess(n, sitemap=sitemap, sticky=sticky) as site,
        tempfile.TemporaryDirectory() as tmp,
    ):
        db_path = Path(tmp) / "archive.db"
        measured = measure_crawl(
            site, db_path, n, concurrency=concurrency, inference=inference, audits=audits
        )
        measured["sitemap"] = sitemap
        measured["sticky"] = sticky
        measured["audits"] = audits
        measured["archive_digest"] = archive_digest(db_path)
        return measured


def archive_digest(db_path: Path) -> str:
    """What the crawl archived, minus when: equal digests, equal archives row for row."""
    rows = (
        Database(db_path).execute(CONTENT).fetchall()
        + Database(db_path).execute(PROGRAMS).fetchall()
    )
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def measure_crawl(
    site: SiteProcess,
    db_path: Path,
    n: int,
    *,
    concurrency: int = 8,
    inference: bool = False,
    audits: int | None = None,
) -> dict[str, Any]:
    """One crawl of ``site`` into ``db_path``: its traffic, and each process's CPU seconds."""
    site.reset()
    before = site.stats()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    report, healthy = crawl_once(
        site, db_path, concurrency=concurrency, inference=inference, audits=audits
    )
    wall = time.perf_counter() - began
    used = resource.getrusage(resource.RUSAGE_SELF)
    after = site.stats()
    requests = after["requests"]
    pages = after.get("page_requests", requests)
    user = used.ru_utime - usage.ru_utime
    system = used.ru_stime - usage.ru_stime
    server = after["cpu_seconds"] - before["cpu_seconds"]
    listings = report.result.listings
    return {
        "lessons": n,
        "mode": "inferred" if inference else "walked",
        "requests": requests,
        "requests_per_lesson": requests / n,
        "page_requests": pages,
        "page_requests_per_lesson": pages / n,
        "listings_walked": listings.walked,
        "listings_inferred": listings.inferred,
        "listings_contradicted": listings.contradicted,
        "listings_audited": listings.audited,
        "audits_contradicted": listings.audits_contradicted,
        "complete": report.result.complete,
        # Page requisites (stylesheets, scripts, fonts, images), counted apart from the pages.
        "requisite_requests": report.result.requisite_stats.requests,
        "requisite_bytes": report.result.requisite_stats.bytes,
        "conditional": after["conditional"],
        "statuses": after["statuses"],
        "wire_bytes": after["wire_bytes"],
        "body_bytes": after["body_bytes"],
        "bytes_vs_first": 1.0,
        "wall_s": wall,
        "requests_per_s": requests / wall,
        "crawler_user_s": user,
        "crawler_sys_s": system,
        "crawler_cpu_ms_per_request": (user + system) / requests * 1e3,
        # What a user pays for a complete archive: the crawler's CPU for the whole first crawl.
        "crawler_cpu_s": user + system,
        "crawler_cpu_ms_per_lesson": (user + system) / n * 1e3,
        "server_cpu_s": server,
        "server_cpu_ms_per_request": server / requests * 1e3,
        # Below the concurrency, the server was waiting for the crawler.
        "max_in_flight": after["max_in_flight"],
        "lessons_found": len(report.result.lesson_urls),
        "lessons_expected": expected_lessons(n),
        "lessons_new": report.counts.new,
        "lessons_changed": report.counts.changed,
        "healthy": healthy,
    }


def profile(n: int, *, concurrency: int = 8, top: int = 15) -> dict[str, Any]:
    """The same crawl under cProfile: where the crawler's CPU goes."""
    with SiteProcess(n) as site, tempfile.TemporaryDirectory() as tmp:
        profiler = cProfile.Profile()
        profiler.enable()
        crawl_once(site, Path(tmp) / "archive.db", concurrency=concurrency)
        profiler.disable()
        requests = site.stats()["requests"]
    stats = pstats.Stats(profiler)
    rows = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(row[2] for row in rows.values())
    components: Counter[str] = Counter()
    for (file, _line, name), (_cc, _nc, own, _cum, callers) in rows.items():
        label = component(file, name)
        if label != "other":
            components[label] += own
            continue
        # A C builtin or a standard-library helper is charged to whoever called it, in
        # proportion to the time spent for each caller (one level up is enough here).
        charged = 0.0
        for (caller_file, _l, caller_name), caller_stats in callers.items():
            caller_label = component(caller_file, caller_name)
            if caller_label != "other":
                components[caller_label] += caller_stats[2]
                charged += caller_stats[2]
        components["other (standard library, builtins)"] += max(0.0, own - charged)
    ranked = sorted(rows.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "lessons": n,
        "requests": requests,
        "profiled_s": total,
        "by_component": [
            {"component": name, "seconds": seconds, "share": seconds / total}
            for name, seconds in components.most_common(12)
        ],
        "top": [
            {
                "function": _function_name(file, line, name),
                "calls": nc,
                "own_s": own,
                "cum_s": cum,
            }
            for (file, line, name), (_cc, nc, own, cum, _callers) in ranked
        ],
    }


_STDLIB = re.compile(r"^.*/python3\.\d+/")

# Which part of the crawler a function belongs to, by where its code lives.
_COMPONENTS = (
    ("pipeline/extract.py", "extract (parse + select)"),
    ("selectolax", "extract (parse + select)"),
    ("pipeline/captures.py", "WARC captures (warcio, gzip)"),
    ("warcio", "WARC captures (warcio, gzip)"),
    ("pipeline/", "pipeline: frontier, fetch, store"),
    ("httpx", "HTTP client (httpx, httpcore, h11, anyio)"),
    ("httpcore", "HTTP client (httpx, httpcore, h11, anyio)"),
    ("h11", "HTTP client (httpx, httpcore, h11, anyio)"),
    ("anyio", "HTTP client (httpx, httpcore, h11, anyio)"),
    ("sqlite_utils", "SQLite"),
    ("tenacity", "retries (tenacity)"),
    ("asyncio", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("importlib", "imports"),
)


def component(file: str, name: str) -> str:
    for marker, label in _COMPONENTS:
        if marker in file:
            return label
    if file == "~" and ("socket" in name or "select.epoll" in name):
        return "socket and poll system calls"
    if file == "~" and "sqlite3" in name:
        return "SQLite"
    return "other"


def _function_name(file: str, line: int, name: str) -> str:
    if file == "~":
        return name
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    else:
        file = _STDLIB.sub("", file)
    return f"{file}:{line}({name})"
