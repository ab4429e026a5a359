"""Peak memory and time of a crawl against the worst sites the limits are for, each a real
`micropause crawl` process against the hostile fixture server (tests/site/hostile.py):

- ``endless``: a site that never ends, every lesson page listing 500 lessons no page listed
  before, crawled with the shipped limits (``limits.max_lessons`` = 10 000 is reached first);
- ``deep-nesting``: a lesson page of 200 000 nested ``<div>``s (Lexbor took 204 s over it);
- ``whitespace-title``: a lesson title of 4.9 MB of spaces around one soft hyphen.

``python -m benchmarks.hostile [--listed N] [--max-lessons N]``; prints a Markdown table and
writes benchmarks/results/hostile.json. Peak RSS is the crawl process's (``ru_maxrss`` of
the child, which includes the per-page parse children it waited for).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import CONFIG_PATH, cli_args
from tests.site.hostile import ENDLESS_PREFIX, EndlessSite, HostileSite

from .results import machine
from .runner import RESULTS_DIR

_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stdout + done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def crawl(site, db_path: Path, config: Path) -> dict:
    """One crawl process: its exit code, seconds, peak RSS (MB), last line of its summary."""
    command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "pipeline"]
    args = [*cli_args(site, db_path, "--config", str(config), "--concurrency", "4")]
    started = time.monotonic()
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return {
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(int(done.stdout.strip() or 0) / 1024, 1),
        "requests": len(site.requests),
        "summary": next((line for line in lines if line.startswith("run ")), ""),
        "stopped": next((line for line in lines if "stopped" in line), ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--listed", type=int, default=500, help="new lessons per endless page")
    parser.add_argument(
        "--max-lessons", type=int, default=None, help="limits.max_lessons of the endless crawl"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    results = {"machine": machine(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "site.toml"
        text = CONFIG_PATH.read_text(encoding="utf-8")
        if args.max_lessons is not None:
            text = text.replace("max_lessons = 10_000", f"max_lessons = {args.max_lessons}")
        config.write_text(text, encoding="utf-8")
        with EndlessSite(listed=args.listed) as site:
            measured = crawl(site, Path(tmp) / "endless.db", config)
            endless = sum(r.path.startswith(ENDLESS_PREFIX) for r in site.requests)
            results["cases"]["endless"] = {**measured, "endless_pages": endless}
        for case in ("deep-nesting", "whitespace-title"):
            with HostileSite(cases={"/video/soft-eyes/": [case] * 10}) as site:
                results["cases"][case] = crawl(site, Path(tmp) / f"{case}.db", CONFIG_PATH)
    results["parameters"] = {"listed": args.listed, "max_lessons": args.max_lessons or 10_000}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("| case | exit | seconds | peak RSS (MB) | requests | what the run said |")
    print("|---|---|---|---|---|---|")
    for name, case in results["cases"].items():
        said = case["stopped"] or case["summary"]
        print(
            f"| {name} | {case['exit_code']} | {case['seconds']} | {case['peak_rss_mb']} | "
            f"{case['requests']} | {said} |"
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(the benchmark's own process, with the servers: {own:.0f} MB peak RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
