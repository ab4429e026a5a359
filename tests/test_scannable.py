"""Tables one can scan: long text cut with the whole a click away, technical columns out of the
default view, one search box, runs as the table they are, canned queries titled by name, and
the changes view's columns named for a reader."""

from __future__ import annotations

import sqlite3

import pytest
from selectolax.lexbor import LexborHTMLParser

from pipeline.publish import DESCRIPTION_SHOWN, build_datasette, load_metadata
from tests.test_publish import archive_with_hostile_lesson, get


@pytest.fixture(scope="module")
def datasette(recrawled_archive, tmp_path_factory):
    path = archive_with_hostile_lesson(recrawled_archive.db_path, tmp_path_factory.mktemp("scan"))
    with sqlite3.connect(path) as db:
        # One lesson with a description far longer than any cell should show.
        db.execute(
            "UPDATE lessons SET description = ? WHERE slug = 'the-heavy-arms'",
            ["\n\n".join(f"Paragraph {n}: " + "let the arms hang heavy " * 20 for n in range(8))],
        )
    db.close()
    return build_datasette(path)


def html(datasette, path) -> LexborHTMLParser:
    response = get(datasette, path)
    assert response.status_code == 200, response.text
    return LexborHTMLParser(response.text)


def test_a_long_description_is_cut_in_the_table_with_the_whole_text_a_click_away(datasette):
    page = html(datasette, "/micropause/lessons?slug=the-heavy-arms")
    (cell,) = page.css("td.col-description")
    shown = cell.text()
    assert len(shown) <= DESCRIPTION_SHOWN + 40 and shown.rstrip().endswith("the whole text")
    whole = cell.css_first("a.whole-text").attributes["href"]
    lesson = html(datasette, whole)
    assert len(lesson.css("article.micropause-lesson div.text p")) == 8


@pytest.mark.parametrize("table", ["lessons", "lessons_in_order", "lesson_versions", "pages"])
def test_no_cell_of_a_table_view_shows_more_than_about_400_characters(datasette, table):
    page = html(datasette, f"/micropause/{table}?_size=max")
    longest = max(len(td.text()) for td in page.css("table.rows-and-columns td"))
    assert longest <= 420, (table, longest)


def test_technical_columns_are_out_of_the_default_view_and_a_click_away(datasette):
    page = html(datasette, "/micropause/lessons")
    style = " ".join(s.text() for s in page.css("style"))
    for column in ("content_hash", "slug", "first_seen", "last_seen", "url"):
        assert f".col-{column}" in style, column
        # Still in the page, so the click shows them without another request.
        assert page.css_first(f"th.col-{column}") is not None
    for column in ("title", "description", "published", "author"):
        assert f".col-{column}," not in style and f".col-{column})" not in style
    assert page.css_first('a.show-all[href="#all-columns"]') is not None


def test_the_lessons_page_has_one_search_box(datasette):
    page = html(datasette, "/micropause/lessons")
    assert len(page.css('input[type="search"]')) == 1
    assert page.css_first('a[href="/micropause/search"]') is not None


def test_runs_is_the_table_with_every_column(datasette):
    page = html(datasette, "/micropause/runs")
    headers = {th.attributes.get("data-column") for th in page.css("table.rows-and-columns th")}
    with sqlite3.connect(get_path(datasette)) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert columns <= headers
    assert {"start_urls", "requests", "bytes", "anomalies", "captures"} <= headers
    # Filterable as a table is: the incomplete runs, say.
    assert get(datasette, "/micropause/runs.json?complete=1&_shape=array").status_code == 200
    summary = get(datasette, "/micropause/run_health.json?_shape=array").json()
    assert [run["health"] for run in summary] == ["healthy", "healthy"]


def get_path(datasette) -> str:
    return datasette.get_database("micropause").path


def test_canned_queries_are_titled_by_their_names_not_their_sql(datasette):
    queries = load_metadata()["databases"]["micropause"]["queries"]
    for name, query in queries.items():
        title = html(datasette, f"/micropause/{name}").css_first("title").text()
        assert title == f"{query['title']} · micropause", name
        assert "select" not in title.lower()


def test_the_changes_view_names_its_columns_for_a_reader_and_the_feed_still_works(datasette):
    page = html(datasette, "/micropause/changes")
    headers = [th.text() for th in page.css("table.rows-and-columns th")]
    assert headers == ["observed", "headline", "details", "url", "change", "run", "entry"]
    assert not [h for h in headers if h.startswith("atom_")]
    feed = get(datasette, "/micropause/changes.atom")
    assert feed.status_code == 200 and "<entry>" in feed.text
    assert "Changed: The heavy arms" in feed.text
