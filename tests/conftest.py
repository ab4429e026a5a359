"""Shared fixtures: the local fixture site on 127.0.0.1 and configurations pointed at it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Config, load_config
from pipeline.runs import crawl_into_archive
from tests.site.server import FixtureSite, load_lessons

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "config" / "movementality.toml"
START_SLUG = "forward-fold-circle-the-knees"


def local_config(site: FixtureSite, **politeness) -> Config:
    """The project's real configuration, pointed at the local site, with no delay and fast
    retries so tests spend their time crawling rather than waiting."""
    config = load_config(CONFIG_PATH).with_start_urls((site.lesson_url(START_SLUG),))
    defaults = {"delay": 0.0, "jitter": 0.0, "read_timeout": 2.0, "connect_timeout": 2.0}
    config = config.with_politeness(**{**defaults, **politeness})
    retry = dataclasses.replace(
        config.retry, backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.2
    )
    return dataclasses.replace(config, retry=retry)


def cli_args(site, db_path, *extra):
    """The arguments of `micropause crawl` of the local site into ``db_path``, with no delay."""
    return [
        "crawl",
        "--config",
        str(CONFIG_PATH),
        "--db",
        str(db_path),
        "--start-url",
        site.lesson_url(START_SLUG),
        "--delay",
        "0",
        *extra,
    ]


@pytest.fixture
def site():
    with FixtureSite() as running:
        yield running


@pytest.fixture
def config(site) -> Config:
    return local_config(site)


@pytest.fixture(scope="session")
def site_lessons():
    """The fixture site's content, as the data file describes it."""
    return load_lessons()


@pytest.fixture(scope="session")
def crawled_archive(tmp_path_factory) -> Path:
    """An archive built by one full crawl of an unmodified fixture site. Read it, don't write:
    it is shared by every test of the session."""
    path = tmp_path_factory.mktemp("archive") / "micropause.db"
    with FixtureSite() as running:
        crawl_into_archive(local_config(running), path)
    return path


@dataclasses.dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Dist:
    """The sdist and the wheel, built the way `make dist` builds them: the sdist from the
    checkout, then the wheel from the unpacked sdist, so a file the sdist lacks is missing from
    the wheel too. Without build isolation (the dev tools include the build backend), so no
    network is needed."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)
