"""The capture files are WARC as the anchors write it (Heritrix, Browsertrix Crawler): WARC 1.1
with microsecond dates, every record tied to a warcinfo that says who crawled, as whom, why and
under which robots policy, and 304s written as revisits that replay tools resolve."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.archive import Layout
from pipeline.captures import CaptureRef, CaptureWriter
from pipeline.config import load_config
from pipeline.export import export_snapshot
from pipeline.fetch import Fetched
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, local_config
from tests.site.server import FixtureSite

MICROSECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A first crawl and an unchanged re-crawl of the fixture site."""
    db_path = tmp_path_factory.mktemp("warc") / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        crawl_into_archive(config, db_path)
    return Layout(db_path).captures


def records(path):
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            record.content_stream().read()
            yield record


def test_warcio_check_passes_on_every_capture_file(two_runs):
    files = sorted(two_runs.glob("*.warc.gz"))
    assert [f.name for f in files] == ["1.warc.gz", "2.warc.gz"]
    checked = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "digest pass" in checked.stdout


def test_warcio_check_passes_on_a_snapshots_warc_too(two_runs, tmp_path):
    """The snapshot's WARC is records copied whole from the capture files: still valid."""
    snapshot = export_snapshot(two_runs.parent / "micropause.db", tmp_path / "exports")
    with zipfile.ZipFile(snapshot.path / "captures.wacz") as wacz:
        (name,) = [n for n in wacz.namelist() if n.startswith("archive/")]
        packed = tmp_path / name.rsplit("/", 1)[-1]
        packed.write_bytes(wacz.read(name))
    checked = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", str(packed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kinds = [r.rec_type for r in records(packed)]
    assert kinds[0] == "warcinfo" and kinds.count("warcinfo") == 2  # one per run it draws on
    assert "revisit" in kinds and "response" in kinds


def test_every_record_is_warc_1_1_with_microseconds_and_names_its_warcinfo(two_runs):
    for path in sorted(two_runs.glob("*.warc.gz")):
        info, *rest = list(records(path))
        assert info.rec_type == "warcinfo"
        info_id = info.rec_headers.get_header("WARC-Record-ID")
        assert rest
        for record in rest:
            assert record.rec_headers.protocol == "WARC/1.1"
            assert MICROSECONDS.match(record.rec_headers.get_header("WARC-Date")), path
            assert record.rec_headers.get_header("WARC-Warcinfo-ID") == info_id
            if record.rec_type in ("response", "revisit"):
                assert record.rec_headers.get_header("WARC-IP-Address") == "127.0.0.1"
        # Two responses within one second still sort in the order they were received.
        dates = [r.rec_headers.get_header("WARC-Date") for r in rest if r.rec_type != "request"]
        assert len(set(dates)) == len(dates)


def test_warcinfo_names_operator_user_agent_robots_policy_and_purpose(two_runs):
    config = load_config(CONFIG_PATH)
    with open(two_runs / "1.warc.gz", "rb") as f:
        block = next(ArchiveIterator(f)).content_stream().read().decode()
    fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
    assert fields["operator"] == config.warc.operator
    assert fields["description"] == config.warc.purpose
    assert fields["http-header-user-agent"] == config.politeness.user_agent
    assert fields["robots"] == "obey"
    assert fields["format"] == "WARC File Format 1.1"
    assert fields["software"].startswith("micropause-archive/")


def test_a_304_is_a_revisit_carrying_the_original_status_headers_and_payload_digest(two_runs):
    originals = {
        r.rec_headers.get_header("WARC-Record-ID"): r
        for r in records(two_runs / "1.warc.gz")
        if r.rec_type == "response"
    }
    revisits = [r for r in records(two_runs / "2.warc.gz") if r.rec_type == "revisit"]
    lessons = [r for r in revisits if "/video/" in r.rec_headers.get_header("WARC-Target-URI")]
    assert len(lessons) >= 50  # every lesson page of an unchanged site
    for revisit in revisits:
        headers = revisit.rec_headers
        assert headers.get_header("WARC-Profile") == (
            "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
        )
        original = originals[headers.get_header("WARC-Refers-To")]
        url = headers.get_header("WARC-Target-URI")
        assert headers.get_header("WARC-Refers-To-Target-URI") == url
        assert original.rec_headers.get_header("WARC-Target-URI") == url
        assert headers.get_header("WARC-Refers-To-Date") == original.rec_headers.get_header(
            "WARC-Date"
        )
        assert headers.get_header("WARC-Payload-Digest") == original.rec_headers.get_header(
            "WARC-Payload-Digest"
        )
        # The original's answer, not the 304: what a replay tool shows with the payload.
        assert revisit.http_headers.statusline == original.http_headers.statusline == "200 OK"
        assert revisit.http_headers.headers == original.http_headers.headers


def test_a_304_whose_original_cannot_be_read_is_kept_as_the_server_sent_it(tmp_path):
    """The fallback: the original capture is gone from disk, so its headers and digest are
    unknown; the revisit says what the server said (server-not-modified)."""
    url = "http://127.0.0.1:1/video/soft-eyes/"
    earlier = {url: CaptureRef("1.warc.gz", 0, "<urn:uuid:gone>", "2026-01-01T00:00:00Z")}
    writer = CaptureWriter(tmp_path, 2, earlier)
    writer(
        Fetched(
            url=url,
            status=304,
            headers=(("ETag", '"x"'),),
            body=b"",
            request_headers=(("If-None-Match", '"x"'),),
            http_version="HTTP/1.1",
            fetched_at="2026-01-02T00:00:00.000001+00:00",
        )
    )
    writer.close()
    (revisit,) = [r for r in records(tmp_path / "2.warc.gz") if r.rec_type == "revisit"]
    assert revisit.rec_headers.get_header("WARC-Profile").endswith("/server-not-modified")
    assert revisit.http_headers.get_statuscode() == "304"
    assert revisit.rec_headers.get_header("WARC-Date") == "2026-01-02T00:00:00.000001Z"


def test_robots_txt_is_asked_for_conditionally_and_its_rules_still_hold(tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.reset_stats()
        crawl_into_archive(config, db_path)
        robots = [r for r in site.requests if r.path == "/robots.txt"]
        paths = {r.path for r in site.requests}
    assert [r.status for r in robots] == [304]
    assert "if-none-match" in robots[0].headers
    # The stored copy's rules: the lesson robots.txt disallows is still never asked for.
    assert "/video/staff-preview/" not in paths
    revisits = [
        r
        for r in records(Layout(db_path).captures / "2.warc.gz")
        if r.rec_type != "request"
        and (r.rec_headers.get_header("WARC-Target-URI") or "").endswith("/robots.txt")
    ]
    assert [r.rec_type for r in revisits] == ["revisit"]


def test_robots_txt_is_asked_for_in_full_when_its_stored_copy_is_gone(tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        (Layout(db_path).captures / "1.warc.gz").unlink()
        site.reset_stats()
        crawl_into_archive(config, db_path)
        robots = [r for r in site.requests if r.path == "/robots.txt"]
        paths = {r.path for r in site.requests}
    assert [r.status for r in robots] == [304, 200]
    assert "if-none-match" not in robots[1].headers
    assert "/video/staff-preview/" not in paths


def test_a_snapshot_of_bare_304_revisits_replays_the_bodies_they_confirm(tmp_path, monkeypatch):
    """Captures written before revisits carried the original's answer hold bare 304s: a
    snapshot leaves those out, so the newest capture of each page is one that replays."""
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        monkeypatch.setattr(CaptureWriter, "_original", lambda self, ref: None)
        crawl_into_archive(config, db_path)
    bare = [r for r in records(Layout(db_path).captures / "2.warc.gz") if r.rec_type == "revisit"]
    assert bare and all(r.http_headers.get_statuscode() == "304" for r in bare)
    snapshot = export_snapshot(db_path, tmp_path / "exports")
    with zipfile.ZipFile(snapshot.path / "captures.wacz") as wacz:
        (name,) = [n for n in wacz.namelist() if n.startswith("archive/")]
        packed = list(ArchiveIterator(io.BytesIO(wacz.read(name))))
    assert not [r for r in packed if r.rec_type == "revisit"]
    urls = {r.rec_headers.get_header("WARC-Target-URI") for r in packed if r.rec_type == "response"}
    assert {r.rec_headers.get_header("WARC-Target-URI") for r in bare} <= urls
