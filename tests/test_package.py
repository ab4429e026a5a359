"""The package as a user installs it: the wheel carries everything the commands need, and the
installed `micropause` crawls, exports and serves from an empty directory, far from the
checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from pipeline import __version__
from tests.conftest import ROOT, START_SLUG
from tests.test_publish import serving

DEFAULTS = {"movementality.toml", "metadata.yml"}
TEMPLATES = {path.name for path in (ROOT / "pipeline" / "templates").glob("*.html")}


def test_the_wheel_carries_the_templates_the_default_config_and_the_metadata(dist):
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    assert {f"pipeline/templates/{name}" for name in TEMPLATES} <= names
    assert {f"pipeline/defaults/{name}" for name in DEFAULTS} <= names
    # The packaged defaults are config/'s files, byte for byte: one source, no copy to sync.
    with zipfile.ZipFile(dist.wheel) as wheel:
        for name in DEFAULTS:
            assert wheel.read(f"pipeline/defaults/{name}") == (ROOT / "config" / name).read_bytes()
        metadata = wheel.read(f"micropause_archive-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    assert "Project-URL: Documentation, " in metadata
    assert "Classifier: Intended Audience :: Science/Research" in metadata
    assert dist.wheel.name == f"micropause_archive-{__version__}-py3-none-any.whl"


def test_the_sdist_holds_the_tests_and_docs_needed_to_check_it(dist):
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in ("README.md", "Makefile", "config/movementality.toml", "docs/cli.md"):
        assert path in names
    assert {"tests/conftest.py", "tests/site/server.py", "tests/site/lessons.json"} <= names
    assert not any("__pycache__" in name for name in names)


@pytest.fixture
def installed(dist, tmp_path) -> Path:
    """A fresh virtualenv outside the checkout with the wheel installed: its `bin/`.

    Why not `pip install <wheel>` with its dependencies: that downloads or unpacks some thirty
    packages on every run. The wheel itself is installed as a user's pip would install it
    (--no-deps, from the file), and the dependencies are the ones already installed for the
    tests, reached through a .pth file: Python appends a .pth line to sys.path and reads no
    .pth inside it, so the checkout's editable install (a .pth finder there) stays out of the
    way and `import pipeline` can only find the wheel's copy, which the test checks."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    installing = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--quiet", str(dist.wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installing.returncode == 0, installing.stderr
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(site_packages) / "micropause-test-dependencies.pth").write_text(
        "".join(f"{path}\n" for path in sorted(ours))
    )
    return venv / "bin"


def clean_env() -> dict[str, str]:
    """The environment a user's shell would have: no path into the checkout, no settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "MICROPAUSE_", "VIRTUAL_ENV"))
    }


def test_the_installed_command_crawls_exports_and_serves_from_an_empty_directory(
    installed, site, tmp_path
):
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = clean_env()

    def micropause(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [installed / "micropause", *args],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    where = subprocess.run(
        [installed / "python", "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.parent), where  # the wheel's, not the checkout's

    version = micropause("--version")
    assert version.stdout.strip() == f"micropause, version {__version__}"
    shown = micropause("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (ROOT / "config" / "movementality.toml").read_text(encoding="utf-8")

    crawl = micropause("crawl", "--start-url", site.lesson_url(START_SLUG), "--delay", "0")
    assert crawl.returncode == 0, crawl.stderr
    assert "run 1 complete" in crawl.stdout
    assert (empty / "archive" / "micropause.db").is_file()

    export = micropause("export")
    assert export.returncode == 0, export.stderr
    manifest = json.loads((empty / "archive/exports/latest/manifest.json").read_text())
    lessons = manifest["counts"]["lessons"]
    assert lessons > 0

    with serving(None, [str(installed / "micropause")], cwd=empty, env=env) as served:
        found = httpx.get(f"{served.url}/micropause/lessons.json?_shape=array&_size=max")
        home = httpx.get(f"{served.url}/")
        lessons_page = httpx.get(f"{served.url}/micropause/lessons")
    assert found.status_code == 200
    assert len(found.json()) == lessons
    assert "Micro Pause lesson archive" in home.text  # the packaged metadata
    assert "lessons mentioning a phrase" in lessons_page.text  # the packaged templates
