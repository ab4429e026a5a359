"""The documentation cannot fall behind the code: README.md names every command, the pages
written by hand explain every option, the generated reference is what its generator writes
now, README.md stays one page, and every link leads to a page and heading that exist."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import click
import pytest

from pipeline import hosted
from pipeline.cli import main
from tests import reference

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLI_REFERENCE = ROOT / "docs" / "cli.md"
# Everything a person wrote: the README, docs/ but its generated reference, deploy's recipe.
BY_HAND = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p != CLI_REFERENCE),
    ROOT / "deploy" / "README.md",
]
PAGES = [*BY_HAND, CLI_REFERENCE]
README_LIMIT = 12_000


def commands(group: click.Group = main, prefix: str = "micropause"):
    """Every command and subcommand, by its full name (``micropause config show``)."""
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def long_options(*entry_points: tuple[click.Group, str]):
    return [
        (name, opt)
        for group, prefix in entry_points or [(main, "micropause")]
        for name, command in commands(group, prefix)
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if opt.startswith("--")
    ]


@pytest.mark.parametrize(("name", "command"), commands())
def test_command_is_in_the_readme(name, command):
    assert name in README, f"{name} is not in README.md's command table"


@pytest.mark.parametrize(
    ("name", "option"),
    long_options((main, "micropause"), (hosted.main, "python -m pipeline.hosted")),
)
def test_option_is_explained_by_hand(name, option):
    written = "\n".join(path.read_text(encoding="utf-8") for path in BY_HAND)
    assert f"`{option}" in written, f"{option} of {name} is in neither README.md nor docs/"


@pytest.mark.parametrize(
    ("name", "option"),
    long_options((main, "micropause"), (hosted.main, "python -m pipeline.hosted")),
)
def test_option_is_in_the_command_reference(name, option):
    text = CLI_REFERENCE.read_text(encoding="utf-8")
    section = text.split(f"## `{name}`\n", 1)[1].split("\n## ", 1)[0]
    assert option in section, f"{option} of {name} is not in docs/cli.md"


@pytest.mark.parametrize("path", list(reference.expected()), ids=lambda p: p.name)
def test_generated_docs_are_what_the_generator_writes(path):
    committed = path.read_text(encoding="utf-8")
    assert committed == reference.expected()[path], (
        f"{path.relative_to(ROOT)} is out of date: run `{reference.REGENERATE}` and commit it"
    )


def test_the_reference_changes_when_an_option_does():
    """The test above would catch a forgotten regeneration: a new option changes the text."""
    crawl = copy.copy(main.commands["crawl"])
    crawl.params = [*crawl.params, click.Option(["--brand-new"], help="Not documented yet.")]
    changed = copy.copy(main)
    changed.commands = {**main.commands, "crawl": crawl}
    assert "--brand-new" in reference.render_cli(changed)
    assert reference.render_cli(changed) != reference.render_cli(main)


def test_every_column_of_the_archive_has_a_meaning():
    for table in reference.schema_tables():
        for column in table["columns"]:
            assert column["meaning"], (
                f"{table['name']}.{column['name']} has no description: add it to "
                "LESSON_COLUMNS/PROGRAM_COLUMNS (pipeline/archive/schema.py) or to "
                "config/metadata.yml"
            )


def test_readme_is_one_page_that_starts_with_the_two_commands():
    size = len(README.encode("utf-8"))
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/"
    before_first_section = README.split("\n## ", 1)[0]
    first_block = before_first_section.split("```", 2)[1]
    assert first_block.startswith("sh\nmake demo ")
    assert "\nmake test " in first_block


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to -."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_into_the_repository(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.is_relative_to(ROOT), f"{page.name}: {target} leads out of the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: no heading for {target}"
