"""Publish the archive with Datasette: the project's metadata, canned queries, templates and
cell rendering, over a connection that can never write the archive."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import re
import socket
import sqlite3
import sys
import threading
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import datasette_atom
import lxml.etree
import markupsafe
import uvicorn
import yaml
from datasette import hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils import tilde_encode, urlsafe_components

from .archive import (
    DEFAULT_DB,
    LESSON_CAPTURES_SQL,
    LESSON_COLUMNS,
    LESSON_COUNTS_SQL,
    LESSON_PAGE_SQL,
    LESSON_PART_SQL,
    LESSON_VERSIONS_SQL,
    PROGRAM_COLUMNS,
    PROGRAM_COUNT_SQL,
    PROGRAM_SLUG_SQL,
    START_PROGRAMS_SQL,
    read_only_uri,
    verify_archive,
)
from .errors import ConfigError

# The database's name in every URL (/micropause/lessons), whatever the file is called, so the
# metadata, templates and documented URLs hold for any --db.
ARCHIVE_NAME = "micropause"
# Shipped inside the package (config/metadata.yml in the repository), like the site's config.
METADATA_PATH: Traversable = resources.files(__package__) / "defaults" / "metadata.yml"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
PLUGIN_NAME = "micropause-publish"
SYLLABUS_TITLE = "the program's syllabus: every part, gaps shown"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY = "the archive is published read-only: only reading requests (GET, HEAD) are answered"


def load_metadata(path: Path | str | Traversable = METADATA_PATH) -> dict:
    """The Datasette metadata: titles, descriptions, facets, canned queries. Refuses canned
    queries that write, since the published archive is read-only."""
    path = Path(path) if isinstance(path, str) else path
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read Datasette metadata {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(metadata, dict):
        raise ConfigError(f"{path}: expected a mapping of Datasette metadata")
    for database in (metadata.get("databases") or {}).values():
        for name, query in (database.get("queries") or {}).items():
            if isinstance(query, dict) and query.get("write"):
                raise ConfigError(f"{path}: canned query {name!r} writes; the archive is read-only")
    return metadata


def describe_columns(metadata: dict, db_path: Path) -> None:
    """Column meanings come from the schema (archive/schema.py), the one place the snapshot manifest
    reads them too; metadata.yml describes only the other tables. Only columns the archive
    has are described: Datasette lists every description it is given."""
    tables = metadata.setdefault("databases", {}).setdefault(ARCHIVE_NAME, {})
    tables = tables.setdefault("tables", {})
    meanings = {
        "lessons": LESSON_COLUMNS,
        "programs": PROGRAM_COLUMNS,
        "lessons_in_order": LESSON_COLUMNS,
    }
    # Immutable where the file system cannot be written: ?mode=ro alone needs WAL's -shm file.
    with contextlib.closing(sqlite3.connect(read_only_uri(Path(db_path)), uri=True)) as conn:
        for table, columns in meanings.items():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            described = tables.setdefault(table, {}).setdefault("columns", {})
            for column in columns:
                if column.name in present:
                    described.setdefault(column.name, column.description)


# Datasette's settings wherever the archive is published (serve, and hosted.py). The configured
# facets (program, author) are the useful ones; suggesting others counts every column of the
# table on every page view.
SETTINGS = {"suggest_facets": False, "truncate_cells_html": 400, "num_sql_threads": 4}
# A lesson's description in a table view: its first characters, the whole text on its page.
DESCRIPTION_SHOWN = 300

# Arbitrary SQL (?sql=) may run this many queries at once, in all and per client address; more
# are answered 503 or 429 with Retry-After. Each runs up to Datasette's time limit on one of its
# num_sql_threads threads: the threads left keep table pages, the syllabus, search and the feed
# answering (30 slow queries at once made lessons.json take 9.6 s for everyone).
SQL_IN_FLIGHT = 2
SQL_PER_CLIENT = 1
SQL_RETRY_AFTER = 1

# The longest string or blob any query may make: far above any stored value (a description
# is kilobytes), far below what stalls the server. SQLite checks it inside each function call,
# where Datasette's time limit (checked between opcodes) cannot interrupt a randomblob(3e8).
MAX_VALUE_BYTES = 10_000_000
# LIKE patterns longer than this are refused: Datasette's own filters need a few words.
MAX_LIKE_PATTERN = 1_000
# Readable by SQL but naming where the archive lives on the server's disk.
_PRIVATE_TABLES = frozenset({"pragma_database_list"})
_PRIVATE_PATHS = frozenset({"/-/databases", "/-/databases.json"})

# Address space, not memory: pages are shared with the OS page cache. SQLite maps only as much
# of the file as exists, so this is a ceiling for large archives.
MMAP_BYTES = 1 << 30


def build_datasette(
    db_path: Path | str = DEFAULT_DB, *, metadata_path: Path | str | Traversable = METADATA_PATH
) -> Datasette:
    """A Datasette instance publishing the archive read-only under the name "micropause"."""
    db_path = Path(db_path)
    # One clear error rather than Datasette's traceback when there is nothing to serve.
    verify_archive(db_path)
    metadata = load_metadata(metadata_path)
    describe_columns(metadata, db_path)
    register_plugin()
    datasette = Datasette(
        metadata=metadata,
        template_dir=str(TEMPLATES_DIR),
        settings=SETTINGS,
    )
    # Datasette adds an empty in-memory database when it is given no files; it would only be
    # a second, confusing entry on the home page.
    datasette.remove_database("_memory")
    # A mutable database, opened ?mode=ro, rather than an immutable one: `micropause run`
    # updates the archive while it is being served, and immutable mode would promise SQLite
    # the file never changes (stale row counts, torn reads mid-run). Writes are refused by
    # prepare_connection below instead. An archive on a read-only filesystem cannot change
    # and cannot be opened mutable (WAL needs its -shm file): it is opened immutable.
    mutable = is_writable(db_path)
    datasette.add_database(Database(datasette, path=str(db_path), is_mutable=mutable), ARCHIVE_NAME)
    return datasette


def is_writable(db_path: Path) -> bool:
    """Whether the archive's file and folder can be written (so its WAL files can be)."""
    return os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK)


def public_warning(host: str) -> str | None:
    """The warning for a listen address other machines can reach, or None for loopback."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"warning: listening on {host}: the archive is public to anyone who can reach this "
        "address (use --host 127.0.0.1 to keep it on this machine)"
    )


def serve(
    db_path: Path | str = DEFAULT_DB, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> None:
    """Serve the archive read-only until interrupted, printing its URL once it listens (the
    `micropause serve` command, and the end of `make demo`)."""
    datasette = build_datasette(db_path)
    # Said before listening: whoever asked for a public address hears it even if binding fails.
    if (warning := public_warning(host)) is not None:
        print(warning, file=sys.stderr, flush=True)
    listener = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(datasette.app(), log_level="warning", lifespan="on"))
    print(f"Serving {db_path} read-only at {archive_url(host, port)} (Ctrl-C to stop)", flush=True)
    # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught: for a server that
    # is the normal way to stop, not an interrupted job.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[listener])
    print("Stopped.", flush=True)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before serving so a taken port is one clear error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def archive_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/{ARCHIVE_NAME}"


def register_plugin() -> None:
    """Register this module's hooks with Datasette. Its plugin manager is process-wide:
    register once, however many instances are built."""
    if pm.get_plugin(PLUGIN_NAME) is None:
        pm.register(sys.modules[__name__], name=PLUGIN_NAME)
    # Datasette 0.65 prints every error page it serves, 404s included, as a rich traceback
    # with locals when rich is importable (it is: our CLI uses it), and its 404 for an
    # unknown path then crashes, since rich refuses to print outside an `except` block.
    # Without rich it keeps printing the tracebacks of real server errors. (Imported here:
    # imported before datasette.app, this module registers itself half-initialised.)
    from datasette import handle_exception as datasette_errors

    datasette_errors.rich = None


def paragraphs(text: str) -> markupsafe.Markup:
    """The description's paragraphs (separated by a blank line in the archive) as <p>s."""
    parts = [part.strip() for part in text.split("\n\n") if part.strip()]
    return markupsafe.Markup("").join(markupsafe.Markup("<p>{}</p>").format(part) for part in parts)


# The tables whose rows are lessons (their id is the lesson's).
LESSON_TABLES = frozenset({"lessons", "lessons_in_order"})


def excerpt(text: str, whole: str, limit: int = DESCRIPTION_SHOWN) -> markupsafe.Markup:
    """A description's first ``limit`` characters or so (cut between words) as paragraphs,
    with a link to the whole text."""
    if len(text) <= limit:
        return paragraphs(text)
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.") + "…"
    more = markupsafe.Markup(' <a href="{}" class="whole-text">the whole text</a>').format(whole)
    return paragraphs(cut)[: -len("</p>")] + more + markupsafe.Markup("</p>")


def video_link(url: str, row, shown: set[str]) -> markupsafe.Markup:
    """The video's URL as a short link: its provider and id where known."""
    provider = row["video_provider"] if "video_provider" in shown else None
    video_id = row["video_id"] if "video_id" in shown else None
    text = f"{provider.capitalize()} {video_id}" if provider and video_id else "video"
    return markupsafe.Markup('<a href="{}" title="{}">{}</a>').format(url, url, text)


def highlighted(passage: str) -> markupsafe.Markup:
    """An FTS snippet with its <mark> delimiters kept and everything else escaped."""
    # str(): Markup.replace would escape the tags being put back.
    escaped = str(markupsafe.escape(passage))
    return markupsafe.Markup(
        escaped.replace("&lt;mark&gt;", "<mark>").replace("&lt;/mark&gt;", "</mark>")
    )


def syllabus_url(datasette: Datasette, database: str, program: str) -> str:
    return f"{datasette.urls.query(database, 'syllabus')}?{urlencode({'program': program})}"


def link(href: str, text: str, title: str) -> markupsafe.Markup:
    return markupsafe.Markup('<a href="{}" title="{}">{}</a>').format(href, title, text)


# Datasette's hooks, registered by register_plugin. They touch the archive's database only,
# never Datasette's own (_internal is written by Datasette itself).


@hookimpl
def prepare_connection(conn, database, datasette):
    # Every connection Datasette opens on the archive, its write connection included, refuses
    # writes: a write canned query or a plugin could otherwise still change the archive.
    if database == ARCHIVE_NAME:
        conn.execute("PRAGMA query_only = 1")
        # Read the file through a memory map rather than SQLite's 2 MB page cache per
        # connection: a search for a common word looks up thousands of lesson rows, each page
        # otherwise copied in from the OS. The map's known hazard, the file being truncated
        # under it, needs a VACUUM or auto_vacuum, and the archive uses neither.
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)
        conn.set_authorizer(_authorize)
        for name in ("printf", "format"):
            conn.create_function(name, -1, _bounded_printf, deterministic=True)
        conn.create_function("xml_text", 1, xml_text, deterministic=True)


# XML 1.0 cannot hold most C0 controls (or U+FFFE/U+FFFF) even escaped; the Atom feed's
# builder refuses a whole feed for one such character in one title.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value):
    """SQL ``xml_text(value)``: the text with the characters XML cannot hold replaced by
    U+FFFD, for the Atom feed (the changes query)."""
    return _NOT_XML.sub("\ufffd", value) if isinstance(value, str) else value


# printf('%.*c', 2000000000, 'x') runs its loop to the end even once the result is too big
# (15 s, uninterruptible): the widths and precisions a format asks for, written in it or passed
# for a "*", are added up before SQLite's own printf (on a private in-memory connection)
# formats anything, and a total that could pass MAX_VALUE_BYTES is refused. A "*" argument is
# read as SQLite reads it, whatever its type: 2e9, '2000000000' and X'32303030' are 2e9.
_SPEC = re.compile(r"%([-+ 0#,!]*)(\*|[0-9]*)(?:\.(\*|[0-9]*))?(?:ll|l|h|hh)?(.|$)", re.S)
_LEADING_NUMBER = re.compile(r"\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_scratch = threading.local()


def _as_number(value) -> float:
    """``value`` as SQLite's printf reads a "*" argument: its leading number, else 0."""
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and (m := _LEADING_NUMBER.match(value)):
        try:
            return float(m[0])
        except (OverflowError, ValueError):
            return math.inf
    return 0.0


def format_cost(args: tuple) -> float:
    """How many characters printf(*args) asks for in widths and precisions, in total."""
    fmt = args[0]
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if not isinstance(fmt, str):
        return 0.0
    rest = iter(args[1:])
    total = 0.0
    for spec in _SPEC.finditer(fmt):
        if spec[4] == "%":
            continue
        for part in (spec[2], spec[3]):
            if part == "*":
                total += abs(_as_number(next(rest, 0)))
            elif part:
                # A number of any length is one character too many past the cap.
                total += int(part[:12])
        next(rest, None)  # the value the conversion formats
    return total


def _bounded_printf(*args):
    if not args:
        return None
    cost = format_cost(args)
    if not cost <= MAX_VALUE_BYTES:  # NaN included
        raise ValueError("printf: a width or precision this large would make a string too big")
    conn = getattr(_scratch, "conn", None)
    if conn is None:
        conn = _scratch.conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    marks = ", ".join("?" * len(args))
    return conn.execute(f"SELECT printf({marks})", args).fetchone()[0]


def _authorize(action, arg1, arg2, database, trigger):
    if action == sqlite3.SQLITE_READ and arg1 in _PRIVATE_TABLES:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SqlGate:
    """How many arbitrary-SQL requests are being answered, in all and per client address. One
    per Datasette instance, used from its event loop only."""

    def __init__(self, total: int = SQL_IN_FLIGHT, per_client: int = SQL_PER_CLIENT):
        self.total, self.per_client = total, per_client
        self.in_flight = 0
        self.by_client: dict[str, int] = {}

    def refusal(self, client: str) -> tuple[int, str] | None:
        """The status and error a new query from ``client`` gets, or None when it may run."""
        if self.by_client.get(client, 0) >= self.per_client:
            return 429, (
                f"too many SQL queries from one client: at most {self.per_client} at once; "
                "retry when the last one has answered"
            )
        if self.in_flight >= self.total:
            return 503, f"the server is answering {self.total} SQL queries already; retry soon"
        return None

    @contextlib.contextmanager
    def held(self, client: str):
        self.in_flight += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if (left := self.by_client.pop(client) - 1) > 0:
                self.by_client[client] = left


# Query parameters that run SQL a visitor wrote: a query, or a table page's WHERE clause.
_ARBITRARY_SQL = frozenset({"sql", "_where"})


def _asks_sql(scope, own: frozenset[str]) -> bool:
    """Whether the request runs SQL a visitor wrote. ``own`` are the archive's own queries (its
    charts), which the charts page asks for several at once: their cost is known."""
    if scope["type"] != "http":
        return False
    query = scope.get("query_string", b"").decode("latin-1")
    return any(
        name in _ARBITRARY_SQL and value and value not in own for name, value in parse_qsl(query)
    )


def own_queries(datasette) -> frozenset[str]:
    """The SQL of every chart the metadata configures (datasette-dashboards)."""
    dashboards = datasette.plugin_config("datasette-dashboards") or {}
    return frozenset(
        chart["query"]
        for dashboard in dashboards.values()
        if isinstance(dashboard, dict)
        for chart in (dashboard.get("charts") or {}).values()
        if isinstance(chart, dict) and isinstance(chart.get("query"), str)
    )


@hookimpl
def asgi_wrapper(datasette):
    gate = SqlGate()

    def refuse_writes(app):
        """Only GET and HEAD reach a Datasette serving the archive: a write attempt gets 405
        before any view sees it (Datasette 0.65 itself answers a POST with a 500)."""

        async def read_only_app(scope, receive, send):
            # Checked per request: Datasette builds its app before the archive is added.
            if (
                scope["type"] == "http"
                and scope["method"] not in READ_METHODS
                and ARCHIVE_NAME in datasette.databases
            ):
                await refuse(send)
                return
            if scope["type"] == "http" and scope["path"].rstrip("/") in _PRIVATE_PATHS:
                # It names each database's path on the server's disk.
                await refuse(send, 404, "not published")
                return
            if _asks_sql(scope, own_queries(datasette)):
                client = (scope.get("client") or ("",))[0]
                if (refused := gate.refusal(client)) is not None:
                    await refuse(send, *refused, retry_after=SQL_RETRY_AFTER)
                    return
                with gate.held(client):
                    await app(scope, receive, send)
                return
            await app(scope, receive, send)

        return read_only_app

    return refuse_writes


async def refuse(
    send, status: int = 405, error: str = READ_ONLY, *, retry_after: int | None = None
) -> None:
    body = json.dumps({"ok": False, "status": status, "error": error}).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8")]
    if status == 405:
        headers.append((b"allow", ", ".join(sorted(READ_METHODS)).encode()))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# The change feed: the `changes` query's columns, named for a reader, and the Atom elements
# datasette-atom makes of them.
FEED_QUERY = "changes"
FEED_COLUMNS = {
    "entry": "atom_id",
    "observed": "atom_updated",
    "headline": "atom_title",
    "url": "atom_link",
    "details": "atom_content",
}
ATOM = "{http://www.w3.org/2005/Atom}"


@hookimpl(trylast=True)
def register_output_renderer(datasette):
    # Registered after datasette-atom's, so this one serves .atom: the same feed, from the
    # changes query's reader-named columns, with a feed id and author that do not depend on
    # where the archive is served. Any other query with atom_* columns is datasette-atom's.
    return {"extension": "atom", "render": render_feed, "can_render": can_render_feed}


def can_render_feed(columns):
    return set(FEED_COLUMNS) <= set(columns) or datasette_atom.can_render_atom(columns)


async def render_feed(
    datasette, request, sql, columns, rows, database, table, query_name, view_name, data
):
    if not (database == ARCHIVE_NAME and query_name == FEED_QUERY):
        return datasette_atom.render_atom(
            datasette, request, sql, columns, rows, database, table, query_name, view_name, data
        )
    atom_columns = [FEED_COLUMNS.get(c, c) for c in columns]
    atom_rows = [dict(zip(atom_columns, row, strict=True)) for row in rows]
    response = datasette_atom.render_atom(
        datasette,
        request,
        sql,
        atom_columns,
        atom_rows,
        database,
        table,
        query_name,
        view_name,
        data,
    )
    config = (datasette.plugin_config(PLUGIN_NAME) or {}).get("feed") or {}
    response.body = feed_with(response.body, config)
    return response


def feed_with(body: bytes | str, config: dict) -> bytes:
    """The Atom document with the feed's own id and author from the metadata, in place of the
    URL it was requested at (which changes with the host serving it)."""
    feed = lxml.etree.fromstring(body.encode() if isinstance(body, str) else body)
    feed_id = feed.find(f"{ATOM}id")
    if config.get("id") and feed_id is not None:
        feed_id.text = config["id"]
    if config.get("author") and feed.find(f"{ATOM}author") is None:
        author = lxml.etree.Element(f"{ATOM}author")
        lxml.etree.SubElement(author, f"{ATOM}name").text = config["author"]
        if config.get("author_uri"):
            lxml.etree.SubElement(author, f"{ATOM}uri").text = config["author_uri"]
        feed.insert(feed.index(feed_id) + 1 if feed_id is not None else 0, author)
    return lxml.etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# The pages that lead with the archive's own ways in (templates/_micropause_start.html), and
# how many programs they name before linking to the rest.
START_TEMPLATES = frozenset({"index.html", f"database-{ARCHIVE_NAME}.html"})
START_PROGRAMS = 30


LESSON_TEMPLATE = f"row-{ARCHIVE_NAME}-lessons.html"
# Players whose embed URL is the archived video_url itself, so the page can offer it in place.
EMBEDDABLE = frozenset({"vimeo", "youtube"})


@hookimpl
def extra_template_vars(template, datasette, request):
    if ARCHIVE_NAME not in datasette.databases:
        return None
    if template == LESSON_TEMPLATE and request is not None:
        return lambda: lesson_page(datasette, request.url_vars.get("pks", ""))
    if template not in START_TEMPLATES:
        return None

    async def start() -> dict:
        database = datasette.get_database(ARCHIVE_NAME)
        programs = await database.execute(START_PROGRAMS_SQL, [START_PROGRAMS])
        (program_count,) = (await database.execute(PROGRAM_COUNT_SQL)).first()
        lessons, removed = (await database.execute(LESSON_COUNTS_SQL)).first()
        return {
            "micropause": {
                "database": ARCHIVE_NAME,
                "lessons": lessons,
                "removed": removed,
                "program_count": program_count,
                "programs": [dict(row) for row in programs.rows],
            }
        }

    return start


async def lesson_page(datasette: Datasette, pks: str) -> dict:
    """What a lesson's own page shows besides its row: its program and part, the parts before
    and after it, its versions and its captures."""
    database = datasette.get_database(ARCHIVE_NAME)
    (lesson_id,) = urlsafe_components(pks) or [None]
    row = (await database.execute(LESSON_PAGE_SQL, [lesson_id])).first()
    if row is None:
        return {}
    lesson = dict(row)
    program = None
    if lesson["program_id"] is not None and lesson["part"] is not None:
        neighbours = {}
        for side, part in (("previous", lesson["part"] - 1), ("next", lesson["part"] + 1)):
            if 1 <= part <= (lesson["last_part"] or 0):
                found = (
                    await database.execute(LESSON_PART_SQL, [lesson["program_id"], part])
                ).first()
                neighbours[side] = {"part": part, **(dict(found) if found else {})}
        program = {
            "name": lesson["program"],
            "syllabus": syllabus_url(datasette, ARCHIVE_NAME, lesson["program_slug"]),
            "part": lesson["part"],
            "of": lesson["last_part"],
            **neighbours,
        }
    versions = [
        {**dict(v), "changed": _json_list(v["changed"])}
        for v in (await database.execute(LESSON_VERSIONS_SQL, [lesson_id])).rows
    ]
    captures = [
        {**dict(c), "page": datasette.urls.row(ARCHIVE_NAME, "pages", tilde_encode(c["url"]))}
        for c in (await database.execute(LESSON_CAPTURES_SQL, [lesson["url"]])).rows
    ]
    return {
        "micropause_lesson": {
            **lesson,
            "description_html": paragraphs(lesson["description"] or ""),
            "embeddable": lesson["video_provider"] in EMBEDDABLE,
            "program_info": program,
            "versions": versions,
            "captures": captures,
        }
    }


def _json_list(text: str | None) -> list:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if database != ARCHIVE_NAME or value is None:
        return None
    # The columns a link needs may have been left out with ?_col= / ?_nocol=.
    shown = set(row.keys())
    if column == "description" and isinstance(value, str):
        if table in LESSON_TABLES and "id" in shown:
            return excerpt(value, datasette.urls.row(database, "lessons", row["id"]))
        return paragraphs(value)
    if table in LESSON_TABLES and column == "video_url" and isinstance(value, str):
        return video_link(value, row, shown)
    if table is None and column == "passage" and isinstance(value, str):
        return highlighted(value)
    if table == "programs" and column == "name" and "slug" in shown:
        return link(syllabus_url(datasette, database, row["slug"]), value, SYLLABUS_TITLE)
    if table == "programs" and column == "parts_missing":
        return missing_parts(value)
    if table == "lessons_in_order" and column == "part" and "program" in shown:
        return link(syllabus_url(datasette, database, row["program"]), value, SYLLABUS_TITLE)
    if table == "lessons" and column == "part" and "program_id" in shown:
        program_id = row["program_id"]
        # The table page hands over foreign keys expanded to {"value": …, "label": …}.
        if isinstance(program_id, dict):
            program_id = program_id["value"]
        return part_link(program_id, value, database, datasette)


async def part_link(program_id, part, database, datasette):
    """The part, linked to its program's syllabus by the program's slug (the readable URL)."""
    result = await datasette.get_database(database).execute(PROGRAM_SLUG_SQL, [program_id])
    row = result.first()
    if row is None:  # the program row is gone: leave the part as a plain number
        return None
    return link(syllabus_url(datasette, database, row["slug"]), part, SYLLABUS_TITLE)
    return None


def missing_parts(value: str) -> str | None:
    """``[2, 5]`` → "part 2, part 5: not found on the site"."""
    try:
        parts = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not parts:
        return "none"
    return ", ".join(f"part {part}" for part in parts) + ": not found on the site"
