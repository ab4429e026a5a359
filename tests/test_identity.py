"""A lesson is its path on the site: stored under the URL it was fetched from whatever its
canonical link claims, kept through a move of the site to another scheme, host or port, and
marked removed only when its own URL answers that it is gone. Every crawl here is of the
fixture site on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.publish import build_datasette
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, START_SLUG, cli_args, local_config
from tests.site.hostile import HostileSite
from tests.site.server import DEFAULT_ROBOTS, FixtureSite, Lesson

A = "the-heavy-arms"  # the lesson whose canonical an editor changed
B = "feet-on-the-ground"  # the lesson it names


def query(db_path, sql, params=()):
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        found = [dict(row) for row in db.execute(sql, params)]
    db.close()
    return found


def lesson(db_path, slug):
    (row,) = query(db_path, "select * from lessons where slug = ?", [slug])
    return row


def page_warning(db_path, url):
    (row,) = query(db_path, "select warning from pages where url = ?", [url])
    return row["warning"] or ""


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "archive" / "micropause.db"


def test_a_canonical_naming_another_lesson_stores_both_under_their_own_urls(db_path):
    with FixtureSite(canonicals={A: "{url}/video/" + B + "/"}) as site:
        report = crawl_into_archive(local_config(site), db_path)
        a_text = site.lesson(A)
        b_text = site.lesson(B)
    assert report.result.complete and report.status == "ok"
    a, b = lesson(db_path, A), lesson(db_path, B)
    assert a["url"] == site.lesson_url(A) and a["title"] == a_text.title
    assert b["url"] == site.lesson_url(B) and b["title"] == b_text.title
    assert a["description"] == "\n\n".join(a_text.description)
    assert b["description"] == "\n\n".join(b_text.description)
    assert report.result.anomalies == 1
    (run,) = query(db_path, "select anomalies from runs")
    assert run["anomalies"] == 1
    assert f"canonical names another lesson: {site.lesson_url(B)}" in page_warning(
        db_path, site.lesson_url(A)
    )


@pytest.mark.parametrize(
    ("claim", "anomaly"),
    [
        ("{url}/video/" + B + "/page/2/", "canonical names a listing page"),
        ("{url}/video/no-such-lesson/", "canonical names another lesson"),  # answers 404
        ("https://elsewhere.example/video/" + A + "/", "outside the site's lessons"),
        ("{url}/about/", "outside the site's lessons"),
    ],
    ids=["listing", "404", "another-host", "not-a-lesson"],
)
def test_a_canonical_claim_never_moves_a_lesson(db_path, crawled_archive, claim, anomaly):
    with FixtureSite(canonicals={A: claim}) as site:
        report = crawl_into_archive(local_config(site), db_path)
        title = site.lesson(A).title
    assert report.status == "ok"
    assert lesson(db_path, A)["url"] == site.lesson_url(A)
    assert lesson(db_path, A)["title"] == title
    # The same lessons as a crawl of the unchanged site, each under its own URL: nothing is
    # stored under the claimed URL.
    rows = query(db_path, "select slug, url, title from lessons order by slug")
    assert [row["slug"] for row in rows] == [
        row["slug"] for row in query(crawled_archive, "select slug from lessons order by slug")
    ]
    assert all(row["url"] == site.lesson_url(row["slug"]) for row in rows)
    assert report.result.anomalies == 1
    assert anomaly in page_warning(db_path, site.lesson_url(A))


@pytest.mark.parametrize(
    "claim",
    [
        "{url}/video/" + A,  # no trailing slash
        "{url}/video/" + A + "/?utm_source=feed",
        "https://movementality.se/video/" + A + "/",  # a copy's pages name the real site
        "https://www.movementality.se/video/" + A + "/",
    ],
    ids=["no-slash", "query", "real-site", "www"],
)
def test_a_canonical_that_is_a_trivial_variant_of_the_page_is_no_anomaly(db_path, claim):
    with FixtureSite(canonicals={A: claim}) as site:
        report = crawl_into_archive(local_config(site), db_path)
    assert report.result.anomalies == 0
    assert lesson(db_path, A)["url"] == site.lesson_url(A)


@pytest.mark.parametrize("case", ["canonical-unparsable", "canonical-script"])
def test_a_canonical_no_parser_accepts_is_an_anomaly_and_the_lesson_stays(db_path, case):
    with HostileSite(cases={f"/video/{A}/": [case] * 10}) as site:
        report = crawl_into_archive(local_config(site), db_path)
    assert (f"/video/{A}/", case) in site.served
    assert report.status == "ok" and not report.result.failed
    assert lesson(db_path, A)["url"] == site.lesson_url(A)
    assert report.result.anomalies == 1
    assert "canonical names a URL outside the site's lessons" in page_warning(
        db_path, site.lesson_url(A)
    )


def test_a_lesson_redirected_to_a_url_that_answers_404_is_removed(db_path):
    with HostileSite() as site:
        crawl_into_archive(local_config(site), db_path)
        site.set_cases({f"/video/{A}/": ["redirect-to-404"] * 10})
        report = crawl_into_archive(local_config(site), db_path)
    assert (f"/video/{A}/", "redirect-to-404") in site.served
    assert report.status == "ok" and report.counts.removed == 1
    assert lesson(db_path, A)["removed_at"] is not None


def test_a_lesson_named_only_by_another_lessons_canonical_is_queued(db_path):
    hidden = "a-lesson-only-a-canonical-names"
    with FixtureSite() as site:
        unlisted = Lesson(
            slug=hidden,
            title="Hidden",
            categories=["Micro Pause"],
            description=["Only a canonical link names it."],
            listed=False,  # no listing or sitemap names it
        )
        site.publish(unlisted)
        site.canonicals = {A: f"{{url}}/video/{hidden}/"}
        crawl_into_archive(local_config(site), db_path)
    assert lesson(db_path, hidden)["title"] == "Hidden"


def syllabus(db_path) -> list[tuple]:
    """Every program's syllabus as `serve` publishes it (part, lesson), URLs left out."""
    response = asyncio.run(
        build_datasette(db_path).client.get("/micropause/syllabus.json?_shape=array")
    )
    assert response.status_code == 200, response.text
    return [(row["program"], row["part"], row["lesson"]) for row in response.json()]


def test_the_site_crawled_on_another_port_keeps_every_lessons_history(db_path):
    with FixtureSite() as first:
        crawl_into_archive(local_config(first), db_path)
    before = {row["slug"]: row for row in query(db_path, "select * from lessons")}
    parts = syllabus(db_path)
    assert len(parts) > 10  # every part of every program, gaps included
    programs = query(db_path, "select id, slug, name, lesson_count, parts_missing from programs")
    with FixtureSite() as moved:
        assert moved.url != first.url
        moved.edit(B, title="Feet on the ground, moved")  # edited while the site moved
        report = crawl_into_archive(local_config(moved), db_path)
        # Every lesson read in full on its new host: its capture is there, not a bare 304.
        assert report.result.stats.not_modified == 0
    assert report.status == "ok"
    counts = report.counts
    assert (counts.new, counts.removed, counts.changed) == (0, 0, 1)
    assert counts.moved == len(before)
    after = {row["slug"]: row for row in query(db_path, "select * from lessons")}
    assert {slug: row["id"] for slug, row in after.items()} == {
        slug: row["id"] for slug, row in before.items()
    }
    assert all(row["url"].startswith(moved.url) for row in after.values())
    assert all(row["removed_at"] is None for row in after.values())
    # The move is one version per lesson, from the old URL to the new.
    moves = query(
        db_path,
        "select l.slug, v.old, v.new from lesson_versions v join lessons l on l.id = v.lesson_id "
        "where v.event = 'moved'",
    )
    assert len(moves) == len(before) - 1
    (edited,) = query(
        db_path,
        "select v.event, v.old, v.new from lesson_versions v join lessons l on "
        "l.id = v.lesson_id where l.slug = ? and v.version = 2",
        [B],
    )
    assert edited["event"] == "changed"
    edit = json.loads(edited["new"])
    assert edit["title"] == "Feet on the ground, moved"
    assert edit["url"] == after[B]["url"]
    # A move changes the lesson's URL and the media the site itself serves (its thumbnail),
    # each to the same path on the new host, and nothing else.
    movable = {"url", "thumbnail_url", "video_url"}
    for move in moves:
        old, new = json.loads(move["old"]), json.loads(move["new"])
        assert "url" in old and old.keys() == new.keys() <= movable
        for field in old:
            assert old[field] == before[move["slug"]][field]
            assert new[field] == after[move["slug"]][field]
            assert urlsplit(old[field]).path == urlsplit(new[field]).path
    assert query(db_path, "select count(*) n from lesson_versions where event = 'removed'") == [
        {"n": 0}
    ]
    # The syllabus and `status` read the same archive as before.
    assert programs == query(
        db_path, "select id, slug, name, lesson_count, parts_missing from programs"
    )
    assert syllabus(db_path) == parts
    status = CliRunner().invoke(main, ["status", "--db", str(db_path)])
    assert f"{len(before)} lessons (0 removed), {len(programs)} programs" in status.output


def feed_ids(db_path) -> list[str]:
    response = asyncio.run(build_datasette(db_path).client.get("/micropause/changes.atom"))
    assert response.status_code == 200, response.text
    return [
        entry.findtext("{http://www.w3.org/2005/Atom}id")
        for entry in ET.fromstring(response.text).iter("{http://www.w3.org/2005/Atom}entry")
    ]


def test_a_move_of_the_site_keeps_every_feed_entrys_id(db_path):
    """A feed reader that has seen an entry must never see it again as new: the entry's id is
    the lesson's path and version, not the host the lesson was read from."""
    with FixtureSite() as first:
        crawl_into_archive(local_config(first), db_path)
        first.edit(B, title="Feet on the ground, again")
        crawl_into_archive(local_config(first), db_path)
    before = feed_ids(db_path)
    with FixtureSite() as moved:
        moved.edit(B, title="Feet on the ground, again")  # the same site, served elsewhere
        crawl_into_archive(local_config(moved), db_path)
    after = feed_ids(db_path)
    assert len(before) > 50
    assert after == before  # a move is no change on the site: no entry, and no id changed
    assert not any(first.url in entry or moved.url in entry for entry in after)


def test_a_lesson_robots_txt_newly_disallows_is_kept_and_the_run_says_why(db_path):
    kept = "soft-eyes"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        site.robots_txt = DEFAULT_ROBOTS + f"Disallow: /video/{kept}/\n"
        report = crawl_into_archive(local_config(site), db_path)
        result = CliRunner().invoke(main, cli_args(site, db_path))
        run_args = ["run", *cli_args(site, db_path)[1:], "--quiet"]
        logged = CliRunner().invoke(main, run_args)
    assert logged.exit_code == 0, logged.output
    assert report.status == "ok" and report.counts.removed == 0
    assert lesson(db_path, kept)["removed_at"] is None
    assert report.not_read == {"disallowed by robots.txt": [site.lesson_url(kept)]}
    (run,) = query(db_path, "select not_read from runs where id = ?", [report.run_id])
    assert json.loads(run["not_read"]) == report.not_read
    assert result.exit_code == 0, result.output
    assert (
        "not read, kept as last archived: 1 disallowed by robots.txt, e.g. "
        f"{site.lesson_url(kept)}" in result.output
    )
    assert (
        'WARNING lessons.not_read reason="disallowed by robots.txt" count=1 '
        f"example={site.lesson_url(kept)}" in logged.stderr
    )


def test_a_failed_lesson_page_is_kept_and_the_run_says_it_failed(db_path):
    kept = "soft-eyes"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.set_faults({f"/video/{kept}/": ["500"] * (config.retry.attempts + 1)})
        report = crawl_into_archive(config, db_path)
    assert lesson(db_path, kept)["removed_at"] is None
    assert report.not_read == {"failed": [site.lesson_url(kept)]}


def test_only_a_404_or_410_from_the_lessons_own_url_removes_it(db_path):
    gone = "lying-down-letting-go"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        site.unpublish(gone)
        report = crawl_into_archive(local_config(site), db_path)
    assert report.counts.removed == 1
    assert lesson(db_path, gone)["removed_at"] is not None


def test_every_lesson_replaced_by_as_many_others_is_unhealthy_and_removes_nothing(db_path):
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        published = len(site.lessons)
        fresh = site.replace_every_lesson()
        assert len(fresh) == published
        start = site.lesson_url(fresh[0])
        args = ["run", "--config", str(CONFIG_PATH), "--db", str(db_path), "--delay", "0"]
        result = CliRunner().invoke(main, [*args, "--start-url", start])
    assert result.exit_code == 3, result.output
    (run,) = query(db_path, "select status, health, lessons_removed from runs where id = 2")
    assert run["status"] == "unhealthy" and run["lessons_removed"] == 0
    assert "lesson_drop" in run["health"] and "the site may have moved" in run["health"]
    assert query(db_path, "select count(*) n from lessons where removed_at is not null") == [
        {"n": 0}
    ]


def test_the_start_lesson_is_the_fixtures_default(site):
    # The tests above edit lessons other than the one every crawl starts from.
    assert START_SLUG not in (A, B)
