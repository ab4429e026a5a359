"""The `micropause` command: a thin click layer over the pipeline's functions."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import __version__
from .config import DEFAULT_CONFIG, load_config
from .errors import ConfigError, MicropauseError
from .runs import RunReport, crawl_into_archive
from .store import DEFAULT_DB

EXIT_INTERRUPTED = 130

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Command(click.Command):
    """Turns the tool's own errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MicropauseError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted: the run is recorded as interrupted; nothing else changed")
            ctx.exit(EXIT_INTERRUPTED)


class Group(click.Group):
    command_class = Command


@click.group(cls=Group)
@click.version_option(__version__, prog_name="micropause")
def main():
    """Archive the Micro Pause lessons of movementality.se into SQLite and publish them.

    Exit codes: 0 ok; 1 usage or config error; 2 the run failed (site unreachable) and the
    archive is unchanged; 3 the run failed a health check; 130 interrupted.
    """


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Site configuration (TOML).",
)
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_DB,
    show_default=True,
    help="The archive database.",
)


def crawl_options(f):
    f = click.option(
        "--concurrency",
        type=int,
        default=None,
        help="Most requests in flight to the host at once [default: from config].",
    )(f)
    f = click.option(
        "--delay",
        type=float,
        default=None,
        help="Seconds between requests to the host, before jitter; 0 for a local copy "
        "[default: from config].",
    )(f)
    f = click.option(
        "--start-url",
        "start_urls",
        multiple=True,
        help="Start here instead of the configured start URLs (repeatable). Its host becomes "
        "the crawl's scope: use it to crawl a local copy or mirror of the site.",
    )(f)
    return f


def load(config_path: Path, start_urls, delay, concurrency):
    config = load_config(config_path)
    if start_urls:
        config = config.with_start_urls(tuple(start_urls))
    if delay is not None and delay < 0:
        raise ConfigError("--delay must be >= 0")
    if concurrency is not None and concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    jitter = 0.0 if delay == 0 else None
    return config.with_politeness(delay=delay, jitter=jitter, concurrency=concurrency)


@main.command()
@config_option
@db_option
@crawl_options
@click.option(
    "--max-pages",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after fetching this many pages (the run is then incomplete).",
)
def crawl(config_path, db_path, start_urls, delay, concurrency, max_pages):
    """Crawl every lesson of the site into the archive.

    Walks every lesson's "You may also like" listing to its last page and the sitemap, fetches
    each lesson's own page, and writes lessons and programs in one transaction at the end.
    """
    config = load(config_path, start_urls, delay, concurrency)
    with _progress() as progress:
        task = progress.add_task("crawling", total=None, errors=0)

        def update(done: int, known: int, failed: int) -> None:
            progress.update(task, completed=done, total=known, errors=failed)

        report = crawl_into_archive(config, db_path, max_pages=max_pages, progress=update)
    print_summary(report, db_path)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages · [red]{task.fields[errors]}[/red] errors"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def print_summary(report: RunReport, db_path: Path) -> None:
    result, counts = report.result, report.counts
    stats = result.stats
    failed = result.failed
    state = "complete" if result.complete else "INCOMPLETE"
    out.print(
        f"run {report.run_id} {state} in {result.elapsed:.1f}s → {db_path}\n"
        f"  lessons: {counts.lessons_found} found, {counts.new} new, {counts.changed} changed, "
        f"{counts.removed} removed · programs: {counts.programs}\n"
        f"  pages: {sum(1 for p in result.pages.values() if p.status is not None)} fetched, "
        f"{stats.not_modified} not modified, {len(failed)} failed · requests: {stats.requests}, "
        f"retries: {stats.retries}, {stats.bytes / 1e6:.1f} MB",
        highlight=False,
    )
    for page in failed[:10]:
        out.print(f"  failed: {page.url}: {page.error}", highlight=False, soft_wrap=True)
    if len(failed) > 10:
        out.print(f"  … and {len(failed) - 10} more failed pages (see the pages table)")
    if result.budget_exhausted:
        out.print("  stopped at --max-pages: nothing was marked removed")


@main.command()
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 lets other machines in).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8001,
    show_default=True,
    help="Port to listen on.",
)
def serve(db_path, host, port):
    """Browse and query the archive in Datasette, read-only, until Ctrl-C.

    Facets, full-text search, each program's syllabus and canned queries at
    http://HOST:PORT/micropause; every page is also JSON (add .json to its path).
    """
    # Imported here so the crawl commands do not pay for loading Datasette.
    from .publish import serve as serve_archive

    serve_archive(db_path, host=host, port=port)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
