"""The archive keeps history: versions, conditional re-crawls, safe removals, WARC captures,
and an offline reparse. Every test changes the real local site between crawls."""

from __future__ import annotations

import json

import pytest
from sqlite_utils import Database
from warcio.archiveiterator import ArchiveIterator

from pipeline.archive import Layout
from pipeline.config import load_config
from pipeline.reparse import reparse
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, local_config, without_audits
from tests.site.server import FixtureSite, Lesson

EDITED = "lying-down-letting-go"


def rows(db_path, sql, params=()):
    return [dict(r) for r in Database(db_path).query(sql, params)]


def lesson_row(db_path, slug):
    (row,) = rows(db_path, "select * from lessons where slug = ?", [slug])
    return row


def versions(db_path, slug):
    return rows(
        db_path,
        "select v.* from lesson_versions v join lessons l on l.id = v.lesson_id "
        "where l.slug = ? order by version",
        [slug],
    )


@pytest.fixture
def archive(site, config, tmp_path):
    """A first crawl of the fixture site; tests then change the site and crawl again."""
    db_path = tmp_path / "archive" / "micropause.db"
    crawl_into_archive(config, db_path)
    return db_path


def newest_lesson(slug: str, title: str, categories: list[str]) -> Lesson:
    return Lesson(
        slug=slug,
        title=title,
        author="josefine",
        published="2030-01-01",
        modified="2030-01-01T09:00:00Z",
        categories=categories,
        description=["A brand new pause.", "With two paragraphs."],
        post_id=9001,
    )


def test_first_sight_is_version_one_and_unchanged_lessons_write_none(site, config, archive):
    crawl_into_archive(config, archive)
    assert [v["event"] for v in versions(archive, EDITED)] == ["created"]
    (total,) = rows(archive, "select count(*) n from lesson_versions")
    (lessons,) = rows(archive, "select count(*) n from lessons")
    assert total["n"] == lessons["n"]


def test_an_edit_produces_exactly_one_version_with_old_and_new_values(site, config, archive):
    old = lesson_row(archive, EDITED)["description"]
    site.edit(EDITED, description=["Rewritten: lie down, let go."])
    report = crawl_into_archive(config, archive)
    assert report.counts.changed == 1
    _created, changed = versions(archive, EDITED)
    assert changed["event"] == "changed"
    assert changed["run_id"] == report.run_id
    assert json.loads(changed["changed"]) == ["description"]
    assert json.loads(changed["old"]) == {"description": old}
    assert json.loads(changed["new"]) == {"description": "Rewritten: lie down, let go."}
    assert lesson_row(archive, EDITED)["description"] == "Rewritten: lie down, let go."
    (others,) = rows(archive, "select count(*) n from lesson_versions where event = 'changed'")
    assert others["n"] == 1


def test_unchanged_recrawl_is_conditional_and_mostly_304(site, config, archive):
    first_bytes = sum(r.bytes_sent for r in site.requests)
    site.reset_stats()
    report = crawl_into_archive(config, archive)
    # The run's one audit (scope.audit_listings) walks a proven listing: its page 1 is asked
    # afresh, its other pages for the first time.
    assert report.result.listings.audited == 1
    (audited,) = {
        r.path
        for r in site.requests
        if r.path.startswith("/video/")
        and not r.headers.get("if-none-match")
        and "/page/" not in r.path
    }
    audit = [r for r in site.requests if r.path.startswith(audited)]
    conditional = [r for r in site.requests if "if-none-match" in r.headers]
    answered_304 = [r for r in site.requests if r.status == 304 and r.path != "/robots.txt"]
    pages = [r for r in site.requests if r not in audit]
    # Every page but the audit's is asked for conditionally, and so is robots.txt.
    assert len(conditional) == len(pages)
    assert len(answered_304) >= 0.9 * len(pages)
    # About one request per lesson: robots.txt, the sitemap, each lesson's page.
    assert site.request_count <= report.counts.lessons_found + 5 + len(audit)
    assert sum(r.bytes_sent for r in site.requests if r not in audit) < 0.05 * first_bytes
    assert report.result.stats.not_modified == len(answered_304)
    (run,) = rows(archive, "select * from runs where id = ?", [report.run_id])
    assert run["pages_not_modified"] == len(answered_304)
    assert (report.counts.new, report.counts.changed, report.counts.removed) == (0, 0, 0)


def test_new_lesson_is_found_when_every_other_page_answers_304(tmp_path):
    db_path = tmp_path / "micropause.db"
    # No sitemap: the new lesson can only be found through listings.
    with FixtureSite(sitemap=False) as site:
        config = without_audits(local_config(site))
        crawl_into_archive(config, db_path)
        site.publish(newest_lesson("a-new-pause", "A new pause", ["Feet"]))
        # Lessons whose listing does not show the new lesson: their pages did not change.
        unaffected = {
            lesson.slug
            for lesson in site.lessons
            if lesson.listed and "a-new-pause" not in {x.slug for x in site.listing(lesson.slug)}
        } - {"a-new-pause", "staff-preview"}
        site.reset_stats()
        report = crawl_into_archive(config, db_path)
        requests = list(site.requests)
    assert lesson_row(db_path, "a-new-pause")["title"] == "A new pause"
    assert report.counts.new == 1
    assert len(unaffected) > 20
    for slug in unaffected:
        asked = [r for r in requests if r.path.startswith(f"/video/{slug}/")]
        # One conditional request for page 1, answered 304; later pages not walked again.
        assert [(r.path, r.status) for r in asked] == [(f"/video/{slug}/", 304)]


def test_a_recrawl_after_a_publish_reads_listings_only_as_far_as_the_new_lesson(site, archive):
    config = without_audits(local_config(site))
    site.publish(newest_lesson("a-new-pause", "A new pause", ["Micro Pause"]))
    showing = [
        x.slug for x in site.lessons if "a-new-pause" in {y.slug for y in site.listing(x.slug)}
    ]
    site.reset_stats()
    report = crawl_into_archive(config, archive)
    later_pages = [r.path for r in site.requests if "/page/" in r.path]
    assert lesson_row(archive, "a-new-pause")["title"] == "A new pause"
    assert report.result.complete and report.counts.new == 1
    # Page 1 of each listing showing it changed; one more page each proves the rest is known.
    assert len(showing) > 20
    assert len(later_pages) <= len(showing)
    assert all(p.endswith("/page/2/") for p in later_pages)


@pytest.mark.parametrize("sitemap", [True, False])
def test_a_lesson_published_with_an_old_date_is_found(tmp_path, sitemap):
    """It lands deep in every listing, below pages that did not change: only the sitemap, or
    walking the listings to their end when there is none, can find it."""
    db_path = tmp_path / "micropause.db"
    with FixtureSite(sitemap=sitemap) as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        old = newest_lesson("an-old-pause", "An old pause", ["Micro Pause"])
        old.published, old.modified = "2019-01-01", "2019-01-01T09:00:00Z"
        site.publish(old)
        assert all(
            "an-old-pause" not in {x.slug for x in site.listing(s.slug)[:3]} for s in site.lessons
        )
        report = crawl_into_archive(config, db_path)
    assert lesson_row(db_path, "an-old-pause")["title"] == "An old pause"
    assert report.result.complete and report.counts.new == 1


def test_unpublished_lesson_is_removed_only_after_a_complete_run(site, config, archive):
    site.unpublish(EDITED)
    # A run in which a listing page keeps failing is incomplete: nothing may be removed.
    broken = "/video/soft-eyes/"
    site.set_faults({broken: ["500"] * (config.retry.attempts + 1)})
    partial = crawl_into_archive(config, archive)
    assert not partial.result.complete
    assert lesson_row(archive, EDITED)["removed_at"] is None
    site.set_faults({})
    complete = crawl_into_archive(config, archive)
    assert complete.result.complete
    assert complete.counts.removed == 1
    assert lesson_row(archive, EDITED)["removed_at"] is not None
    assert versions(archive, EDITED)[-1]["event"] == "removed"
    (program_row,) = rows(archive, "select count(*) n from lessons where removed_at is not null")
    assert program_row["n"] == 1


@pytest.mark.parametrize(("sitemap", "per_page"), [(True, 3), (False, 3), (False, 1)])
def test_republished_lesson_is_restored_with_a_version(tmp_path, sitemap, per_page):
    archive = tmp_path / "micropause.db"
    # One lesson a page: its listings run past the pages a walk queues ahead (crawl.LOOKAHEAD).
    with FixtureSite(sitemap=sitemap, per_page=per_page) as site:
        config = local_config(site)
        crawl_into_archive(config, archive)
        oldest = min((x for x in site.lessons if x.listed), key=lambda x: x.published).slug
        site.unpublish(oldest)
        crawl_into_archive(config, archive)
        assert lesson_row(archive, oldest)["removed_at"] is not None
        # Back with its old date: last in every listing, so no listing's page 1 changes and
        # only asking for its own page (or the sitemap) can find it.
        site.publish(oldest)
        assert all(oldest not in {x.slug for x in site.listing(s.slug)[:3]} for s in site.lessons)
        crawl_into_archive(config, archive)
    assert lesson_row(archive, oldest)["removed_at"] is None
    assert [v["event"] for v in versions(archive, oldest)] == ["created", "removed", "restored"]


def test_captures_open_with_warcio_and_pages_point_at_them(site, config, archive):
    warcs = sorted(Layout(archive).captures.glob("*.warc.gz"))
    assert [w.name for w in warcs] == ["1.warc.gz"]
    types, urls = [], set()
    with open(warcs[0], "rb") as f:
        for record in ArchiveIterator(f):
            types.append(record.rec_type)
            if record.rec_type == "response":
                urls.add(record.rec_headers.get_header("WARC-Target-URI"))
                assert record.rec_headers.get_header("WARC-Payload-Digest").startswith("sha1:")
    assert types[0] == "warcinfo"
    assert types.count("request") == types.count("response")
    (page,) = rows(archive, "select * from pages where url like '%/video/soft-eyes/'")
    assert page["url"] in urls
    with open(Layout(archive).captures / page["capture_file"], "rb") as f:
        f.seek(page["capture_offset"])
        record = next(iter(ArchiveIterator(f)))
        assert record.rec_headers.get_header("WARC-Target-URI") == page["url"]
        assert b"Soft eyes" in record.content_stream().read()


def test_a_304_is_captured_as_a_revisit_not_a_copy(site, config, archive):
    crawl_into_archive(without_audits(config), archive)
    with open(Layout(archive).captures / "2.warc.gz", "rb") as f:
        records = [r for r in ArchiveIterator(f) if r.rec_type in ("response", "revisit")]
    revisits = [r for r in records if r.rec_type == "revisit"]
    assert revisits and len(revisits) >= 0.9 * len(records)
    profile = revisits[0].rec_headers.get_header("WARC-Profile")
    # The form replay tools resolve to the body it confirms (tests/test_warc_records.py).
    assert profile.endswith("/revisit/identical-payload-digest")
    assert revisits[0].rec_headers.get_header("WARC-Refers-To-Target-URI")


def test_reparse_without_network_reproduces_lessons_and_programs(site, config, archive):
    site.edit(EDITED, description=["Edited once."])
    crawl_into_archive(config, archive)
    site.stop()  # nothing to reach any more: reparse must work from the captures alone
    tables = ("lessons", "programs")
    before = {t: rows(archive, f"select * from {t} order by id") for t in tables}
    Database(archive).execute("update lessons set description = 'damaged', title = 'x'")
    Database(archive).conn.commit()
    report = reparse(load_config(CONFIG_PATH), archive)
    assert report.lessons == len(before["lessons"])
    after = {t: rows(archive, f"select * from {t} order by id") for t in tables}
    assert after == before
    assert lesson_row(archive, EDITED)["description"] == "Edited once."


def test_a_new_lesson_with_an_old_date_is_found_at_the_end_of_a_long_listing(tmp_path):
    db_path = tmp_path / "micropause.db"
    # No sitemap and one lesson a listing page: the new lesson sits on the last page of its
    # listings, past the pages a walk queues ahead at once (crawl.LOOKAHEAD).
    with FixtureSite(sitemap=False, per_page=1) as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        old = newest_lesson("an-old-pause", "An old pause", ["Feet"])
        old.published, old.modified, old.post_id = "2001-01-01", "2001-01-01T09:00:00Z", 9002
        site.publish(old)
        depth = max(
            [x.slug for x in site.listing(s.slug)].index("an-old-pause") + 1
            for s in site.lessons
            if "an-old-pause" in {x.slug for x in site.listing(s.slug)}
        )
        report = crawl_into_archive(config, db_path)
    assert depth > 20
    assert lesson_row(db_path, "an-old-pause")["title"] == "An old pause"
    assert report.counts.new == 1
