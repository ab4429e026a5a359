"""Scale: 100 000 generated lesson pages through extract → normalise → store, then Datasette.

No HTTP: each page is rendered by the fixture's own markup code when the pipeline asks for it
and dropped once extracted, so memory shows what the pipeline holds, not the corpus. The
lessons reach ``save_lessons`` as one generator inside one transaction: ``save_lessons`` reads
every stored lesson's URL and hash when called, so calling it per batch would re-read the
growing table each time, and SQLite keeps a long transaction in its WAL file, not in memory.
"""

from __future__ import annotations

import asyncio
import random
import re
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pipeline.archive import Archive
from pipeline.archive.history import refresh_programs, refresh_search, save_lessons
from pipeline.config import load_config
from pipeline.extract import extract
from pipeline.normalise import Lesson, normalise
from tests.conftest import CONFIG_PATH

from .synthetic import base_lessons, lesson_pages, rare_word

NOW = "2026-01-01T00:00:00+00:00"
COMMON_WORDS = ("breath", "shoulders", "pelvis", "spine", "relax")
TWO_WORDS = ("lower back", "sitting bones", "heavy arms", "whole body", "first steps")


def run(n: int = 100_000, *, repetitions: int = 5, rare_terms: int = 20) -> dict[str, Any]:
    rss_imports = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "scale.db"
        built = build_archive(db_path, n)
        db_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
        latency = measure_queries(db_path, n, repetitions=repetitions, rare_terms=rare_terms)
    clock, rss = built["clock"], {"imports": rss_imports, **built["rss"]}
    pipeline_s = built["save_s"] - clock["generate"]
    store_s = pipeline_s - clock["extract"] - clock["normalise"]
    return {
        "lessons": n,
        "lessons_new": built["counts"].new,
        "programs": built["programs"],
        "rows_per_s": n / pipeline_s,
        "pipeline_s": pipeline_s,
        "split_s": (
            f"{clock['extract']:.1f} / {clock['normalise']:.1f} / {store_s:.1f}"
            f" ({n / clock['extract']:.0f} / {n / clock['normalise']:.0f} / {n / store_s:.0f} "
            "rows/s)"
        ),
        "extract_s": clock["extract"],
        "normalise_s": clock["normalise"],
        "store_s": store_s,
        "generate_s": clock["generate"],
        "refresh_programs_s": built["programs_s"],
        "refresh_search_s": built["search_s"],
        # The pipeline's peak: the Datasette measurements below import and cache more.
        "peak_rss_mb": rss["search"],
        "rss_steps_mb": " / ".join(
            f"{rss[k]:.0f}" for k in ("imports", "save", "programs", "search")
        ),
        "peak_rss_with_datasette_mb": _peak_rss_mb(),
        "db_mb": db_bytes / 2**20,
        "latency_ms": latency,
    }


def build_archive(db_path: Path, n: int) -> dict[str, Any]:
    """``n`` generated lessons through extract → normalise → store, then programs and search,
    each in its own transaction as a run does; the time and peak RSS after each step."""
    selectors = load_config(CONFIG_PATH).selectors
    clock = {"generate": 0.0, "extract": 0.0, "normalise": 0.0}
    rss = {}
    db = Archive.open(db_path).db
    began = time.perf_counter()
    with db.atomic():
        counts = save_lessons(db, _lessons(n, selectors, clock), run_id=None, now=NOW)
    saved = time.perf_counter() - began
    rss["save"] = _peak_rss_mb()
    began = time.perf_counter()
    with db.atomic():
        programs = refresh_programs(db)
    programs_s = time.perf_counter() - began
    rss["programs"] = _peak_rss_mb()
    began = time.perf_counter()
    with db.atomic():
        refresh_search(db)
    search_s = time.perf_counter() - began
    rss["search"] = _peak_rss_mb()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {
        "counts": counts,
        "programs": programs,
        "clock": clock,
        "rss": rss,
        "save_s": saved,
        "programs_s": programs_s,
        "search_s": search_s,
    }


def _lessons(n: int, selectors, clock: dict[str, float]) -> Iterator[Lesson]:
    """The stream save_lessons consumes, timing each stage; page generation is ours, not the
    pipeline's, and is taken out of the rows/s."""
    pages = lesson_pages(n)
    while True:
        t0 = time.perf_counter()
        try:
            url, html = next(pages)
        except StopIteration:
            return
        t1 = time.perf_counter()
        page = extract(html, url, selectors)
        t2 = time.perf_counter()
        lesson = normalise(page.lesson)
        t3 = time.perf_counter()
        clock["generate"] += t1 - t0
        clock["extract"] += t2 - t1
        clock["normalise"] += t3 - t2
        yield lesson


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# A realistic mix: words drawn as often as the archive uses them (a random word of a random
# lesson's text), not only the commonest.
FREQUENCY_MIX = "word drawn by frequency"
_WORD = re.compile(r"[^\W\d_]{3,}")


def search_terms(
    n: int, rare_terms: int, seed: int = 8, db_path: Path | None = None
) -> dict[str, list[str]]:
    rng = random.Random(seed)
    first_rare = len(base_lessons())  # round 0 is the fixture verbatim: no made-up word
    rare = (
        [rare_word(rng.randrange(first_rare, n)) for _ in range(rare_terms)]
        if n > first_rare
        else []
    )
    terms = {"rare word": rare, "common word": list(COMMON_WORDS), "two words": list(TWO_WORDS)}
    if db_path is not None:
        terms[FREQUENCY_MIX] = words_by_frequency(db_path, rare_terms, rng)
    return terms


def words_by_frequency(db_path: Path, count: int, rng: random.Random) -> list[str]:
    """``count`` words, each a random word of a random lesson: a word is drawn as often as
    the archive's text holds it, so common words come up often and rare ones sometimes."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (top,) = conn.execute("SELECT max(id) FROM lessons").fetchone()
        words: list[str] = []
        while len(words) < count:
            (text,) = conn.execute(
                "SELECT title || ' ' || description FROM lessons WHERE id = ?",
                [rng.randint(1, top)],
            ).fetchone() or ("",)
            found = _WORD.findall(text)
            if found:
                words.append(rng.choice(found).lower())
        return words
    finally:
        conn.close()


def measure_queries(
    db_path: Path, n: int, *, repetitions: int, rare_terms: int
) -> dict[str, dict[str, Any]]:
    """p50/p95 of Datasette's JSON API (in-process client, as tests use it) and, for scale, of
    the same FTS match straight through sqlite3."""
    from pipeline.publish import build_datasette

    terms = search_terms(n, rare_terms, db_path=db_path)
    searches = [(kind, term) for kind, group in terms.items() for term in group]
    # name -> [(kind of term, path)]: searches are also summarised per kind of term, since a
    # word in 1 lesson and a word in 40 % of them cost very different amounts.
    requests = {
        "search, lessons table (_search)": [
            (kind, "/micropause/lessons.json?" + urlencode({"_search": t, "_nofacet": 1}))
            for kind, t in searches
        ],
        "search, ranked canned query": [
            (kind, "/micropause/search.json?" + urlencode({"phrase": t})) for kind, t in searches
        ],
        "faceted lessons page (HTML)": [("", "/micropause/lessons")],
        "faceted lessons JSON": [("", "/micropause/lessons.json")],
        "faceted search JSON": [
            ("", "/micropause/lessons.json?" + urlencode({"_search": t})) for t in COMMON_WORDS
        ],
    }
    datasette = build_datasette(db_path)

    async def timed(path: str) -> float:
        began = time.perf_counter()
        response = await datasette.client.get(path)
        elapsed = (time.perf_counter() - began) * 1e3
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        return elapsed

    async def measure() -> dict[str, dict[str, Any]]:
        results = {}
        for name, paths in requests.items():
            for _kind, path in paths:  # first request of each: caches, statement compilation
                await timed(path)
            times = [(kind, await timed(path)) for _ in range(repetitions) for kind, path in paths]
            results[name] = _summary([t for _kind, t in times], paths[0][1])
            kinds = dict.fromkeys(kind for kind, _path in paths if kind)
            if kinds:
                results[name]["by_term"] = {
                    kind: _summary([t for k, t in times if k == kind], "") for kind in kinds
                }
        return results

    results = asyncio.run(measure())
    results["FTS match in sqlite3, no Datasette"] = _direct_fts(db_path, searches, repetitions)
    return results


def _direct_fts(db_path: Path, searches: list[tuple[str, str]], repetitions: int) -> dict[str, Any]:
    sql = "SELECT rowid FROM lessons_fts WHERE lessons_fts MATCH ? ORDER BY rank LIMIT 20"
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        times = []
        for repetition in range(repetitions + 1):  # the first pass warms the page cache
            for kind, term in searches:
                quoted = " ".join('"' + word.replace('"', '""') + '"' for word in term.split())
                began = time.perf_counter()
                conn.execute(sql, [quoted]).fetchall()
                if repetition:
                    times.append((kind, (time.perf_counter() - began) * 1e3))
    finally:
        conn.close()
    summary = _summary([t for _kind, t in times], sql.replace("?", repr(searches[0][1])))
    summary["by_term"] = {
        kind: _summary([t for k, t in times if k == kind], "")
        for kind in dict.fromkeys(kind for kind, _term in searches)
    }
    return summary


def _summary(times: list[float], example: str) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "count": len(ordered),
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "example": example,
    }
