"""Publishing on a hosted Datasette, tested as far as a cloud account allows: the staged folder,
the `datasette publish cloudrun` it prints, that command run for real against a stand-in
`gcloud` (which keeps the container's build context instead of uploading it), and the
container's own commands replayed from its Dockerfile on this machine."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pipeline import __version__
from pipeline.archive import LESSON_COLUMNS
from pipeline.errors import ConfigError
from pipeline.hosted import main, publish_command, stage
from tests.test_publish import (
    DIVE_DEEPER,
    copy_archive,
    default_sigint,
    free_port,
    lesson_count,
    wait_until_answering,
)

# What `gcloud` is asked, and the build context `gcloud builds submit` would upload.
FAKE_GCLOUD = """#!/bin/sh
echo "$*" >> "$GCLOUD_LOG"
case "$1 $2" in
  "config get-value") echo micropause-test-project ;;
  "builds submit") cp -R . "$GCLOUD_CONTEXT" ;;
esac
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def archive(crawled_archive, tmp_path) -> Path:
    return copy_archive(crawled_archive, tmp_path / "micropause.db")


def test_the_staged_folder_holds_the_archive_metadata_templates_and_hooks(archive, dist, tmp_path):
    bundle = stage(archive, dist.wheel, tmp_path / "hosted")
    names = {p.relative_to(bundle.path).as_posix() for p in bundle.path.rglob("*")}
    assert {"micropause.db", "metadata.json", "templates/index.html"} <= names
    assert {"plugins/micropause_archive.py", f"plugins/{dist.wheel.name}"} <= names
    assert lesson_count(bundle.path / "micropause.db") == lesson_count(archive)
    metadata = json.loads((bundle.path / "metadata.json").read_text())
    # The column meanings serve fills in from the schema are written out for the hosted one.
    described = metadata["databases"]["micropause"]["tables"]["lessons"]["columns"]
    # (`program` is a column of lessons_in_order and of snapshots, not of the table.)
    assert described == {c.name: c.description for c in LESSON_COLUMNS if c.name != "program"}
    assert bundle.version_note.startswith(f"micropause-archive {__version__}; archive as of run 1")


def test_the_printed_command_publishes_the_folder_as_serve_publishes_the_archive(
    archive, dist, tmp_path
):
    result = invoke(
        "cloudrun", "--service", "micropause-archive", "--db", archive, "--wheel", dist.wheel
    )
    assert result.exit_code == 0, result.output
    staged, command = result.output.splitlines()
    assert staged.startswith(f"staged {tmp_path / 'hosted'}: micropause.db")
    cd, argv = command.split(" && ")
    assert cd == f"cd {tmp_path / 'hosted'}"
    assert shlex.split(argv)[:6] == [
        "datasette",
        "publish",
        "cloudrun",
        "micropause.db",
        "--service",
        "micropause-archive",
    ]
    assert (
        "--extra-options '--setting suggest_facets off --setting truncate_cells_html 400 "
        "--setting num_sql_threads 4'" in argv
    )
    fly = invoke("fly", "--app", "micropause", "--db", archive, "--wheel", dist.wheel)
    assert fly.exit_code == 0, fly.output
    assert "datasette publish fly micropause.db --app micropause --metadata" in fly.output


def test_mistakes_are_one_line_errors(archive, tmp_path):
    missing = invoke("cloudrun", "--service", "s", "--db", archive, "--wheel", tmp_path / "x.whl")
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        f"error: no wheel at {tmp_path / 'x.whl'}: build it with `make dist`, or pass --wheel"
    )
    nothing = invoke("cloudrun", "--service", "s", "--db", tmp_path / "none.db")
    assert nothing.exit_code == 1
    assert nothing.output.strip().startswith(f"error: no archive at {tmp_path / 'none.db'}")


def test_the_archive_itself_is_never_staged_over(archive, dist):
    before = archive.read_bytes()
    result = invoke(
        "cloudrun",
        "--service",
        "s",
        "--db",
        archive,
        "--wheel",
        dist.wheel,
        "--out",
        archive.parent,
    )
    assert result.exit_code == 1
    assert "staging there would replace the archive" in result.output
    assert archive.read_bytes() == before


def test_a_name_with_spaces_is_refused(archive, dist, tmp_path):
    bundle = stage(archive, dist.wheel, tmp_path / "hosted")
    with pytest.raises(ConfigError, match="not a service or app name"):
        publish_command("cloudrun", bundle, "my archive")


def test_datasette_publish_cloudrun_builds_a_container_that_serves_the_archive(
    archive, dist, tmp_path
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IXUSR)
    context = tmp_path / "context"
    log = tmp_path / "gcloud.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GCLOUD_LOG": str(log),
        "GCLOUD_CONTEXT": str(context),
    }
    hosted = [sys.executable, "-m", "pipeline.hosted", "cloudrun", "--service", "micropause"]
    published = subprocess.run(
        [*hosted, "--db", str(archive), "--wheel", str(dist.wheel), "--run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert published.returncode == 0, published.stdout + published.stderr
    assert "run deploy --allow-unauthenticated" in log.read_text()
    assert " micropause " in log.read_text().splitlines()[-1]  # the service deployed

    # The image: the package's wheel installed beside Datasette, then `datasette serve`.
    dockerfile = (context / "Dockerfile").read_text()
    assert f"RUN pip install -U datasette plugins/{dist.wheel.name}\n" in dockerfile
    assert (context / "plugins" / dist.wheel.name).read_bytes() == dist.wheel.read_bytes()
    inspect = shlex.split(re.search(r"^RUN (datasette inspect .*)$", dockerfile, re.M)[1])
    serve = shlex.split(re.search(r"^CMD (datasette serve .*)$", dockerfile, re.M)[1])
    for option in ("--metadata", "--template-dir", "--plugins-dir", "--setting"):
        assert option in serve
    # Replayed here, with this machine's Datasette and package in place of the image's.
    datasette = str(Path(sys.executable).with_name("datasette"))
    subprocess.run([datasette, *inspect[1:]], cwd=context, check=True, capture_output=True)
    port = free_port()
    serve = [datasette, *(arg.replace("0.0.0.0", "127.0.0.1") for arg in serve[1:])]
    serve[serve.index("$PORT")] = str(port)
    process = subprocess.Popen(
        serve,
        cwd=context,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/micropause.json", process)
        home = httpx.get(f"{url}/").text
        programs = httpx.get(f"{url}/micropause/programs").text
        lessons = httpx.get(f"{url}/micropause/lessons.json?_shape=array&_size=max").json()
        versions = httpx.get(f"{url}/-/versions.json").json()
        write = httpx.post(f"{url}/micropause/lessons", data={"title": "x"})
        download = httpx.head(f"{url}/micropause.db")
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert home.index('href="/micropause/lessons"') < home.index("/micropause/lesson_versions")
    assert f'href="/micropause/syllabus?program={DIVE_DEEPER}"' in programs  # the hooks
    assert "lessons mentioning a phrase" in programs  # the templates
    assert len(lessons) == lesson_count(archive)
    assert versions["datasette"]["note"].startswith(f"micropause-archive {__version__}")
    assert write.status_code == 405  # read-only, as serve is
    assert download.status_code == 200  # an immutable database can be downloaded whole
