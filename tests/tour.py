"""The README's tour, replayed: each command it shows, run for real in an empty folder against
the fixture site (`python -m tests.site serve`), and what each printed. ``make docs`` writes
the result into README.md (tests/reference.py); tests/test_tour.py replays it and compares.

The ports the README shows (8765 for the site, 8001 for Datasette) stand in for the free ports
the replay used; ``comparable`` masks what differs between two honest runs: how long the crawl
took and the day a snapshot is named for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.publish import DEFAULT_PORT

ROOT = Path(__file__).resolve().parent.parent
SITE_PORT = 8765  # as the README shows it (and `make demo` uses)
SERVE_PORT = DEFAULT_PORT
START = "/video/forward-fold-circle-the-knees/"
# At the default concurrency: which listings a first crawl walks is decided when its queue runs
# dry, over sorted candidates, so the summary is the same whatever order the pages arrive in.
CRAWL_OPTIONS = ("--delay", "0")
PHRASE = "recieve the weight"  # a typo of the site's, found as typed
MICROPAUSE = str(Path(sys.executable).with_name("micropause"))
# Generous: the machine may be busy; nothing here waits this long when all is well.
STARTUP_SECONDS = 120
# The tour's blocks, in README order.
BLOCKS = ("site", "crawl", "serve", "export", "demo")


@dataclass(frozen=True)
class Demo:
    """What `make demo` did: its output, and whether its addresses led somewhere."""

    text: str
    site_answered_while_serving: bool
    lesson_links_answered: bool
    exit_code: int
    site_stopped: bool


@dataclass(frozen=True)
class Tour:
    blocks: dict[str, str]
    demo: Demo
    gap_program: str  # the slug of the program the syllabus query shows


def comparable(text: str) -> str:
    """``text`` with what differs between two honest runs masked."""
    text = re.sub(r"complete in [0-9.]+s", "complete in …s", text)
    return re.sub(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}-run", "….-run", text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}


@contextlib.contextmanager
def process(args: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A long-running command (a server), stopped with Ctrl-C (SIGINT) at the end."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def read_until(proc: subprocess.Popen, pattern: str) -> list[str]:
    """The lines ``proc`` prints up to the first that matches ``pattern``."""
    lines = []
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args[:3]} ended before printing {pattern!r}: {lines}")
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise RuntimeError(f"{proc.args[:3]} printed no {pattern!r} in {STARTUP_SECONDS}s")


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=STARTUP_SECONDS
    )
    return (done.stdout + done.stderr).rstrip("\n")


def answering(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.TransportError:
        return False


def wait_answering(url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not answering(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {STARTUP_SECONDS}s")
        time.sleep(0.2)


def shown(command: str, output: str | list[str]) -> str:
    lines = output if isinstance(output, list) else output.splitlines()
    return "\n".join([f"$ {command}", *lines])


def replay() -> Tour:
    """Run the tour in an empty folder, as a new user would, and return what it printed."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        site_cmd = [sys.executable, "-m", "tests.site", "serve", "--port", "0"]
        with process(site_cmd, ROOT) as site:
            (line,) = read_until(site, r"running at")
            site_url = re.search(r"http://\S+/", line)[0].rstrip("/")
            site_port = site_url.rsplit(":", 1)[1]
            blocks = {
                "site": shown(f".venv/bin/python -m tests.site serve --port {SITE_PORT}", line)
            }
            crawl = ["crawl", "--start-url", f"{site_url}{START}", *CRAWL_OPTIONS]
            blocks["crawl"] = shown(
                " ".join(["micropause", *crawl]), run([MICROPAUSE, *crawl], folder)
            )
            serve_port = free_port()
            with process([MICROPAUSE, "serve", "--port", str(serve_port)], folder) as serve:
                (line,) = read_until(serve, r"Serving")
                base = f"http://127.0.0.1:{serve_port}/micropause"
                wait_answering(f"{base}.json")
                gap = gap_program(base)
                syllabus = httpx.get(
                    f"{base}/syllabus.json", params={"program": gap, "_shape": "array"}
                ).json()
                found = httpx.get(
                    f"{base}/search.json", params={"phrase": PHRASE, "_shape": "array"}
                ).json()
            quoted = PHRASE.replace(" ", "+")
            blocks["serve"] = "\n".join(
                [
                    shown("micropause serve", line.replace(f":{serve_port}/", f":{SERVE_PORT}/")),
                    "",
                    shown(
                        f"curl -s 'http://127.0.0.1:{SERVE_PORT}/micropause/syllabus.json"
                        f"?program={gap}&_shape=array' | jq -r '.[].lesson'",
                        [row["lesson"] for row in syllabus],
                    ),
                    shown(
                        f"curl -s 'http://127.0.0.1:{SERVE_PORT}/micropause/search.json"
                        f"?phrase={quoted}&_shape=array' | jq -c '.[] | {{title, passage}}'",
                        [compact({"title": r["title"], "passage": r["passage"]}) for r in found],
                    ),
                ]
            )
            blocks["export"] = export_block(folder)
        demo = replay_demo(folder)
        blocks["demo"] = demo.text
        blocks = {k: v.replace(f":{site_port}/", f":{SITE_PORT}/") for k, v in blocks.items()}
    return Tour(blocks=blocks, demo=demo, gap_program=gap)


def gap_program(base: str) -> str:
    """The slug of the first program (by slug) with a part the site lacks: the syllabus that
    shows what the archive knows that the site does not say."""
    programs = httpx.get(f"{base}/programs.json", params={"_shape": "array"}).json()
    gapped = sorted(p["slug"] for p in programs if json.loads(p["parts_missing"]))
    if not gapped:
        raise RuntimeError("no program of the fixture site has a gap")
    return gapped[0]


def compact(value) -> str:
    """As `jq -c` prints it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def export_block(folder: Path) -> str:
    manifest = folder / "archive" / "exports" / "latest" / "manifest.json"
    exported = run([MICROPAUSE, "export"], folder)
    # As a terminal 80 columns wide shows it, with spaces rather than tabs.
    listing = run(["ls", "-C", "-w", "80", "-T", "0", "archive/exports/latest/"], folder)
    facts = json.loads(manifest.read_text(encoding="utf-8"))
    picked = {
        "snapshot": facts["snapshot"],
        "run": facts["run"]["id"],
        "status": facts["run"]["status"],
        "counts": facts["counts"],
    }
    return "\n".join(
        [
            shown("micropause export", exported),
            shown("ls archive/exports/latest/", listing),
            shown(
                "jq -c '{snapshot, run: .run.id, status: .run.status, counts}' "
                "archive/exports/latest/manifest.json",
                compact(picked),
            ),
        ]
    )


def replay_demo(folder: Path) -> Demo:
    """`make demo` (python -m tests.site demo) until it serves, its addresses tried, then
    Ctrl-C. The crawl's summary lines are the crawl block's; here they are left out."""
    site_port, serve_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "tests.site",
        "demo",
        "--db",
        str(folder / "demo" / "micropause.db"),
    ]
    args += ["--port", str(site_port), "--serve-port", str(serve_port)]
    with process(args, ROOT) as demo:
        lines = read_until(demo, r"^Serving ")
        site_url = f"http://127.0.0.1:{site_port}/"
        lesson_links = [
            row["url"]
            for row in httpx.get(
                f"http://127.0.0.1:{serve_port}/micropause/lessons.json",
                params={"_shape": "array", "_col": "url", "_size": 5},
            ).json()
        ]
        alive = answering(site_url)
        links = bool(lesson_links) and all(answering(url) for url in lesson_links)
    printed = [line for line in lines if not line.startswith(("run ", "  "))]
    printed = [
        line.replace(str(folder / "demo"), "archive").replace(f"{ROOT}/", "") for line in printed
    ]
    text = shown("make demo", printed)
    text = text.replace(f":{site_port}/", f":{SITE_PORT}/").replace(
        f":{serve_port}/", f":{SERVE_PORT}/"
    )
    text = text.replace(f"--port {site_port}", f"--port {SITE_PORT}").replace(
        f"--port {serve_port}", f"--port {SERVE_PORT}"
    )
    return Demo(
        text=text,
        site_answered_while_serving=alive,
        lesson_links_answered=links,
        exit_code=demo.returncode,
        site_stopped=not answering(site_url),
    )
