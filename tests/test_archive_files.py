"""The archive's own files when they are damaged or a process dies mid-write: a corrupt capture
record costs that record only, `latest` always names a whole snapshot, and a file that is not an
archive is refused in one line and left as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from pipeline import export as export_module
from pipeline.captures import ReadStats, read_responses
from pipeline.cli import main
from pipeline.export import export_snapshot
from pipeline.reparse import reparse
from pipeline.runs import captures_dir, crawl_into_archive
from tests.conftest import CONFIG_PATH, START_SLUG, local_config
from tests.site.server import FixtureSite


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def crawled(tmp_path):
    """An archive of one crawl, and the configuration that made it."""
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
    return db_path, config


@pytest.fixture
def archive(crawled):
    return crawled[0]


def test_a_corrupt_record_in_the_middle_of_a_capture_costs_that_record_only(crawled):
    archive, config = crawled
    warc = captures_dir(archive) / "1.warc.gz"
    everything = list(read_responses(captures_dir(archive)))
    data = bytearray(warc.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = os.urandom(64)  # inside one record's gzip member
    warc.write_bytes(bytes(data))
    stats = ReadStats()
    survivors = list(read_responses(captures_dir(archive), stats))
    assert stats.skipped >= 1
    # Records after the damage are read again, not only those before it.
    assert len(survivors) >= len(everything) - 3
    assert survivors[-1].url == everything[-1].url
    with sqlite3.connect(archive) as conn:
        conn.execute("UPDATE lessons SET description = 'stale', content_hash = 'stale'")
    conn.close()
    report = reparse(config, archive)
    assert report.captures_skipped == stats.skipped
    stale = (
        Database(archive)
        .execute("SELECT count(*) FROM lessons WHERE description = 'stale'")
        .fetchone()[0]
    )
    assert stale <= 2  # at most the lessons whose only capture was damaged
    result = invoke("reparse", "--db", archive, "--config", CONFIG_PATH)
    assert result.exit_code == 0, result.output
    assert f"{stats.skipped} skipped (cut short or corrupt)" in result.output


def test_reexporting_a_date_swaps_the_snapshot_in_one_step(archive, tmp_path):
    out = tmp_path / "exports"
    first = export_snapshot(archive, out)
    seen = []
    real = export_module._exchange

    def exchange(a, b):
        swapped = real(a, b)
        seen.append(((out / "latest" / "manifest.json").is_file(), swapped))
        return swapped

    export_module._exchange = exchange
    try:
        export_snapshot(archive, out)
    finally:
        export_module._exchange = real
    assert seen == [(True, True)]
    assert (out / "latest").resolve() == first.path.resolve()
    assert (out / "latest" / "manifest.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_export_killed_between_its_renames_is_undone_by_the_next(archive, tmp_path, monkeypatch):
    out = tmp_path / "exports"
    export_snapshot(archive, out)
    before = hashlib.sha256((out / "latest" / "lessons.csv").read_bytes()).hexdigest()
    # A filesystem without an atomic exchange, and a process killed after moving the old
    # snapshot aside.
    monkeypatch.setattr(export_module, "_exchange", lambda a, b: False)
    renames = []
    real_rename = os.rename

    def rename(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        export_snapshot(archive, out)
    monkeypatch.setattr(os, "rename", real_rename)
    assert any(p.name.startswith(".old-") for p in out.iterdir())
    export_snapshot(archive, out)
    after = hashlib.sha256((out / "latest" / "lessons.csv").read_bytes()).hexdigest()
    assert after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def not_sqlite(path):
    path.write_bytes(os.urandom(4096))


def text_file(path):
    path.write_text("lessons,programs\n", encoding="utf-8")


def foreign_db(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")


def truncated_archive(path):
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    for leftover in path.parent.glob(path.name + "-*"):
        leftover.unlink()
    shutil.rmtree(captures_dir(path), ignore_errors=True)
    path.write_bytes(b"\0" * 100 + data[100 : len(data) // 3])


@pytest.mark.parametrize("make", [not_sqlite, text_file, foreign_db, truncated_archive])
@pytest.mark.parametrize("command", ["status", "export", "reparse", "crawl", "run"])
def test_a_file_that_is_not_an_archive_is_refused_in_one_line_and_left_alone(
    tmp_path, make, command
):
    db_path = tmp_path / "micropause.db"
    make(db_path)
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    args = [command, "--db", db_path]
    if command in ("crawl", "run", "reparse"):
        args += ["--config", CONFIG_PATH]
    if command in ("crawl", "run"):
        # Nothing listens there: the archive is checked before anything is fetched.
        args += ["--start-url", f"http://127.0.0.1:9/video/{START_SLUG}/"]
    if command == "run":
        args += ["--out", tmp_path / "exports"]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ")
    assert "Traceback" not in result.output
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest
