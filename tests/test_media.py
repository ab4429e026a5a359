"""Each lesson's media archived: the video its page embeds (URL, provider, id) and its
thumbnail, from extraction through the archive's history to every export."""

import asyncio
import csv
import json
import sqlite3

import pytest

from pipeline.archive import Archive, RunOutcome
from pipeline.config import load_config
from pipeline.diff import diff_archive
from pipeline.export import export_snapshot
from pipeline.extract import MAX_MEDIA_URL, RawLesson, extract
from pipeline.normalise import Video, normalise, video_of
from pipeline.publish import build_datasette
from pipeline.reparse import reparse
from pipeline.run import crawl_into_archive
from tests.conftest import local_config
from tests.site import render
from tests.site.server import FixtureSite

SELECTORS = load_config("config/movementality.toml").selectors
URL = "https://movementality.se/video/the-heavy-arms/"
MEDIA = ("video_url", "video_provider", "video_id", "thumbnail_url")


def page(video_box: str, *, featured: str = "", items: str = "") -> str:
    return f"""<html><head><link rel="canonical" href="{URL}" /></head><body>
<article class="et_pb_post"><div class="et_post_meta_wrapper">
  <h1 class="entry-title">The heavy arms</h1>{featured}</div>
  <div class="entry-content">
    <div class="et_pb_video"><div class="et_pb_video_box">{video_box}</div></div>
    <div class="et_pb_text"><div class="et_pb_text_inner"><p>Let them hang.</p></div></div>
    <div class="et_pb_blog_grid">{items}</div>
  </div></article></body></html>"""


def item(slug: str, img: str) -> str:
    return f"""<article class="et_pb_post"><a href="/video/{slug}/"
  class="entry-featured-image-url">{img}</a>
  <h2 class="entry-title"><a href="/video/{slug}/">{slug}</a></h2></article>"""


# The embeds Divi's video module prints, as (markup, archived URL, provider, id).
EMBEDS = [
    (
        '<iframe src="https://player.vimeo.com/video/710247186?dnt=1&amp;app_id=122963">',
        "https://player.vimeo.com/video/710247186?dnt=1&app_id=122963",
        "vimeo",
        "710247186",
    ),
    (
        '<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed"></iframe>',
        "https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed",
        "youtube",
        "dQw4w9WgXcQ",
    ),
    (
        '<iframe data-src="//www.youtube-nocookie.com/embed/abc_DEF-123"></iframe>',
        "https://www.youtube-nocookie.com/embed/abc_DEF-123",
        "youtube",
        "abc_DEF-123",
    ),
    (
        '<video controls><source type="video/mp4" src="/wp-content/uploads/2024/01/arms.mp4">'
        "</video>",
        "https://movementality.se/wp-content/uploads/2024/01/arms.mp4",
        None,
        None,
    ),
    (
        '<video src="https://cdn.example.org/arms.webm" controls></video>',
        "https://cdn.example.org/arms.webm",
        None,
        None,
    ),
    (
        '<iframe src="https://www.dailymotion.com/embed/video/x8abc"></iframe>',
        "https://www.dailymotion.com/embed/video/x8abc",
        None,
        None,
    ),
]


@pytest.mark.parametrize(("markup", "url", "provider", "video_id"), EMBEDS)
def test_every_kind_of_embed_is_archived_by_its_url_and_known_players_by_id(
    markup, url, provider, video_id
):
    raw = extract(page(markup), URL, SELECTORS).lesson
    assert raw.video_url == url
    lesson = normalise(raw)
    assert (lesson.video_url, lesson.video_provider, lesson.video_id) == (url, provider, video_id)


@pytest.mark.parametrize(
    "markup",
    [
        "",
        '<iframe src=""></iframe>',
        '<iframe src="javascript:alert(1)"></iframe>',
        "<video>",
        f'<iframe src="https://player.vimeo.com/video/1?{"x" * MAX_MEDIA_URL}"></iframe>',
    ],
)
def test_a_page_without_a_usable_embed_has_no_video(markup):
    lesson = normalise(extract(page(markup), URL, SELECTORS).lesson)
    assert (lesson.video_url, lesson.video_provider, lesson.video_id) == (None, None, None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://vimeo.com/710247186", Video("vimeo", "710247186")),
        ("https://player.vimeo.com/video/42/?h=abc", Video("vimeo", "42")),
        ("https://player.vimeo.com/video/not-a-number", Video(None, None)),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=10", Video("youtube", "dQw4w9WgXcQ")),
        ("https://youtu.be/dQw4w9WgXcQ", Video("youtube", "dQw4w9WgXcQ")),
        ("https://m.youtube.com/shorts/dQw4w9WgXcQ", Video("youtube", "dQw4w9WgXcQ")),
        ("https://www.youtube.com/watch", Video(None, None)),
        ("https://vimeo.example.org/video/42", Video(None, None)),
        (None, Video(None, None)),
    ],
)
def test_provider_and_id_come_only_from_the_players_own_url_shapes(url, expected):
    assert video_of(url) == expected


def test_thumbnail_from_the_lessons_own_page_when_it_shows_one_else_from_listings():
    own = '<img src="/wp-content/uploads/2023/11/the-heavy-arms-1080x675.jpg" alt="">'
    items = item("a", '<img src="/wp-content/uploads/a-400x250.jpg">') + item("b", "")
    shown = extract(page("", featured=own, items=items), URL, SELECTORS)
    assert shown.lesson.thumbnail_url == (
        "https://movementality.se/wp-content/uploads/2023/11/the-heavy-arms-1080x675.jpg"
    )
    assert shown.listed_thumbnails == (
        "https://movementality.se/wp-content/uploads/a-400x250.jpg",
        None,
    )
    # The page's own image wins over what a listing shows; without one, the listing's is used.
    assert shown.lesson.with_thumbnail("https://x/listed.jpg") == shown.lesson
    bare = extract(page(""), URL, SELECTORS).lesson
    assert bare.thumbnail_url is None
    assert bare.with_thumbnail("https://x/listed.jpg").thumbnail_url == "https://x/listed.jpg"


def media_of(db_path) -> dict[str, tuple]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(f"SELECT slug, {', '.join(MEDIA)} FROM lessons").fetchall()
    return {slug: tuple(rest) for slug, *rest in rows}


def expected_media(site: FixtureSite, *, size: str = "400x250") -> dict[str, tuple]:
    """Every lesson a polite crawl can reach, with the media its pages and listings show."""
    crawlable = set(site.crawlable_paths())
    return {
        lesson.slug: (
            f"https://player.vimeo.com/video/{render.vimeo_id(lesson)}?dnt=1&app_id=122963",
            "vimeo",
            str(render.vimeo_id(lesson)),
            render.thumbnail_url(site.url, lesson, size),
        )
        for lesson in site.lessons
        if f"/video/{lesson.slug}/" in crawlable
    }


def test_a_crawl_archives_every_lessons_video_and_its_thumbnail_from_the_listings(tmp_path):
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        assert media_of(db_path) == expected_media(site)


def test_a_page_that_shows_its_own_thumbnail_is_the_source_of_it(tmp_path):
    db_path = tmp_path / "micropause.db"
    with FixtureSite(own_thumbnails=True) as site:
        crawl_into_archive(local_config(site), db_path)
        assert media_of(db_path) == expected_media(site, size="1080x675")


@pytest.mark.parametrize(
    ("video", "provider", "video_id"),
    [
        ("https://www.youtube.com/embed/dQw4w9WgXcQ", "youtube", "dQw4w9WgXcQ"),
        ("https://player.vimeo.com/video/123456789", "vimeo", "123456789"),
        ("/wp-content/uploads/2024/01/the-heavy-arms.mp4", None, None),
    ],
)
def test_a_changed_video_is_a_new_version_naming_the_fields_and_a_change_in_the_diff(
    tmp_path, video, provider, video_id
):
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        before = media_of(db_path)["the-heavy-arms"]
        site.edit("the-heavy-arms", video=video)
        second = crawl_into_archive(config, db_path)
        url = video if video.startswith("https") else f"{site.url}{video}"
    assert second.counts.changed == 1
    with sqlite3.connect(db_path) as db:
        event, changed, old, new = db.execute(
            "SELECT event, changed, old, new FROM lesson_versions v JOIN lessons l "
            "ON l.id = v.lesson_id WHERE l.slug = 'the-heavy-arms' ORDER BY version DESC"
        ).fetchone()
    after = (url, provider, video_id, before[3])  # the thumbnail stays
    differ = sorted(name for name, a, b in zip(MEDIA, before, after, strict=True) if a != b)
    assert event == "changed"
    assert json.loads(changed) == differ
    assert json.loads(new) == {n: v for n, v in zip(MEDIA, after, strict=True) if n in differ}
    assert json.loads(old)["video_url"] == before[0]
    assert media_of(db_path)["the-heavy-arms"] == after
    (change,) = diff_archive(db_path).changes
    assert (change.change, change.fields) == ("changed", tuple(differ))
    assert change.new["video_url"] == url
    # The diff canned query replays the same history in SQL.
    response = asyncio.run(
        build_datasette(db_path).client.get("/micropause/diff.json?_shape=array")
    )
    (row,) = response.json()
    assert (row["change"], json.loads(row["fields"])) == ("changed", differ)
    assert json.loads(row["new"]) == change.new


def test_a_thumbnail_not_seen_by_a_run_is_kept_not_removed(tmp_path):
    db_path = tmp_path / "micropause.db"
    seen = RawLesson(URL, "The heavy arms", "Text.", None, None, "https://v/1", "https://t/1.jpg")
    unseen = RawLesson(URL, "The heavy arms", "Text, edited.", None, None, "https://v/1")
    with Archive.open(db_path) as archive:
        for raw in (seen, unseen):
            with archive.recorded_run([]) as run_id:
                archive.save_run(run_id, RunOutcome("ok", [normalise(raw)], 1))
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT thumbnail_url FROM lessons").fetchone() == ("https://t/1.jpg",)
        (changed,) = db.execute("SELECT changed FROM lesson_versions WHERE version = 2").fetchone()
    assert json.loads(changed) == ["description"]


def test_reparse_fills_the_media_of_lessons_archived_before_the_archive_kept_them(tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        expected = expected_media(site)
        config = local_config(site)
    with sqlite3.connect(db_path) as db:
        # As an archive upgraded by migration m010 holds its lessons: no media yet.
        db.execute(f"UPDATE lessons SET {', '.join(f'{c} = NULL' for c in MEDIA)}")
    reparse(config, db_path)
    assert media_of(db_path) == expected


def test_every_export_and_the_data_package_carry_the_media(tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        expected = expected_media(site)
    snapshot = export_snapshot(db_path, tmp_path / "exports")
    with open(snapshot.path / "lessons.csv", encoding="utf-8-sig", newline="") as f:
        rows = {row["slug"]: tuple(row[c] or None for c in MEDIA) for row in csv.DictReader(f)}
    assert rows == expected
    as_json = json.loads((snapshot.path / "lessons.json").read_text(encoding="utf-8"))
    assert {row["slug"]: tuple(row[c] for c in MEDIA) for row in as_json} == expected
    lines = (snapshot.path / "lessons.ndjson").read_text(encoding="utf-8").splitlines()
    ndjson = [json.loads(line) for line in lines]
    assert {row["slug"]: tuple(row[c] for c in MEDIA) for row in ndjson} == expected
    package = json.loads((snapshot.path / "datapackage.json").read_text(encoding="utf-8"))
    for resource in package["resources"]:
        if resource["name"].startswith("lessons"):
            names = [f["name"] for f in resource["schema"]["fields"]]
            assert set(MEDIA) <= set(names), resource["name"]
