"""The change feed, /micropause/changes.atom: lessons added, changed and removed, as Atom."""

from __future__ import annotations

import asyncio
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.archive import Archive
from pipeline.publish import build_datasette
from tests.test_publish import copy_archive

ATOM = "{http://www.w3.org/2005/Atom}"


def get(datasette, path):
    return asyncio.run(datasette.client.get(path))


def feed(datasette) -> ET.Element:
    response = get(datasette, "/micropause/changes.atom")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    return root


def entries(root: ET.Element) -> list[dict]:
    return [
        {
            "id": entry.findtext(f"{ATOM}id"),
            "title": entry.findtext(f"{ATOM}title"),
            "updated": entry.findtext(f"{ATOM}updated"),
            "link": entry.find(f"{ATOM}link").get("href"),
            "content": entry.findtext(f"{ATOM}content"),
        }
        for entry in root.findall(f"{ATOM}entry")
    ]


@pytest.fixture(scope="module")
def archive(recrawled_archive, tmp_path_factory) -> Path:
    return copy_archive(
        recrawled_archive.db_path, tmp_path_factory.mktemp("feed") / "micropause.db"
    )


def test_feed_holds_an_entry_for_each_change_of_the_recrawl_newest_first(
    recrawled_archive, archive
):
    root = feed(build_datasette(archive))
    assert root.findtext(f"{ATOM}title") == "Micro Pause lessons added, changed and removed"
    found = entries(root)
    # Newest first: the second run's four changes (versions written last), then the first's.
    newest = found[:4]
    assert sorted(e["title"] for e in newest) == [
        "Added: A new pause",
        "Changed: Feet on the ground, really",
        "Changed: The heavy arms",
        "Removed: Lying down, letting go",
    ]
    # The first crawl's lessons follow: one "Added" entry each.
    older = found[4:]
    assert len(older) == 52
    assert all(e["title"].startswith("Added: ") for e in older)
    changes = get(build_datasette(archive), "/micropause/changes.json?_shape=array").json()
    assert {c["run"] for c in changes[:4]} == {recrawled_archive.second_run}
    assert {c["run"] for c in changes[4:]} == {recrawled_archive.first_run}
    assert [c["change"] for c in changes[:4]].count("changed") == 2
    assert [e["updated"] for e in found] == sorted((e["updated"] for e in found), reverse=True)
    by_title = {e["title"]: e for e in newest}
    heavy = by_title["Changed: The heavy arms"]
    assert heavy["link"] == recrawled_archive.url("the-heavy-arms")
    # The site's text is text: "<heavy> & loose" arrives as written, escaped in the XML.
    assert "description now: Let the arms hang <heavy> & loose." in heavy["content"]
    removed = by_title["Removed: Lying down, letting go"]
    assert removed["link"] == recrawled_archive.url(recrawled_archive.removed)


def test_entry_ids_are_stable_and_unique(archive):
    first = entries(feed(build_datasette(archive)))
    again = entries(feed(build_datasette(archive)))
    assert [e["id"] for e in first] == [e["id"] for e in again]
    assert len({e["id"] for e in first}) == len(first)
    # The lesson's path on the site and its version number: the same change keeps the same id
    # for good, wherever the site (or its copy) was crawled from.
    for e in first:
        assert e["id"].startswith(
            f"tag:movementality.se,2023:micropause-archive{urlsplit(e['link']).path}#version-"
        )


def test_raw_xml_escapes_markup_from_the_site(archive):
    raw = get(build_datasette(archive), "/micropause/changes.atom").text
    assert "&lt;heavy&gt; &amp; loose" in raw
    assert "<heavy>" not in raw


def test_a_control_character_in_a_title_does_not_break_the_feed(archive, tmp_path):
    hostile = copy_archive(archive, tmp_path / "hostile.db")
    with sqlite3.connect(hostile) as db:
        db.execute(
            "UPDATE lessons SET title = ? WHERE slug = 'a-new-pause'",
            ["A new \x1b[31mpause <b>bold</b>"],
        )
    db.close()
    titles = [e["title"] for e in entries(feed(build_datasette(hostile)))]
    assert "Added: A new \ufffd[31mpause <b>bold</b>" in titles


def test_an_archive_without_lessons_still_has_a_valid_feed(tmp_path):
    path = tmp_path / "empty.db"
    Archive.open(path).close()
    assert [e["title"] for e in entries(feed(build_datasette(path)))] == ["No lesson archived yet"]


def test_home_and_lessons_pages_link_to_the_feed(archive):
    datasette = build_datasette(archive)
    for path in ("/", "/micropause/lessons"):
        page = get(datasette, path).text
        assert 'href="/micropause/changes.atom"' in page, path
        assert 'rel="alternate" type="application/atom+xml"' in page, path
