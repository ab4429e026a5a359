"""The fixture site in its own process, so the crawler's CPU and the server's are measured apart.

The parent starts ``python -m benchmarks.siteproc N`` and talks to it in JSON lines over stdin
and stdout: ``stats`` (requests, bytes, statuses and the server's own CPU seconds), ``reset``,
``edit`` and ``publish`` (FixtureSite's mutations). Closing stdin stops the server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.site import server
from tests.site.server import FixtureSite, Lesson

from .synthetic import TEASER_PATH, members_only_teaser, synthetic_lessons

ROOT = Path(__file__).resolve().parent.parent
REQUISITES = ("/wp-content/", "/wp-includes/")


class _CountingWriter:
    """Counts every byte a handler writes: status line, headers and body (the wire cost).
    RequestRecord.bytes_sent counts bodies only, and a 304 has no body but still has headers."""

    def __init__(self, raw, counter: list[int]):
        self._raw = raw
        self._counter = counter

    def write(self, data) -> int:
        self._counter[0] += len(data)
        return self._raw.write(data)

    def __getattr__(self, name: str):
        return getattr(self._raw, name)  # flush, closed, … as the socket writer has them


_wire_bytes = [0]


class _CountingHandler(server._Handler):
    def setup(self) -> None:
        super().setup()
        self.wfile = _CountingWriter(self.wfile, _wire_bytes)


def _cpu_seconds() -> float:
    # Every thread of this process: the handler threads do the serving.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stats(site: FixtureSite) -> dict[str, Any]:
    with site._lock:
        records = list(site.requests)
    return {
        "requests": len(records),
        # Lesson and listing pages, robots.txt and sitemaps: the theme's files and images (a
        # page's requisites) are counted apart.
        "page_requests": sum(1 for r in records if not r.path.startswith(REQUISITES)),
        "body_bytes": sum(r.bytes_sent for r in records),
        "wire_bytes": _wire_bytes[0],
        "statuses": dict(Counter(str(r.status) for r in records)),
        "conditional": sum(1 for r in records if _conditional(r)),
        # A re-crawl should ask almost nothing unconditionally: name the few that it does.
        "unconditional_sample": [r.path for r in records if not _conditional(r)][:10],
        "max_in_flight": site.max_in_flight,
        "cpu_seconds": _cpu_seconds(),
    }


def _conditional(record) -> bool:
    return "if-none-match" in record.headers or "if-modified-since" in record.headers


def serve(n: int, *, sitemap: bool = True, sticky: str | None = None) -> None:
    # FixtureSite.start() builds its server with the module's _Handler: count the wire bytes by
    # swapping in a subclass, in this process only.
    server._Handler = _CountingHandler
    lessons = synthetic_lessons(n)
    options: dict[str, Any] = {}
    if sticky:
        # A sticky members-only teaser on every page 1, before or after the items.
        teaser = members_only_teaser()
        lessons.append(teaser)
        robots = server.DEFAULT_ROBOTS + f"Disallow: {TEASER_PATH}\n"
        if sitemap:
            robots += "Sitemap: {url}/wp-sitemap.xml\n"
        options = {"sticky": [teaser.slug], "sticky_position": sticky, "robots_txt": robots}
    site = FixtureSite(lessons, sitemap=sitemap, **options)
    with site:
        _reply({"url": site.url, "pid": os.getpid()})
        for line in sys.stdin:
            command = json.loads(line)
            name = command["cmd"]
            if name == "stats":
                _reply(_stats(site))
            elif name == "reset":
                site.reset_stats()
                _wire_bytes[0] = 0
                _reply({"ok": True})
            elif name == "edit":
                site.edit(command["slug"], **command["fields"])
                _reply({"ok": True})
            elif name == "publish":
                published = site.publish(Lesson(**command["lesson"]))
                _reply({"ok": True, "slug": published.slug})
            else:
                _reply({"error": f"unknown command {name!r}"})


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class SiteProcess:
    """``with SiteProcess(300) as site:`` a synthetic site of 300 lessons at ``site.url``.

    Has ``lesson_url`` like FixtureSite, so tests.conftest.local_config accepts it."""

    def __init__(self, n: int, *, sitemap: bool = True, sticky: str | None = None):
        self.n = n
        self.sitemap = sitemap
        self.sticky = sticky
        self._proc: subprocess.Popen | None = None
        self.url = ""
        self.pid = 0

    def __enter__(self) -> SiteProcess:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.siteproc",
                str(self.n),
                *([] if self.sitemap else ["--no-sitemap"]),
                *([f"--sticky={self.sticky}"] if self.sticky else []),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.url, self.pid = hello["url"], hello["pid"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def lesson_url(self, slug: str) -> str:
        return f"{self.url}/video/{slug}/"

    def stats(self) -> dict[str, Any]:
        return self._ask({"cmd": "stats"})

    def reset(self) -> None:
        self._ask({"cmd": "reset"})

    def edit(self, slug: str, **fields: Any) -> None:
        self._ask({"cmd": "edit", "slug": slug, "fields": fields})

    def publish(self, lesson: Lesson) -> str:
        return self._ask({"cmd": "publish", "lesson": dataclasses.asdict(lesson)})["slug"]

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None, "SiteProcess is not running"
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def _read(self) -> dict[str, Any]:
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the site process ended unexpectedly")
        return json.loads(line)


if __name__ == "__main__":
    flags = sys.argv[2:]
    sticky = next((f.split("=", 1)[1] for f in flags if f.startswith("--sticky=")), None)
    serve(int(sys.argv[1]), sitemap="--no-sitemap" not in flags, sticky=sticky)
