"""Snapshots that never change under a citation: named by their run, the archive inside as
read-only SQLite, the captures as a WACZ that the reference validator accepts."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import zipfile

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.archive import Layout
from pipeline.captures import read_responses
from pipeline.config import load_config
from pipeline.errors import SiteUnreachable
from pipeline.export import export_snapshot
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH


def files_of(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def snapshot(recrawled_archive, tmp_path_factory):
    return export_snapshot(recrawled_archive.db_path, tmp_path_factory.mktemp("exports"))


def test_two_runs_on_one_day_give_two_snapshot_folders(site, config, tmp_path):
    db_path, out = tmp_path / "micropause.db", tmp_path / "exports"
    crawl_into_archive(config, db_path)
    first = export_snapshot(db_path, out)
    site.edit("the-heavy-arms", description=["Edited the same day."])
    crawl_into_archive(config, db_path)
    second = export_snapshot(db_path, out)
    assert first.date == second.date
    assert first.name != second.name
    assert (first.name, second.name) == (
        f"{first.date}-run{first.run_id}",
        f"{second.date}-run{second.run_id}",
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name, "latest"])
    assert os.readlink(out / "latest") == second.name
    # The first snapshot is untouched: its manifest still checks out.
    manifest = json.loads((first.path / "manifest.json").read_bytes())
    assert manifest["run"]["id"] == first.run_id
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((first.path / name).read_bytes()).hexdigest() == entry["sha256"]


def test_re_exporting_the_same_run_is_byte_identical_even_after_a_failed_run(
    site, config, tmp_path
):
    db_path, out = tmp_path / "micropause.db", tmp_path / "exports"
    crawl_into_archive(config, db_path)
    first = export_snapshot(db_path, out)
    before = files_of(first.path)
    # A run that fails (the site is gone) adds a row to `runs` and changes nothing else.
    gone = load_config(CONFIG_PATH).with_start_urls(("http://127.0.0.1:9/video/x/",))
    with pytest.raises(SiteUnreachable):
        crawl_into_archive(gone.with_politeness(delay=0.0, jitter=0.0), db_path)
    again = export_snapshot(db_path, out)
    assert again.name == first.name
    assert files_of(again.path) == before


def test_a_subset_of_formats_is_a_snapshot_of_its_own(crawled_archive, tmp_path):
    full = export_snapshot(crawled_archive, tmp_path)
    csv_only = export_snapshot(crawled_archive, tmp_path, ("csv",))
    assert csv_only.name == f"{full.name}-csv"
    assert "lessons.json" in files_of(full.path)  # the full one still has every file


def test_the_snapshot_holds_the_archive_as_a_read_only_sqlite_file(snapshot):
    path = snapshot.path / "micropause.db"
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        # Self-contained: no write-ahead log to carry along.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.row_factory = sqlite3.Row
        stored = [
            dict(row)
            for row in conn.execute(
                "SELECT lessons.*, programs.name AS program FROM lessons "
                "LEFT JOIN programs ON programs.id = lessons.program_id"
            )
        ]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM lessons")
    finally:
        conn.close()
    exported = read_csv(snapshot.path / "lessons.csv")
    as_text = {
        row["id"]: {k: "" if v is None else str(v) for k, v in row.items()} for row in stored
    }
    assert {int(row["id"]): row for row in exported} == {
        lesson_id: {k: as_text[lesson_id][k] for k in exported[0]} for lesson_id in as_text
    }
    assert not (snapshot.path / "micropause.db-wal").exists()


def test_the_manifest_lists_every_file_with_its_checksum_and_says_how_to_cite(snapshot):
    manifest = json.loads((snapshot.path / "manifest.json").read_bytes())
    assert set(manifest["files"]) == {p.name for p in snapshot.path.iterdir()} - {"manifest.json"}
    assert {"micropause.db", "captures.wacz"} <= set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((snapshot.path / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["snapshot"] == snapshot.name
    assert f"snapshot {snapshot.name}" in manifest["cite"]["text"]
    assert "sha256" in manifest["cite"]["how"]


def test_captures_wacz_passes_the_reference_validator(snapshot):
    result = subprocess.run(
        [sys.executable, "-m", "wacz", "validate", "-f", str(snapshot.path / "captures.wacz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation succeeded" in result.stdout


def test_captures_wacz_pages_list_every_lesson_page(snapshot):
    with zipfile.ZipFile(snapshot.path / "captures.wacz") as wacz:
        header, *pages = [json.loads(line) for line in wacz.read("pages/pages.jsonl").splitlines()]
    assert header["format"] == "json-pages-1.0"
    lessons = read_csv(snapshot.path / "lessons.csv")
    assert sorted(page["url"] for page in pages) == sorted(row["url"] for row in lessons)
    removed = [row["url"] for row in lessons if row["removed_at"]]
    assert removed and set(removed) <= {page["url"] for page in pages}  # as they were
    assert {page["title"] for page in pages} >= {"A new pause", "The heavy arms"}


def index_lines(wacz: zipfile.ZipFile) -> list[dict]:
    """Every CDXJ line of the WACZ's index (a ZipNum index: gzip members of CDXJ lines)."""
    lines = gzip.decompress(wacz.read("indexes/index.cdx.gz")).decode("utf-8").splitlines()
    return [json.loads(line.split(" ", 2)[2]) for line in lines]


def test_a_lesson_read_back_through_the_cdxj_index_is_the_captured_body(
    recrawled_archive, snapshot
):
    url = recrawled_archive.url("the-heavy-arms")
    with zipfile.ZipFile(snapshot.path / "captures.wacz") as wacz:
        entries = [e for e in index_lines(wacz) if e["url"] == url and e["status"] == "200"]
        # Only the edited page of the second run: a snapshot holds the newest capture of a
        # URL, not every earlier one again (captures/ keeps them).
        (newest,) = entries
        warc = wacz.read(f"archive/{newest['filename']}")
    offset, length = int(newest["offset"]), int(newest["length"])
    record = next(ArchiveIterator(io.BytesIO(warc[offset : offset + length])))
    assert record.rec_headers.get_header("WARC-Target-URI") == url
    body = record.content_stream().read()
    captured = [
        r.body
        for r in read_responses(Layout(recrawled_archive.db_path).captures)
        if r.url == url and r.status == 200
    ]
    assert body == captured[-1]
    assert b"Let the arms hang &lt;heavy&gt; &amp; loose." in body
