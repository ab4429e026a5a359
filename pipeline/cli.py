"""The `micropause` command: a thin click layer over the pipeline's functions."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import __version__
from .archive import DEFAULT_DB, Archive, archive_lock
from .config import MAX_CONCURRENCY, load_config
from .errors import ConfigError, DeadlinePassed, HealthCheckFailed, Interrupted, MicropauseError
from .export import FORMATS, export_snapshot, parse_formats
from .run import RunReport, crawl_into_archive
from .safe_text import TERMINAL, for_terminal

EXIT_INTERRUPTED = 130

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
# Controls but newline, and bidirectional overrides: an escape sequence in a title or URL must
# not reach the terminal (or a log) as one.
_CONTROLS = TERMINAL


def as_text(value: object) -> Text:
    """Anything that may hold the site's or the archive's text, for printing as it is: never
    read as rich markup, control characters shown escaped."""
    return Text(str(value).translate(_CONTROLS))


def shown_path(path: Path) -> Path:
    """``path`` as the user would name it: relative to the working directory when it is inside
    it (the archive's files are found from its real, resolved path)."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def say(console: Console, value: object) -> None:
    console.print(as_text(value))


class Command(click.Command):
    """Turns the tool's own errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            with _signals_interrupt():
                return super().invoke(ctx)
        except MicropauseError as exc:
            err.print(Text.assemble(("error:", "red"), " ", as_text(str(exc))))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            by = f" by {exc.name}" if isinstance(exc, Interrupted) else ""
            err.print(f"interrupted{by}: the run is recorded as interrupted; nothing else changed")
            ctx.exit(128 + exc.signum if isinstance(exc, Interrupted) else EXIT_INTERRUPTED)


class _signals_interrupt:
    """SIGTERM (systemd's stop, `kill`) and SIGHUP (a closed terminal) end a command as
    Ctrl-C does, so a stopped run is recorded as interrupted rather than left 'running', and
    the lock is let go. Only the first signal is raised: a second one while the run is being
    recorded must not cut that short."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.raised = False
        self.previous = {}
        for signum in self.SIGNALS:
            # Only the main thread may set handlers (a test may invoke from another).
            with contextlib.suppress(ValueError):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.raised:
            return
        self.raised = True
        raise Interrupted(signum, signal.Signals(signum).name)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Group(click.Group):
    command_class = Command

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click exits 2 on a usage error; here 2 means "the run failed", so a mistyped
        option exits 1, as a bad config does."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `micropause` alone: the help, which lists the commands
            sys.exit(1)
        except click.UsageError as exc:
            # One line, as every other error: click's own is three (usage, a hint, the error).
            message = exc.format_message().rstrip(".")
            if exc.ctx is not None:
                message += f" (see {exc.ctx.command_path} --help)"
            err.print(Text.assemble(("error:", "red"), " ", as_text(message)))
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="micropause")
def main():
    """Archive the Micro Pause lessons of movementality.se into SQLite and publish them.

    Exit codes: 0 ok; 1 usage or config error; 2 the run failed (site unreachable, a start
    URL that gives no lessons) and the archive is unchanged; 3 the run failed a health check;
    4 the snapshot could not be written; 5 the run stopped at its deadline before it had read
    every page; 75 another process holds the archive's lock; 130 interrupted (Ctrl-C), 143
    SIGTERM, 129 SIGHUP.
    """


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="MICROPAUSE_CONFIG",
    show_envvar=True,
    # None is the packaged configuration (DEFAULT_CONFIG), wherever the tool is installed.
    show_default="packaged, see `micropause config show`",
    help="Site configuration (TOML).",
)


def archive_option(help: str):
    """``--db``, also read from MICROPAUSE_DB: the one spelling of the option everywhere."""
    return click.option(
        "--db",
        "db_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_DB,
        envvar="MICROPAUSE_DB",
        show_envvar=True,
        show_default=True,
        help=help,
    )


db_option = archive_option(
    "The archive database; crawl and run make it, and its folder, if missing."
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
    if delay is not None and not (math.isfinite(delay) and delay >= 0):
        raise ConfigError(f"--delay must be >= 0 and finite (seconds), not {delay}")
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
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

    A first crawl walks as few "You may also like" listings as it takes to know every
    category's lessons, proves the others from each lesson's own page, and reads the sitemap;
    a re-crawl asks for known pages conditionally and reads changed listings only as far as
    they show new lessons. Every response is captured as WARC, and lessons and
    programs are written in one transaction at the end.
    """
    config = load(config_path, start_urls, delay, concurrency)
    try:
        with archive_lock(db_path, "micropause crawl"), _progress() as progress:
            task = progress.add_task("crawling", total=None, errors=0)

            def update(done: int, known: int, failed: int) -> None:
                progress.update(task, completed=done, total=known, errors=failed)

            report = crawl_into_archive(config, db_path, max_pages=max_pages, progress=update)
    except HealthCheckFailed as exc:
        print_summary(exc.report, db_path)
        raise
    print_summary(report, db_path)
    if report.result.deadline_passed:
        raise DeadlinePassed(report)


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


def size(n: int) -> str:
    """Bytes for a reader: MB from 0.1 MB up, kB below (59 small files are not "0.0 MB")."""
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def print_summary(report: RunReport, db_path: Path) -> None:
    result, counts = report.result, report.counts
    stats = result.stats
    failed = result.failed
    requisites_fetched = sum(1 for r in result.requisites.values() if r.status is not None)
    requisites_failed = [r for r in result.requisites.values() if r.error is not None]
    state = "complete" if result.complete else "INCOMPLETE"
    say(
        out,
        f"run {report.run_id} {state} in {result.elapsed:.1f}s → {db_path}\n"
        f"  lessons: {counts.lessons_found} found, {counts.new} new, {counts.changed} changed, "
        f"{counts.removed} removed"
        + (f", {counts.moved} moved" if counts.moved else "")
        + f" · programs: {counts.programs}\n"
        f"  pages: {result.fetched} fetched, "
        f"{stats.not_modified} not modified, {len(failed)} failed · requests: {stats.requests}, "
        f"retries: {stats.retries}, {size(stats.bytes)}\n"
        f"  listings: {result.listings.walked} walked, {result.listings.inferred} proven "
        f"from page 1, {result.listings.contradicted} contradicted\n"
        f"  audits: {result.listings.audited} proven listings walked, "
        f"{result.listings.audits_contradicted} found other than predicted\n"
        f"  requisites: {requisites_fetched} fetched, "
        f"{result.requisite_stats.not_modified} not modified, {len(requisites_failed)} failed, "
        f"{result.requisites_kept} versioned kept from earlier runs · "
        f"requests: {result.requisite_stats.requests}, {size(result.requisite_stats.bytes)}",
    )
    for page in failed[:10]:
        say(out, f"  failed: {page.url}: {page.error}")
    if len(failed) > 10:
        say(out, f"  … and {len(failed) - 10} more failed pages (see the pages table)")
    for problem in result.start_problems:
        say(out, f"  {problem}")
    if result.anomalies:
        say(
            out,
            f"  {result.anomalies} anomalies (numbers out of range read as absent, canonical "
            "links naming another URL): see pages.warning",
        )
    for reason, urls in report.not_read.items():
        say(
            out,
            f"  not read, kept as last archived: {len(urls)} {reason}, e.g. {urls[0]}",
        )
    if result.budget_exhausted:
        say(out, "  stopped at --max-pages: nothing was marked removed")
    if result.deadline_passed:
        say(out, "  stopped at politeness.max_run_seconds: nothing was marked removed")
    if result.capped:
        say(out, f"  stopped discovering at {result.capped}: nothing was marked removed")
    for failure in report.health:
        say(out, f"  UNHEALTHY {failure}")


out_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of snapshots [default: exports/ beside the --db, archive/exports].",
)
format_option = click.option(
    "--format",
    "formats",
    default=",".join(FORMATS),
    show_default=True,
    help="Comma-separated formats to write, each for lessons and programs.",
)


def _formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ValueError as exc:
        raise ConfigError(f"--format: {exc}") from None


@main.command()
@config_option
@db_option
@out_option
@crawl_options
@format_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Log only warnings and errors: silent unless something is wrong (for cron).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also log one line per page.")
def run(config_path, db_path, out_dir, start_urls, delay, concurrency, formats, quiet, verbose):
    """The scheduled job: lock the archive, crawl, check health, export a snapshot.

    Only a healthy run exports (to OUT/<date>-run<id>/, re-pointing OUT/latest). Logs go to stderr,
    one line per event. Exit codes: 0 ok; 1 config or usage error; 2 the run failed and the
    archive is unchanged; 3 unhealthy: lessons saved, nothing marked removed, no snapshot;
    4 the snapshot could not be written; 5 stopped at its deadline (politeness.max_run_seconds):
    what it read is saved and exported, the snapshot says its run was incomplete; 75 another
    process holds the archive's lock; 143 SIGTERM, 129 SIGHUP, 130 Ctrl-C: recorded as
    interrupted.
    """
    if quiet and verbose:
        raise ConfigError("--quiet and --verbose: choose one")
    configure_logging(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    config = load(config_path, start_urls, delay, concurrency)
    formats = _formats(formats)
    with archive_lock(db_path, "micropause run"):
        try:
            report = crawl_into_archive(config, db_path)
        except HealthCheckFailed as exc:
            log_run(exc.report)
            raise
        log_run(report)
        snapshot = export_snapshot(db_path, out_dir, formats)
    log.info(
        "snapshot.written %s",
        fields(
            path=snapshot.path,
            run=snapshot.run_id,
            lessons=snapshot.counts["lessons"],
            programs=snapshot.counts["programs"],
        ),
    )
    for name, why in snapshot.captures_left_out.items():
        log.warning("snapshot.capture_left_out %s", fields(file=name, reason=why))
    if report.result.deadline_passed:
        raise DeadlinePassed(report)


@main.command()
@db_option
@out_option
@format_option
@click.option(
    "--every-capture",
    is_flag=True,
    help="Put every capture file of every run in captures.wacz, not only the newest capture "
    "of each URL (what replays the archive as of its run).",
)
def export(db_path, out_dir, formats, every_capture):
    """Write a snapshot of the archive, for citation.

    OUT/<YYYY-MM-DD>-run<id>/ (the day the archive's latest run finished, and that run) gets
    lessons and programs as CSV, JSON and NDJSON, the archive itself as read-only SQLite
    (micropause.db), the captures as a WACZ (captures.wacz), a manifest.json with the run,
    counts, column meanings, how to cite and sha256 of every file, and a datapackage.json;
    OUT/latest then points at it. Exporting the same run again gives byte-identical files.
    captures.wacz holds the newest capture of every URL (the whole history stays in
    captures/); a capture file that cannot be read is left out and named.
    """
    formats = _formats(formats)
    with archive_lock(db_path, "micropause export", create=False, reading=True):
        snapshot = export_snapshot(db_path, out_dir, formats, every_capture=every_capture)
    counts = snapshot.counts
    say(
        out,
        f"snapshot {shown_path(snapshot.path)} of run {snapshot.run_id}: "
        f"{counts['lessons']} lessons "
        f"({counts['lessons_removed']} removed), {counts['programs']} programs; "
        f"{len(snapshot.files) + 1} files, checksums in manifest.json",
    )
    for name, why in snapshot.captures_left_out.items():
        say(err, f"capture file {name} left out of captures.wacz: {why}")


log = logging.getLogger("micropause")


class _LineFormatter(logging.Formatter):
    """Log lines with nothing a terminal could obey (see safe_text), whatever a message holds."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def configure_logging(level: int) -> None:
    """One line per record on stderr: UTC time, level, event, then key=value fields, e.g.
    ``2025-06-06T04:00:09Z INFO run.finished run=3 status=ok lessons_found=52``; readable by
    grep and awk, and journald keeps it as it is."""
    formatter = _LineFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    # Replaced, not added: a second invocation in one process (tests) must not log twice.
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def fields(**values) -> str:
    """``key=value`` pairs, None left out; a value with spaces, quotes or '=' is JSON-quoted."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value).translate(_CONTROLS)
        if not text or not text.isprintable() or any(c in text for c in ' "='):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_run(report: RunReport) -> None:
    """A debug line per page, the run's summary at info, each failed health check a warning."""
    result, counts = report.result, report.counts
    fetched = [*result.pages.values(), *result.requisites.values(), *filter(None, [result.robots])]
    for page in fetched:
        log.debug(
            "page %s",
            fields(
                url=page.url,
                kind=page.kind,
                status=page.status,
                listed=page.listed,
                error=page.error,
            ),
        )
    log.info(
        "run.finished %s",
        fields(
            run=report.run_id,
            status=report.status,
            lessons_found=counts.lessons_found,
            new=counts.new,
            changed=counts.changed,
            removed=counts.removed,
            moved=counts.moved,
            programs=counts.programs,
            pages_fetched=result.fetched,
            not_modified=result.stats.not_modified,
            failed=len(result.failed),
            requests=result.stats.requests,
            retries=result.stats.retries,
            requisites_fetched=sum(1 for r in result.requisites.values() if r.status is not None),
            requisites_failed=sum(1 for r in result.requisites.values() if r.error is not None),
            requisite_requests=result.requisite_stats.requests,
            seconds=f"{result.elapsed:.1f}",
            capped=result.capped,
        ),
    )
    for problem in result.start_problems:
        log.warning("start_url.problem %s", fields(detail=problem))
    for reason, urls in report.not_read.items():
        log.warning("lessons.not_read %s", fields(reason=reason, count=len(urls), example=urls[0]))
    for failure in report.health:
        log.warning("health.failed %s", fields(check=failure.name, detail=failure.detail))


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


@main.command()
@config_option
@db_option
def reparse(config_path, db_path):
    """Rebuild lessons and programs from the archive's WARC captures, with no network.

    Applies the current extractor and normaliser to the newest capture of every lesson page.
    first_seen, last_seen and removed_at are kept; a lesson whose text comes out different
    gets a version row (event "reparsed").
    """
    from .reparse import reparse as reparse_archive

    with archive_lock(db_path, "micropause reparse", create=False):
        report = reparse_archive(load_config(config_path), db_path)
    say(
        out,
        f"reparse (run {report.run_id}): {report.captures_read} captures read, "
        f"{report.captures_skipped} skipped (cut short or corrupt), "
        + (f"{report.pages_refused} pages refused (limits), " if report.pages_refused else "")
        + f"{report.lessons} lessons extracted, {report.counts.new} new, "
        f"{report.counts.changed} changed · programs: {report.counts.programs}",
    )


@main.command()
@db_option
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many recent runs to show.",
)
def status(db_path, last):
    """Show the archive's last runs and what it holds, at a glance."""
    from rich.table import Table

    with Archive.open(db_path, create=False, read_only=True) as archive:
        state = archive.status(last=last)
    say(
        out,
        f"{db_path}: {state.lessons} lessons ({state.removed} removed), "
        f"{state.programs} programs, {state.versions} lesson versions, "
        f"{state.pages} pages ({state.failed_pages} failed at their last fetch)",
    )
    table = Table(box=None)
    for header in ("run", "started (UTC)", "status", "pages/304/failed", "lessons/new/chg/rm"):
        table.add_column(header, no_wrap=True)
    # A run's health or error is a sentence: in a sixth column, 80 columns left it five
    # characters, a word a line. It goes under the table, a line (or a few) per run.
    notes = []
    for run in state.runs:
        style = {"ok": "green", "running": "yellow"}.get(run["status"], "red")
        pages = "/".join(
            _n(run[k]) for k in ("pages_fetched", "pages_not_modified", "pages_failed")
        )
        lessons = "/".join(
            _n(run[k])
            for k in ("lessons_found", "lessons_new", "lessons_changed", "lessons_removed")
        )
        # Every cell is Text: whatever the archive holds is shown, never read as markup.
        table.add_row(
            as_text(f"{run['id']}" + (f" {run['kind']}" if run["kind"] != "crawl" else "")),
            as_text((run["started"] or "")[:16].replace("T", " ")),
            Text(str(run["status"]).translate(_CONTROLS), style=style),
            as_text(pages if run["pages_fetched"] is not None else ""),
            as_text(lessons if run["lessons_found"] is not None else ""),
        )
        if note := "; ".join(map(str, run["health"])) or run["error"]:
            notes.append(Text.assemble((f"run {run['id']}: ", style), as_text(note)))
    out.print(table)
    for note in notes:
        out.print(note, soft_wrap=False)


def _n(value) -> str:
    return "-" if value is None else str(value)


@main.command()
@db_option
@click.option(
    "--from",
    "before",
    type=click.IntRange(min=1),
    default=None,
    help="The earlier run [default: the complete run before --to].",
)
@click.option(
    "--to",
    "after",
    type=click.IntRange(min=1),
    default=None,
    help="The later run [default: the latest complete run].",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="text: counts, then one line per lesson; json: one array of objects; csv: a table.",
)
def diff(db_path, before, after, output):
    """What changed in the archive between two runs: lessons added, changed and removed.

    For a changed lesson, the fields that changed with their old and new values. By default
    the latest complete run is compared with the complete run before it.
    """
    from .diff import as_csv, as_json, as_lines, diff_archive

    changes = diff_archive(db_path, before, after)
    # To a file or a pipe the text is exact; to a terminal nothing it could obey gets through.
    # (Written directly: click.echo would drop escape sequences from the exact text.)
    stdout = sys.stdout
    tty = stdout.isatty()
    if output == "json":
        stdout.write(as_json(changes, ascii_only=tty))
    elif output == "csv":
        stdout.write(for_terminal(as_csv(changes, line_end="\n")) if tty else as_csv(changes))
    else:
        for line in as_lines(changes):
            say(out, line)


@main.group("config", cls=Group)
def config_commands():
    """The site configuration: the one in effect, to copy and edit."""


@config_commands.command("show")
@config_option
def config_show(config_path):
    """Print the site configuration in effect, as TOML.

    That is --config, else MICROPAUSE_CONFIG, else the packaged one; it is checked first, as a
    crawl checks it. To change it, save a copy, edit it and pass it on: `micropause config show
    > site.toml`, then `micropause crawl --config site.toml`.
    """
    config = load_config(config_path)
    # As it is in the file, comments included; never through rich, which reads [site] as markup.
    click.echo(config.source.read_text(encoding="utf-8"), nl=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
