"""Every exit code the README documents for a command is the one it gives: each (command, code)
pair of the README's table is brought about here, with the real command, and a pair the table
lists that no case below brings about fails the test. Disk full while exporting is exit 4,
checked on a file system that really is full."""

from __future__ import annotations

import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.archive import archive_lock
from pipeline.cli import main
from tests.conftest import CONFIG_PATH, ROOT, cli_args
from tests.site.server import FixtureSite
from tests.test_publish import serving

PIPELINE = (sys.executable, "-m", "pipeline")
# Where a crawl that should never start would go: a port nothing listens on, never the site.
NOWHERE = ("--start-url", "http://127.0.0.1:9/video/x/")
_ROW = re.compile(r"^\| `micropause ([a-z ]+)` \|.*\| ([0-9, ]+) \|$")


def documented() -> list[tuple[str, int]]:
    """(command, exit code) for every code the README's command table lists."""
    pairs = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if m := _ROW.match(line):
            pairs += [(m[1], int(code)) for code in m[2].split(",")]
    return pairs


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def fresh(archive: Path, tmp_path: Path) -> Path:
    """A writable copy of an archive's folder (database and captures)."""
    shutil.copytree(archive.parent, tmp_path / "copy")
    return tmp_path / "copy" / archive.name


def unreachable() -> str:
    # A port nothing listens on: the fixture site started and stopped again.
    with FixtureSite() as site:
        url = site.lesson_url("soft-eyes")
    return url


def crawl_args(site, db_path, command="crawl"):
    return cli_args(site, db_path, command=command)


def locked(db_path: Path, *args) -> tuple[int, str]:
    with archive_lock(db_path, "a test holding the lock"):
        return invoke(*args)


def full_disk_export(
    db_path: Path, tmp_path: Path, size_kb: int
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`micropause export` into a file system with room for ``size_kb`` kB: a tmpfs of that
    size where this machine lets a test mount one, else a file-size limit on the process.
    Its result, and what it left in the folder of snapshots."""
    target = tmp_path / f"full-{size_kb}"
    target.mkdir()
    command = [*PIPELINE, "export", "--db", str(db_path), "--out", str(target / "out")]
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(target)],
        capture_output=True,
    )
    if mounted.returncode == 0:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            return done, _left(target / "out")
        finally:
            subprocess.run(["umount", str(target)], check=False)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG rather than death
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_kb * 1024, size_kb * 1024))

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    return done, _left(target / "out")


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# -- one case per documented (command, code) ---------------------------------------------------


def crawl_0(ctx):
    with FixtureSite() as site:
        return invoke(*crawl_args(site, ctx.tmp_path / "new.db"))


def crawl_1(ctx):
    return invoke("crawl", "--config", ctx.tmp_path / "missing.toml", "--db", ctx.tmp_path / "a.db")


def _unreachable(command):
    def case(ctx):
        return invoke(
            command,
            "--config",
            CONFIG_PATH,
            "--db",
            ctx.tmp_path / "a.db",
            "--start-url",
            unreachable(),
            "--delay",
            "0",
        )

    return case


def _unhealthy(command):
    def case(ctx):
        with FixtureSite(theme="untitled") as site:
            return invoke(*crawl_args(site, ctx.tmp_path / "new.db", command))

    return case


def _deadline(command):
    """A run stopped at politeness.max_run_seconds before it read every page."""

    def case(ctx):
        config = ctx.tmp_path / "site.toml"
        text = CONFIG_PATH.read_text(encoding="utf-8")
        assert "max_run_seconds = 43200.0" in text
        config.write_text(text.replace("max_run_seconds = 43200.0", "max_run_seconds = 1.0"))
        with FixtureSite(latency=0.05) as site:
            args = crawl_args(site, ctx.tmp_path / "new.db", command)
            at = args.index("--config")
            args[at + 1] = config
            if command == "run":
                args += ["--out", ctx.tmp_path / "exports"]
            return invoke(*args)

    return case


def _locked(*args):
    def case(ctx):
        db_path = fresh(ctx.archive, ctx.tmp_path)
        return locked(db_path, *[a.format(db=db_path) for a in args])

    return case


def _bad_config(*args):
    def case(ctx):
        return invoke(*args, "--db", ctx.archive, "--config", ctx.tmp_path / "missing.toml")

    return case


def _missing_archive(*args):
    def case(ctx):
        return invoke(*args, "--db", ctx.tmp_path / "missing.db")

    return case


def run_0(ctx):
    with FixtureSite() as site:
        return invoke(*crawl_args(site, ctx.tmp_path / "new.db", "run"), "--out", ctx.tmp_path)


def run_4(ctx):
    # The snapshot folder cannot be made: --out names a file.
    (ctx.tmp_path / "a-file").write_text("")
    with FixtureSite() as site:
        args = crawl_args(site, ctx.tmp_path / "new.db", "run")
        return invoke(*args, "--out", ctx.tmp_path / "a-file" / "exports")


def export_0(ctx):
    return invoke("export", "--db", ctx.archive, "--out", ctx.tmp_path / "exports")


def export_4(ctx):
    done, _ = full_disk_export(ctx.archive, ctx.tmp_path, 64)
    return done.returncode, done.stderr


def serve_0(ctx):
    with serving(fresh(ctx.archive, ctx.tmp_path)) as served:
        served.process.send_signal(signal.SIGINT)
        out, err = served.process.communicate(timeout=30)
    return served.process.returncode, out + err


def reparse_0(ctx):
    return invoke("reparse", "--config", CONFIG_PATH, "--db", fresh(ctx.archive, ctx.tmp_path))


def reparse_2(ctx):
    # An archive that cannot be written: its folder is a read-only bind mount, or, where no
    # mount is allowed and the test is not root, a folder without write permission.
    db_path = fresh(ctx.archive, ctx.tmp_path)
    folder = db_path.parent
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode == 0:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        done = subprocess.run(
            [*PIPELINE, "reparse", "--config", str(CONFIG_PATH), "--db", str(db_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o755)
    return done.returncode, done.stderr


def status_0(ctx):
    return invoke("status", "--db", ctx.archive)


def diff_0(ctx):
    return invoke("diff", "--db", ctx.recrawled)


def diff_1(ctx):
    return invoke("diff", "--db", ctx.archive)  # one run: nothing to compare it with


def config_show_0(ctx):
    return invoke("config", "show")


def config_show_1(ctx):
    return invoke("config", "show", "--config", ctx.tmp_path / "missing.toml")


CASES: dict[tuple[str, int], Callable] = {
    ("crawl", 0): crawl_0,
    ("crawl", 1): crawl_1,
    ("crawl", 2): _unreachable("crawl"),
    ("crawl", 3): _unhealthy("crawl"),
    ("crawl", 5): _deadline("crawl"),
    ("crawl", 75): _locked("crawl", "--config", str(CONFIG_PATH), "--db", "{db}", *NOWHERE),
    ("run", 0): run_0,
    ("run", 1): _bad_config("run"),
    ("run", 2): _unreachable("run"),
    ("run", 3): _unhealthy("run"),
    ("run", 4): run_4,
    ("run", 5): _deadline("run"),
    ("run", 75): _locked("run", "--config", str(CONFIG_PATH), "--db", "{db}", *NOWHERE),
    ("export", 0): export_0,
    ("export", 1): _missing_archive("export"),
    ("export", 4): export_4,
    ("export", 75): _locked("export", "--db", "{db}"),
    ("serve", 0): serve_0,
    ("serve", 1): _missing_archive("serve"),
    ("reparse", 0): reparse_0,
    ("reparse", 1): _missing_archive("reparse", "--config", str(CONFIG_PATH)),
    ("reparse", 2): reparse_2,
    ("reparse", 75): _locked("reparse", "--config", str(CONFIG_PATH), "--db", "{db}"),
    ("status", 0): status_0,
    ("status", 1): _missing_archive("status"),
    ("diff", 0): diff_0,
    ("diff", 1): diff_1,
    ("config show", 0): config_show_0,
    ("config show", 1): config_show_1,
}


class Context:
    def __init__(self, tmp_path, archive, recrawled):
        self.tmp_path, self.archive, self.recrawled = tmp_path, archive, recrawled


def test_the_readme_documents_exit_codes_for_every_command():
    pairs = documented()
    assert {command for command, _ in pairs} >= {"crawl", "run", "export", "serve", "status"}
    assert ("export", 4) in pairs and ("run", 75) in pairs


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("command", "code"), documented(), ids=lambda v: str(v))
def test_each_documented_exit_code(command, code, tmp_path, crawled_archive, recrawled_archive):
    case = CASES.get((command, code))
    assert case is not None, f"README documents exit {code} for {command}: add a case here"
    got, output = case(Context(tmp_path, crawled_archive, recrawled_archive.db_path))
    assert got == code, output
    if code != 0:
        assert "Traceback" not in output
        assert output.strip(), "a failure says why"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("size_kb", [16, 256, 440, 520, 600])
def test_disk_full_while_exporting_is_exit_4_and_leaves_no_partial_snapshot(
    crawled_archive, tmp_path, size_kb
):
    """Room for none of the snapshot, for part of the archive's copy, for the copy but not the
    data files, and for most of it: always exit 4 in one line, nothing half-written left."""
    done, left = full_disk_export(crawled_archive, tmp_path, size_kb)
    if done.returncode == 0:
        pytest.fail(f"a {size_kb} kB disk held the whole snapshot: make the cases smaller")
    assert done.returncode == 4, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot write")
    assert "No space left" in line or "disk is full" in line or "File too large" in line
    assert left == []
