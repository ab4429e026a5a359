"""``python -m tests.site serve``: run the fixture site in the foreground.

Subcommands register themselves in ``COMMANDS``; add one by writing an ``add_<name>_parser``
function that creates its subparser and sets ``func``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .server import DEFAULT_DATA, START_SLUG, FixtureSite, load_lessons


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the fixture site until Ctrl-C")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="lessons JSON file")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--no-sitemap", action="store_true", help="serve no wp-sitemap.xml")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    site = FixtureSite(
        load_lessons(args.data),
        host=args.host,
        port=args.port,
        latency=args.latency,
        sitemap=not args.no_sitemap,
    )
    if not started(site):
        return 1
    with site:
        print(f"Fixture site running at {site.url}/ (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nStopping.", flush=True)
    return 0


def started(site: FixtureSite) -> bool:
    """Start the site, or say in one line why it cannot listen (a port taken, say)."""
    try:
        site.start()
    except OSError as exc:
        print(
            f"error: cannot serve the fixture site on {site.host}:{site.port}: "
            f"{exc.strerror or exc} (choose another with --port)",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="serve the site, crawl it into the archive with micropause, then publish it"
    )
    parser.add_argument("--port", type=int, default=8765, help="port of the fixture site")
    parser.add_argument("--serve-port", type=int, default=8001, help="port of Datasette")
    parser.add_argument("--db", default="archive/micropause.db")
    parser.add_argument("--no-serve", action="store_true", help="stop after the crawl")
    parser.set_defaults(func=demo)


def demo(args: argparse.Namespace) -> int:
    """What `make demo` runs: the same commands a user types, against the local copy. The
    local copy stays up while Datasette serves, so the lessons' links lead somewhere; Ctrl-C
    stops both."""
    micropause = str(Path(sys.executable).with_name("micropause"))
    site = FixtureSite(port=args.port)
    if not started(site):
        return 1
    with site:
        crawl = [
            micropause,
            "crawl",
            "--db",
            args.db,
            "--start-url",
            site.lesson_url(START_SLUG),
            "--delay",
            "0",
            "--concurrency",
            "4",
        ]
        print(f"Local copy of the site at {site.url}/", flush=True)
        print("$ " + " ".join(crawl), flush=True)
        try:
            crawled = subprocess.run(crawl, check=False)
        except KeyboardInterrupt:
            return 130  # the crawl records its run as interrupted
        if crawled.returncode != 0 or args.no_serve:
            return crawled.returncode
        serve_cmd = [micropause, "serve", "--db", args.db, "--port", str(args.serve_port)]
        print(f"The local copy stays up at {site.url}/ while the archive is served.", flush=True)
        print("$ " + " ".join(serve_cmd), flush=True)
        try:
            return subprocess.run(serve_cmd, check=False).returncode
        except KeyboardInterrupt:
            return 0  # serve stops on Ctrl-C, and the site with it


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_serve_parser, add_demo_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.site", description="The local Micro Pause fixture site."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
