"""The `micropause` command as a user (or cron) meets it: exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from pipeline import __version__
from pipeline.cli import main
from tests.conftest import CONFIG_PATH, START_SLUG


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def crawl_args(site, db_path, *extra):
    return (
        "crawl",
        "--db",
        db_path,
        "--start-url",
        site.lesson_url(START_SLUG),
        "--delay",
        "0",
        "--concurrency",
        "4",
        *extra,
    )


def content(db_path):
    db = Database(db_path)
    return {t: list(db[t].rows) for t in ("lessons", "programs", "pages")}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def crawled(site, tmp_path):
    db_path = tmp_path / "micropause.db"
    assert invoke(*crawl_args(site, db_path)).exit_code == 0
    return db_path


def test_crawl_prints_a_summary(site, tmp_path):
    result = invoke(*crawl_args(site, tmp_path / "a.db"))
    assert result.exit_code == 0, result.output
    assert "complete" in result.output
    # A first crawl: every lesson found is new.
    assert re.search(r"lessons: (\d+) found, \1 new, 0 changed, 0 removed", result.output)
    assert "programs: 4" in result.output


def test_bad_config_key_exits_1_in_one_line_and_touches_nothing(site, crawled, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG_PATH.read_text().replace("delay = 1.0", "dleay = 1.0"))
    before = digest(crawled)
    result = invoke(*crawl_args(site, crawled), "--config", bad)
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown config key: politeness.dleay"
    assert digest(crawled) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--delay", "-1"), "--delay must be >= 0"),
        (("--concurrency", "0"), "--concurrency must be between 1 and 32"),
        (("--concurrency", "10000"), "--concurrency must be between 1 and 32"),
        (("--delay", "nan"), "--delay must be >= 0 and finite"),
        (("--start-url", "ftp://x/video/a/"), "not an http(s) URL"),
    ],
)
def test_bad_arguments_exit_1(site, tmp_path, args, message):
    result = invoke(*crawl_args(site, tmp_path / "a.db"), *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_site_exits_2_and_leaves_the_archive_as_it_was(crawled):
    before = content(crawled)
    url = f"http://127.0.0.1:{free_port()}/video/{START_SLUG}/"
    result = invoke(
        "crawl", "--db", crawled, "--start-url", url, "--delay", "0", "--config", CONFIG_PATH
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach 127.0.0.1")
    assert content(crawled) == before
    last = next(iter(Database(crawled).query("select status, error from runs order by id desc")))
    assert last["status"] == "failed" and "cannot reach" in last["error"]


def test_help_explains_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "crawl" in result.output and "Exit codes" in result.output


def test_status_shows_counts_and_runs_at_a_glance(site, crawled):
    site.edit("soft-eyes", description=["Edited."])
    assert invoke(*crawl_args(site, crawled)).exit_code == 0
    result = invoke("status", "--db", crawled)
    assert result.exit_code == 0, result.output
    lessons = Database(crawled).execute("select count(*) from lessons").fetchone()[0]
    assert f"{crawled}: {lessons} lessons (0 removed), 4 programs" in result.output
    # Newest run first: the re-crawl that found one changed lesson, then the first crawl.
    runs = [
        line.split() for line in result.output.splitlines() if line.split()[:1] in (["1"], ["2"])
    ]
    assert [r[0] for r in runs] == ["2", "1"]
    assert runs[0][-1] == f"{lessons}/0/1/0" and runs[1][-1] == f"{lessons}/{lessons}/0/0"


def test_status_and_reparse_need_an_archive(tmp_path):
    for command in ("status", "reparse"):
        result = invoke(command, "--db", tmp_path / "none.db")
        assert result.exit_code == 1
        assert result.output.strip().startswith(f"error: no archive at {tmp_path / 'none.db'}")


def test_reparse_command_reports_what_it_read(crawled):
    result = invoke("reparse", "--db", crawled, "--config", CONFIG_PATH)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"reparse \(run 2\): \d+ captures read, 0 skipped \(cut short or corrupt\), \d+ lessons "
        r"extracted, 0 new, 0 changed",
        result.output,
    )


def test_version_is_the_package_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"micropause, version {__version__}"


def test_config_show_prints_the_packaged_configuration_to_copy_and_edit(tmp_path):
    result = invoke("config", "show")
    assert result.exit_code == 0, result.output
    assert result.output == CONFIG_PATH.read_text(encoding="utf-8")
    # What it prints is a configuration: saved, edited and passed back, it is used.
    mine = tmp_path / "mine.toml"
    mine.write_text(result.output.replace("delay = 1.0", "delay = 2.5"), encoding="utf-8")
    assert "delay = 2.5" in invoke("config", "show", "--config", mine).output
    from_env = CliRunner().invoke(main, ["config", "show"], env={"MICROPAUSE_CONFIG": str(mine)})
    assert from_env.exit_code == 0 and "delay = 2.5" in from_env.output


def test_config_show_refuses_a_bad_configuration_in_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG_PATH.read_text().replace("delay = 1.0", "dleay = 1.0"))
    result = invoke("config", "show", "--config", bad)
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown config key: politeness.dleay"
    missing = invoke("config", "show", "--config", tmp_path / "none.toml")
    assert missing.exit_code == 1
    assert missing.output.strip() == f"error: config file not found: {tmp_path / 'none.toml'}"


def test_db_and_config_are_read_from_the_environment(site, tmp_path):
    db_path = tmp_path / "not" / "yet" / "there.db"
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(CONFIG_PATH.read_text().replace("max_failed_pages = 0.05", "nonsense = 1"))
    env = {"MICROPAUSE_DB": str(db_path), "MICROPAUSE_CONFIG": str(wrong)}
    args = ["crawl", "--start-url", site.lesson_url(START_SLUG), "--delay", "0"]
    refused = CliRunner().invoke(main, args, env=env)
    assert refused.exit_code == 1
    assert refused.output.strip() == "error: unknown config key: health.nonsense"

    env["MICROPAUSE_CONFIG"] = str(CONFIG_PATH)
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert db_path.is_file()  # its folders made on the way
    status = CliRunner().invoke(main, ["status"], env=env)
    assert status.output.startswith(f"{db_path}: ")
    # An option still wins over the environment.
    other = tmp_path / "other.db"
    assert CliRunner().invoke(main, [*args, "--db", str(other)], env=env).exit_code == 0
    assert other.is_file()
