"""A page's requisites (its stylesheets, scripts, fonts and images on the site's host) are
captured with it: each once per run, conditionally on re-crawls, a versioned one not asked
again, under robots.txt and the size cap, counted apart from the pages; off-site embeds are
never fetched."""

from __future__ import annotations

import dataclasses

import pytest
from sqlite_utils import Database

from pipeline.config import load_config
from pipeline.requisites import (
    RequisiteScope,
    is_versioned,
    page_requisites,
    stylesheet_requisites,
)
from pipeline.run import crawl_into_archive
from tests.conftest import CONFIG_PATH, local_config, without_audits
from tests.site.server import BACKGROUND_PATH, DEFAULT_ROBOTS, FONT_PATH, FixtureSite

PAGE = """<html><head>
<link rel='stylesheet' href='/wp-content/themes/Divi/style.min.css?ver=4.27.4' />
<link rel="alternate" type="application/rss+xml" href="/feed/" />
<link rel="canonical" href="https://movementality.se/video/x/" />
<link rel="icon" href="/wp-content/uploads/icon.png" />
<link rel="preload" href="/wp-content/fonts/a.woff2" as="font" />
<script src="https://movementality.se/wp-includes/js/jquery/jquery.min.js?ver=3.7.1"></script>
<script>inline()</script>
</head><body>
<img src="/wp-content/uploads/2021/03/logo.png" srcset="/wp-content/a-300.jpg 300w, b-600.jpg 600w">
<picture><source srcset="/wp-content/c.webp"></picture>
<iframe src="https://player.vimeo.com/video/710247186?dnt=1"></iframe>
<img src="/wp-content/uploads/2021/03/logo.png">
</body></html>"""


def test_a_page_names_what_a_browser_loads_to_show_it_each_once_in_order():
    found = page_requisites(PAGE, "https://movementality.se/video/x/")
    assert found == (
        "https://movementality.se/wp-content/themes/Divi/style.min.css?ver=4.27.4",
        "https://movementality.se/wp-content/uploads/icon.png",
        "https://movementality.se/wp-content/fonts/a.woff2",
        "https://movementality.se/wp-includes/js/jquery/jquery.min.js?ver=3.7.1",
        "https://movementality.se/wp-content/uploads/2021/03/logo.png",
        "https://movementality.se/wp-content/a-300.jpg",
        "https://movementality.se/video/x/b-600.jpg",
        "https://movementality.se/wp-content/c.webp",
    )
    # Feeds, the canonical link and the embedded player are links, not requisites.
    assert not any("feed" in u or "vimeo" in u or u.endswith("/video/x/") for u in found)


def test_a_stylesheet_names_its_fonts_images_and_imports():
    css = b"""@import "print.css"; @import url('/wp-content/extra.css');
    @font-face{src:url("../fonts/modules.woff") format("woff"), url(data:font/woff;base64,AA)}
    .a{background:url( /wp-content/bg.png )} .b{background:url(bg.png)}"""
    assert stylesheet_requisites(css, "https://h/wp-content/themes/Divi/style.css") == (
        "https://h/wp-content/themes/Divi/print.css",
        "https://h/wp-content/extra.css",
        "https://h/wp-content/themes/fonts/modules.woff",
        "https://h/wp-content/bg.png",
        "https://h/wp-content/themes/Divi/bg.png",
    )


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("http://127.0.0.1:8000/wp-content/uploads/a.jpg", True),
        ("http://127.0.0.1:8000/wp-includes/js/a.js?ver=1#top", True),
        # The real site's host on a page read from a local copy: fetched from the copy.
        ("https://movementality.se/wp-content/themes/Divi/style.css", True),
        ("http://127.0.0.1:8000/video/a-lesson/", False),  # a page, not a requisite
        ("http://127.0.0.1:8000/wp-admin/load.css", False),  # not under the prefixes
        ("https://player.vimeo.com/video/710247186", False),  # an off-site embed
        ("http://127.0.0.1:9999/wp-content/a.jpg", False),  # another port is another site
        ("ftp://127.0.0.1:8000/wp-content/a.jpg", False),
        ("http://[::1/wp-content/a.jpg", False),
    ],
)
def test_only_files_on_the_crawls_host_under_the_prefixes_are_requisites(url, kept):
    config = load_config(CONFIG_PATH)
    scope = RequisiteScope(config, "http://127.0.0.1:8000/video/x/")
    accepted = scope.accepts(url)
    assert (accepted is not None) == kept
    if accepted is not None:
        assert accepted.startswith("http://127.0.0.1:8000/wp-")
        assert "#" not in accepted


def test_versioned_means_a_wordpress_ver_parameter():
    assert is_versioned("https://h/wp-content/style.css?ver=4.27.4")
    assert is_versioned("https://h/wp-content/style.css?a=1&ver=2")
    assert not is_versioned("https://h/wp-content/uploads/a.jpg")
    assert not is_versioned("https://h/wp-content/a.css?version=2")


def requisite_rows(db_path):
    return {
        r["url"].split("/", 3)[3]: r
        for r in Database(db_path).query("select * from pages where kind = 'requisite'")
    }


def run_row(db_path, run_id):
    return next(Database(db_path).query("select * from runs where id = ?", [run_id]))


@pytest.fixture
def two_crawls(tmp_path):
    """A first crawl and an unchanged re-crawl; the site's request records of each. No audits:
    an audit walks a proven listing anyway, and its pages load their images again."""
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        config = without_audits(local_config(site))
        first = crawl_into_archive(config, db_path)
        first_assets = list(site.requisite_requests)
        first_pages = len(site.requests)
        site.reset_stats()
        second = crawl_into_archive(config, db_path)
        second_assets = list(site.requisite_requests)
    return db_path, first, first_assets, first_pages, second, second_assets


def test_a_first_crawl_captures_each_requisite_once_and_counts_them_apart(two_crawls):
    db_path, first, assets, pages, _, _ = two_crawls
    paths = [r.path for r in assets]
    assert len(paths) == len(set(paths))  # once per run, however many pages load it
    captured = requisite_rows(db_path)
    assert set(captured) == {p.lstrip("/") for p in paths}
    for wanted in (
        "wp-content/themes/Divi/style.min.css?ver=4.27.4",
        "wp-content/themes/Divi/js/scripts.min.js?ver=4.27.4",
        "wp-includes/js/jquery/jquery.min.js?ver=3.7.1",
        "wp-content/uploads/2021/03/movementality-logo.png",
        FONT_PATH.lstrip("/"),  # loaded by the stylesheet
        BACKGROUND_PATH.lstrip("/"),
    ):
        assert captured[wanted]["status"] == 200, wanted
        assert captured[wanted]["capture_file"] == "1.warc.gz"
    thumbnails = [p for p in captured if p.endswith("-400x250.jpg")]
    assert len(thumbnails) >= 40  # the listings' thumbnails
    run = run_row(db_path, first.run_id)
    assert run["requisite_requests"] == len(assets)
    assert run["requisites_fetched"] == len(captured)
    assert run["requisites_failed"] == 0
    # The pages' own counts are the pages' only.
    assert run["requests"] == pages
    assert first.result.stats.requests == pages


def test_an_audit_asks_for_its_pages_requisites_only_conditionally(tmp_path):
    """An unchanged re-crawl with its default audit reads a proven listing's pages in full; the
    images they load were captured already, so each is asked conditionally and answers 304,
    and no requisite is fetched twice."""
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.reset_stats()
        second = crawl_into_archive(config, db_path)
        asked = list(site.requisite_requests)
    assert second.result.listings.audited == 1
    assert len({r.path for r in asked}) == len(asked)
    for request in asked:
        assert "if-none-match" in request.headers or "if-modified-since" in request.headers
        assert request.status == 304, request.path
    assert not any("?ver=" in r.path for r in asked)  # versioned files are never asked again


def test_an_unchanged_recrawl_asks_for_no_requisite_again(two_crawls):
    """Versioned files are never asked again, and an unchanged page's images are captured
    already: nothing of the first crawl's requisites is fetched twice."""
    db_path, _, first_assets, _, second, second_assets = two_crawls
    assert first_assets and second_assets == []
    run = run_row(db_path, second.run_id)
    assert (run["requisite_requests"], run["requisites_fetched"]) == (0, 0)
    # The first crawl's captures still describe them.
    assert all(r["capture_file"] == "1.warc.gz" for r in requisite_rows(db_path).values())


def test_a_changed_page_asks_for_its_unversioned_requisites_conditionally(tmp_path):
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.edit("soft-eyes", description=["Edited: its listing shows new thumbnails."])
        site.reset_stats()
        report = crawl_into_archive(config, db_path)
        asked = list(site.requisite_requests)
    assert asked, "the edited page's requisites were not asked for"
    assert not any("ver=" in r.path for r in asked)  # versioned: captured already
    assert all("if-none-match" in r.headers for r in asked)
    assert all(r.status == 304 for r in asked)
    run = run_row(db_path, report.run_id)
    assert run["requisites_not_modified"] == len(asked) == run["requisite_requests"]


def test_requisites_obey_robots_txt_the_size_cap_and_never_fail_the_run(tmp_path):
    robots = DEFAULT_ROBOTS + "Disallow: /wp-content/uploads/2021/\n"
    stylesheet = "/wp-content/themes/Divi/style.min.css"
    db_path = tmp_path / "micropause.db"
    # The stylesheet answers 20 MB, over politeness.max_response_bytes.
    with FixtureSite(robots_txt=robots, faults={stylesheet: ["huge"]}) as site:
        report = crawl_into_archive(local_config(site), db_path)
        asked = {r.path for r in site.requisite_requests}
    assert not any(p.startswith("/wp-content/uploads/2021/") for p in asked)  # the logo
    captured = requisite_rows(db_path)
    assert not any(p.startswith("wp-content/uploads/2021/") for p in captured)
    css = captured[stylesheet.lstrip("/") + "?ver=4.27.4"]
    assert "too large" in css["error"]
    assert FONT_PATH.lstrip("/") not in captured  # what only the stylesheet loads
    # A requisite's failure is its own: the run is complete and healthy.
    assert report.status == "ok"
    assert run_row(db_path, report.run_id)["requisites_failed"] == 1


def test_no_requisite_prefixes_captures_the_pages_alone(tmp_path):
    with FixtureSite() as site:
        config = local_config(site)
        config = dataclasses.replace(
            config, scope=dataclasses.replace(config.scope, requisite_prefixes=())
        )
        crawl_into_archive(config, tmp_path / "micropause.db")
        assert site.requisite_requests == []
    assert requisite_rows(tmp_path / "micropause.db") == {}
