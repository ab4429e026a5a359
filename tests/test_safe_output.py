"""What the archive writes is safe for what reads it: a spreadsheet opening the CSV runs no
formula the site wrote, and a terminal shown a diff, a status or a log line obeys no escape
sequence or bidirectional override the site wrote. JSON, NDJSON and SQLite keep the text
exactly as published."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pty
import sqlite3
import subprocess
import sys

import pytest

from pipeline.cli import _LineFormatter
from pipeline.export import LESSON_COLUMNS, export_snapshot, render_files
from pipeline.run import crawl_into_archive
from pipeline.safe_text import CSV_FORMULA_STARTS, csv_cell, for_terminal
from tests.conftest import local_config
from tests.site.server import FixtureSite, Lesson

# Text a spreadsheet would run, one for each character a formula can start with.
FORMULAS = {
    "=": '=HYPERLINK("http://127.0.0.2/x","Click for the video")',
    "+": "+SUM(1+1)*cmd|' /C calc'!A0",
    "-": "-2+3",
    "@": "@SUM(1+1)",
    "\t": "\t=1+1",
    "\r": "\r=1+1",
}
# What a title can hold that a terminal would obey: an OSC-8 hyperlink, a screen clear, a CSI
# in its one-byte C1 form, a bidirectional override and isolate.
TERMINAL_TRICKS = (
    "\x1b]8;;http://127.0.0.2/\x1b\\Click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[H",
    "\x9b31m",
    "\u202eevil.exe",
    "\u2066isolate\u2069",
)
PIPELINE = (sys.executable, "-m", "pipeline")
RAW = ("\x1b", "\x9b", "\u202e", "\u2066", "\u2069", "\x07")


def query(db_path, sql):
    connection = sqlite3.connect(db_path)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(sql)]
    finally:
        connection.close()


@pytest.mark.parametrize("start", CSV_FORMULA_STARTS, ids=repr)
def test_a_cell_starting_like_a_formula_is_quoted_and_others_are_kept(start):
    assert csv_cell(FORMULAS[start]) == "'" + FORMULAS[start]
    # Not at the start, or not text: as it is.
    for kept in ("a=b", " =1", "'=1", "", "2025-06-06", "Body Intelligence – 2: x"):
        assert csv_cell(kept) == kept
    assert csv_cell(-2) == -2 and csv_cell(1.5) == 1.5


def test_every_formula_start_is_neutralised_in_the_csv_files(crawled_archive):
    """All six starts through render_files, with every text column of the lessons table."""
    columns = LESSON_COLUMNS
    text_columns = [i for i, c in enumerate(columns) if c.type == "string"]
    rows = []
    for n, value in enumerate(FORMULAS.values()):
        row = [n] + [None] * (len(columns) - 1)
        for i in text_columns:
            row[i] = value
        rows.append(tuple(row))
    files = render_files({"lessons": rows, "programs": []}, ["csv", "json"])
    read = list(csv.reader(io.StringIO(files["lessons.csv"].decode("utf-8-sig"), newline="")))
    for row, value in zip(read[1:], FORMULAS.values(), strict=True):
        assert [row[i] for i in text_columns] == ["'" + value] * len(text_columns)
    records = json.loads(files["lessons.json"])
    assert [r[columns[text_columns[0]].name] for r in records] == list(FORMULAS.values())


@pytest.fixture
def formula_archive(tmp_path):
    """An archive of the fixture site where lessons' title, description and author start with
    a formula's characters."""
    db_path = tmp_path / "micropause.db"
    with FixtureSite() as site:
        site.edit("soft-eyes", title=FORMULAS["="], author="-2+3")
        site.edit("the-heavy-arms", description=[FORMULAS["+"]], author="@josefine")
        crawl_into_archive(local_config(site), db_path)
    return db_path


def test_exported_csv_is_neutralised_and_json_ndjson_sqlite_keep_the_text(
    formula_archive, tmp_path
):
    stored = {r["slug"]: r for r in query(formula_archive, "select * from lessons")}
    assert stored["soft-eyes"]["title"].startswith("=HYPERLINK(")
    snapshot = export_snapshot(formula_archive, tmp_path / "exports")
    with open(snapshot.path / "lessons.csv", encoding="utf-8-sig", newline="") as f:
        exported = {r["slug"]: r for r in csv.DictReader(f)}
    for slug, column in [
        ("soft-eyes", "title"),
        ("soft-eyes", "author"),
        ("the-heavy-arms", "description"),
        ("the-heavy-arms", "author"),
    ]:
        assert exported[slug][column] == "'" + stored[slug][column]
    # Everything else in the CSV is the stored text.
    assert exported["jaw-and-tongue"]["title"] == stored["jaw-and-tongue"]["title"]
    as_json = {r["slug"]: r for r in json.loads((snapshot.path / "lessons.json").read_text())}
    lines = (snapshot.path / "lessons.ndjson").read_text().splitlines()
    as_ndjson = {r["slug"]: r for r in map(json.loads, lines)}
    in_copy = {
        r["slug"]: r for r in query(snapshot.path / "micropause.db", "select * from lessons")
    }
    for source in (as_json, as_ndjson, in_copy):
        assert source["soft-eyes"]["title"] == stored["soft-eyes"]["title"]
        assert source["the-heavy-arms"]["description"] == stored["the-heavy-arms"]["description"]
        assert source["soft-eyes"]["author"] == "-2+3"
    # The rule is stated where a reader of the files looks.
    package = json.loads((snapshot.path / "datapackage.json").read_text())
    (resource,) = [r for r in package["resources"] if r["path"] == "lessons.csv"]
    assert "=, +, -, @, a tab or a carriage return" in resource["description"]
    assert "single quote" in resource["description"]
    manifest = json.loads((snapshot.path / "manifest.json").read_text())
    assert "=, +, -, @, a tab or a carriage return" in manifest["encoding"]["csv"]


# -- the terminal ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tricky_titles_archive(tmp_path_factory):
    """Two complete runs; between them, lessons' titles were changed to hold escape sequences
    and bidirectional overrides, and a lesson with such a title was published."""
    db_path = tmp_path_factory.mktemp("tricky") / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        for slug, trick in zip(
            ("soft-eyes", "the-heavy-arms", "jaw-and-tongue", "feet-on-the-ground"),
            TERMINAL_TRICKS,
            strict=False,
        ):
            site.edit(slug, title=f"Plain start {trick} end")
        categories = site.lesson("soft-eyes").categories
        site.publish(
            Lesson(
                slug="a-tricky-pause",
                title=f"{TERMINAL_TRICKS[-1]} {FORMULAS['=']}",
                categories=categories,
                description=["New."],
                post_id=9101,
            )
        )
        crawl_into_archive(config, db_path)
    stored = [r["title"] for r in query(db_path, "select title from lessons")]
    assert any("\x1b[2J" in t for t in stored) and any("\u202e" in t for t in stored)
    return db_path


def in_terminal(*args: str) -> tuple[int, bytes]:
    """Run `micropause ARGS` with a pseudo-terminal as stdout and stderr: its exit code and
    every byte it wrote there."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([*PIPELINE, *args], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks)


@pytest.mark.parametrize("output", ["text", "json", "csv"])
def test_diff_to_a_terminal_shows_escapes_never_raw_sequences(tricky_titles_archive, output):
    code, shown = in_terminal("diff", "--db", str(tricky_titles_archive), "--format", output)
    assert code == 0, shown
    text = shown.decode("utf-8")
    assert not [c for c in RAW if c in text], text
    # Shown, escaped, not dropped.
    assert "Plain start" in text and ("\\u202e" in text or "\\u202E" in text)
    assert "\\x1b[2J" in text or "\\u001b[2J" in text


def test_diff_csv_to_a_file_keeps_the_text_and_neutralises_formulas(
    tricky_titles_archive, tmp_path
):
    target = tmp_path / "diff.csv"
    with open(target, "wb") as f:
        done = subprocess.run(
            [*PIPELINE, "diff", "--db", str(tricky_titles_archive), "--format", "csv"],
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    with open(target, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    titles = {r["title"] for r in rows}
    stored = {r["title"] for r in query(tricky_titles_archive, "select title from lessons")}
    # Exact text, except the one starting like a formula, which is quoted.
    tricky = [t for t in stored if t.startswith("Plain start")]
    assert tricky and set(tricky) <= titles
    (new,) = [t for t in stored if FORMULAS["="] in t]
    assert new in titles  # it starts with U+2066, not a formula character
    assert any("\x1b[2J" in t for t in titles)


def test_status_in_a_terminal_shows_stored_errors_escaped(tricky_titles_archive, tmp_path):
    db_path = tmp_path / "copy.db"
    db_path.write_bytes(tricky_titles_archive.read_bytes())
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute(
            "update runs set error = ?, health = '[]' where id = 1",
            ["".join(TERMINAL_TRICKS)],
        )
    connection.close()
    code, shown = in_terminal("status", "--db", str(db_path))
    assert code == 0, shown
    text = shown.decode("utf-8")
    for trick in TERMINAL_TRICKS:
        assert trick not in text
    assert not [c for c in ("\u202e", "\u2066", "\x9b", "\x07") if c in text]
    assert "\\u202e" in "".join(text.split())


def test_log_lines_show_escapes_never_raw_sequences():
    record = logging.LogRecord(
        "micropause", logging.WARNING, __file__, 1, "page.failed title=%s", (TERMINAL_TRICKS,), None
    )
    line = _LineFormatter("%(levelname)s %(message)s").format(record)
    assert not [c for c in RAW if c in line]
    assert "\\u202e" in line and "\\x1b" in line
    assert for_terminal("a\nb") == "a\nb"  # a line break stays one
