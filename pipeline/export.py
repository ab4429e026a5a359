"""Dated, citable snapshots of the archive: CSV, JSON and NDJSON files with a manifest.

``<out>/<YYYY-MM-DD>/`` holds ``lessons.*`` and ``programs.*`` in each format asked for,
``manifest.json`` (run, source, counts, schema, sha256 of every file, tool version) and
``datapackage.json`` (Frictionless Data). The date is the day (UTC) the archive's latest run
finished, and nothing inside depends on when the export ran: exporting the same archive again
gives byte-identical files, so a snapshot can be cited and checked.

A snapshot is written into a hidden directory beside its final place and renamed into place
(swapped with the old one, where the same date is exported again), then ``<out>/latest`` is
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
from .archive import LESSON_COLUMNS, PROGRAM_COLUMNS, Archive, Column
from .errors import ExportError

FORMATS = ("csv", "json", "ndjson")
LATEST = "latest"


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
    """Write the archive as it stands to ``<out>/<date>/`` and point ``<out>/latest`` at it.

    A snapshot of the same date is replaced (a second run that day supersedes the first; the
    manifest names the run). Hold the archive lock: leftovers of a crashed export are removed.
    """
    with Archive.open(db_path, create=False) as archive:
        rows = archive.snapshot_rows()
        out = Path(out) if out is not None else archive.layout.exports
    run, tables = rows.run, rows.tables
    files = render_files(tables, formats)
    files["datapackage.json"] = _json_bytes(datapackage(run, tables, files))
    manifest = build_manifest(run, tables, files)
    files["manifest.json"] = _json_bytes(manifest)
    date = manifest["snapshot"]
    try:
        path = _publish(out, date, files)
    except OSError as exc:
        raise ExportError(f"cannot write snapshot {out / date}: {exc}") from None
    return Snapshot(
        path=path,
        date=date,
        run_id=run["id"],
        counts=manifest["counts"],
        files={name: entry["sha256"] for name, entry in manifest["files"].items()},
    )


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
    writer.writerows(["" if value is None else value for value in row] for row in rows)
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


def build_manifest(run: dict, tables: dict[str, list[tuple]], files: dict[str, bytes]) -> dict:
    """What a citation needs: which run, from where, how many, what each column means, and
    a checksum of every other file in the snapshot."""
    lessons = tables["lessons"]
    removed_at = [c.name for c in LESSON_COLUMNS].index("removed_at")
    removed = sum(1 for row in lessons if row[removed_at] is not None)
    start = urlsplit(run["start_urls"][0]) if run["start_urls"] else None
    rows = {f"{table}.{fmt}": len(tables[table]) for table in TABLES for fmt in FORMATS}
    return {
        "snapshot": run["finished"][:10],
        "title": "Micro Pause lessons, archived by micropause-archive",
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
            "an empty cell is NULL",
            "json": "UTF-8, one array of objects",
            "ndjson": "UTF-8, one object per line",
        },
        "files": {
            name: {
                "bytes": len(data),
                "sha256": _digest(data),
                **({"rows": rows[name]} if name in rows else {}),
            }
            for name, data in sorted(files.items())
        },
    }


def datapackage(run: dict, tables: dict[str, list[tuple]], files: dict[str, bytes]) -> dict:
    """A Frictionless Data Package describing the data files, so tools can load and validate
    them with their types (https://specs.frictionlessdata.io/data-package/)."""
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
            resource["profile"] = "tabular-data-resource"
            resource["dialect"] = {
                "delimiter": ",",
                "lineTerminator": "\r\n",
                "quoteChar": '"',
                "doubleQuote": True,
                "header": True,
            }
        resources.append(resource)
    return {
        "profile": "data-package",
        "name": f"micropause-lessons-{run['finished'][:10]}",
        "title": "Micro Pause lessons, archived by micropause-archive",
        "created": run["finished"],
        "sources": [{"title": "Micro Pause lessons", "path": url} for url in run["start_urls"]],
        "resources": resources,
    }


# -- writing: the only part that touches the disk --------------------------------------------


def _publish(out: Path, date: str, files: dict[str, bytes]) -> Path:
    """Put ``files`` in place as ``<out>/<date>/`` and point ``latest`` at it.

    Whenever the process dies, ``latest`` names a whole snapshot, the old one or the new one:
    the new one is complete and on disk before anything visible moves, ``latest`` only ever
    moves by renaming a new symlink over it, and whatever it points at is never removed."""
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{date}-", dir=out))
    try:
        partial.chmod(0o755)  # mkdtemp makes it private; a snapshot is meant to be read
        for name, data in files.items():
            _write(partial / name, data)
        _sync(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    target = out / date
    if not target.exists():
        os.rename(partial, target)
    elif _exchange(partial, target):
        # One atomic step: <date> (and so `latest`) was the old snapshot, is now the new one;
        # the old one is in the hidden folder, removed below.
        pass
    else:
        _replace_without_exchange(out, target, partial)
    _point_latest(out, date)
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


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
