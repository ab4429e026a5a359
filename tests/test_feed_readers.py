"""The change feed as feed readers and validators take it: feedparser (a real feed client)
reads it without complaint, finds its author, and the feed's id is the archive's wherever it
is served."""

from __future__ import annotations

import feedparser
import httpx
import pytest

from pipeline.publish import load_metadata
from tests.test_publish import copy_archive, serving


@pytest.fixture(scope="module")
def archive(recrawled_archive, tmp_path_factory):
    return copy_archive(recrawled_archive.db_path, tmp_path_factory.mktemp("readers") / "a.db")


@pytest.fixture(scope="module")
def two_servers(archive):
    """The same archive served by two `micropause serve` processes, on two ports."""
    with serving(archive) as first, serving(archive) as second:
        assert first.url != second.url
        yield first, second


def read(served) -> feedparser.FeedParserDict:
    response = httpx.get(f"{served.url}/micropause/changes.atom", timeout=30)
    assert response.status_code == 200
    return feedparser.parse(response.content)


def test_feedparser_reads_the_feed_without_error_and_finds_the_sites_author(two_servers):
    parsed = read(two_servers[0])
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    feed = load_metadata()["plugins"]["micropause-publish"]["feed"]
    assert parsed.feed.author_detail.name == feed["author"] == "Movementality"
    assert parsed.feed.author_detail.href == feed["author_uri"]
    assert parsed.feed.title == "Micro Pause lessons added, changed and removed"
    titles = [entry.title for entry in parsed.entries]
    assert "Changed: The heavy arms" in titles and "Added: A new pause" in titles
    # RFC 4287: every entry has an id, a title and an updated time, and an author (the feed's).
    for entry in parsed.entries:
        assert entry.id and entry.title and entry.updated_parsed


def test_the_feed_id_is_the_same_whichever_host_and_port_serve_it(two_servers):
    first, second = (read(served) for served in two_servers)
    assert (
        first.feed.id
        == second.feed.id
        == (load_metadata()["plugins"]["micropause-publish"]["feed"]["id"])
    )
    assert not first.feed.id.startswith("http://127.0.0.1")
    assert [e.id for e in first.entries] == [e.id for e in second.entries]
    # Where it was fetched from is still its self link, as feed readers expect.
    assert first.feed.links[0].href != second.feed.links[0].href
