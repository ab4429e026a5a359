"""Citable snapshots of the archive: CSV, JSON and NDJSON files, the archive itself as SQLite,
the captures as a WACZ, and a manifest.

``<out>/<YYYY-MM-DD>-run<N>/`` holds ``lessons.*`` and ``programs.*`` in each format asked for,
``micropause.db`` (the whole archive as it stood after run N: a self-contained, read-only
SQLite file), ``captures.wacz`` (the pages as they were at run N, for replay), ``manifest.json``
(run, source, counts, schema, sha256 of every file, how to cite, tool version) and
``datapackage.json`` (Frictionless Data). The name is the day (UTC) run N finished and the run
itself, plus the formats when not all were asked for: a name is never reused for other
content, and nothing inside depends on when the export ran, so exporting the same run again
gives byte-identical files and a snapshot can be cited and checked.

What a snapshot holds is decided here; how its folder is put in place, atomically and on disk
before ``<out>/latest`` names it, is ``folders``'.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__, folders
from .archive import LESSON_COLUMNS, PROGRAM_COLUMNS, Archive, Column, read_snapshot
from .errors import ExportError
from .replay import WACZ_NAME, CaptureFiles, Page, build_wacz, latest_captures, whole_captures
from .safe_text import CSV_RULE, csv_cell

FORMATS = ("csv", "json", "ndjson")
# The archive itself in each snapshot; named as the archive is, so `datasette micropause.db`
# publishes it under the same URLs as `micropause serve`.
ARCHIVE_FILE = "micropause.db"


TABLES = {"lessons": LESSON_COLUMNS, "programs": PROGRAM_COLUMNS}
ORDER = {
    "lessons": "program name, part, published date, title, URL; lessons of no program last",
    "programs": "name, slug",
}

# Spreadsheet software (Excel in particular) reads a CSV as UTF-8 only when it starts with a
# byte order mark; without one, "Body Intelligence – Dive deeper" turns into mojibake. Python
# reads it back with encoding="utf-8-sig".
CSV_ENCODING = "utf-8-sig"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    name: str  # <date>-run<id>, and the formats when not all of them
    date: str
    run_id: int
    counts: dict[str, int]
    files: dict[str, str]  # file name → sha256, manifest.json excepted
    # Capture files the WACZ could not use whole: name → why (missing, unreadable records).
    captures_left_out: dict[str, str] = field(default_factory=dict)


def parse_formats(text: str) -> tuple[str, ...]:
    """``"csv,json"`` → ("csv", "json"), in FORMATS order; unknown names are an error."""
    asked = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(asked - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    if not asked:
        raise ValueError(f"no format given (choose from {', '.join(FORMATS)})")
    return tuple(f for f in FORMATS if f in asked)


def export_snapshot(
    db_path: Path | str,
    out: Path | str | None = None,
    formats: Sequence[str] = FORMATS,
    *,
    every_capture: bool = False,
) -> Snapshot:
    """Write the archive as it stands to ``<out>/<date>-run<id>/`` and point ``<out>/latest``
    at it.

    ``captures.wacz`` holds what replays the archive as of its run (the newest capture of
    every URL and what it refers to), or with ``every_capture`` every capture file whole. A
    capture file that is missing or cannot be read (whole or in part) is left out and named
    in ``Snapshot.captures_left_out`` and the manifest; the snapshot is still written.
    The same run exported again gives the same bytes (and replaces the folder with them).
    Hold the archive lock: leftovers of a crashed export are removed.
    """
    formats = tuple(f for f in FORMATS if f in formats)
    with Archive.open(db_path, create=False, read_only=True) as archive:
        out = Path(out) if out is not None else archive.layout.exports
        captures = archive.layout.captures
        run_id = archive.latest_saved_run()["id"]
        try:
            partial = folders.stage(out)
        except OSError as exc:
            raise ExportError(f"cannot write a snapshot in {out}: {exc}") from None
        try:
            archive.copy_as_of(run_id, partial / ARCHIVE_FILE)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ExportError(f"cannot write a snapshot in {out}: {exc}") from None
            raise
    name = None
    try:
        # Everything else is read from the copy: the CSV rows are the SQLite file's rows.
        rows = read_snapshot(partial / ARCHIVE_FILE)
        run, tables = rows.run, rows.tables
        pages = [
            Page(id=f"lesson-{i}", url=url, title=title, text=_page_text(title, description))
            for i, url, title, description in rows.lesson_pages
        ]
        name = snapshot_name(run, formats)
        files = render_files(tables, formats)
        built = {ARCHIVE_FILE: partial / ARCHIVE_FILE}
        capture_files = CaptureFiles()
        warcs = [captures / c for c in rows.captures]
        # An archive copied without its captures/ folder has no WACZ, and nothing to name.
        if any(p.is_file() for p in warcs) and _build_wacz(
            partial, warcs, pages, run, name, capture_files, every_capture
        ):
            built[WACZ_NAME] = partial / WACZ_NAME
        hashes = {file: (path.stat().st_size, _file_digest(path)) for file, path in built.items()}
        files["datapackage.json"] = _json_bytes(datapackage(run, tables, files, hashes, name))
        manifest = build_manifest(run, tables, files, hashes, name, capture_files, every_capture)
        files["manifest.json"] = _json_bytes(manifest)
        path = folders.publish(out, name, files, partial)
    except OSError as exc:
        raise ExportError(f"cannot write snapshot {out / (name or '')}: {exc}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already once renamed into place
    return Snapshot(
        path=path,
        name=name,
        date=manifest["date"],
        run_id=run["id"],
        counts=manifest["counts"],
        files={file: entry["sha256"] for file, entry in manifest["files"].items()},
        captures_left_out=dict(capture_files.damaged),
    )


def snapshot_name(run: dict, formats: Sequence[str]) -> str:
    """``2025-06-06-run12``: the day the run finished and the run; ``…-run12-csv`` when only
    some formats were asked for, since those files differ."""
    name = f"{run['finished'][:10]}-run{run['id']}"
    return name if tuple(formats) == FORMATS else "-".join((name, *formats))


def _page_text(title: str, description: str | None) -> str:
    return "\n\n".join(part for part in (title, description) if part)


def _build_wacz(
    partial: Path,
    warcs: list[Path],
    pages: list[Page],
    run: dict,
    name: str,
    capture_files: CaptureFiles,
    every_capture: bool,
) -> bool:
    """``captures.wacz`` in ``partial``; False when no capture could be read."""
    if every_capture:
        usable = whole_captures(warcs, capture_files)
        what = f"Every capture of micropause-archive runs up to run {run['id']}"
    else:
        # Beside the snapshot's files while it is built, never among them: the WACZ holds it.
        staging = partial / ".captures"
        staging.mkdir(exist_ok=True)
        latest = staging / f"run{run['id']}-latest.warc.gz"
        usable = [latest] if latest_captures(latest, warcs, capture_files) else []
        what = f"The newest capture of every page of micropause-archive runs up to run {run['id']}"
    try:
        if not usable:
            return False
        build_wacz(
            partial / WACZ_NAME,
            usable,
            pages,
            created=run["finished"],
            title=f"Micro Pause lessons, snapshot {name}",
            description=f"{what}: the lesson pages, listings, sitemaps and what they need to "
            "replay, as the site sent them.",
        )
    except OSError:
        raise
    except Exception as exc:
        # Every record was read and checked before it was packed: this is a defect.
        raise ExportError(f"cannot build {WACZ_NAME}: {type(exc).__name__}: {exc}") from None
    finally:
        if not every_capture:
            shutil.rmtree(staging, ignore_errors=True)
    return True


# -- rendering: pure, from rows to bytes ----------------------------------------------------


def render_files(tables: dict[str, list[tuple]], formats: Iterable[str]) -> dict[str, bytes]:
    """Each table in each format, as the bytes of its file."""
    files = {}
    for fmt in formats:
        for table, rows in tables.items():
            columns = TABLES[table]
            if fmt == "csv":
                files[f"{table}.csv"] = _csv_bytes(columns, rows)
            elif fmt == "json":
                files[f"{table}.json"] = _json_bytes([_record(columns, row) for row in rows])
            elif fmt == "ndjson":
                lines = (_json_line(_record(columns, row)) for row in rows)
                files[f"{table}.ndjson"] = "".join(lines).encode("utf-8")
    return files


def _csv_bytes(columns: Sequence[Column], rows: Iterable[tuple]) -> bytes:
    buffer = io.StringIO(newline="")
    # RFC 4180: CRLF between records, fields with commas, quotes or line breaks quoted and
    # quotes doubled. Line breaks inside a description stay "\n", exactly as stored.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.name for c in columns])
    # NULL becomes an empty cell; the archive stores no empty strings where NULL is possible.
    writer.writerows(["" if value is None else csv_cell(value) for value in row] for row in rows)
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")


def _record(columns: Sequence[Column], row: tuple) -> dict:
    # JSON has lists, so a JSON-list column becomes one; CSV keeps the stored JSON text.
    return {
        c.name: json.loads(value) if c.type == "array" and value is not None else value
        for c, value in zip(columns, row, strict=True)
    }


def _json_bytes(value) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_line(value) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_manifest(
    run: dict,
    tables: dict[str, list[tuple]],
    files: dict[str, bytes],
    built: dict[str, tuple[int, str]] | None = None,
    name: str | None = None,
    capture_files: CaptureFiles | None = None,
    every_capture: bool = False,
) -> dict:
    """What a citation needs: which run, from where, how many, what each column means, how
    to cite it, and a checksum of every other file in the snapshot (``files`` in memory,
    ``built`` on disk as (bytes, sha256))."""
    built = built or {}
    name = name or snapshot_name(run, FORMATS)
    lessons = tables["lessons"]
    removed_at = [c.name for c in LESSON_COLUMNS].index("removed_at")
    removed = sum(1 for row in lessons if row[removed_at] is not None)
    start = urlsplit(run["start_urls"][0]) if run["start_urls"] else None
    rows = {f"{table}.{fmt}": len(tables[table]) for table in TABLES for fmt in FORMATS}
    entries = {file: {"bytes": len(data), "sha256": _digest(data)} for file, data in files.items()}
    entries.update({file: {"bytes": size, "sha256": sha} for file, (size, sha) in built.items()})
    for file, count in rows.items():
        if file in entries:
            entries[file]["rows"] = count
    citation = (
        f"Micro Pause lessons, {start.netloc if start else 'movementality.se'}, archived "
        f"{run['finished'][:10]} (run {run['id']}, snapshot {name}) with micropause-archive "
        f"{__version__}"
    )
    return {
        "snapshot": name,
        "date": run["finished"][:10],
        "title": "Micro Pause lessons, archived by micropause-archive",
        "cite": {
            "text": citation + "; manifest.json sha256 <sha256sum manifest.json>",
            "how": "Name the snapshot and give the sha256 of this manifest.json: it lists the "
            "sha256 of every other file, so it fixes the whole snapshot. A snapshot's name "
            "is never reused for other content; exporting the same run again gives the same "
            "bytes.",
        },
        "source": {
            "url": f"{start.scheme}://{start.netloc}/" if start else None,
            "start_urls": run["start_urls"],
        },
        "run": {
            "id": run["id"],
            "started": run["started"],
            "finished": run["finished"],
            "status": run["status"],
            "complete": run["complete"],
            "health": run["health"],
            # Why the run did not read the whole site (its deadline, its page budget, pages
            # that failed): the snapshot may be behind the site. None for a complete run.
            "incomplete": None if run["complete"] else run.get("error") or run["status"],
        },
        "tool": {"name": "micropause-archive", "version": __version__},
        "counts": {
            "lessons": len(lessons),
            "lessons_published": len(lessons) - removed,
            "lessons_removed": removed,
            "programs": len(tables["programs"]),
        },
        "tables": {
            table: {
                "order": ORDER[table],
                "columns": [
                    {"name": c.name, "type": c.type, "description": c.description} for c in columns
                ],
            }
            for table, columns in TABLES.items()
        },
        "encoding": {
            "csv": "UTF-8 with a byte order mark, CRLF between records, RFC 4180 quoting; "
            f"an empty cell is NULL; {CSV_RULE}",
            "json": "UTF-8, one array of objects",
            "ndjson": "UTF-8, one object per line",
        },
        "archive": {
            "file": ARCHIVE_FILE,
            "what": "The whole archive as it stood after the run (lessons, programs, "
            "lesson_versions, runs, pages, search index), as one read-only SQLite file.",
            "open": f"datasette {ARCHIVE_FILE}, or sqlite3 -readonly {ARCHIVE_FILE}",
        },
        **(
            {
                "captures": {
                    "file": WACZ_NAME,
                    "what": (
                        "Every HTTP exchange of the runs up to this one (WARC)"
                        if every_capture
                        else "The newest capture of every URL the runs up to this one "
                        "fetched, with the captures its revisits refer to (WARC); the whole "
                        "history is in the archive's captures/ folder"
                    )
                    + ", with a CDXJ index and pages/pages.jsonl listing every lesson page "
                    "with its text.",
                    "from": capture_files.used if capture_files else [],
                    "left_out": dict(sorted(capture_files.damaged.items()))
                    if capture_files
                    else {},
                    "open": "ReplayWeb.page (open the file from disk) or pywb "
                    "(wb-manager init micropause && "
                    f"wb-manager add --unpack-wacz micropause {WACZ_NAME})",
                }
            }
            if WACZ_NAME in built
            else {}
        ),
        "files": dict(sorted(entries.items())),
    }


def datapackage(
    run: dict,
    tables: dict[str, list[tuple]],
    files: dict[str, bytes],
    built: dict[str, tuple[int, str]] | None = None,
    name: str | None = None,
) -> dict:
    """A Frictionless Data Package describing the data files, so tools can load and validate
    them with their types (https://specs.frictionlessdata.io/data-package/); the SQLite file
    and the WACZ (``built``: bytes and sha256) as plain resources."""
    package_name = f"micropause-lessons-{name or snapshot_name(run, FORMATS)}".lower()
    resources = []
    for name, data in sorted(files.items()):
        table, _, fmt = name.partition(".")
        columns = TABLES[table]
        schema = {
            "fields": [
                {"name": c.name, "type": c.type, "description": c.description} for c in columns
            ],
            "primaryKey": ["id"],
        }
        if table == "lessons":
            schema["foreignKeys"] = [
                {
                    "fields": ["program_id"],
                    "reference": {"resource": f"programs-{fmt}", "fields": ["id"]},
                }
            ]
        resource = {
            "name": f"{table}-{fmt}",
            "path": name,
            "format": fmt,
            "mediatype": {
                "csv": "text/csv",
                "json": "application/json",
                "ndjson": "application/x-ndjson",
            }[fmt],
            "encoding": CSV_ENCODING if fmt == "csv" else "utf-8",
            "bytes": len(data),
            "hash": f"sha256:{_digest(data)}",
            "schema": schema,
        }
        if fmt == "csv":
            resource["description"] = f"CSV: {CSV_RULE}."
            resource["profile"] = "tabular-data-resource"
            resource["dialect"] = {
                "delimiter": ",",
                "lineTerminator": "\r\n",
                "quoteChar": '"',
                "doubleQuote": True,
                "header": True,
            }
        resources.append(resource)
    kinds = {
        ARCHIVE_FILE: ("archive-sqlite", "sqlite", "application/vnd.sqlite3"),
        WACZ_NAME: ("captures-wacz", "wacz", "application/wacz"),
    }
    for file, (size, sha) in sorted((built or {}).items()):
        resource_name, fmt, mediatype = kinds[file]
        resources.append(
            {
                "name": resource_name,
                "path": file,
                "format": fmt,
                "mediatype": mediatype,
                "bytes": size,
                "hash": f"sha256:{sha}",
            }
        )
    return {
        "profile": "data-package",
        "name": package_name,
        "title": "Micro Pause lessons, archived by micropause-archive",
        "created": run["finished"],
        "sources": [{"title": "Micro Pause lessons", "path": url} for url in run["start_urls"]],
        "resources": resources,
    }


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
