"""A lesson's own page (/micropause/lessons/<id>) reads like the lesson: title, program and
part, the parts around it, date and author, text, thumbnail, video, versions and captures."""

import pytest
from selectolax.lexbor import LexborHTMLParser

from pipeline.publish import build_datasette
from tests.test_publish import DIVE_DEEPER, HOSTILE_TITLE, archive_with_hostile_lesson, get
from tests.test_publish import read_only as read_only_db


@pytest.fixture(scope="module")
def datasette(crawled_archive, tmp_path_factory):
    archive = archive_with_hostile_lesson(crawled_archive, tmp_path_factory.mktemp("lesson"))
    return build_datasette(archive)


@pytest.fixture(scope="module")
def lessons(crawled_archive) -> dict[str, dict]:
    db = read_only_db(crawled_archive)
    try:
        return {
            row["slug"]: row
            for row in db.query(
                "select lessons.*, programs.slug as program_slug, programs.name as program "
                "from lessons left join programs on programs.id = lessons.program_id"
            )
        }
    finally:
        db.close()


def lesson_page(datasette, lesson_id) -> LexborHTMLParser:
    response = get(datasette, f"/micropause/lessons/{lesson_id}")
    assert response.status_code == 200, response.text
    return LexborHTMLParser(response.text).css_first("article.micropause-lesson")


def in_program(lessons, program_slug: str) -> dict[int, dict]:
    return {x["part"]: x for x in lessons.values() if x["program_slug"] == program_slug}


def test_a_lesson_page_is_headed_by_its_title_with_its_program_linked_to_the_syllabus(
    datasette, lessons
):
    parts = in_program(lessons, DIVE_DEEPER)
    lesson = parts[3]
    page = lesson_page(datasette, lesson["id"])
    assert page.css_first("h1").text() == lesson["title"]
    program = page.css_first("p.program")
    link = program.css_first("a")
    assert link.text() == lesson["program"]
    assert link.attributes["href"] == f"/micropause/syllabus?program={DIVE_DEEPER}"
    assert " ".join(program.text().split()).endswith(f"part 3 of {max(parts)}")
    meta = " ".join(page.css_first("p.meta").text().split())
    assert f"Published {lesson['published']} by {lesson['author']}" in meta
    assert page.css_first("p.meta a").attributes["href"] == lesson["url"]


def test_the_parts_before_and_after_are_linked_and_a_missing_one_said_to_be_missing(
    datasette, lessons
):
    parts = in_program(lessons, DIVE_DEEPER)
    missing = next(n for n in range(1, max(parts)) if n not in parts)  # the program's gap
    before = lesson_page(datasette, parts[missing - 1]["id"])
    assert " ".join(before.css_first("nav.parts .next").text().split()) == (
        f"Next: part {missing}: not found on the site"
    )
    after = lesson_page(datasette, parts[missing + 1]["id"])
    previous = after.css_first("nav.parts .previous")
    assert " ".join(previous.text().split()) == f"Previous: part {missing}: not found on the site"
    nxt = after.css_first("nav.parts .next a")
    if missing + 2 in parts:
        assert nxt.attributes["href"] == f"/micropause/lessons/{parts[missing + 2]['id']}"
    first = lesson_page(datasette, parts[1]["id"])
    assert first.css_first("nav.parts .previous") is None


def test_a_standalone_lesson_has_no_program_line(datasette, lessons):
    lesson = next(x for x in lessons.values() if x["program_id"] is None)
    page = lesson_page(datasette, lesson["id"])
    assert page.css_first("h1").text() == lesson["title"]
    assert page.css_first("p.program") is None and page.css_first("nav.parts") is None


def test_the_text_is_paragraphs_and_the_media_are_shown(datasette, lessons):
    lesson = lessons["lying-down-letting-go"]
    page = lesson_page(datasette, lesson["id"])
    shown = [p.text() for p in page.css("div.text p")]
    assert shown == lesson["description"].split("\n\n") and len(shown) > 1
    assert page.css_first("img.micropause-thumbnail").attributes["src"] == lesson["thumbnail_url"]
    link = page.css_first("a.video-link")
    assert link.attributes["href"] == lesson["video_url"] and lesson["video_id"] in page.text()
    # The player is another site: no iframe until the reader asks for one.
    assert page.css_first("iframe") is None
    assert page.css_first("button.play-here").attributes["data-src"] == lesson["video_url"]


def test_versions_and_captures_are_listed(datasette, lessons):
    lesson = lessons["the-heavy-arms"]
    page = lesson_page(datasette, lesson["id"])
    (version,) = page.css("table.micropause-versions tbody tr")
    assert [td.text() for td in version.css("td")][::2] == ["1", "created"]
    (capture,) = page.css("h2 + ul li")
    assert "1.warc.gz" in capture.text()
    page_link = capture.css_first("a").attributes["href"]
    assert get(datasette, page_link).status_code == 200


def test_an_unknown_lesson_is_a_404_and_a_hostile_title_is_text(datasette):
    assert get(datasette, "/micropause/lessons/999999").status_code == 404
    found = get(datasette, "/micropause/lessons.json?_shape=array&title__contains=script").json()
    (hostile,) = found
    response = get(datasette, f"/micropause/lessons/{hostile['id']}")
    assert "<script>alert(1)</script>" not in response.text
    assert LexborHTMLParser(response.text).css_first("h1").text() == HOSTILE_TITLE


def test_the_rows_json_is_datasettes_own(datasette, lessons):
    lesson = lessons["the-heavy-arms"]
    data = get(datasette, f"/micropause/lessons/{lesson['id']}.json").json()
    (row,) = data["rows"]
    assert dict(zip(data["columns"], row, strict=True)) == {
        k: v for k, v in lesson.items() if k not in ("program", "program_slug")
    }
    assert data["primary_keys"] == ["id"]  # Datasette's row shape, not the page's
