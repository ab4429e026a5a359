"""One writer per archive, whatever path names it: the lock, the captures and the exports
belong to the real database file. Two symlinks or a hard link to one archive are one archive:
a second writer through any of them exits 75."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.archive import Layout, archive_lock
from pipeline.cli import main
from pipeline.errors import LockHeld
from tests.conftest import ROOT, cli_args
from tests.site.server import FixtureSite


@pytest.fixture
def names(tmp_path) -> dict[str, Path]:
    """A real archive folder and two other folders whose micropause.db symlinks to it."""
    real = tmp_path / "real" / "micropause.db"
    real.parent.mkdir()
    found = {"real": real}
    for name in ("one", "two"):
        link = tmp_path / name / "micropause.db"
        link.parent.mkdir()
        link.symlink_to(real)
        found[name] = link
    return found


def run_args(site, db_path, *extra):
    return cli_args(site, db_path, "--quiet", *extra, command="run")


def holder(real: Path) -> int | None:
    try:
        return json.loads(Layout(real).lock.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def start_in_background(site, db_path, real):
    """`micropause run` through ``db_path`` in another process, once it holds the lock of
    ``real`` and the slow site has its first request."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *run_args(site, db_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if site.request_count > 0 and holder(real) == process.pid:
            return process
        time.sleep(0.01)  # polling interval, not a synchronisation point
    process.kill()
    raise AssertionError(f"the background run never took the lock: {process.communicate()}")


def test_a_symlink_resolves_to_the_folder_of_the_real_file(names):
    layout = Layout(names["one"])
    assert layout.db == names["real"].resolve()
    assert layout.lock.parent == layout.captures.parent == layout.exports.parent
    assert layout.captures == names["real"].resolve().parent / "captures"


def test_two_runs_through_two_symlinks_the_second_exits_75(names):
    with FixtureSite(latency=0.03) as site:
        first = start_in_background(site, names["one"], names["real"])
        try:
            second = CliRunner().invoke(main, run_args(site, names["two"]))
        finally:
            _out, err = first.communicate(timeout=120)
    assert second.exit_code == 75, second.output
    assert f"(pid {first.pid}, started " in second.stderr
    assert first.returncode == 0, err
    real = names["real"].parent
    assert (real / "captures").is_dir() and (real / "exports" / "latest").is_dir()
    assert (real / "micropause.db.lock").is_file()
    for name in ("one", "two"):
        # Nothing but the symlink in the other folders: no lock, captures or exports there.
        assert sorted(p.name for p in names[name].parent.iterdir()) == ["micropause.db"]


def test_a_crawl_through_a_hard_link_while_a_run_holds_the_real_path_exits_75(tmp_path):
    real = tmp_path / "real" / "micropause.db"
    hard = tmp_path / "elsewhere" / "micropause.db"
    hard.parent.mkdir()
    with FixtureSite(latency=0.03) as site:
        made = CliRunner().invoke(main, run_args(site, real))
        assert made.exit_code == 0, made.output
        os.link(real, hard)  # the same inode under another folder: no symlink to resolve
        first = start_in_background(site, real, real)
        try:
            second = CliRunner().invoke(main, run_args(site, hard))
        finally:
            _out, err = first.communicate(timeout=120)
    assert second.exit_code == 75, second.output
    assert "under another name" in second.stderr
    assert first.returncode == 0, err
    # The hard link's folder got no captures, exports or lock.
    assert sorted(p.name for p in hard.parent.iterdir()) == ["micropause.db"]


@pytest.mark.parametrize("other", ["symlink", "hard link"])
def test_the_lock_of_one_name_holds_every_other(tmp_path, other):
    real = tmp_path / "real" / "micropause.db"
    real.parent.mkdir()
    real.touch()
    name = tmp_path / "other" / "micropause.db"
    name.parent.mkdir()
    if other == "symlink":
        name.symlink_to(real)
    else:
        os.link(real, name)
    with archive_lock(real, "micropause crawl"):
        with pytest.raises(LockHeld), archive_lock(name, "micropause export"):
            pass
        with pytest.raises(LockHeld), archive_lock(real, "micropause export"):
            pass
    # Let go: each name can take it again.
    with archive_lock(name, "micropause export"):
        pass


def test_a_new_archive_through_a_symlink_to_a_missing_file_is_made_at_its_target(tmp_path):
    real = tmp_path / "real" / "micropause.db"
    real.parent.mkdir()
    link = tmp_path / "micropause.db"
    link.symlink_to(real)
    with FixtureSite() as site:
        result = CliRunner().invoke(main, run_args(site, link))
    assert result.exit_code == 0, result.output
    assert real.is_file() and link.is_symlink()
    assert (real.parent / "captures").is_dir() and not (tmp_path / "captures").exists()
