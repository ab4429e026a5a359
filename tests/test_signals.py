"""Every run ends recorded: SIGTERM (systemd's stop, `kill`) and SIGHUP (a closed terminal)
end `crawl` and `run` as Ctrl-C does, and a run stopped by its deadline says so in its exit
code and its snapshot. Each against the fixture site on 127.0.0.1, in a real process."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from pipeline.archive import archive_lock
from pipeline.cli import main
from tests.conftest import CONFIG_PATH, ROOT, cli_args
from tests.site.server import FixtureSite


def args(command, site, db_path, *extra):
    return cli_args(site, db_path, *extra, command=command)


def statuses(db_path):
    with sqlite3.connect(db_path) as db:
        found = [status for (status,) in db.execute("select status from runs order by id")]
    db.close()
    return found


@pytest.mark.parametrize("command", ["crawl", "run"])
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"]
)
def test_a_signal_mid_run_is_recorded_as_interrupted(tmp_path, command, signum, code):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite(latency=0.02) as site:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args(command, site, db_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert site.wait_for_requests(20, timeout=60)
        sent = time.monotonic()
        process.send_signal(signum)
        _out, err = process.communicate(timeout=60)
        took = time.monotonic() - sent
        assert process.returncode == code, err
        assert took < 30  # a generous bound: it stops at once, not after the crawl
        name = signal.Signals(signum).name
        assert err.strip().splitlines()[-1] == (
            f"interrupted by {name}: the run is recorded as interrupted; nothing else changed"
        )
        assert "Traceback" not in err
        assert statuses(db_path) == ["interrupted"]
        with sqlite3.connect(db_path) as db:
            assert db.execute("select error from runs").fetchone() == (f"interrupted by {name}",)
        db.close()
        with archive_lock(db_path, "test"):  # let go
            pass
        again = CliRunner().invoke(main, args(command, site, db_path))
    assert again.exit_code == 0, again.output
    assert statuses(db_path) == ["interrupted", "ok"]


def test_a_run_stopped_by_its_deadline_exits_5_and_its_snapshot_says_so(tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    config = tmp_path / "site.toml"
    text = CONFIG_PATH.read_text(encoding="utf-8")
    assert "max_run_seconds = 43200.0" in text
    config.write_text(text.replace("max_run_seconds = 43200.0", "max_run_seconds = 1.0"))
    with FixtureSite(latency=0.05) as site:
        result = CliRunner().invoke(
            main, ["run", "--config", str(config), *args("run", site, db_path)[3:]]
        )
    assert result.exit_code == 5, result.output
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: run 1 stopped at its deadline (politeness.max_run_seconds)")
    assert statuses(db_path) == ["incomplete"]
    manifest = json.loads((db_path.parent / "exports" / "latest" / "manifest.json").read_text())
    assert manifest["run"]["complete"] is False
    assert manifest["run"]["incomplete"].startswith(
        "stopped at its deadline (politeness.max_run_seconds = 1 s)"
    )


def test_a_complete_runs_snapshot_says_nothing_is_missing(crawled_archive, tmp_path):
    out = tmp_path / "exports"
    result = CliRunner().invoke(main, ["export", "--db", str(crawled_archive), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "latest" / "manifest.json").read_text())
    assert manifest["run"]["complete"] is True and manifest["run"]["incomplete"] is None
