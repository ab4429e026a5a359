"""A tour that is always true: README.md's tour is what its commands print when replayed
against the fixture site, `make demo`'s addresses lead somewhere while it serves, and errors
are as the README says (one line)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests import reference
from tests.site.server import FixtureSite
from tests.tour import BLOCKS, ROOT, comparable, env, replay


@pytest.fixture(scope="module")
def tour():
    return replay()


def test_the_readmes_tour_is_what_a_replay_of_it_prints(tour):
    committed = reference.README.read_text(encoding="utf-8")
    assert comparable(reference.readme_with(tour)) == comparable(committed), (
        "README.md's tour is not what its commands print: run `make docs` and commit it"
    )
    for block in BLOCKS:
        assert tour.blocks[block] in reference.readme_with(tour)


def test_a_difference_in_what_the_tour_prints_is_caught(tour):
    """The comparison above can fail: a count the crawl printed differently is a difference,
    a duration or a snapshot's date is not."""
    changed = dict(tour.blocks, crawl=tour.blocks["crawl"].replace("52 found", "51 found"))
    timed = dict(tour.blocks, crawl=tour.blocks["crawl"].replace("complete in ", "complete in 9"))
    readme = reference.readme_with(tour)
    assert comparable(reference.readme_with(type(tour)(changed, tour.demo, ""))) != comparable(
        readme
    )
    assert comparable(reference.readme_with(type(tour)(timed, tour.demo, ""))) == comparable(readme)


def test_the_tours_syllabus_is_of_the_program_with_a_gap(tour):
    assert f"program={tour.gap_program}&" in tour.blocks["serve"]
    assert ": not found on the site" in tour.blocks["serve"]


def test_make_demo_keeps_the_site_up_while_it_serves_and_ctrl_c_stops_both(tour):
    demo = tour.demo
    assert demo.site_answered_while_serving
    assert demo.lesson_links_answered  # the lessons' links in Datasette lead somewhere
    assert demo.exit_code == 0
    assert demo.site_stopped
    for address in ("http://127.0.0.1:8765/", "http://127.0.0.1:8001/micropause"):
        assert address in demo.text


def test_the_tours_site_command_on_a_taken_port_is_one_line_and_no_traceback():
    with FixtureSite() as taken:
        port = taken.url.rsplit(":", 1)[1]
        done = subprocess.run(
            [sys.executable, "-m", "tests.site", "serve", "--port", port],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: cannot serve the fixture site on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["crawl", "--dely", "0"], "error: No such option '--dely'"),
        (["nosuch"], "error: No such command 'nosuch'"),
        (["diff", "--from", "x"], "error: Invalid value for '--from'"),
        (["status", "--last", "0"], "error: Invalid value for '--last'"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help_to_read(args, start):
    result = CliRunner().invoke(main, args, prog_name="micropause")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(start)
    command = " ".join(["micropause", *args[:1]]) if args[0] != "nosuch" else "micropause"
    assert line.endswith(f"(see {command} --help)")
