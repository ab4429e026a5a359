"""A snapshot's captures.wacz in ReplayWeb.page, in a real Chromium, the way a reader opens it:
ReplayWeb.page's own files (the `replaywebpage` npm package) and the WACZ served on 127.0.0.1.
After a first crawl and an unchanged re-crawl, a search for a word of a lesson's description
finds the lesson, and its latest capture shows its title, styled by its captured stylesheet."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time

import pytest

from pipeline.export import export_snapshot
from pipeline.run import crawl_into_archive
from tests.conftest import ROOT, local_config
from tests.replay_tools import ReplayWebPage
from tests.site.server import FixtureSite
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.replay_tools, pytest.mark.timeout(900)]
# The picture in docs/research.md, retaken when MICROPAUSE_UPDATE_SCREENSHOTS=1 (a test run
# must not change the checkout otherwise: ports and dates differ every time).
SCREENSHOT = ROOT / "docs" / "replaywebpage-lesson.png"
LESSON = "soft-eyes"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("rwp")
    db_path = root / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        crawl_into_archive(config, db_path)
    with sqlite3.connect(db_path) as db:
        lesson = db.execute(
            "SELECT url, title, description FROM lessons WHERE slug = ?", [LESSON]
        ).fetchone()
        others = db.execute(
            "SELECT title, description FROM lessons WHERE slug != ?", [LESSON]
        ).fetchall()
    db.close()
    return export_snapshot(db_path, root / "exports"), lesson, others


def a_word_only_in(description: str, others: list[tuple[str, str]]) -> str:
    """A word of the description that no other lesson's text holds, so the search can only
    find this lesson."""
    words = sorted(set(re.findall(r"[a-z]{6,}", description.lower())), key=len, reverse=True)
    texts = [f"{title} {text}".lower() for title, text in others]
    return next(w for w in words if not any(w in t for t in texts))


def test_replaywebpage_finds_a_lesson_by_a_word_of_its_description_and_replays_it(
    snapshot, tmp_path
):
    sync_api = pytest.importorskip("playwright.sync_api")
    built, (url, title, description), others = snapshot
    word = a_word_only_in(description, others)
    assert word not in title.lower()
    with (
        ReplayWebPage(built.path / "captures.wacz") as replay,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(replay.app_url)
            search = page.locator('input[placeholder^="Search by Page URL"]')
            search.wait_for(timeout=120_000)
            search.fill(word)
            # One page found ("1 Page"), and it is the lesson whose description holds the word.
            page.get_by_text("1 Page", exact=True).first.wait_for(timeout=60_000)
            found = page.get_by_role("link", name=title)
            assert found.count() == 1
            found.click()

            heading = replayed_heading(page, url)
            assert heading.inner_text() == title
            # Its captured stylesheet is applied: the theme's heading colour, not the
            # browser's default black.
            colour = heading.evaluate("node => getComputedStyle(node).color")
            assert colour == "rgb(46, 163, 242)"
            page.wait_for_timeout(1000)  # the thumbnails and logo settle
            taken = tmp_path / SCREENSHOT.name
            page.screenshot(path=str(taken))
            assert taken.stat().st_size > 10_000
            if os.environ.get("MICROPAUSE_UPDATE_SCREENSHOTS") == "1":
                shutil.copyfile(taken, SCREENSHOT)
        finally:
            browser.close()


def replayed_heading(page, url: str):
    """The lesson's <h1> inside ReplayWeb.page's replay frame, once it is there."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for frame in page.frames:
            if f"mp_/{url}" in frame.url:
                heading = frame.locator("h1.entry-title")
                if heading.count():
                    return heading
        page.wait_for_timeout(250)
    raise AssertionError(f"{url} was not replayed")
