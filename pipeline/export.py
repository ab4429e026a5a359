"""Citable snapshots of the archive: CSV, JSON and NDJSON files, the archive itself as SQLite,
the captures as a WACZ, and a manifest.

``<out>/<YYYY-MM-DD>-run<N>/`` holds ``lessons.*`` and ``programs.*`` in each format asked for,
``micropause.db`` (the whole archive as it stood after run N: a self-contained, read-only
SQLite file), ``captures.wacz`` (every capture up to run N, for replay), ``manifest.json``
(run, source, counts, schema, sha256 of every file, how to cite, tool version) and
``datapackage.json`` (Frictionless Data). The name is the day (UTC) run N finished and the run
itself, plus the formats when not all were asked for: a name is never reused for other
content, and nothing inside depends on when the export ran, so exporting the same run again
gives byte-identical files and a snapshot can be cited and checked.

A snapshot is written into a hidden directory beside its final place and renamed into place
(swapped with the old one, where the same run is exported again), then ``<out>/latest`` is
re-pointed by renaming a new symlink over it: readers see the old snapshot or the new one,
never half of one, and a process killed at any step leaves ``latest`` naming a whole one.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import ctypes
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .archive import LESSON_COLUMNS, PROGRAM_COLUMNS, Archive, Column, read_snapshot
from .errors import ExportError
from .replay import WACZ_NAME, Page, build_wacz
from .safe_text import CSV_RULE, csv_cell

FORMATS = ("csv", "json", "ndjson")
LATEST = "latest"
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
    db_path: Path | str, out: Path | str | None = None, formats: Sequence[str] = FORMATS
) -> Snapshot:
    """Write the archive as it stands to ``<out>/<date>-run<id>/`` and point ``<out>/latest``
    at it.

    The same run exported again gives the same bytes (and replaces the folder with them).
    Hold the archive lock: leftovers of a crashed export are removed.
    """
    formats = tuple(f for f in FORMATS if f in formats)
    with Archive.open(db_path, create=False, read_only=True) as archive:
        out = Path(out) if out is not None else archive.layout.exports
        captures = archive.layout.captures
        run_id = archive.latest_saved_run()["id"]
        try:
            partial = _stage(out)
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
            Page(id=f"lesson-{i}", url=url, title=title) for i, url, title in rows.lesson_pages
        ]
        name = snapshot_name(run, formats)
        files = render_files(tables, formats)
        built = {ARCHIVE_FILE: partial / ARCHIVE_FILE}
        warcs = [p for p in (captures / c for c in rows.captures) if p.is_file()]
        if warcs:
            _build_wacz(partial / WACZ_NAME, warcs, pages, run, name)
            built[WACZ_NAME] = partial / WACZ_NAME
        hashes = {file: (path.stat().st_size, _file_digest(path)) for file, path in built.items()}
        files["datapackage.json"] = _json_bytes(datapackage(run, tables, files, hashes, name))
        manifest = build_manifest(run, tables, files, hashes, name, warcs)
        files["manifest.json"] = _json_bytes(manifest)
        path = _publish(out, name, files, partial)
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
    )


def snapshot_name(run: dict, formats: Sequence[str]) -> str:
    """``2025-06-06-run12``: the day the run finished and the run; ``…-run12-csv`` when only
    some formats were asked for, since those files differ."""
    name = f"{run['finished'][:10]}-run{run['id']}"
    return name if tuple(formats) == FORMATS else "-".join((name, *formats))


def _build_wacz(target: Path, warcs: list[Path], pages: list[Page], run: dict, name: str):
    try:
        build_wacz(
            target,
            warcs,
            pages,
            created=run["finished"],
            title=f"Micro Pause lessons, snapshot {name}",
            description=f"Every capture of micropause-archive runs up to run {run['id']}: "
            "the lesson pages, listings and sitemaps as the site sent them.",
        )
    except OSError:
        raise
    except Exception as exc:
        # A capture file py-wacz cannot index (damaged on disk): the snapshot is not written.
        raise ExportError(f"cannot build {WACZ_NAME}: {type(exc).__name__}: {exc}") from None


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
    warcs: Sequence[Path] = (),
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
                    "what": "Every HTTP response the runs up to this one received (WARC), "
                    "with a CDXJ index and pages/pages.jsonl listing every lesson page.",
                    "warcs": [path.name for path in warcs],
                    "open": "ReplayWeb.page (open the file from disk) or pywb "
                    f"(wb-manager init micropause && wb-manager add micropause {WACZ_NAME})",
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


# -- writing: the only part that touches the disk --------------------------------------------


def _stage(out: Path) -> Path:
    """A new hidden folder in ``out`` to build a snapshot in, after tidying what an export
    that died left behind."""
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    partial.chmod(0o755)  # mkdtemp makes it private; a snapshot is meant to be read
    return partial


def _publish(out: Path, name: str, files: dict[str, bytes], partial: Path) -> Path:
    """Add ``files`` to the staged snapshot ``partial``, put it in place as ``<out>/<name>``
    and point ``latest`` at it.

    Whenever the process dies, ``latest`` names a whole snapshot, the old one or the new one:
    the new one is complete and on disk before anything visible moves, ``latest`` only ever
    moves by renaming a new symlink over it, and whatever it points at is never removed."""
    for file, data in files.items():
        _write(partial / file, data)
    for built in partial.iterdir():
        if built.name not in files:  # the SQLite file and the WACZ, written in place
            _fsync_file(built)
    _sync(partial)
    target = out / name
    if not target.exists():
        os.rename(partial, target)
    elif _exchange(partial, target):
        # One atomic step: <name> (and so `latest`) was the old snapshot, is now the new one;
        # the old one is in the hidden folder, removed below.
        pass
    else:
        _replace_without_exchange(out, target, partial)
    _point_latest(out, name)
    _sync(out)
    _remove_leftovers(out)
    return target


def _replace_without_exchange(out: Path, target: Path, partial: Path) -> None:
    """Where directories cannot be swapped, the old <date> is moved aside and the new one
    renamed into its place: for that instant there is no <date>. If `latest` names <date>, it
    first names a copy of the old snapshot (hard links: no data copied), so it never dangles."""
    pid = os.getpid()
    old = out / f".old-{target.name}-{pid}"
    moved_latest = _latest_is(out, target)
    if moved_latest:
        prev = out / f".prev-{target.name}-{pid}"
        _link_copy(target, prev)
        _point_latest(out, prev.name)
    try:
        os.rename(target, old)
        os.rename(partial, target)
    except BaseException:
        # Put the old snapshot back, as far as the disk lets us; `latest` names a whole one
        # throughout, and the leftovers go with the next export.
        with contextlib.suppress(OSError):
            if not target.exists() and old.exists():
                os.rename(old, target)
            if moved_latest and target.exists():
                _point_latest(out, target.name)
        raise


def _link_copy(source: Path, copy: Path) -> None:
    """``copy`` holds the files of ``source``: hard links where the filesystem has them.
    Snapshot files are never rewritten in place, so a link is as good as a copy."""
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    copy.chmod(0o755)
    for entry in source.iterdir():
        try:
            os.link(entry, copy / entry.name)
        except OSError:
            shutil.copy2(entry, copy / entry.name)
    _sync(copy)


def _point_latest(out: Path, name: str) -> None:
    """Re-point ``<out>/latest`` at ``name`` in one step: a new link renamed over it."""
    link = out / f".latest-{os.getpid()}"
    link.unlink(missing_ok=True)
    # Relative, so the exports folder can be moved or committed to git as it is.
    os.symlink(name, link)
    os.replace(link, out / LATEST)


def _latest_is(out: Path, path: Path) -> bool:
    latest = out / LATEST
    return latest.exists() and os.path.samefile(latest, path)


def _recover(out: Path) -> None:
    """Tidy what an export that died left behind (only one export runs at a time, under the
    lock): a snapshot it had moved aside goes back if its replacement never arrived; other
    leftovers go, except the one `latest` names, which stays until `latest` moves on."""
    for old in out.glob(".old-*"):
        original = out / old.name.removeprefix(".old-").rsplit("-", 1)[0]
        if not original.exists():
            os.rename(old, original)
    _remove_leftovers(out)


def _remove_leftovers(out: Path) -> None:
    for leftover in [*out.glob(".partial-*"), *out.glob(".old-*"), *out.glob(".prev-*")]:
        if not _latest_is(out, leftover):
            shutil.rmtree(leftover, ignore_errors=True)
    for link in out.glob(".latest-*"):
        link.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2). False where the system or
    the filesystem cannot; nothing has changed then."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        # On disk before the rename makes it visible: a power cut must not publish empty files.
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
