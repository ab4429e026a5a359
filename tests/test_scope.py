"""Which URLs a crawl may ask for, and the one spelling of each: pure, no network."""

import pytest

from pipeline.config import load_config
from pipeline.extract import MAX_LISTING_PAGES
from pipeline.frontier import UrlScope
from tests.conftest import CONFIG_PATH

ORIGIN = "http://127.0.0.1:8765/video/start/"
SCOPE = UrlScope(load_config(CONFIG_PATH).with_start_urls((ORIGIN,)), ORIGIN)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://127.0.0.1:8765/video/a", "http://127.0.0.1:8765/video/a/"),
        ("http://127.0.0.1:8765/video/a/page/1/", "http://127.0.0.1:8765/video/a/"),
        ("http://127.0.0.1:8765/video/a/page/3/?x=1#y", "http://127.0.0.1:8765/video/a/page/3/"),
        # The configured site's own links point at the host being crawled.
        ("https://movementality.se/video/a/", "http://127.0.0.1:8765/video/a/"),
        (f"http://127.0.0.1:8765/video/a/page/{MAX_LISTING_PAGES}/", None),
    ],
)
def test_in_scope_urls_have_one_spelling(url, canonical):
    if canonical is None:
        canonical = url
    assert SCOPE.canonical(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/video/bad\x01link/",
        "http://127.0.0.1:8765/video/bad\x7flink/",
        "http://127.0.0.1:8765/video/bad link/",
        "http://127.0.0.1:8765/video/bad\u0085link/",
        "http://[127.0.0.1:8765/video/a/",
        f"http://127.0.0.1:8765/video/a/page/{MAX_LISTING_PAGES + 1}/",
        "http://127.0.0.1:8765/video/a/page/1000000000000000000000/",
        "http://127.0.0.1:8765/video/a/page/" + "9" * 5000 + "/",
        "http://127.0.0.1:8765/video/a/page/0/",
        "http://127.0.0.1:8765/about/",
        "http://127.0.0.2:8765/video/a/",
    ],
)
def test_urls_a_browser_would_not_send_or_past_any_listing_are_out_of_scope(url):
    assert SCOPE.canonical(url) is None
