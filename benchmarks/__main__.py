"""``python -m benchmarks [--quick] [--only crawl,extraction,scale,incremental]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import PROFILES, RESULTS_DIR, SUITES, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure crawl cost, extraction speed, scale and re-crawl cost; write "
        "benchmarks/results/latest.json and latest.md.",
    )
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick", action="store_const", const="quick", dest="profile", help="small sizes (~1 min)"
    )
    profile.add_argument("--profile", choices=sorted(PROFILES), help="sizes and repetitions")
    parser.add_argument(
        "--only",
        default=",".join(SUITES),
        help=f"comma-separated suites to run (default: all of {','.join(SUITES)})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where to write results")
    parser.set_defaults(profile="full")
    args = parser.parse_args(argv)
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = sorted(set(only) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    run(args.profile, only, out_dir=args.out, log=lambda message: print(message, file=sys.stderr))
    # A missed target is a finding, not a failure: the exit code says only that the runs ran.
    print((args.out / "latest.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
