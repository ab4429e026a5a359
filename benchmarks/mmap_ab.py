"""A/B of the memory-mapped archive in ``micropause serve``: the scale suite's Datasette
requests against one generated archive, with ``pipeline.publish.MMAP_BYTES`` as shipped and
with it 0 (SQLite's own page cache only), alternating so the machine's drift hits both alike.

``python -m benchmarks.mmap_ab [--lessons N] [--pairs K]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from pipeline import publish

from .scale import build_archive, measure_queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mmap_ab", description=__doc__)
    parser.add_argument("--lessons", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    shipped = publish.MMAP_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "scale.db"
        build_archive(db_path, args.lessons)
        runs: dict[str, list[dict]] = {"memory-mapped (as shipped)": [], "page cache only": []}
        for _ in range(args.pairs):
            for label, size in (("memory-mapped (as shipped)", shipped), ("page cache only", 0)):
                publish.MMAP_BYTES = size
                runs[label].append(
                    measure_queries(db_path, args.lessons, repetitions=5, rare_terms=20)
                )
        publish.MMAP_BYTES = shipped
    names = [name for name in runs["page cache only"][0] if "sqlite3" not in name]
    print(f"{args.lessons:,} lessons, {args.pairs} pairs: the median of the pairs' p50 / p95 (ms)")
    print()
    print("| request | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for name in names:
        cells = []
        for results in runs.values():
            p50 = statistics.median(r[name]["p50"] for r in results)
            p95 = statistics.median(r[name]["p95"] for r in results)
            cells.append(f"{p50:.1f} / {p95:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
