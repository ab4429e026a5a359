"""Shared fixtures: the local fixture site on 127.0.0.1 and configurations pointed at it."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.archive import Layout
from pipeline.config import Config, load_config
from pipeline.run import crawl_into_archive
from tests.site.server import FixtureSite, Lesson, load_lessons

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "config" / "movementality.toml"
START_SLUG = "forward-fold-circle-the-knees"
# What a crawl archives, minus the columns that say *when* it looked.
CONTENT = (
    "select l.slug, l.title, p.name as program, l.part, l.subtitle, l.description, l.author, "
    "l.published, l.content_hash, l.removed_at from lessons l "
    "left join programs p on p.id = l.program_id order by l.slug"
)
PROGRAMS = "select slug, name, lesson_count, parts_missing from programs order by slug"


def local_config(site: FixtureSite, *, listing_inference: bool = True, **politeness) -> Config:
    """The project's real configuration, pointed at the local site, with no delay and fast
    retries so tests spend their time crawling rather than waiting."""
    config = load_config(CONFIG_PATH).with_start_urls((site.lesson_url(START_SLUG),))
    scope = dataclasses.replace(config.scope, listing_inference=listing_inference)
    config = dataclasses.replace(config, scope=scope)
    defaults = {"delay": 0.0, "jitter": 0.0, "read_timeout": 2.0, "connect_timeout": 2.0}
    config = config.with_politeness(**{**defaults, **politeness})
    retry = dataclasses.replace(
        config.retry, backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.2
    )
    return dataclasses.replace(config, retry=retry)


def without_audits(config: Config) -> Config:
    """``config`` with no audits (scope.audit_listings = 0): a re-crawl then asks every page
    it knows conditionally and walks no listing it need not."""
    return dataclasses.replace(config, scope=dataclasses.replace(config.scope, audit_listings=0))


def copy_with_captures(source: Path, tmp_path: Path) -> Path:
    """A private copy of an archive and its captures (as ``archive/micropause.db`` under
    ``tmp_path``), for a test to change or damage."""
    db_path = tmp_path / "archive" / "micropause.db"
    db_path.parent.mkdir()
    with sqlite3.connect(source) as original, sqlite3.connect(db_path) as copy:
        original.backup(copy)
    original.close()
    copy.close()
    shutil.copytree(Layout(source).captures, Layout(db_path).captures)
    return db_path


def cli_args(site, db_path, *extra, command="crawl"):
    """The arguments of `micropause crawl` (or ``command``: `run`) of the local site into
    ``db_path``, with no delay."""
    return [
        command,
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


@dataclass(frozen=True)
class Recrawled:
    """An archive of two complete runs of the fixture site, with the site changed between
    them: two lessons edited, one removed, one added."""

    db_path: Path
    site_url: str
    first_run: int
    second_run: int
    edited: dict[str, dict[str, tuple[str, str]]]  # slug → field → (old, new)
    removed: str
    added: str

    def url(self, slug: str) -> str:
        return f"{self.site_url}/video/{slug}/"


@pytest.fixture(scope="session")
def recrawled_archive(tmp_path_factory) -> Recrawled:
    """Read it, don't write: it is shared by every test of the session."""
    path = tmp_path_factory.mktemp("recrawled") / "archive" / "micropause.db"
    with FixtureSite() as running:
        config = local_config(running)
        first = crawl_into_archive(config, path)
        with sqlite3.connect(path) as db:
            old = dict(
                db.execute(
                    "SELECT slug, description FROM lessons WHERE slug = 'the-heavy-arms' UNION ALL "
                    "SELECT slug, title FROM lessons WHERE slug = 'feet-on-the-ground'"
                ).fetchall()
            )
        db.close()
        running.edit("the-heavy-arms", description=["Let the arms hang <heavy> & loose."])
        running.edit("feet-on-the-ground", title="Feet on the ground, really")
        running.unpublish("lying-down-letting-go")
        running.publish(
            Lesson(
                slug="a-new-pause",
                title="A new pause",
                author="josefine",
                published="2030-01-01",
                modified="2030-01-01T09:00:00Z",
                categories=["Micro Pause"],
                description=["A brand new pause."],
                post_id=9001,
            )
        )
        second = crawl_into_archive(config, path)
        site_url = running.url
    return Recrawled(
        db_path=path,
        site_url=site_url.rstrip("/"),
        first_run=first.run_id,
        second_run=second.run_id,
        edited={
            "the-heavy-arms": {
                "description": (old["the-heavy-arms"], "Let the arms hang <heavy> & loose.")
            },
            "feet-on-the-ground": {
                "title": (old["feet-on-the-ground"], "Feet on the ground, really")
            },
        },
        removed="lying-down-letting-go",
        added="a-new-pause",
    )


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
