"""The captures as a WACZ, the web-archive package ReplayWeb.page and pywb open.

``captures.wacz`` holds what it takes to replay the archive as of a run: one WARC file
(``archive/run<N>-latest.warc.gz``) of the newest record of every URL the runs up to N fetched,
the response each revisit among them refers to, the newest 200 of a URL that later answered
otherwise, and the warcinfo records they name, all copied byte for byte from ``captures/``
(stored, not recompressed, so a replay tool reads a record by its offset). Unchanged pages are
not carried again in every snapshot: a snapshot's size follows the site, not its history.
With ``every_capture`` it holds the capture files as they are instead. Beside them: a CDXJ
index of every record (``indexes/index.cdx.gz`` with its ``index.idx``, py-wacz's compressed
ZipNum form), ``pages/pages.jsonl`` listing every lesson page at its newest capture with its
text (title and description, so ReplayWeb.page's search finds a lesson by any word of it),
and the ``datapackage.json`` and ``datapackage-digest.json`` that say what is inside with
sha256s.

Built with the py-wacz library (its WACZIndexer does the indexing, page matching and
datapackage), the way its ``wacz create`` does, with one difference: every date written comes
from the snapshot's run, never from the clock, so exporting the same run again gives the same
bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from warcio.archiveiterator import ArchiveIterator

from .captures import ReadStats, StoredRecord, read_records

WACZ_NAME = "captures.wacz"
PAGES = "pages/pages.jsonl"
INDEX = "indexes/index.cdx.gz"
INDEX_SUMMARY = "indexes/index.idx"
# py-wacz's default (`wacz create`): CDXJ lines per compressed block of the ZipNum index.
LINES_PER_BLOCK = 1024


@dataclass(frozen=True)
class Page:
    """A lesson page for pages.jsonl."""

    id: str
    url: str
    title: str
    text: str = ""  # what ReplayWeb.page searches besides the title


@dataclass
class CaptureFiles:
    """The capture files a snapshot was built from, and the ones it could not use whole."""

    used: list[str] = field(default_factory=list)
    # file name → what was wrong: missing, or how many of its records could not be read.
    damaged: dict[str, str] = field(default_factory=dict)


def whole_captures(warcs: Sequence[Path], files: CaptureFiles) -> list[Path]:
    """The capture files among ``warcs`` that can be packed whole: every record intact. The
    others are left out and named in ``files``."""
    whole = []
    for path in warcs:
        if not path.is_file():
            files.damaged[path.name] = "missing"
            continue
        stats = ReadStats()
        try:
            for _record in read_records(path, stats):
                pass
        except OSError as exc:
            files.damaged[path.name] = f"unreadable: {exc.strerror or exc}"
            continue
        if stats.skipped:
            files.damaged[path.name] = f"{stats.skipped} unreadable record(s): left out whole"
            continue
        files.used.append(path.name)
        whole.append(path)
    return whole


def latest_captures(target: Path, warcs: Sequence[Path], files: CaptureFiles) -> bool:
    """Write into ``target`` (a WARC file) the records that replay the captures ``warcs`` as
    of the last of them: per URL its newest record, the newest 200 before it when that one is
    not a 200 (a removed lesson's page, as it was), the response a revisit refers to, and the
    warcinfo records they name; in the order they were written. A file or a record that
    cannot be read is left out and named in ``files``. Returns whether anything was
    written."""
    records: list[_Entry] = []
    for position, path in enumerate(warcs):
        if not path.is_file():
            files.damaged[path.name] = "missing"
            continue
        stats = ReadStats()
        try:
            # Headers only are kept: the bodies of every run would not fit in memory.
            found = [_Entry.of(position, path, r) for r in read_records(path, stats)]
        except OSError as exc:
            files.damaged[path.name] = f"unreadable: {exc.strerror or exc}"
            continue
        if stats.skipped:
            files.damaged[path.name] = f"{stats.skipped} unreadable record(s) left out"
        if found:
            files.used.append(path.name)
        records.extend(found)
    by_id = {entry.record_id: entry for entry in records}
    newest: dict[str, _Entry] = {}
    newest_ok: dict[str, _Entry] = {}
    for entry in records:
        # Requests are history (captures/ keeps them), not what a replay reads.
        if entry.kind not in ("response", "revisit"):
            continue
        # A revisit replays as the body it confirms only when that body is here and the
        # revisit carries its status (not a bare 304, as captures written before
        # identical-payload-digest revisits are): otherwise it would replay as nothing.
        if entry.kind == "revisit" and (entry.refers_to not in by_id or entry.status != "200"):
            continue
        # Later in the list is later in time: files oldest run first, records as written.
        newest[entry.url] = entry
        if entry.kind == "response" and entry.status == "200":
            newest_ok[entry.url] = entry
    chosen: dict[str, _Entry] = {}
    for url, entry in newest.items():
        for kept in (entry, newest_ok.get(url)):
            if kept is None:
                continue
            chosen[kept.record_id] = kept
            if kept.kind == "revisit":
                chosen[kept.refers_to] = by_id[kept.refers_to]
    for entry in list(chosen.values()):
        if (info := by_id.get(entry.warcinfo_id)) is not None:
            chosen[info.record_id] = info
    ordered = sorted(chosen.values(), key=lambda e: (e.position, e.offset))
    with open(target, "wb") as out:
        for entry in ordered:
            with open(entry.path, "rb") as f:
                f.seek(entry.offset)
                out.write(f.read(entry.length))
    return bool(ordered)


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where one intact record lies and what the choice of the newest captures reads of it."""

    position: int  # of its file among the capture files, oldest run first
    path: Path
    offset: int
    length: int
    kind: str
    url: str
    record_id: str
    refers_to: str
    warcinfo_id: str
    status: str | None

    @classmethod
    def of(cls, position: int, path: Path, stored: StoredRecord) -> _Entry:
        http = stored.record.http_headers
        return cls(
            position,
            path,
            stored.offset,
            stored.length,
            stored.record.rec_type,
            stored.header("WARC-Target-URI") or "",
            stored.header("WARC-Record-ID") or "",
            stored.header("WARC-Refers-To") or "",
            stored.header("WARC-Warcinfo-ID") or "",
            http.get_statuscode() if http is not None else None,
        )


def newest_captures(warcs: Iterable[Path], urls: set[str]) -> dict[str, str]:
    """The WARC-Date of the newest 200 capture for each of ``urls`` in ``warcs``: a response,
    or a revisit that replays as the 200 it refers to."""
    newest: dict[str, str] = {}
    for path in warcs:
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type not in ("response", "revisit"):
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                if url in urls and record.http_headers.get_statuscode() == "200":
                    date = record.rec_headers.get_header("WARC-Date")
                    if date > newest.get(url, ""):
                        newest[url] = date
    return newest


def build_wacz(
    target: Path,
    warcs: Sequence[Path],
    pages: Sequence[Page],
    *,
    created: str,
    title: str,
    description: str,
) -> int:
    """Write ``target`` from the WARC files ``warcs``; ``pages`` at their newest 200 capture
    become pages.jsonl (a page never captured is left out). ``created`` (ISO 8601, UTC) dates
    every entry. Returns how many pages were listed."""
    # Imported here: the crawl commands need none of py-wacz's dependencies.
    from wacz.util import construct_passed_pages_dict
    from wacz.waczindexer import WACZIndexer

    moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    stamp = moment.timetuple()[:6]
    captured = newest_captures(warcs, {page.url for page in pages})
    listed = [
        json.dumps(
            {"id": p.id, "url": p.url, "title": p.title, "text": p.text, "ts": captured[p.url]}
        )
        for p in pages
        if p.url in captured
    ]
    passed = construct_passed_pages_dict(listed)
    # py-wacz reports its progress on stdout; `micropause run --quiet` prints nothing.
    with contextlib.redirect_stdout(io.StringIO()), zipfile.ZipFile(target, "w") as wacz:
        summary = io.BytesIO()
        with wacz.open(zipfile.ZipInfo(INDEX, stamp), "w") as data:
            indexer = WACZIndexer(
                io.TextIOWrapper(summary, "utf-8", write_through=True),
                [str(path) for path in warcs],
                sort=True,
                post_append=True,
                compress=data,
                lines=LINES_PER_BLOCK,
                digest_records=True,
                fields="referrer,req.http:cookie",
                data_out_name="index.cdx.gz",
                hash_type="sha256",
                main_url=None,
                main_ts=None,
                detect_pages=False,
                passed_pages_dict=passed,
                extract_text=False,
            )
            indexer.process_all()
        _write(wacz, INDEX_SUMMARY, stamp, summary.getvalue(), zipfile.ZIP_DEFLATED)
        for path in warcs:
            # Stored, not deflated: replay tools seek to a record's offset inside the file.
            with (
                wacz.open(zipfile.ZipInfo(f"archive/{path.name}", stamp), "w") as out,
                open(path, "rb") as f,
            ):
                while chunk := f.read(1 << 20):
                    out.write(chunk)
        # In the order the lessons were given, not the indexer's (the order records were read).
        found = {page["url"]: page for page in indexer.pages.values()}
        ordered = [found[p.url] for p in pages if p.url in found]
        lines = indexer.serialize_json_pages(ordered, id="pages", title="Lesson pages")
        _write(wacz, PAGES, stamp, "".join(lines).encode("utf-8"), zipfile.ZIP_DEFLATED)
        options = SimpleNamespace(title=title, desc=description, date=None)
        package = json.loads(indexer.generate_datapackage(options, wacz))
        package["created"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # not the clock's time
        package_bytes = json.dumps(package, indent=2).encode("utf-8")
        _write(wacz, "datapackage.json", stamp, package_bytes, zipfile.ZIP_DEFLATED)
        digest = indexer.generate_datapackage_digest(package_bytes).encode("utf-8")
        _write(wacz, "datapackage-digest.json", stamp, digest, zipfile.ZIP_DEFLATED)
    return len(ordered)


def _write(wacz: zipfile.ZipFile, name: str, stamp, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, stamp)
    info.compress_type = compression
    wacz.writestr(info, data)
