"""A snapshot's captures.wacz in pywb, the replay tool archivists install: after a first crawl
and an unchanged re-crawl, the latest capture of every lesson shows the lesson, with its
stylesheet and thumbnail; over six unchanged re-crawls the snapshots stay the size of the site
and each replays every lesson."""

from __future__ import annotations

import sqlite3
from email.utils import parsedate_to_datetime

import pytest

from pipeline.config import load_config
from pipeline.export import export_snapshot
from pipeline.extract import extract
from pipeline.requisites import page_requisites
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, local_config, without_audits
from tests.replay_tools import Pywb
from tests.site.server import FONT_PATH, FixtureSite

pytestmark = [pytest.mark.replay_tools, pytest.mark.timeout(1200)]
SELECTORS = load_config(CONFIG_PATH).selectors


def lessons_of(db_path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT url, title, description FROM lessons WHERE removed_at IS NULL ORDER BY url"
        ).fetchall()
    db.close()
    return rows


def crawled_at(db_path, run_id: int) -> dict[str, str]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT url, fetched_at FROM pages WHERE run_id = ?", [run_id])
        found = dict(rows.fetchall())
    db.close()
    return found


@pytest.fixture(scope="module")
def recrawled(tmp_path_factory):
    """A snapshot exported after a first crawl and an unchanged re-crawl, loaded into pywb
    the way docs/research.md says."""
    root = tmp_path_factory.mktemp("pywb")
    db_path = root / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        second = crawl_into_archive(config, db_path)
        assert second.result.stats.not_modified >= 50  # the re-crawl was answered 304
    snapshot = export_snapshot(db_path, root / "exports")
    pywb = Pywb(root / "pywb")
    (root / "pywb").mkdir()
    pywb.add("micropause", snapshot.path / "captures.wacz")
    with pywb:
        yield pywb, db_path, second.run_id


def test_pywb_replays_the_latest_capture_of_every_lesson_with_its_text(recrawled):
    pywb, db_path, second_run = recrawled
    recrawl_times = crawled_at(db_path, second_run)
    lessons = lessons_of(db_path)
    assert len(lessons) >= 50
    for url, title, description in lessons:
        replayed = pywb.get("micropause", url)
        assert replayed.status_code == 200, url
        assert replayed.headers["content-type"].startswith("text/html")
        # The re-crawl's capture (a revisit), not the first crawl's: the latest one.
        memento = parsedate_to_datetime(replayed.headers["memento-datetime"])
        assert memento.isoformat()[:19] == recrawl_times[url][:19], url
        page = extract(replayed.content, url, SELECTORS)
        assert page.lesson is not None, url
        assert (page.lesson.title, page.lesson.description) == (title, description)


def test_pywb_replays_a_lessons_stylesheet_scripts_logo_and_thumbnails_with_their_types(
    recrawled,
):
    pywb, db_path, _ = recrawled
    url = lessons_of(db_path)[0][0]
    requisites = page_requisites(pywb.get("micropause", url).content, url)
    expected = {".css": "text/css", ".js": "application/javascript", ".png": "image/png"}
    kinds = {}
    for requisite in requisites:
        if "/wp-content/" not in requisite and "/wp-includes/" not in requisite:
            continue
        path = requisite.split("?", 1)[0]
        suffix = path[path.rfind(".") :]
        replayed = pywb.get("micropause", requisite)
        assert replayed.status_code == 200, requisite
        content_type = replayed.headers["content-type"]
        assert content_type == {**expected, ".jpg": "image/jpeg"}[suffix], requisite
        assert replayed.content, requisite
        kinds.setdefault(suffix, []).append(requisite)
    assert {".css", ".js", ".png", ".jpg"} <= set(kinds)
    assert len(kinds[".jpg"]) >= 3  # a listing's thumbnails
    # What the stylesheet loads was captured too: the font and the background image.
    font = pywb.get("micropause", url.split("/video/")[0] + FONT_PATH)
    assert (font.status_code, font.headers["content-type"]) == (200, "font/woff")


def test_six_snapshots_of_an_unchanged_site_stay_its_size_and_each_replays_every_lesson(
    tmp_path,
):
    db_path = tmp_path / "archive" / "micropause.db"
    snapshots = []
    # Pages as heavy as the real site's (Divi prints tens of kilobytes of styles inline):
    # what a re-crawl adds per page (a revisit record) is then as small beside a page as it
    # is on the real site.
    with FixtureSite(inline_style_bytes=60_000) as site:
        # No audits: each run's audit walks a proven listing whose later pages were never
        # captured, so the snapshot grows by those new URLs (towards every page of the site,
        # never with the number of runs). Unchanged re-crawls alone must add nothing.
        config = without_audits(local_config(site))
        for _ in range(6):
            crawl_into_archive(config, db_path)
            snapshots.append(export_snapshot(db_path, tmp_path / "exports"))
    sizes = [(s.path / "captures.wacz").stat().st_size for s in snapshots]
    assert sizes[-1] <= 1.05 * sizes[0], sizes
    # From the second on, a snapshot holds the same records but for the newest revisits:
    # nothing grows with the number of runs.
    assert max(sizes[1:]) <= 1.005 * min(sizes[1:]), sizes
    lessons = lessons_of(db_path)
    pywb = Pywb(tmp_path / "pywb")
    (tmp_path / "pywb").mkdir()
    for n, snapshot in enumerate(snapshots, 1):
        pywb.add(f"run{n}", snapshot.path / "captures.wacz")
    with pywb:
        for n in range(1, 7):
            for url, title, _ in lessons:
                replayed = pywb.get(f"run{n}", url)
                assert replayed.status_code == 200, (n, url)
                page = extract(replayed.content, url, SELECTORS)
                assert page.lesson is not None and page.lesson.title == title, (n, url)
