"""The archive's own files when they are damaged or a process dies mid-write: a corrupt capture
record costs that record only, `latest` always names a whole snapshot, and a file that is not an
archive is refused in one line and left as it was."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3

import pytest
from click.testing import CliRunner
from sqlite_utils import Database
from warcio.archiveiterator import ArchiveIterator

from pipeline import folders as export_module
from pipeline import publish
from pipeline.archive import Layout
from pipeline.captures import ReadStats, read_responses
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.export import export_snapshot
from pipeline.reparse import reparse
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, START_SLUG, copy_with_captures, local_config
from tests.site.server import FixtureSite


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One crawl of the fixture site, copied by each test that changes it."""
    db_path = tmp_path_factory.mktemp("source") / "micropause.db"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
    return db_path


@pytest.fixture
def archive(source, tmp_path):
    """A private copy of the crawled archive and its captures."""
    return copy_with_captures(source, tmp_path)


# -- 1. a damaged record in a capture file costs that record only ----------------------------


def records(warc) -> list[tuple[int, int, str, str | None]]:
    """(offset, length, type, target URL) of every record of an intact WARC file."""
    found = []
    with open(warc, "rb") as f:
        iterator = ArchiveIterator(f)
        for record in iterator:
            record.content_stream().read()
            found.append(
                (
                    iterator.get_record_offset(),
                    iterator.get_record_length(),
                    record.rec_type,
                    record.rec_headers.get_header("WARC-Target-URI"),
                )
            )
    return found


def responses(directory) -> tuple[list[tuple[str, str]], int]:
    stats = ReadStats()
    read = [(r.url, r.date) for r in read_responses(directory, stats)]
    return read, stats.skipped


def lesson_in_the_middle(archive):
    """A lesson's page record from the middle of the capture file, and every record."""
    warc = Layout(archive).captures / "1.warc.gz"
    found = records(warc)
    lessons = {url for (url,) in Database(archive).execute("SELECT url FROM lessons")}
    middle = [
        i for i, (_, _, kind, url) in enumerate(found) if kind == "response" and url in lessons
    ]
    return warc, found, middle[len(middle) // 2]


def test_a_corrupt_record_in_the_middle_of_a_capture_costs_that_record_only(archive):
    warc, found, hit = lesson_in_the_middle(archive)
    before, skipped = responses(Layout(archive).captures)
    assert skipped == 0
    offset, length, _, damaged_url = found[hit]
    data = bytearray(warc.read_bytes())
    for i in range(offset + length // 2, offset + length // 2 + 32):
        data[i] ^= 0xFF  # inside that record's gzip member
    warc.write_bytes(bytes(data))

    after, skipped = responses(Layout(archive).captures)
    assert skipped == 1
    # Every other record is read, those after the damaged one included.
    assert after == [r for r in before if r[0] != damaged_url]

    db = Database(archive)
    db.execute("UPDATE lessons SET description = 'stale', content_hash = 'stale'")
    db.conn.commit()
    report = reparse(load_config(CONFIG_PATH), archive)
    assert report.captures_skipped == 1
    rows = db.execute(
        "SELECT lessons.url, description, capture_offset FROM lessons "
        "JOIN pages ON pages.url = lessons.url"
    ).fetchall()
    later = [url for url, _, at in rows if at > offset]
    assert later, "the damaged record should have lessons captured after it"
    # Rebuilt: every lesson whose record comes after the damage, and before it; only the
    # lesson whose one capture was damaged keeps what it had.
    assert {url for url, description, _ in rows if description == "stale"} == {damaged_url}

    result = invoke("reparse", "--db", archive, "--config", CONFIG_PATH)
    assert result.exit_code == 0, result.output
    assert "1 skipped (cut short or corrupt)" in result.output


def test_a_false_gzip_header_inside_the_damage_is_not_counted_as_another_record(archive):
    warc, found, hit = lesson_in_the_middle(archive)
    before, _ = responses(Layout(archive).captures)
    offset, length, _, damaged_url = found[hit]
    # What resynchronising finds first: a gzip member header (flags 0) followed by a deflate
    # block of the reserved type, i.e. damage that looks like the start of a record.
    fake = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 16
    data = bytearray(warc.read_bytes())
    data[offset + length // 2 : offset + length // 2 + len(fake)] = fake
    warc.write_bytes(bytes(data))

    after, skipped = responses(Layout(archive).captures)
    assert after == [r for r in before if r[0] != damaged_url]
    assert skipped == 1


def test_a_record_cut_short_at_the_end_of_a_file_is_still_skipped(archive):
    warc = Layout(archive).captures / "1.warc.gz"
    found = records(warc)
    before, _ = responses(Layout(archive).captures)
    offset, length, _, url = next(r for r in reversed(found) if r[2] == "response")
    warc.write_bytes(warc.read_bytes()[: offset + length // 2])  # a run killed mid-write

    after, skipped = responses(Layout(archive).captures)
    assert after == [r for r in before if r[0] != url]
    assert skipped == 1


# -- 2. `latest` names a whole snapshot whenever an export is killed -------------------------


def export_killed_at(step: int, db_path, out, *, exchange: bool) -> bool:
    """Run an export in a child process that SIGKILLs itself just before its ``step``-th
    filesystem step (a write, fsync, rename, link or removal). True if it was killed; False
    if it had fewer steps and finished."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            steps = itertools.count()

            def dying(fn):
                def step_then(*args, **kwargs):
                    if next(steps) == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)

                return step_then

            for name in ("rename", "replace", "symlink", "link"):
                setattr(os, name, dying(getattr(os, name)))
            shutil.rmtree = dying(shutil.rmtree)
            for name in ("_write", "_sync"):
                setattr(export_module, name, dying(getattr(export_module, name)))
            if hasattr(export_module, "_exchange"):  # swaps two directories atomically
                swap = export_module._exchange if exchange else (lambda a, b: False)
                export_module._exchange = dying(swap)
            export_snapshot(db_path, out)
        except BaseException:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the export failed instead of finishing"
    return False


def whole_latest(out) -> bytes:
    """The manifest of the snapshot `latest` names, after checking that it is all there."""
    latest = out / "latest"
    assert latest.is_symlink() and latest.is_dir(), "latest names nothing"
    manifest = (latest / "manifest.json").read_bytes()
    files = json.loads(manifest)["files"]
    assert {p.name for p in latest.iterdir()} == {*files, "manifest.json"}
    for name, entry in files.items():
        assert sha256((latest / name).read_bytes()) == entry["sha256"], name
    return manifest


@pytest.mark.parametrize(
    ("change", "exchange"),
    [
        pytest.param("same day", True, id="same-day-swapped"),
        pytest.param("same day", False, id="same-day-no-atomic-swap"),
        pytest.param("later day", True, id="later-day"),
    ],
)
def test_an_export_killed_at_any_step_leaves_latest_naming_a_whole_snapshot(
    archive, tmp_path, change, exchange
):
    pristine = tmp_path / "pristine"
    export_snapshot(archive, pristine)
    old = whole_latest(pristine)
    db = Database(archive)
    if change == "same day":
        db.execute("UPDATE lessons SET title = title || ' (corrected)' WHERE id = 1")
    else:
        db.execute("UPDATE runs SET finished = '2031-01-02T03:04:05+00:00' WHERE id = 1")
    db.conn.commit()
    db.close()
    export_snapshot(archive, tmp_path / "expected")
    new = whole_latest(tmp_path / "expected")
    assert new != old

    out = tmp_path / "exports"
    seen = []
    for step in itertools.count():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(pristine, out, symlinks=True)
        killed = export_killed_at(step, archive, out, exchange=exchange)
        manifest = whole_latest(out)
        assert manifest in (old, new), f"killed at step {step}"
        seen.append(manifest)
        # The next export tidies whatever the killed one left and publishes the new one.
        export_snapshot(archive, out)
        assert whole_latest(out) == new
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
        if not killed:
            break
    assert step >= 4  # the kill really came at each of the export's steps
    assert seen[0] == old and seen[-1] == new


# -- 3. a file that is not an archive is refused in one line and left as it was --------------


@pytest.fixture(scope="module")
def archive_bytes(source, tmp_path_factory):
    """The crawled archive as one file (checkpointed), and its page size."""
    path = tmp_path_factory.mktemp("bytes") / "micropause.db"
    with sqlite3.connect(source) as original, sqlite3.connect(path) as copy:
        original.backup(copy)
    original.close()
    copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = copy.execute("PRAGMA page_size").fetchone()[0]
    lessons_root = copy.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'lessons'"
    ).fetchone()[0]
    copy.close()
    return path.read_bytes(), page_size, lessons_root


def sqlite_file(tmp_path, *statements) -> bytes:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    return path.read_bytes()


def make(kind, archive_bytes, tmp_path) -> bytes:
    data, page_size, lessons_root = archive_bytes
    if kind == "random bytes":
        return random.Random(7).randbytes(65536)
    if kind == "empty file":
        return b""
    if kind == "text file":
        return b"lessons,programs\nthis is not a database\n"
    if kind == "truncated at a page boundary":
        return data[: page_size * (len(data) // page_size // 2)]
    if kind == "truncated mid-page":
        return data[: len(data) // 2 + 100]
    if kind == "a damaged page":
        assert lessons_root > 1
        start = (lessons_root - 1) * page_size
        return data[:start] + b"\xff" * page_size + data[start + page_size :]
    if kind == "another application's database":
        return sqlite_file(
            tmp_path, "CREATE TABLE notes (text TEXT)", "INSERT INTO notes VALUES (1)"
        )
    if kind == "an SQLite database with no tables":
        return sqlite_file(tmp_path, "PRAGMA user_version = 3")
    raise AssertionError(kind)


KINDS = (
    "random bytes",
    "empty file",
    "text file",
    "truncated at a page boundary",
    "truncated mid-page",
    "a damaged page",
    "another application's database",
    "an SQLite database with no tables",
)
# An empty file, or an SQLite database with nothing in it, is where crawl and run make a new
# archive (tested below); every other command refuses it.
BECOMES_AN_ARCHIVE = {"empty file", "an SQLite database with no tables"}
COMMANDS = ("status", "export", "reparse", "crawl", "run", "serve")


@pytest.fixture(scope="module")
def site():
    with FixtureSite() as running:
        yield running


def command_args(command, db_path, site, tmp_path) -> list:
    args = [command, "--db", db_path]
    if command in ("crawl", "run", "reparse"):
        args += ["--config", CONFIG_PATH]
    if command in ("crawl", "run"):
        # A real site: were the file not refused, the crawl would run and write into it.
        args += ["--start-url", site.lesson_url(START_SLUG), "--delay", "0"]
    if command == "run":
        args += ["--out", tmp_path / "exports"]
    if command == "serve":
        args += ["--port", "8001"]
    return args


def cases():
    for kind in KINDS:
        for command in COMMANDS:
            if command in ("crawl", "run") and kind in BECOMES_AN_ARCHIVE:
                continue
            yield pytest.param(kind, command, id=f"{command}-{kind}")


@pytest.mark.parametrize(("kind", "command"), list(cases()))
def test_a_file_that_is_not_an_archive_is_refused_in_one_line_and_left_alone(
    archive_bytes, source, site, tmp_path, monkeypatch, kind, command
):
    db_path = tmp_path / "micropause.db"
    data = make(kind, archive_bytes, tmp_path)
    db_path.write_bytes(data)
    # Captures beside it: reparse must refuse the file itself, not only find nothing to read.
    shutil.copytree(Layout(source).captures, Layout(db_path).captures)

    def no_listening(host, port):
        raise AssertionError(f"serve got as far as listening on {host}:{port}")

    monkeypatch.setattr(publish, "bind", no_listening)
    result = invoke(*command_args(command, db_path, site, tmp_path))
    assert not isinstance(result.exception, AssertionError), result.exception
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "Traceback" not in result.output and result.stdout == ""
    assert db_path.read_bytes() == data, "the file was changed"
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("kind", sorted(BECOMES_AN_ARCHIVE))
def test_crawl_makes_a_new_archive_of_an_empty_file(archive_bytes, site, tmp_path, kind):
    db_path = tmp_path / "micropause.db"
    db_path.write_bytes(make(kind, archive_bytes, tmp_path))
    result = invoke(*command_args("crawl", db_path, site, tmp_path))
    assert result.exit_code == 0, result.output
    result = invoke("status", "--db", db_path)
    assert result.exit_code == 0, result.output
    assert f"{db_path}: 52 lessons" in result.output
