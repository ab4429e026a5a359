"""A read-only archive (a mounted backup, a published copy) is a first-class archive: `serve`,
`status`, `diff` and `export --out DIR` work on it and leave it byte-identical; a command that
must write it says so in one line. On a real read-only bind mount where this machine allows
one (as root), else on a folder and files without write permission."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import CONFIG_PATH
from tests.test_publish import serving


def _mount_read_only(source: Path, target: Path) -> bool:
    target.mkdir()
    bound = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if bound.returncode != 0:
        return False
    ro = subprocess.run(
        ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, check=False
    )
    if ro.returncode != 0:
        subprocess.run(["umount", str(target)], check=False)
        return False
    return True


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def read_only(recrawled_archive, tmp_path_factory):
    """The recrawled archive's folder (database and captures), read-only: the database's path
    in it, and the writable original."""
    original = recrawled_archive.db_path
    base = tmp_path_factory.mktemp("read-only")
    source = base / "source"
    shutil.copytree(original.parent, source)
    mounted = base / "mounted"
    if _mount_read_only(source, mounted):
        folder = mounted
        release = lambda: subprocess.run(["umount", str(mounted)], check=False)  # noqa: E731
    elif os.geteuid() != 0:
        folder = source
        for path in [*source.rglob("*"), source]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        release = lambda: [p.chmod(0o755) for p in [source, *source.rglob("*")]]  # noqa: E731
    else:
        pytest.fail("as root, only a read-only mount makes an archive read-only: mount failed")
    db_path = folder / original.name
    assert not os.access(folder, os.W_OK)
    try:
        yield db_path, original
    finally:
        release()


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_status_and_diff_read_it_as_they_read_the_writable_one(read_only):
    db_path, original = read_only
    before = _files(db_path.parent)
    code, shown = invoke("status", "--db", db_path)
    assert code == 0, shown
    _, expected = invoke("status", "--db", original)
    assert shown.splitlines()[1:] == expected.splitlines()[1:]  # the first line names the file
    code, diff = invoke("diff", "--db", db_path, "--format", "json")
    assert code == 0, diff
    assert json.loads(diff) == json.loads(invoke("diff", "--db", original, "--format", "json")[1])
    assert json.loads(diff)  # the two runs differ
    assert _files(db_path.parent) == before


def test_export_out_writes_the_same_snapshot_from_a_read_only_archive(read_only, tmp_path):
    db_path, original = read_only
    before = _files(db_path.parent)
    code, shown = invoke("export", "--db", db_path, "--out", tmp_path / "ro")
    assert code == 0, shown
    code, expected = invoke("export", "--db", original, "--out", tmp_path / "rw")
    assert code == 0, expected
    ro, rw = (tmp_path / "ro" / "latest").resolve(), (tmp_path / "rw" / "latest").resolve()
    assert ro.name == rw.name
    assert _files(ro) == _files(rw)
    assert (ro / "captures.wacz").is_file()
    assert _files(db_path.parent) == before


def test_export_into_the_read_only_folder_fails_in_one_line_with_exit_4(read_only):
    db_path, _ = read_only
    code, shown = invoke("export", "--db", db_path)
    assert code == 4
    assert shown.startswith("error: cannot write a snapshot in") and shown.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["crawl", "--config", CONFIG_PATH, "--start-url", "http://127.0.0.1:9/video/x/"],
        ["run", "--config", CONFIG_PATH, "--start-url", "http://127.0.0.1:9/video/x/"],
        ["reparse", "--config", CONFIG_PATH],
    ],
    ids=lambda c: c[0],
)
def test_a_command_that_must_write_says_so_in_one_line(read_only, command):
    db_path, _ = read_only
    before = _files(db_path.parent)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, command), "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {db_path} cannot be written")
    assert f"`micropause {command[0]}` writes the archive" in line
    assert _files(db_path.parent) == before


@pytest.mark.timeout(120)
def test_serve_publishes_a_read_only_archive(read_only):
    db_path, original = read_only
    with serving(db_path) as served:
        lessons = httpx.get(f"{served.url}/micropause/lessons.json?_shape=array", timeout=30)
        search = httpx.get(f"{served.url}/micropause/lessons.json?_search=breath", timeout=30)
    assert lessons.status_code == 200 and search.status_code == 200
    with contextlib.closing(sqlite3.connect(original)) as conn:
        (count,) = conn.execute("select count(*) from lessons").fetchone()
    assert len(lessons.json()) == count
