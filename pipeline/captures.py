"""Raw HTTP exchanges kept as WARC, so any run can be re-extracted offline (`reparse`).

One file per run, `captures/<run-id>.warc.gz`, gzip per record (readable by warcio, pywb and
every WARC tool). Each response is written with the request that asked for it and the digests
warcio computes; every record names the file's warcinfo record, which says who crawled, as whom
and why. A 304 is written as a `revisit` of the capture whose body it confirms, never as a copy
of the body, in the form replay tools resolve to that body.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from . import __version__
from .config import Config
from .fetch import Fetched

SERVER_NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
# The body is stored de-chunked, so the header that described the chunking would mislead a
# replay tool; Content-Encoding stays, because the body is stored still encoded.
_DROPPED_HEADERS = frozenset({"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class CaptureRef:
    """Where a URL's body lives: a WARC file (relative to the captures folder) and offset."""

    file: str
    offset: int
    record_id: str
    date: str


@dataclass(frozen=True, slots=True)
class CapturedResponse:
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # Content-Encoding undone
    date: str


class CaptureWriter:
    """Called with every HTTP response a run receives; remembers each URL's newest capture."""

    def __init__(
        self,
        directory: Path,
        run_id: int,
        earlier: dict[str, CaptureRef],
        info: Mapping[str, str] | None = None,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = f"{run_id}.warc.gz"
        self.path = directory / self.name
        # Appended, never truncated: a run id reused (an archive restored from a backup) must
        # not overwrite captures already on disk.
        self._file = open(self.path, "ab")  # noqa: SIM115 - open for the whole run
        self._writer = WARCWriter(self._file, gzip=True, warc_version="1.1")
        self._earlier = earlier
        self.latest: dict[str, CaptureRef] = {}
        self._info_id = self._write_info(info or {})

    def __call__(self, response: Fetched) -> None:
        http_headers = StatusAndHeaders(
            f"{response.status} {_reason(response.status)}",
            [(k, v) for k, v in response.headers if k.lower() not in _DROPPED_HEADERS],
            protocol=_protocol(response.http_version),
        )
        date = response.fetched_at.replace("+00:00", "Z")
        common = {"WARC-Date": date, "WARC-Warcinfo-ID": self._info_id}
        if response.ip_address:
            common["WARC-IP-Address"] = response.ip_address
        offset = self._file.tell()
        earlier = self.latest.get(response.url) or self._earlier.get(response.url)
        if response.status == 304 and earlier is not None:
            record = self._revisit(response.url, earlier, http_headers, common)
        else:
            body = response.raw if response.raw is not None else response.body
            record = self._writer.create_warc_record(
                response.url,
                "response",
                payload=BytesIO(body),
                length=len(body),
                http_headers=http_headers,
                warc_headers_dict=dict(common),
            )
        request = self._writer.create_warc_record(
            response.url,
            "request",
            http_headers=StatusAndHeaders(
                f"GET {_target(response.url)} {_protocol(response.http_version)}",
                list(response.request_headers),
                is_http_request=True,
            ),
            warc_headers_dict=dict(common),
        )
        self._writer.write_request_response_pair(request, record)
        if record.rec_type == "response":
            self.latest[response.url] = CaptureRef(
                self.name, offset, record.rec_headers.get_header("WARC-Record-ID"), date
            )

    def _revisit(self, url: str, earlier: CaptureRef, http_headers, common: dict[str, str]):
        """A 304 as replay tools resolve it: the identical-payload-digest profile with the
        original's status line, headers and payload digest, as Heritrix and Browsertrix write
        deduplicated content. pywb and ReplayWeb.page look the payload up by that digest and
        WARC-Refers-To-*; a revisit carrying the 304 itself replays as an empty page. Where
        the original cannot be read back, the 304 is kept as it came (server-not-modified)."""
        refers = {"WARC-Refers-To": earlier.record_id}
        original = self._original(earlier)
        if original is not None:
            original_headers, digest = original
            record = self._writer.create_revisit_record(
                url,
                digest=digest,
                refers_to_uri=url,
                refers_to_date=earlier.date,
                http_headers=original_headers,
                warc_headers_dict={**common, **refers},
            )
            return record
        return self._writer.create_warc_record(
            url,
            "revisit",
            http_headers=http_headers,
            warc_headers_dict={
                **common,
                **refers,
                "WARC-Profile": SERVER_NOT_MODIFIED,
                "WARC-Refers-To-Target-URI": url,
                "WARC-Refers-To-Date": earlier.date,
            },
        )

    def _original(self, ref: CaptureRef) -> tuple[StatusAndHeaders, str] | None:
        """The HTTP headers and payload digest of the response record ``ref`` names."""
        if ref.file == self.name:
            self._file.flush()
        try:
            with open(self.directory / ref.file, "rb") as f:
                f.seek(ref.offset)
                record = next(iter(ArchiveIterator(f)), None)
                if (
                    record is None
                    or record.rec_type != "response"
                    or record.rec_headers.get_header("WARC-Record-ID") != ref.record_id
                ):
                    return None
                digest = record.rec_headers.get_header("WARC-Payload-Digest")
                headers = record.http_headers
        except (ArchiveLoadFailed, EOFError, OSError, ValueError, zlib.error):
            return None
        if not digest or headers is None:
            return None
        return StatusAndHeaders(headers.statusline, list(headers.headers), headers.protocol), digest

    def close(self) -> None:
        """Flush to disk before the archive records where the captures are."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _write_info(self, info: Mapping[str, str]) -> str:
        fields = {
            "software": f"micropause-archive/{__version__}",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
            "warc-format/warc-1.1/",
            **{key: value for key, value in info.items() if value},
        }
        record = self._writer.create_warcinfo_record(self.name, fields)
        self._writer.write_record(record)
        return record.rec_headers.get_header("WARC-Record-ID")


def warcinfo_fields(config: Config) -> dict[str, str]:
    """What a capture file says about the crawl that wrote it, in the fields Heritrix and
    Browsertrix Crawler use: who ran it, what for, as whom, under which robots policy."""
    return {
        "operator": config.warc.operator,
        "description": config.warc.purpose,
        "isPartOf": config.site.name,
        "http-header-user-agent": config.politeness.user_agent,
        # Every request is checked against the site's robots.txt, which is never ignored.
        "robots": "obey",
    }


def read_body(directory: Path, ref: CaptureRef) -> bytes | None:
    """The body of the response record ``ref`` names, decoded; None when it cannot be read or
    is not intact."""
    try:
        with open(directory / ref.file, "rb") as f:
            offset, length, member = next(_members(f, ref.offset), (0, 0, None))
    except OSError:
        return None
    stored = _stored(offset, length, member) if member is not None else None
    if stored is None or stored.header("WARC-Record-ID") != ref.record_id:
        return None
    return stored.body


@dataclass
class ReadStats:
    """What reading the captures could not use: records cut short or corrupt, skipped."""

    skipped: int = 0


_GZIP_MEMBER = b"\x1f\x8b\x08"
_SCAN_CHUNK = 1 << 20
_READ_CHUNK = 1 << 16
# Far above the largest response a crawl keeps (politeness.max_response_bytes) plus headers.
_MAX_MEMBER_BYTES = 256 << 20
_INFLATE_STEP = 1 << 20


def read_responses(directory: Path, stats: ReadStats | None = None) -> Iterator[CapturedResponse]:
    """Every response record of every capture file, oldest run first, bodies decoded."""
    stats = stats if stats is not None else ReadStats()
    for path in sorted(directory.glob("*.warc.gz"), key=_run_number):
        for stored in read_records(path, stats):
            record = stored.record
            if record.rec_type != "response":
                continue
            yield CapturedResponse(
                url=record.rec_headers.get_header("WARC-Target-URI"),
                status=int(record.http_headers.get_statuscode()),
                headers=list(record.http_headers.headers),
                body=stored.body,
                date=record.rec_headers.get_header("WARC-Date"),
            )


@dataclass(frozen=True)
class StoredRecord:
    """One intact record of a capture file: where its gzip member lies, so it can be copied
    as it is, and the record read from it (headers parsed, body read and checked)."""

    offset: int
    length: int
    record: ArcWarcRecord
    body: bytes

    def header(self, name: str) -> str | None:
        return self.record.rec_headers.get_header(name)


def read_records(path: Path, stats: ReadStats | None = None) -> Iterator[StoredRecord]:
    """Every intact record of one capture file, in file order.

    A run killed mid-write leaves its last record cut short, and a damaged disk can corrupt
    one in the middle: such a record is skipped (counted in ``stats``), never parsed as if
    complete, and reading resumes at the next record. Each record is its own gzip member, so
    the members are split here and each is read alone (warcio, given a damaged member, loses
    its place in the rest); none is inflated past _MAX_MEMBER_BYTES (a gzip bomb)."""
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        for offset, length, member in _members(f):
            stored = _stored(offset, length, member) if member is not None else None
            if stored is None:
                stats.skipped += 1
                continue
            yield stored


def _stored(offset: int, length: int, member: bytes) -> StoredRecord | None:
    """The record one inflated gzip member holds, if it is whole and its digests check out."""
    try:
        record = next(iter(ArchiveIterator(BytesIO(member), check_digests=True)), None)
        if record is None:
            return None
        body = record.content_stream().read()
    except (ArchiveLoadFailed, EOFError, OSError, ValueError, zlib.error):
        return None
    # Every record this tool writes carries digests; one that cannot be verified is not
    # trusted. warcio leaves a revisit's unchecked (its payload digest is the original's), so
    # its block is checked here.
    if record.rec_type == "revisit":
        intact = _block_intact(member, record)
    elif record.rec_type in ("response", "request"):
        intact = record.digest_checker.passed is True
    else:
        intact = record.digest_checker.passed is not False
    return StoredRecord(offset, length, record, body) if intact else None


def _members(f, start: int = 0) -> Iterator[tuple[int, int, bytes | None]]:
    """Each gzip member of the file as (offset, compressed length, inflated bytes); None for
    the bytes of a member that is damaged or cut short (reading then resumes at the next
    member start found after it), from offset ``start`` on.

    After damage, a member start found by scanning may be compressed bytes that happen to
    look like one: such a false start is part of the same damage, not another record, so it
    yields nothing. A damaged member is one record (one None) when it starts where an intact
    member ended, or when its first inflated bytes are a WARC record's ("WARC/")."""
    pending = b""
    at_boundary = True
    f.seek(start)
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts, size, consumed, started = [], 0, 0, False
        try:
            while not inflater.eof:
                if inflater.unconsumed_tail:
                    chunk = inflater.unconsumed_tail
                elif pending:
                    chunk, pending = pending, b""
                else:
                    chunk = f.read(_READ_CHUNK)
                if not chunk:
                    break
                # A little at a time: a gzip bomb never inflates far before it is refused.
                part = inflater.decompress(chunk, min(_INFLATE_STEP, _MAX_MEMBER_BYTES + 1 - size))
                parts.append(part)
                size += len(part)
                if size > _MAX_MEMBER_BYTES:
                    raise zlib.error("member larger than any record this tool writes")
                if size >= 5 and not started:
                    if b"".join(parts)[:5] != b"WARC/":
                        raise zlib.error("not a WARC record")
                    started = True
                consumed += len(chunk) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
        except zlib.error:
            damaged_record = at_boundary or _is_record(parts)
            parts.clear()  # a bomb's inflated bytes go now, not when the next member starts
            if damaged_record:
                yield start, 0, None
            at_boundary = False
            start = _next_member(f, start + 1)
            if start is None:
                return
            f.seek(start)
            pending = b""
            continue
        if not inflater.eof:
            if (size or consumed) and (at_boundary or _is_record(parts)):
                yield start, consumed, None  # cut short at the end of the file
            return
        yield start, consumed, b"".join(parts)
        at_boundary = True
        start += consumed
        pending = inflater.unused_data


def _block_intact(member: bytes, record: ArcWarcRecord) -> bool:
    """Whether the record's block (what follows its WARC headers) has its WARC-Block-Digest."""
    declared = record.rec_headers.get_header("WARC-Block-Digest") or ""
    algorithm, _, value = declared.partition(":")
    length = record.rec_headers.get_header("Content-Length") or ""
    end = member.find(b"\r\n\r\n")
    if algorithm.lower() != "sha1" or not length.isdigit() or end < 0:
        return False
    block = member[end + 4 : end + 4 + int(length)]
    return base64.b32encode(hashlib.sha1(block).digest()).decode() == value.upper()


def _is_record(parts: list[bytes]) -> bool:
    return next((part for part in parts if part), b"")[:5] == b"WARC/"


def _next_member(f, offset: int) -> int | None:
    """Where the next gzip member starts at or after ``offset``, reading a chunk at a time."""
    f.seek(offset)
    carry = b""
    while chunk := f.read(_SCAN_CHUNK):
        data = carry + chunk
        found = data.find(_GZIP_MEMBER)
        if found >= 0:
            return offset - len(carry) + found
        offset += len(chunk)
        carry = data[-(len(_GZIP_MEMBER) - 1) :]
    return None


def _run_number(path: Path) -> tuple[int, str]:
    stem = path.name.split(".", 1)[0]
    return (int(stem), path.name) if stem.isdigit() else (-1, path.name)


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _protocol(http_version: str) -> str:
    return http_version if http_version.startswith("HTTP/") else "HTTP/1.1"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
