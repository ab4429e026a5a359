"""Same site, same requests: a first crawl decides which listings to walk over what it has seen
when its queue runs dry, never over the order answers arrived in, so crawling one site at
concurrency 2 and at 8 asks for the same URLs and prints the same summary."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from benchmarks.synthetic import TEASER_PATH, members_only_teaser
from pipeline.cli import main
from tests.conftest import cli_args
from tests.site.server import DEFAULT_ROBOTS, FixtureSite, load_lessons

# The one part of the summary that is about the machine, not the site: how long it took.
_ELAPSED = re.compile(r" in [0-9.]+s → \S+")

TEASER = members_only_teaser()


def first_crawl(site: FixtureSite, db_path, concurrency: int) -> tuple[set[str], list[str]]:
    """The paths a first crawl asked for, and its summary lines."""
    site.reset_stats()
    result = CliRunner().invoke(main, cli_args(site, db_path, "--concurrency", str(concurrency)))
    assert result.exit_code == 0, result.output
    paths = {record.path for record in site.requests}
    return paths, [_ELAPSED.sub("", line) for line in result.output.splitlines()]


SITES = {
    "fixture": {},
    "no-sitemap": {"sitemap": False},
    "sticky-before-no-sitemap": {
        "sitemap": False,
        "sticky": [TEASER.slug],
        "sticky_position": "before",
        "robots_txt": DEFAULT_ROBOTS + f"Disallow: {TEASER_PATH}\n",
    },
}


@pytest.mark.parametrize("kind", SITES)
def test_two_first_crawls_at_concurrency_2_and_8_make_the_same_requests(tmp_path, kind):
    options = dict(SITES[kind])
    lessons = [*load_lessons(), TEASER] if "sticky" in options else None
    # Answers delayed at random: each crawl meets them in an order of its own.
    with FixtureSite(lessons, latency_spread=0.02, **options) as site:
        slow_paths, slow_summary = first_crawl(site, tmp_path / "two.db", 2)
        fast_paths, fast_summary = first_crawl(site, tmp_path / "eight.db", 8)
    assert slow_paths == fast_paths
    assert slow_summary == fast_summary
    assert any(line.lstrip().startswith("listings:") for line in slow_summary)
    assert "/video/members-only-teaser/" not in slow_paths
