"""End to end: `micropause serve` as a real process, driven by a real headless Chromium."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.test_publish import HOSTILE_TITLE, archive_with_hostile_lesson, lesson_count, serving

CHROMIUM = Path("/usr/bin/chromium")
# Debian's build, driven by Playwright: Playwright's own browser download needs the internet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Never skipped: without a browser these tests fail (deselect them with -m 'not browser').
pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def served(crawled_archive, tmp_path_factory):
    """`micropause serve` on the crawled archive plus a lesson with a script in its title."""
    archive = archive_with_hostile_lesson(crawled_archive, tmp_path_factory.mktemp("served"))
    with serving(archive) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    if not CHROMIUM.exists():
        pytest.fail(f"no browser at {CHROMIUM}: `make browser` installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that records every JavaScript dialog (alert, confirm, prompt) it is shown."""
    context = browser.new_context()
    page = context.new_page()
    page.dialogs = []

    def record(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    yield page
    context.close()


def cell_texts(page, column: str) -> list[str]:
    return page.locator(f"table.rows-and-columns td.col-{column}").all_inner_texts()


def test_lessons_page_lists_lessons_with_facets(served, page):
    page.goto(f"{served.url}/micropause/lessons")
    assert page.locator("h1").inner_text() == "lessons"
    lessons = lesson_count(served.archive)
    assert page.locator("h3").first.inner_text().startswith(f"{lessons} rows")
    facet = page.locator("#facet-program_id")
    assert "Body Intelligence – Dive deeper" in facet.inner_text()
    assert page.locator("td.col-url a").first.get_attribute("href").startswith("http")


def test_search_box_finds_a_lesson(served, page):
    page.goto(f"{served.url}/micropause/lessons")
    page.fill("#_search", "recieve the weight")
    page.press("#_search", "Enter")
    page.wait_for_url("**_search=recieve*")
    assert cell_texts(page, "title") == ["Lying down, letting go"]


def test_phrase_search_ranks_and_highlights(served, page):
    page.goto(f"{served.url}/micropause/lessons")
    page.click('nav.micropause-nav a[href="/micropause/search"]')
    page.wait_for_url("**/micropause/search")
    page.fill('input[name="phrase"]', "pelvis as a bowl")
    page.press('input[name="phrase"]', "Enter")
    page.wait_for_url("**/micropause/search?phrase=*")
    assert cell_texts(page, "title")[0] == "Body Intelligence - Dive Deeper, 3: Pelvis as a bowl"
    assert page.locator("td.col-passage mark").count() >= 1


def test_programs_page_leads_to_a_syllabus_with_the_gap(served, page):
    page.goto(f"{served.url}/micropause/programs")
    page.click("text=Body Intelligence – Dive deeper")
    page.wait_for_url("**/micropause/syllabus?program=body-intelligence-dive-deeper")
    assert cell_texts(page, "part") == ["1", "2", "3", "4", "5", "6"]
    assert cell_texts(page, "lesson")[1] == "part 2: not found on the site"


def test_a_script_in_a_title_is_shown_as_text_and_never_run(served, page):
    for path in ("/micropause/lessons?_search=shoulder+rolls", "/micropause/search?phrase=rolls"):
        page.goto(f"{served.url}{path}")
        assert HOSTILE_TITLE in cell_texts(page, "title"), path
    page.goto(f"{served.url}/micropause/lessons?_search=shoulder+rolls")
    page.click("td.col-id a")
    lesson = page.locator("article.micropause-lesson")
    assert lesson.get_by_text("<script>alert(2)</script> then rest.").count() == 1
    assert page.dialogs == []


CHARTS = ("published-per-month", "program-parts", "crawl-history")


def test_charts_page_draws_every_chart_with_nothing_loaded_from_elsewhere(served, page):
    elsewhere, answered = [], []

    def only_this_archive(route):
        # Anything not served by the archive itself is refused, and remembered.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_this_archive)
    page.on("response", lambda response: answered.append(response))
    page.goto(f"{served.url}/-/dashboards/micropause")
    assert page.locator("h1").inner_text() == "Micro Pause archive in charts"
    for chart in CHARTS:
        drawn = page.locator(f"#chart-{chart} canvas, #chart-{chart} svg.marks").first
        drawn.wait_for(state="visible")
        box = drawn.bounding_box()
        assert box["width"] > 100 and box["height"] > 50, chart
    page.wait_for_load_state("networkidle")
    # Each chart's rows came from the archive, and none came back empty.
    queries = [r for r in answered if "/micropause.json?sql=" in r.url]
    assert len(queries) == len(CHARTS)
    for response in queries:
        assert response.status == 200 and response.json()["rows"], response.url
    scripts = [r.url for r in answered if r.url.endswith(".js")]
    assert any(url.endswith("/vega.min.js") for url in scripts)
    assert elsewhere == []
    assert {urlsplit(r.url).hostname for r in answered} == {"127.0.0.1"}
