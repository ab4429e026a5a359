"""Run the suites, each in a fresh process, and write the result files.

A fresh process per suite keeps one suite's imports, caches and peak RSS out of the next one's
numbers (``ru_maxrss`` only ever grows). ``python -m benchmarks.runner SUITE PARAMS OUT`` is
that process; ``python -m benchmarks`` is the way in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import results as results_module

SUITES = ("crawl", "extraction", "scale", "incremental")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Sizes and repetitions. "full" is what benchmarks/README.md reports and stays under ~10
# minutes on a 2-core machine; "quick" checks a change in about a minute; "smoke" is the
# test suite's, seconds long, and proves only that every suite still runs.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "crawl": {"sizes": [150, 300], "inferred_sizes": [150, 300, 1000], "profile_size": 150},
        "extraction": {"site_lessons": 150, "pages": 200, "repetitions": 7},
        "scale": {"n": 100_000, "repetitions": 5, "rare_terms": 20},
        "incremental": {"n": 300},
    },
    "quick": {
        "crawl": {"sizes": [30, 60], "inferred_sizes": [30, 60], "profile_size": 30},
        "extraction": {"site_lessons": 60, "pages": 40, "repetitions": 3},
        "scale": {"n": 5_000, "repetitions": 3, "rare_terms": 10},
        "incremental": {"n": 60},
    },
    "smoke": {
        "crawl": {"sizes": [12], "inferred_sizes": [12], "profile_size": None},
        "extraction": {"site_lessons": 12, "pages": 4, "repetitions": 1},
        "scale": {"n": 200, "repetitions": 1, "rare_terms": 2},
        "incremental": {"n": 12},
    },
}


def run_suite(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """One suite in this process."""
    if name == "crawl":
        from . import crawl

        return crawl.run(
            tuple(params["sizes"]),
            inferred_sizes=tuple(params.get("inferred_sizes", ())),
            profile_size=params.get("profile_size"),
        )
    if name == "extraction":
        from . import extraction

        return extraction.run(**params)
    if name == "scale":
        from . import scale

        return scale.run(**params)
    if name == "incremental":
        from . import incremental

        return incremental.run(**params)
    raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")


def run_isolated(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """One suite in a fresh Python process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, "-m", "benchmarks.runner", name, json.dumps(params), str(out)],
            cwd=results_module.ROOT,
            check=True,
        )
        return json.loads(out.read_text(encoding="utf-8"))


def run(
    profile: str = "full",
    only: tuple[str, ...] = SUITES,
    *,
    out_dir: Path = RESULTS_DIR,
    isolate: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run the chosen suites and write ``latest.json`` and ``latest.md`` into ``out_dir``."""
    plan = {name: dict(PROFILES[profile][name]) for name in SUITES if name in only}
    started = datetime.now(UTC)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 1,
        "command": results_module.command_line(),
        "profile": profile,
        "started": started.isoformat(timespec="seconds"),
        "machine": results_module.machine(),
        "parameters": plan,
    }
    for name, params in plan.items():
        log(f"benchmarks: {name} {json.dumps(params)}")
        suite_began = time.perf_counter()
        results[name] = (run_isolated if isolate else run_suite)(name, params)
        log(f"benchmarks: {name} done in {time.perf_counter() - suite_began:.0f} s")
    results["duration_s"] = time.perf_counter() - began
    results["targets"] = results_module.targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out_dir / "latest.md").write_text(results_module.markdown(results), encoding="utf-8")
    return results


if __name__ == "__main__":
    suite, raw_params, out_path = sys.argv[1:4]
    result = run_suite(suite, json.loads(raw_params))
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
