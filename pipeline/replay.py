"""The captures as a WACZ, the web-archive package ReplayWeb.page and pywb open.

``captures.wacz`` holds the WARC files as they are (``archive/<run>.warc.gz``, stored, not
recompressed, so a replay tool reads a record by its offset), a CDXJ index of every record
(``indexes/index.cdx.gz`` with its ``index.idx``, py-wacz's compressed ZipNum form),
``pages/pages.jsonl`` listing every lesson page at its newest capture, and the
``datapackage.json`` and ``datapackage-digest.json`` that say what is inside with sha256s.

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from warcio.archiveiterator import ArchiveIterator

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


def newest_captures(warcs: Iterable[Path], urls: set[str]) -> dict[str, str]:
    """The WARC-Date of the newest 200 response for each of ``urls`` in ``warcs``."""
    newest: dict[str, str] = {}
    for path in warcs:
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "response":
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
        json.dumps({"id": p.id, "url": p.url, "title": p.title, "ts": captured[p.url]})
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
