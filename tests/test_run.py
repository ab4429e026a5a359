"""`micropause run` as cron meets it: lock, crawl, health checks, snapshot, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner
from sqlite_utils import Database

from pipeline.archive import Layout
from pipeline.cli import main
from tests.conftest import CONFIG_PATH, ROOT, START_SLUG
from tests.site.server import FixtureSite

# The shipped config, with retries and timeouts short enough for tests of failures.
FAST = {
    "backoff_initial = 1.0": "backoff_initial = 0.01",
    "backoff_max = 30.0": "backoff_max = 0.05",
    "retry_after_max = 60.0": "retry_after_max = 0.2",
    "connect_timeout = 10.0": "connect_timeout = 2.0",
    "read_timeout = 30.0": "read_timeout = 2.0",
}


@pytest.fixture
def paths(tmp_path):
    text = CONFIG_PATH.read_text(encoding="utf-8")
    for old, new in FAST.items():
        assert old in text
        text = text.replace(old, new)
    config = tmp_path / "site.toml"
    config.write_text(text, encoding="utf-8")
    return {"config": config, "db": tmp_path / "micropause.db", "out": tmp_path / "exports"}


def run_args(paths, start_url, *extra):
    return [
        "run",
        "--config",
        str(paths["config"]),
        "--db",
        str(paths["db"]),
        "--out",
        str(paths["out"]),
        "--start-url",
        start_url,
        "--delay",
        "0",
        "--concurrency",
        "4",
        *extra,
    ]


def run(paths, start_url, *extra):
    return CliRunner().invoke(main, run_args(paths, start_url, *extra))


def rows(db_path, sql):
    return [dict(r) for r in Database(db_path).query(sql)]


def content(db_path):
    db = Database(db_path)
    return {t: list(db[t].rows) for t in ("lessons", "programs", "pages")}


def tree(directory):
    """Every file and link under ``directory`` with its bytes or target."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(directory))] = ("link", os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(directory))] = path.read_bytes()
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_run_exits_0_and_writes_a_snapshot_whose_checksums_match(site, paths):
    result = run(paths, site.lesson_url(START_SLUG))
    assert result.exit_code == 0, result.output
    latest = paths["out"] / "latest"
    (run_row,) = rows(paths["db"], "select * from runs")
    assert run_row["status"] == "ok"
    # Relative, so the folder can move; named by the day and the run.
    assert os.readlink(latest) == f"{run_row['finished'][:10]}-run{run_row['id']}"
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run"]["id"] == run_row["id"]
    names = {p.name for p in latest.iterdir()}
    assert names == {*manifest["files"], "manifest.json"}
    assert {"lessons.csv", "lessons.json", "lessons.ndjson", "programs.csv"} <= names
    for name, entry in manifest["files"].items():
        data = (latest / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"]
    assert manifest["counts"]["lessons"] == run_row["lessons_found"]
    # No temporary files are left beside the snapshot.
    assert sorted(p.name for p in paths["out"].iterdir()) == [manifest["snapshot"], "latest"]
    assert "run.finished" in result.stderr and "status=ok" in result.stderr
    assert "snapshot.written" in result.stderr


def test_quiet_run_prints_nothing_when_all_is_well(site, paths):
    result = run(paths, site.lesson_url(START_SLUG), "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_verbose_run_logs_a_line_per_page(site, paths):
    result = run(paths, site.lesson_url(START_SLUG), "--verbose")
    assert result.exit_code == 0
    page_lines = [line for line in result.stderr.splitlines() if " DEBUG page url=" in line]
    assert len(page_lines) == len(rows(paths["db"], "select url from pages"))
    assert any("kind=listing status=200 listed=3" in line for line in page_lines)


def test_theme_change_exits_3_marks_nothing_removed_and_keeps_latest(site, paths):
    start = site.lesson_url(START_SLUG)
    assert run(paths, start).exit_code == 0
    snapshot_before = tree(paths["out"])
    site.unpublish("lying-down-letting-go")  # a real removal, which must wait
    site.theme = "renamed"  # listings no longer match selectors.listed_lesson

    result = run(paths, start, "--quiet")

    assert result.exit_code == 3
    # Quiet, yet it says what is wrong: the failed check by name, and one error line.
    assert "WARNING health.failed check=listing_empty" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: run 2 failed health checks (listing_empty): its lessons were saved, nothing "
        "was marked removed and no snapshot was exported"
    ]
    assert "Traceback" not in result.output
    assert rows(paths["db"], "select url from lessons where removed_at is not null") == []
    last = rows(paths["db"], "select * from runs order by id desc limit 1")[0]
    assert last["status"] == "unhealthy"
    assert [h.split(":")[0] for h in json.loads(last["health"])] == ["listing_empty"]
    # The lessons it did see were saved: their last_seen is this run. (The unpublished one is
    # left out: a fast first run can finish in the same second, giving it the same last_seen.)
    (seen,) = (
        Database(paths["db"])
        .execute(
            "select count(*) from lessons where last_seen = ? and slug != ?",
            [last["finished"], "lying-down-letting-go"],
        )
        .fetchone()
    )
    assert seen == last["lessons_found"] > 0
    assert tree(paths["out"]) == snapshot_before  # latest still on the healthy snapshot

    # The theme is fixed in the site (or the selectors in the config): the next run is
    # healthy again, and only now is the unpublished lesson marked removed.
    site.theme = "divi"
    assert run(paths, start, "--quiet").exit_code == 0
    removed = rows(paths["db"], "select slug from lessons where removed_at is not null")
    assert removed == [{"slug": "lying-down-letting-go"}]


def test_far_fewer_lessons_than_last_time_exits_3(site, paths):
    start = site.lesson_url(START_SLUG)
    assert run(paths, start).exit_code == 0
    lessons = site.lessons
    for lesson in lessons[: len(lessons) // 3]:
        if lesson.slug != START_SLUG:
            site.unpublish(lesson.slug)
    result = run(paths, start, "--quiet")
    assert result.exit_code == 3
    assert "check=lesson_drop" in result.stderr
    assert rows(paths["db"], "select url from lessons where removed_at is not null") == []


def test_unreachable_site_exits_2_with_archive_and_snapshot_unchanged(site, paths):
    assert run(paths, site.lesson_url(START_SLUG)).exit_code == 0
    before, snapshot_before = content(paths["db"]), tree(paths["out"])

    result = run(paths, f"http://127.0.0.1:{free_port()}/video/{START_SLUG}/", "--quiet")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot reach 127.0.0.1")
    assert len(result.stderr.strip().splitlines()) == 1
    assert content(paths["db"]) == before
    assert tree(paths["out"]) == snapshot_before
    assert rows(paths["db"], "select status from runs order by id") == [
        {"status": "ok"},
        {"status": "failed"},
    ]


def test_bad_format_is_a_usage_error_before_anything_is_fetched(site, paths):
    result = run(paths, site.lesson_url(START_SLUG), "--format", "csv,xlsx")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: --format: unknown format xlsx (choose from csv, json, ndjson)"
    )
    assert site.request_count == 0 and not paths["db"].exists()


# -- the lock: one run at a time, and a killed run never blocks the next ----------------------


def start_run_in_background(paths, site):
    """`micropause run` in another process, against a slow site so it holds the lock a while;
    returns once the lock file names that process and the site has seen its requests."""
    args = run_args(paths, site.lesson_url(START_SLUG), "--quiet")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if site.request_count > 0 and holder(paths) == process.pid:
            return process
        time.sleep(0.01)  # polling interval, not a synchronisation point
    process.kill()
    raise AssertionError(f"the background run never took the lock: {process.communicate()}")


def holder(paths):
    try:
        return json.loads(Layout(paths["db"]).lock.read_text())["pid"]
    except (OSError, ValueError):
        return None


def test_a_second_run_while_one_is_running_exits_75_and_changes_nothing(paths):
    # ~550 pages at 30 ms each, 4 at a time: the first run holds the lock for seconds.
    with FixtureSite(latency=0.03) as site:
        first = start_run_in_background(paths, site)
        try:
            second = run(paths, site.lesson_url(START_SLUG), "--quiet")
        finally:
            out, err = first.communicate(timeout=60)
    assert second.exit_code == 75
    assert (
        second.stderr.startswith(f"error: `micropause run` (pid {first.pid}, started ")
        and "try again when it has finished" in second.stderr
    )
    assert first.returncode == 0, err
    assert (out, err) == ("", "")
    # The second run did not even record an attempt: the one run in the archive is the first.
    assert rows(paths["db"], "select status from runs") == [{"status": "ok"}]
    assert (paths["out"] / "latest" / "manifest.json").exists()


def test_a_killed_run_does_not_block_the_next(paths):
    with FixtureSite(latency=0.02) as site:
        first = start_run_in_background(paths, site)
        os.kill(first.pid, signal.SIGKILL)  # no cleanup at all, like the OOM killer
        first.communicate(timeout=30)
        site.latency = 0.0
        result = run(paths, site.lesson_url(START_SLUG), "--quiet")
    assert result.exit_code == 0, result.output
    # The killed run is recorded as interrupted, and the archive is whole.
    assert rows(paths["db"], "select status from runs order by id") == [
        {"status": "interrupted"},
        {"status": "ok"},
    ]


@pytest.mark.parametrize(
    "recipe",
    [
        "crontab",
        "systemd/micropause-archive.service",
        "github-actions-archive.yml",
    ],
)
def test_deployment_recipes_call_run_with_options_that_exist(recipe):
    text = (ROOT / "deploy" / recipe).read_text(encoding="utf-8")
    commands = [line for line in text.splitlines() if "micropause run" in line and "#" not in line]
    assert commands, f"deploy/{recipe} does not call `micropause run`"
    options = {p for param in main.commands["run"].params for p in param.opts}
    for command in commands:
        for word in command.split("micropause run", 1)[1].split():
            assert not word.startswith("-") or word in options, (recipe, word)


def test_ci_recipe_is_valid_yaml_running_on_a_schedule():
    workflow = yaml.safe_load((ROOT / "deploy" / "github-actions-archive.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    assert workflow[True]["schedule"] and workflow["concurrency"]["cancel-in-progress"] is False
