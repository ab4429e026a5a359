"""`micropause status` at 80 columns: every line fits, and a failed run's error reads as a
sentence under the table rather than a word a line in a narrow column."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from pipeline.cli import main

WIDTH = 80
ERROR = (
    "cannot reach 127.0.0.1:9: All connection attempts failed (after 4 attempts); "
    "robots.txt could not be read, so nothing was crawled and the archive is unchanged"
)
HEALTH = [
    "lessons found dropped from 52 to 3 (more than health.max_lesson_drop = 0.2)",
    "listing page http://127.0.0.1:8765/video/soft-eyes/page/2/ listed no lessons",
]


@pytest.fixture
def archive(crawled_archive, tmp_path):
    path = tmp_path / "micropause.db"
    shutil.copy(crawled_archive, path)
    with sqlite3.connect(path) as db:
        for status, health, error in (
            ("failed", "[]", ERROR),
            ("unhealthy", json_list(HEALTH), None),
            ("interrupted", "[]", "interrupted (SIGTERM)"),
        ):
            db.execute(
                "INSERT INTO runs (started, finished, status, start_urls, health, error) "
                "VALUES ('2026-12-01T06:00:00+00:00', '2026-12-01T06:00:05+00:00', ?, '[]', ?, ?)",
                [status, health, error],
            )
    db.close()
    return path


def json_list(items) -> str:
    return json.dumps(items)


def status_lines(archive) -> list[str]:
    result = CliRunner().invoke(main, ["status", "--db", str(archive)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_every_line_of_status_but_the_counts_fits_in_80_columns(archive):
    counts, *rest = status_lines(archive)
    assert counts.startswith(f"{archive}: ")
    assert rest and all(len(line) <= WIDTH for line in rest), [x for x in rest if len(x) > WIDTH]


def test_a_failed_runs_error_and_an_unhealthy_runs_checks_read_as_sentences(archive):
    lines = status_lines(archive)
    text = " ".join(line.strip() for line in lines)
    assert f"run 2: {ERROR}" in text
    assert f"run 3: {'; '.join(HEALTH)}" in text
    assert "run 4: interrupted (SIGTERM)" in text
    # Notes come newest run first, under the table; run 2's is the last of them. Wrapped
    # between words at the width, not a word a line: its lines are full.
    notes = next(i for i, line in enumerate(lines) if line.startswith("run 4: "))
    error = next(i for i, line in enumerate(lines) if line.startswith("run 2: "))
    assert len(lines) - error <= len(f"run 2: {ERROR}") // (WIDTH - 20) + 1
    # The table's rows come first, one line per run.
    table = [line.split() for line in lines[1:notes]]
    assert [row[0] for row in table[1:]] == ["4", "3", "2", "1"]
    assert [row[3] for row in table[1:4]] == ["interrupted", "unhealthy", "failed"]
