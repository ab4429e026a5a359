"""The README documents every command and every option, so it cannot fall behind the CLI."""

from pathlib import Path

import click
import pytest

from pipeline.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands():
    return sorted(main.commands.items())


@pytest.mark.parametrize(("name", "command"), commands())
def test_command_is_documented(name, command):
    assert f"micropause {name}" in README


@pytest.mark.parametrize(
    ("name", "option"),
    [
        (name, opt)
        for name, command in commands()
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if opt.startswith("--")
    ],
)
def test_option_is_documented(name, option):
    assert f"`{option}" in README, f"{option} of micropause {name} is not in README.md"
