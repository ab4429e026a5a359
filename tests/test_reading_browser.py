"""The archive read in a real browser (headless Chromium), as a researcher reads it: a lesson's
page, the lessons table, the runs table. Screenshots of each are kept in the test's temporary
folder (its path is printed) to be looked at."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.run import crawl_into_archive
from tests.conftest import local_config
from tests.site.server import FixtureSite
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_publish import DIVE_DEEPER, serving

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM}"),
]
# A laptop's screen: what "fits the screen" means below.
SCREEN = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`micropause serve` on a crawl of the fixture site, which stays up: the lesson pages'
    thumbnails are the site's images."""
    db_path = tmp_path_factory.mktemp("reading") / "archive" / "micropause.db"
    with FixtureSite() as site:
        crawl_into_archive(local_config(site), db_path)
        with serving(db_path) as running:
            yield running


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=SCREEN)
    page = context.new_page()
    page.elsewhere = []

    def only_this_machine(route):
        # The video players are other sites: nothing may reach them unless asked.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            page.elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_machine)
    yield page
    context.close()


def test_a_lesson_page_shows_the_title_program_video_and_thumbnail(served, page, screenshots):
    page.goto(f"{served.url}/micropause/lessons?_search=pelvis+bowl")
    page.click("table.rows-and-columns td.col-id a")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=screenshots / "lesson.png", full_page=True)
    heading = page.locator("article.micropause-lesson h1")
    assert heading.inner_text() == "Body Intelligence - Dive Deeper, 3: Pelvis as a bowl"
    assert page.title().startswith("Body Intelligence - Dive Deeper, 3: Pelvis as a bowl")
    program = page.locator("p.program")
    assert " ".join(program.inner_text().split()).endswith("part 3 of 6")
    video = page.locator("a.video-link")
    assert video.get_attribute("href").startswith("https://player.vimeo.com/video/")
    thumbnail = page.locator("img.micropause-thumbnail")
    assert thumbnail.is_visible()
    assert thumbnail.evaluate("img => img.complete && img.naturalWidth > 0")
    box = thumbnail.bounding_box()
    assert box["width"] >= 200 and box["height"] >= 100
    assert page.locator("iframe").count() == 0 and page.elsewhere == []
    # The program's name leads to its syllabus, gap and all.
    program.locator("a").click()
    page.wait_for_url(f"**/micropause/syllabus?program={DIVE_DEEPER}")
    lessons = page.locator("table.rows-and-columns td.col-lesson").all_inner_texts()
    assert lessons[1] == "part 2: not found on the site"


def test_play_it_here_embeds_the_sites_player_only_when_asked(served, page):
    page.goto(f"{served.url}/micropause/lessons?_search=pelvis+bowl")
    page.click("table.rows-and-columns td.col-id a")
    href = page.locator("a.video-link").get_attribute("href")
    page.click("button.play-here")
    frame = page.locator("iframe.micropause-player")
    frame.wait_for(state="attached")
    assert frame.get_attribute("src") == href
    # The request went out (and was refused here: the tests reach no other site).
    page.wait_for_timeout(100)
    assert any(url.startswith("https://player.vimeo.com/") for url in page.elsewhere)


def test_the_lessons_table_fits_the_screen_row_by_row(served, page, screenshots):
    page.goto(f"{served.url}/micropause/lessons?_size=max")
    page.screenshot(path=screenshots / "lessons.png")
    page.screenshot(path=screenshots / "lessons-full.png", full_page=True)
    rows = page.locator("table.rows-and-columns tbody tr")
    assert rows.count() > 40
    page.locator("table.rows-and-columns").evaluate("table => table.scrollIntoView()")
    page.screenshot(path=screenshots / "lessons-rows.png")
    tallest = max(rows.evaluate_all("rows => rows.map(r => r.getBoundingClientRect().height)"))
    assert tallest < SCREEN["height"] / 2
    longest = max(len(text) for text in page.locator("table.rows-and-columns td").all_inner_texts())
    assert longest <= 420
    # The column descriptions take a few lines, not a screen, and no column is cut off on the
    # right.
    assert page.locator("dl.column-descriptions").bounding_box()["height"] < SCREEN["height"] / 6
    table = page.locator("table.rows-and-columns")
    assert table.bounding_box()["width"] <= SCREEN["width"]
    # A facet's labels (program names) wrap between words, never inside one.
    labels = page.locator("#facet-program_id li a")
    assert labels.count() >= 4
    breaks = labels.evaluate_all(
        "links => links.map(a => getComputedStyle(a.closest('li')).wordBreak)"
    )
    assert set(breaks) == {"normal"}
    # Every column is a click away.
    assert not page.locator("th.col-content_hash").is_visible()
    page.click("a.show-all")
    assert page.locator("th.col-content_hash").is_visible()
    page.screenshot(path=screenshots / "lessons-every-column.png")


def test_the_runs_table_shows_every_column(served, page, screenshots):
    page.goto(f"{served.url}/micropause/runs")
    page.screenshot(path=screenshots / "runs.png", full_page=True)
    headers = page.locator("table.rows-and-columns th").evaluate_all(
        "ths => ths.map(th => th.dataset.column)"
    )
    for column in ("start_urls", "requests", "bytes", "anomalies", "captures", "error", "health"):
        assert column in headers, column
    assert page.title().startswith("micropause: runs")
