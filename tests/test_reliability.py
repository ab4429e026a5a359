"""The archive survives faults, crashes and hostile input. Each test would catch a regression
that loses or corrupts data: a faulty site, SIGKILL at several points, Ctrl-C, failing writes,
and text designed to break whatever handles it."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys

import pytest
from sqlite_utils import Database

from pipeline.archive import Layout, history
from pipeline.captures import read_responses
from pipeline.errors import ArchiveWriteError
from pipeline.export import export_snapshot
from pipeline.reparse import reparse
from pipeline.run import crawl_into_archive
from tests.conftest import CONTENT, PROGRAMS, cli_args, local_config
from tests.site.server import TRANSIENT_FAULTS, FixtureSite, Lesson


def rows(db_path, sql, params=()):
    return [dict(r) for r in Database(db_path).query(sql, params)]


def test_a_third_of_urls_faulting_gives_the_same_archive_as_a_clean_crawl(tmp_path):
    curable = (*TRANSIENT_FAULTS, "slow", "bad-utf8")
    with FixtureSite(slow_seconds=1.0) as site:
        config = local_config(site, read_timeout=0.3, concurrency=4)
        crawl_into_archive(config, tmp_path / "clean.db")
        faults = FixtureSite.seeded_faults(seed=7, fraction=0.3, kinds=curable)
        site.set_faults(faults)
        site.reset_stats()
        # Its own folder: captures live beside the database.
        faulty = tmp_path / "faulty" / "micropause.db"
        report = crawl_into_archive(config, faulty)
        met = {r.fault for r in site.requests if r.fault}
        asked = {r.path for r in site.requests}
    assert met == set(curable)  # every kind really happened
    assert report.result.complete, [p.error for p in report.result.failed]
    # Every faulting URL the crawl asked for was retried until it answered.
    assert report.result.stats.retries >= len(asked & set(faults))
    assert rows(faulty, CONTENT) == rows(tmp_path / "clean.db", CONTENT)
    assert rows(faulty, PROGRAMS) == rows(tmp_path / "clean.db", PROGRAMS)
    # Its captures hold the corrupted answers as well as the retried ones: reparse skips the
    # broken and gives the same archive again.
    reparse(config, faulty)
    assert rows(faulty, CONTENT) == rows(tmp_path / "clean.db", CONTENT)
    assert rows(faulty, PROGRAMS) == rows(tmp_path / "clean.db", PROGRAMS)


@pytest.mark.parametrize("fault", ["not-html", "offsite", "loop", "huge"])
def test_a_page_that_finally_fails_is_recorded_and_removes_nothing(tmp_path, fault):
    path = "/video/soft-eyes/"
    db_path = tmp_path / "a.db"
    with FixtureSite() as site:
        config = local_config(site, max_response_bytes=1_000_000)
        crawl_into_archive(config, db_path)
        site.unpublish("jaw-and-tongue")
        site.set_faults({path: [fault] * 10})
        report = crawl_into_archive(config, db_path)
    assert not report.result.complete
    (page,) = rows(db_path, "select * from pages where url like ?", [f"%{path}"])
    assert page["error"] and page["run_id"] == report.run_id
    assert page["capture_file"] == "1.warc.gz"  # the last good capture is still referenced
    assert rows(db_path, "select count(*) n from lessons where removed_at is not null") == [
        {"n": 0}
    ]
    (run,) = rows(db_path, "select status, pages_failed from runs where id = ?", [report.run_id])
    assert run == {"status": "incomplete", "pages_failed": 1}


def crawl_command(site, db_path) -> list[str]:
    return [sys.executable, "-m", "pipeline", *cli_args(site, db_path, "--concurrency", "2")]


def integrity(db_path) -> str:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


EDITED = "soft-eyes"
NEW_TEXT = "Changed before the killed run."


@pytest.fixture(scope="module")
def recrawl_requests(tmp_path_factory) -> int:
    """How many requests the re-crawl that the kill test interrupts makes when left alone."""
    with FixtureSite() as site:
        db_path = tmp_path_factory.mktemp("count") / "a.db"
        crawl_into_archive(local_config(site), db_path)
        site.edit(EDITED, description=[NEW_TEXT])
        site.reset_stats()
        crawl_into_archive(local_config(site), db_path)
        return site.request_count


@pytest.mark.parametrize("at", [0.02, 0.3, 0.9, 1.0])
def test_sigkill_at_any_point_leaves_a_consistent_archive(tmp_path, recrawl_requests, at):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        subprocess.run(crawl_command(site, db_path), capture_output=True, check=True)
        before = {r["slug"]: r for r in rows(db_path, CONTENT)}
        site.edit(EDITED, description=[NEW_TEXT])
        site.reset_stats()
        crawler = subprocess.Popen(crawl_command(site, db_path), stdout=subprocess.DEVNULL)
        assert site.wait_for_requests(max(1, int(at * recrawl_requests)), timeout=60)
        crawler.send_signal(signal.SIGKILL)
        crawler.wait()

        assert integrity(db_path) == "ok"
        after = {r["slug"]: r for r in rows(db_path, CONTENT)}
        # Either the previous archive or the whole newer one: never a half-written run.
        assert after.keys() == before.keys()
        assert {k: v for k, v in after.items() if k != EDITED} == {
            k: v for k, v in before.items() if k != EDITED
        }
        assert after[EDITED]["description"] in (before[EDITED]["description"], NEW_TEXT)
        # Captures already written stay readable.
        assert list(read_responses(Layout(db_path).captures))

        again = subprocess.run(crawl_command(site, db_path), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    statuses = [r["status"] for r in rows(db_path, "select status from runs order by id")]
    # The killed run is closed as interrupted by the next one (unless it finished first).
    assert statuses[0] == "ok" and statuses[-1] == "ok"
    assert set(statuses[1:-1]) <= {"interrupted", "ok"} and len(statuses) == 3
    assert rows(db_path, CONTENT)[0].keys() == next(iter(before.values())).keys()
    assert {r["slug"]: r["description"] for r in rows(db_path, CONTENT)}[EDITED] == NEW_TEXT


def test_ctrl_c_ends_cleanly_and_records_the_run_as_interrupted(tmp_path):
    db_path = tmp_path / "a.db"
    with FixtureSite(latency=0.01) as site:
        crawler = subprocess.Popen(
            crawl_command(site, db_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert site.wait_for_requests(20, timeout=60)
        crawler.send_signal(signal.SIGINT)
        _out, err = crawler.communicate(timeout=60)
    assert crawler.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "interrupted: the run is recorded as interrupted; nothing else changed"
    ]
    assert rows(db_path, "select status from runs") == [{"status": "interrupted"}]
    assert rows(db_path, "select count(*) n from lessons") == [{"n": 0}]


def test_a_failure_while_writing_leaves_the_previous_archive(tmp_path, monkeypatch):
    db_path = tmp_path / "a.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        before = {t: rows(db_path, f"select * from {t}") for t in ("lessons", "programs")}
        site.edit("soft-eyes", description=["Never stored."])

        def disk_full(db):
            raise sqlite3.OperationalError("database or disk is full")

        # The search index is rebuilt last, after lessons, programs and pages were written.
        monkeypatch.setattr(history, "refresh_search", disk_full)
        with pytest.raises(ArchiveWriteError) as raised:
            crawl_into_archive(config, db_path)
    assert raised.value.exit_code == 2 and "disk is full" in str(raised.value)
    assert {t: rows(db_path, f"select * from {t}") for t in ("lessons", "programs")} == before
    last = rows(db_path, "select status, error from runs order by id desc limit 1")[0]
    assert last["status"] == "failed" and "disk is full" in last["error"]


HOSTILE_TITLE = '<script>alert(1)</script> & "quotes", 2: <b>bold</b>'
CONTROL = "bell\x07 escape\x1b[31m tab\tend"


def hostile_lessons() -> list[Lesson]:
    base = dict(author="<img src=x onerror=alert(1)>", categories=["Feet"], listed=True)
    return [
        Lesson(
            slug="hostile-markup",
            title=HOSTILE_TITLE,
            published="2030-01-02",
            modified="2030-01-02T00:00:00Z",
            description=["<iframe src='http://evil.example/'></iframe>", "line\u2028sep"],
            post_id=9101,
            **base,
        ),
        Lesson(
            slug="hostile-long",
            title="Long " * 2000,
            published="2030-01-03",
            modified="2030-01-03T00:00:00Z",
            description=["x" * 200_000, CONTROL],
            post_id=9102,
            **base,
        ),
    ]


def test_hostile_text_is_stored_as_text(tmp_path):
    db_path = tmp_path / "a.db"
    with FixtureSite() as site:
        for lesson in hostile_lessons():
            site.publish(lesson)
        report = crawl_into_archive(local_config(site), db_path)
    assert report.result.complete
    markup = rows(db_path, "select * from lessons where slug = 'hostile-markup'")[0]
    assert markup["title"] == HOSTILE_TITLE
    assert markup["author"] == "<img src=x onerror=alert(1)>"
    assert markup["description"].startswith("<iframe src='http://evil.example/'></iframe>")
    # The comma-number-colon inside the markup is still split on the last ", <n>: ".
    assert markup["part"] == 2 and markup["subtitle"] == "<b>bold</b>"
    long = rows(db_path, "select * from lessons where slug = 'hostile-long'")[0]
    assert long["title"] == ("Long " * 2000).strip()
    assert long["description"].startswith("x" * 200_000)
    # Control characters are content: kept, not dropped or escaped (tabs fold like spaces).
    assert "bell\x07 escape\x1b[31m" in long["description"]
    hits = rows(
        db_path,
        "select rowid from lessons_fts where lessons_fts match ?",
        ['"script alert"'],
    )
    assert hits == [{"rowid": markup["id"]}]

    # Exported exactly: CSV through the csv module and JSON give back the stored text.
    snapshot = export_snapshot(db_path, tmp_path / "exports")
    # Python's csv module refuses fields over 128 KiB unless told otherwise (docs/snapshots.md
    # says so).
    limit = csv.field_size_limit(sys.maxsize)
    try:
        with open(snapshot.path / "lessons.csv", encoding="utf-8-sig", newline="") as f:
            exported = {r["slug"]: r for r in csv.DictReader(f)}
    finally:
        csv.field_size_limit(limit)
    from_json = {
        r["slug"]: r for r in json.loads((snapshot.path / "lessons.json").read_text("utf-8"))
    }
    for stored in (markup, long):
        for column in ("title", "author", "description"):
            assert exported[stored["slug"]][column] == stored[column]
            assert from_json[stored["slug"]][column] == stored[column]
