"""A hostile or merely odd site cannot corrupt the archive's history or wedge the scheduled job.

Each test crawls a local server that answers one URL the way a broken or malicious server would
(tests/site/hostile.py) and checks what an archivist relies on: the run ends, says what went
wrong in one line, records the page's error, and never marks a live lesson removed.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from pipeline import page as page_module
from pipeline.captures import CaptureWriter
from pipeline.cli import main
from pipeline.errors import ArchiveWriteError
from pipeline.frontier import LOOKAHEAD
from pipeline.run import crawl_into_archive
from tests.conftest import START_SLUG, cli_args, local_config
from tests.site.hostile import MARKUP_LOCATION, HostileSite

VICTIM = "soft-eyes"
VICTIM_PATH = f"/video/{VICTIM}/"
# Peak RSS of a whole crawl process of the fixture site is ~60 MB; the numbers in the
# hostile pages used to take 875 MB to 1.4 GB.
MAX_RSS_MB = 250


def rows(db_path, sql, params=()):
    return [dict(r) for r in Database(db_path).query(sql, params)]


def lesson(db_path, slug):
    (row,) = rows(db_path, "select * from lessons where slug = ?", [slug])
    return row


def page(db_path, path):
    (row,) = rows(db_path, "select * from pages where url like ?", [f"%{path}"])
    return row


def last_run(db_path):
    return rows(db_path, "select * from runs order by id desc limit 1")[0]


def removed(db_path):
    return rows(db_path, "select slug from lessons where removed_at is not null")


def invoke(site, db_path, *extra):
    return CliRunner().invoke(main, cli_args(site, db_path, *extra))


# Runs the crawl as a child and prints the child's peak RSS in kB: the parent's own children
# (a browser in another test) do not count.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stdout + done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def crawl_process(site, db_path, *extra, timeout=60):
    """A real `micropause crawl` process: its exit code, its output, its peak RSS in MB."""
    command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "pipeline"]
    done = subprocess.run(
        [*command, *cli_args(site, db_path, *extra)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr, int(done.stdout.strip()) / 1024


@pytest.fixture
def archived(tmp_path):
    """An archive of one clean crawl, and the hostile site (well-behaved until told) it came
    from."""
    db_path = tmp_path / "micropause.db"
    with HostileSite() as site:
        crawl_into_archive(local_config(site), db_path)
        yield site, db_path


def hostile(site: HostileSite, path: str, case: str, times: int = 10) -> None:
    site._cases[path] = [case] * times


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_a_bogus_charset_falls_back_to_the_pages_own_and_keeps_the_lesson(archived, concurrency):
    site, db_path = archived
    before = lesson(db_path, VICTIM)
    hostile(site, VICTIM_PATH, "bogus-charset")
    report = crawl_into_archive(local_config(site, concurrency=concurrency), db_path)
    assert (VICTIM_PATH, "bogus-charset") in site.served
    assert report.result.complete
    after = lesson(db_path, VICTIM)
    assert after["removed_at"] is None
    assert after["description"] == before["description"]
    fetched = page(db_path, VICTIM_PATH)
    assert fetched["error"] is None
    assert "unknown charset 'undefined'" in fetched["warning"]


@pytest.mark.timeout(60)
def test_links_holding_control_characters_are_not_followed_and_the_crawl_ends(archived):
    site, db_path = archived
    hostile(site, f"/video/{START_SLUG}/", "control-char-links")
    result = invoke(site, db_path, "--concurrency", "2")
    assert result.exit_code == 0, result.output
    assert not any("bad" in r.path for r in site.requests)
    assert last_run(db_path)["status"] == "ok"
    assert removed(db_path) == []
    # The lock was let go: the next scheduled run can start.
    assert invoke(site, db_path).exit_code == 0


def test_a_truncated_gzip_stream_is_retried_like_a_short_body(archived):
    site, db_path = archived
    hostile(site, VICTIM_PATH, "truncated-gzip", times=1)
    report = crawl_into_archive(local_config(site), db_path)
    assert report.result.complete
    assert report.result.stats.retries >= 1


def test_a_body_that_stays_truncated_fails_the_page_and_keeps_the_stored_text(archived):
    site, db_path = archived
    before = lesson(db_path, VICTIM)
    site.edit(VICTIM, description=["A new text the run must not store cut short. " * 80])
    hostile(site, VICTIM_PATH, "truncated-gzip")
    report = crawl_into_archive(local_config(site), db_path)
    assert not report.result.complete
    assert "truncated gzip body" in page(db_path, VICTIM_PATH)["error"]
    after = lesson(db_path, VICTIM)
    assert after["description"] == before["description"] and after["removed_at"] is None
    assert last_run(db_path)["status"] == "incomplete"


def test_page_1_of_a_million_is_read_as_no_page_count(archived):
    site, db_path = archived
    hostile(site, f"/video/{START_SLUG}/", "page-count-1000000")
    code, output, rss = crawl_process(site, db_path, "--max-pages", "3")
    assert code == 0, output
    assert rss < MAX_RSS_MB
    run = last_run(db_path)
    assert run["anomalies"] >= 1
    assert "page count out of range" in page(db_path, f"/video/{START_SLUG}/")["warning"]
    # Only page numbers the site can have were ever asked for.
    assert not any("/page/1000000/" in r.path for r in site.requests)


@pytest.mark.parametrize("recrawl", [False, True])
def test_a_listing_claiming_the_most_pages_believed_queues_only_what_is_fetched(tmp_path, recrawl):
    db_path = tmp_path / "micropause.db"
    with HostileSite() as site:
        if recrawl:
            crawl_into_archive(local_config(site), db_path)
        known = len(rows(db_path, "select url from pages")) if recrawl else 0
        for listed in site.lessons:
            hostile(site, f"/video/{listed.slug}/", "page-count-10000")
        report = crawl_into_archive(local_config(site), db_path, max_pages=5)
    # Each page fetched queues at most LOOKAHEAD listing pages and the lessons it lists; a
    # re-crawl also asks every page it knows again.
    assert len(report.result.pages) <= known + 5 * (LOOKAHEAD + site.per_page) + 5
    assert report.result.anomalies == 0


@pytest.mark.parametrize("case", ["part-date", "part-5000000", "part-10e20"])
def test_a_part_number_out_of_range_makes_a_standalone_lesson(archived, case):
    site, db_path = archived
    hostile(site, VICTIM_PATH, case)
    code, output, rss = crawl_process(site, db_path)
    assert code == 0, output
    assert "Traceback" not in output
    assert rss < MAX_RSS_MB
    stored = lesson(db_path, VICTIM)
    assert stored["title"].startswith("Hostile program, ")
    assert (stored["program_id"], stored["part"]) == (None, None)
    assert last_run(db_path)["anomalies"] == 1
    assert "out of range" in page(db_path, VICTIM_PATH)["warning"]
    longest = max(
        len(json.loads(p["parts_missing"])) for p in rows(db_path, "select * from programs")
    )
    assert longest < 1000


@pytest.mark.timeout(60)
def test_a_crawl_delay_above_the_ceiling_ends_the_run_before_its_second_request(tmp_path):
    db_path = tmp_path / "micropause.db"
    with HostileSite() as site:
        crawl_into_archive(local_config(site), db_path)
        before = rows(db_path, "select * from lessons")
        site.robots_txt = "User-agent: *\nCrawl-delay: 86400\n"
        site.reset_stats()
        result = invoke(site, db_path)
        assert [r.path for r in site.requests] == ["/robots.txt"]
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "Crawl-delay: 86400" in line and "politeness.max_crawl_delay = 30" in line
    assert rows(db_path, "select * from lessons") == before
    assert last_run(db_path)["status"] == "failed"


@pytest.mark.parametrize(
    ("fault", "message"),
    [("500", "answered HTTP 500"), ("offsite", "redirects off the site")],
)
def test_a_robots_txt_that_cannot_be_read_forbids_the_crawl_and_says_why(tmp_path, fault, message):
    with HostileSite(faults={"/robots.txt": [fault] * 10}) as site:
        result = invoke(site, tmp_path / "micropause.db")
        assert all(r.path == "/robots.txt" for r in site.requests)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert message in line and "not allowed" in line


def test_only_the_first_500_kib_of_robots_txt_is_read(tmp_path):
    padding = "# " + "x" * 98 + "\n"
    robots = (
        "User-agent: *\nDisallow: /video/soft-eyes/\n"
        + padding * (600 * 1024 // len(padding))
        + "Disallow: /video/\n"  # past 500 KiB: ignored
    )
    with HostileSite(robots_txt=robots) as site:
        report = crawl_into_archive(local_config(site), tmp_path / "micropause.db")
        paths = {r.path for r in site.requests}
    assert report.result.complete
    assert VICTIM_PATH not in paths
    assert f"/video/{START_SLUG}/" in paths


def test_site_text_holding_console_markup_is_printed_as_text(archived):
    site, db_path = archived
    hostile(site, VICTIM_PATH, "markup-redirect")
    result = invoke(site, db_path)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert MARKUP_LOCATION in result.output
    status = CliRunner().invoke(main, ["status", "--db", str(db_path)])
    assert status.exit_code == 0, status.output
    assert "Traceback" not in status.output


def test_control_characters_from_the_site_never_reach_the_terminal(archived):
    site, db_path = archived
    # An error message holding an escape sequence, as a hostile server could make one.
    site.offsite_url = "http://127.0.0.2:9/\x1b[2J\x07/"
    site.set_faults({VICTIM_PATH: ["offsite"] * 10})
    result = invoke(site, db_path)
    assert "\x1b" not in result.output and "\x07" not in result.output
    # Whatever the archive holds is shown as text: markup, escapes and all.
    stored = "[/oops] \x1b[2J\x9b31m"
    runs = Database(db_path)["runs"]
    runs.update(last_run(db_path)["id"], {"error": stored, "health": "[]"})
    runs.update(1, {"health": "[not json"})
    status = CliRunner().invoke(main, ["status", "--db", str(db_path)])
    assert status.exit_code == 0, status.output
    assert "\x1b" not in status.output and "\x9b" not in status.output
    shown = "".join(status.output.split())  # the table wraps long cells
    assert "[/oo" in shown and "[notjson" in shown  # long cells end in "…"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_exception_while_extracting_one_page_is_that_pages_failure(
    archived, monkeypatch, concurrency
):
    site, db_path = archived
    real_extract = page_module.extract

    def extract(html, url, selectors):
        if url.endswith(VICTIM_PATH):
            raise RuntimeError("extractor bug on this page")
        return real_extract(html, url, selectors)

    monkeypatch.setattr(page_module, "extract", extract)
    site.edit(VICTIM, description=["Changed, so the page is read again (not a 304)."])
    site.unpublish("jaw-and-tongue")  # gone, but an incomplete run must not say so
    report = crawl_into_archive(local_config(site, concurrency=concurrency), db_path)
    assert not report.result.complete
    assert page(db_path, VICTIM_PATH)["error"] == "RuntimeError: extractor bug on this page"
    run = last_run(db_path)
    assert run["status"] == "incomplete" and run["pages_failed"] == 1
    assert removed(db_path) == []


@pytest.mark.timeout(60)
def test_a_full_captures_disk_stops_the_run_at_once_with_one_line(archived, monkeypatch):
    site, db_path = archived
    before = rows(db_path, "select * from lessons")
    written = []
    real_call = CaptureWriter.__call__

    def call(self, response):
        if len(written) >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(response.url)
        real_call(self, response)

    monkeypatch.setattr(CaptureWriter, "__call__", call)
    site.edit(VICTIM, description=["Never stored: the captures disk is full."])
    result = invoke(site, db_path, "--concurrency", "4")
    assert result.exit_code == ArchiveWriteError.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "No space left on device" in line
    assert rows(db_path, "select * from lessons") == before
    run = last_run(db_path)
    assert run["status"] == "failed" and "No space left" in run["error"]
    monkeypatch.undo()
    assert invoke(site, db_path).exit_code == 0  # the lock was let go


def test_a_run_past_its_deadline_stops_and_marks_nothing_removed(archived):
    site, db_path = archived
    site.unpublish("jaw-and-tongue")
    site.latency = 0.05
    config = local_config(site, concurrency=1, max_run_seconds=0.5)
    report = crawl_into_archive(config, db_path)
    assert report.result.deadline_passed and not report.result.complete
    assert last_run(db_path)["status"] == "incomplete"
    assert removed(db_path) == []
