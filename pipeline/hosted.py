"""Publish the archive on a hosted Datasette: a folder with everything `datasette publish` needs,
and the command that deploys it to Google Cloud Run or, with the datasette-publish-fly plugin,
to Fly.io.

The hosted Datasette serves what `micropause serve` serves: the same metadata (with the schema's
column descriptions filled in), templates and settings, and this package's Datasette hooks
(cell links, read-only requests, bounded SQL functions). The hooks come from the wheel the
folder carries, installed in the image beside Datasette, so the image runs the Datasette
version the package was tested with. The database is a consistent copy of the archive, named
micropause.db because every URL says /micropause, and published immutable.

    python -m pipeline.hosted cloudrun --service micropause-archive   # stage, print the command
    python -m pipeline.hosted cloudrun --service micropause-archive --run
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__
from .archive import latest_saved_run_of, verify_archive
from .cli import Group, archive_option
from .errors import ArchiveError, ConfigError, MicropauseError
from .publish import (
    ARCHIVE_NAME,
    SETTINGS,
    TEMPLATES_DIR,
    describe_columns,
    load_metadata,
)

TARGETS = ("cloudrun", "fly")
DATABASE = f"{ARCHIVE_NAME}.db"
WHEEL = f"dist/micropause_archive-{__version__}-py3-none-any.whl"
# `micropause serve`'s settings as `datasette serve` options.
SERVE_OPTIONS = " ".join(
    f"--setting {name} {'on' if value is True else 'off' if value is False else value}"
    for name, value in SETTINGS.items()
)
# Datasette loads every .py file of --plugins-dir; this one registers the installed package's
# hooks. (The wheel sits beside it: the folder is copied into the image, and pip installs the
# wheel from there; Datasette ignores files that are not Python.)
PLUGIN_FILE = "micropause_archive.py"
PLUGIN_SOURCE = '''"""micropause-archive's Datasette hooks, from the package in the image."""

from pipeline.publish import register_plugin

register_plugin()
'''


class DeployFailed(MicropauseError):
    """`datasette publish` (or the cloud's CLI under it) failed; it said why, above."""

    exit_code = 2


@dataclass(frozen=True)
class Bundle:
    """A folder `datasette publish` runs in, and what it publishes."""

    path: Path
    wheel: str  # the wheel, relative to the folder
    version_note: str  # shown at /-/versions


def stage(db_path: Path | str, wheel: Path | str, out: Path | str) -> Bundle:
    """Fill ``out`` with the archive's copy, metadata.json, templates/ and plugins/ (the hooks
    and the wheel). What a previous staging left there is replaced."""
    db_path, wheel, out = Path(db_path), Path(wheel), Path(out)
    verify_archive(db_path)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise ConfigError(f"no wheel at {wheel}: build it with `make dist`, or pass --wheel")
    copy = out / DATABASE
    if copy.resolve() == db_path.resolve():
        raise ConfigError(f"--out {out}: staging there would replace the archive {db_path}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in (DATABASE, "metadata.json", "templates", "plugins"):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        _backup(db_path, copy)
        metadata = load_metadata()
        describe_columns(metadata, copy)
        (out / "metadata.json").write_text(
            json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        shutil.copytree(TEMPLATES_DIR, out / "templates")
        plugins = out / "plugins"
        plugins.mkdir()
        (plugins / PLUGIN_FILE).write_text(PLUGIN_SOURCE, encoding="utf-8")
        shutil.copy2(wheel, plugins / wheel.name)
    except OSError as exc:
        raise ArchiveError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Bundle(out, f"plugins/{wheel.name}", version_note(copy))


def _backup(source: Path, copy: Path) -> None:
    """A consistent copy, even while a run writes the archive; the source is opened read-only."""
    uri = f"{source.resolve().as_uri()}?mode=ro"
    with (
        contextlib.closing(sqlite3.connect(uri, uri=True)) as src,
        contextlib.closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)
        # One file: an immutable database is opened without its -wal.
        dst.execute("PRAGMA journal_mode = DELETE")


def version_note(db_path: Path) -> str:
    """The tool's version and the latest run that saved lessons (as a snapshot names it), for
    /-/versions."""
    run = latest_saved_run_of(db_path)
    note = f"micropause-archive {__version__}"
    return (
        note
        if run is None
        else f"{note}; archive as of run {run['id']}, finished {run['finished']}"
    )


def publish_command(target: str, bundle: Bundle, name: str) -> list[str]:
    """The `datasette publish` command that deploys ``bundle`` as ``name`` (a Cloud Run service,
    a Fly app), to be run in the bundle's folder."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if not name or name != name.strip() or any(c.isspace() for c in name):
        raise ConfigError(f"not a service or app name: {name!r}")
    return [
        "datasette",
        "publish",
        target,
        DATABASE,
        "--service" if target == "cloudrun" else "--app",
        name,
        "--metadata",
        "metadata.json",
        "--template-dir",
        "templates",
        "--plugins-dir",
        "plugins",
        "--install",
        bundle.wheel,
        "--extra-options",
        SERVE_OPTIONS,
        "--version-note",
        bundle.version_note,
    ]


def _datasette() -> str:
    """The datasette beside this Python (the one the package was installed with), else PATH's."""
    beside = Path(sys.executable).with_name("datasette")
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else "datasette"


@click.group(cls=Group)
def main():
    """Publish the archive on a hosted Datasette: stage a folder for `datasette publish` and
    print the command that deploys it (run it with --run, once signed in to the cloud)."""


def target_options(f):
    f = click.option(
        "--run", is_flag=True, help="Run the command too (the cloud's CLI must be signed in)."
    )(f)
    f = click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Folder to stage the deployment in [default: hosted/ beside the --db].",
    )(f)
    f = click.option(
        "--wheel",
        type=click.Path(path_type=Path, dir_okay=False),
        default=WHEEL,
        show_default=True,
        help="This package's wheel (`make dist`), installed in the image for its hooks.",
    )(f)
    f = archive_option("The archive to publish.")(f)
    return f


@main.command()
@click.option("--service", required=True, help="The Cloud Run service to create or replace.")
@target_options
def cloudrun(service, db_path, wheel, out_dir, run):
    """Google Cloud Run, with `gcloud` installed and signed in."""
    deploy("cloudrun", service, db_path, wheel, out_dir, run)


@main.command()
@click.option("--app", required=True, help="The Fly app to create or replace.")
@target_options
def fly(app, db_path, wheel, out_dir, run):
    """Fly.io, with `flyctl` signed in and `pip install datasette-publish-fly`."""
    deploy("fly", app, db_path, wheel, out_dir, run)


def deploy(target: str, name: str, db_path: Path, wheel: Path, out_dir: Path | None, run: bool):
    bundle = stage(db_path, wheel, out_dir or Path(db_path).parent / "hosted")
    argv = publish_command(target, bundle, name)
    click.echo(f"staged {bundle.path}: {DATABASE}, metadata.json, templates/, plugins/")
    click.echo(f"cd {shlex.quote(str(bundle.path))} && {shlex.join(argv)}")
    if run:
        done = subprocess.run([_datasette(), *argv[1:]], cwd=bundle.path, check=False)
        if done.returncode != 0:
            raise DeployFailed(f"datasette publish {target} exited with {done.returncode}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
