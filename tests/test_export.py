"""Snapshots for citation: what researchers download must be the archive, exactly, every time."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import sqlite3

import pytest
from click.testing import CliRunner

from pipeline import __version__
from pipeline.archive import Archive
from pipeline.cli import main
from pipeline.export import LESSON_COLUMNS, PROGRAM_COLUMNS, export_snapshot
from pipeline.run import crawl_into_archive
from tests.site.server import Lesson

TRICKY = Lesson(
    slug="quotes-commas-and-lines",
    title='Standing, 1: "Soft knees", then more',
    description=[
        'She said "stop, breathe, and let go" – then, after a pause, "again".',
        "A second paragraph, so the description holds a line break.",
        "Commas,,, at the end,",
    ],
)


def query(db_path, sql):
    connection = sqlite3.connect(db_path)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(sql)]
    finally:
        connection.close()


def db_lessons(db_path):
    """The lessons table joined to program names, keyed by URL."""
    rows = query(
        db_path,
        "select lessons.*, programs.name as program from lessons "
        "left join programs on programs.id = lessons.program_id",
    )
    return {row["url"]: row for row in rows}


def read_csv(path):
    # newline="" keeps line breaks inside quoted fields exactly as written.
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def as_csv(value):
    return "" if value is None else str(value)


@pytest.fixture
def tricky_archive(site, config, tmp_path):
    """An archive holding a lesson whose text has quotes, commas and line breaks."""
    categories = site.lesson("forward-fold-circle-the-knees").categories
    site.publish(dataclasses.replace(TRICKY, categories=categories))
    db_path = tmp_path / "micropause.db"
    crawl_into_archive(config, db_path)
    return db_path


def test_csv_round_trips_through_the_csv_module_to_the_database_values(tricky_archive, tmp_path):
    snapshot = export_snapshot(tricky_archive, tmp_path / "exports")
    exported = read_csv(snapshot.path / "lessons.csv")
    stored = db_lessons(tricky_archive)
    assert len(exported) == len(stored)
    for row in exported:
        expected = stored[row["url"]]
        assert row == {c.name: as_csv(expected[c.name]) for c in LESSON_COLUMNS}
    (tricky,) = [r for r in exported if r["slug"] == TRICKY.slug]
    assert tricky["description"] == "\n\n".join(TRICKY.description)
    assert tricky["title"] == TRICKY.title and tricky["part"] == "1"
    programs = read_csv(snapshot.path / "programs.csv")
    stored_programs = {p["id"]: p for p in query(tricky_archive, "select * from programs")}
    assert [{k: as_csv(v) for k, v in stored_programs[int(p["id"])].items()} for p in programs] == (
        programs
    )


def test_csv_opens_in_spreadsheets(crawled_archive, tmp_path):
    data = (export_snapshot(crawled_archive, tmp_path).path / "lessons.csv").read_bytes()
    # The UTF-8 byte order mark makes Excel read "–" and "’" as UTF-8, not as mojibake.
    assert data.startswith(b"\xef\xbb\xbfid,url,slug,program_id,program,part,")
    assert data.count(b"\r\n") == 1 + len(query(crawled_archive, "select id from lessons"))


def test_json_and_ndjson_hold_the_database_values_with_their_types(tricky_archive, tmp_path):
    path = export_snapshot(tricky_archive, tmp_path).path
    stored = db_lessons(tricky_archive)
    as_json = json.loads((path / "lessons.json").read_text(encoding="utf-8"))
    lines = (path / "lessons.ndjson").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == as_json
    for row in as_json:
        assert row == {c.name: stored[row["url"]][c.name] for c in LESSON_COLUMNS}
    programs = json.loads((path / "programs.json").read_text(encoding="utf-8"))
    stored_programs = {p["slug"]: p for p in query(tricky_archive, "select * from programs")}
    for program in programs:
        stored_program = stored_programs[program["slug"]]
        assert program["parts_missing"] == json.loads(stored_program["parts_missing"])
        assert program["lesson_count"] == stored_program["lesson_count"]


def test_lessons_are_in_program_and_part_order(crawled_archive, tmp_path):
    rows = read_csv(export_snapshot(crawled_archive, tmp_path).path / "lessons.csv")
    keys = [(r["program"] == "", r["program"], int(r["part"] or 0)) for r in rows]
    assert keys == sorted(keys)
    assert rows[-1]["program"] == ""  # lessons of no program come last
    programs = read_csv(export_snapshot(crawled_archive, tmp_path).path / "programs.csv")
    assert [p["name"] for p in programs] == sorted(p["name"] for p in programs)


def test_exporting_twice_gives_identical_bytes(crawled_archive, tmp_path):
    first = export_snapshot(crawled_archive, tmp_path / "a")
    files = {p.name: p.read_bytes() for p in first.path.iterdir()}
    again = export_snapshot(crawled_archive, tmp_path / "a")  # the same run: replaced in place
    elsewhere = export_snapshot(crawled_archive, tmp_path / "b")
    for snapshot in (again, elsewhere):
        assert {p.name: p.read_bytes() for p in snapshot.path.iterdir()} == files
    # No hidden leftovers from the replacement.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [first.name, "latest"]


def test_snapshot_is_named_by_its_run_and_latest_points_at_it(crawled_archive, tmp_path):
    snapshot = export_snapshot(crawled_archive, tmp_path)
    (run,) = query(crawled_archive, "select id, finished from runs order by id desc limit 1")
    assert snapshot.run_id == run["id"]
    assert snapshot.date == run["finished"][:10]
    assert snapshot.path == tmp_path / f"{run['finished'][:10]}-run{run['id']}"
    assert os.readlink(tmp_path / "latest") == snapshot.name


def test_manifest_describes_run_counts_schema_and_checksums(crawled_archive, tmp_path):
    path = export_snapshot(crawled_archive, tmp_path).path
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    (run,) = query(crawled_archive, "select * from runs order by id desc limit 1")
    assert manifest["run"]["id"] == run["id"]
    assert manifest["run"]["finished"] == run["finished"]
    assert manifest["run"]["status"] == "ok" and manifest["run"]["health"] == []
    assert manifest["source"]["url"].startswith("http://127.0.0.1:")
    assert manifest["tool"] == {"name": "micropause-archive", "version": __version__}
    lessons = query(crawled_archive, "select removed_at from lessons")
    assert manifest["counts"] == {
        "lessons": len(lessons),
        "lessons_published": sum(1 for r in lessons if r["removed_at"] is None),
        "lessons_removed": sum(1 for r in lessons if r["removed_at"] is not None),
        "programs": len(query(crawled_archive, "select id from programs")),
    }
    columns = manifest["tables"]["lessons"]["columns"]
    assert [c["name"] for c in columns] == list(read_csv(path / "lessons.csv")[0])
    assert all(c["description"] for c in columns)
    assert set(manifest["files"]) == {p.name for p in path.iterdir()} - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["files"]["lessons.csv"]["rows"] == len(lessons)


def test_datapackage_describes_every_data_file(crawled_archive, tmp_path):
    path = export_snapshot(crawled_archive, tmp_path).path
    package = json.loads((path / "datapackage.json").read_text(encoding="utf-8"))
    resources = {r["path"]: r for r in package["resources"]}
    data_files = {p.name for p in path.iterdir()} - {"manifest.json", "datapackage.json"}
    assert set(resources) == data_files
    for name, resource in resources.items():
        data = (path / name).read_bytes()
        assert resource["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert resource["bytes"] == len(data)
        if name in ("micropause.db", "captures.wacz"):  # not tables: no schema
            assert "schema" not in resource
            continue
        table = LESSON_COLUMNS if name.startswith("lessons") else PROGRAM_COLUMNS
        assert [f["name"] for f in resource["schema"]["fields"]] == [c.name for c in table]
    assert resources["lessons.csv"]["encoding"] == "utf-8-sig"


def test_removed_lessons_are_kept_with_their_removal_time(site, config, tmp_path):
    db_path = tmp_path / "micropause.db"
    crawl_into_archive(config, db_path)
    site.unpublish("lying-down-letting-go")
    crawl_into_archive(config, db_path)
    snapshot = export_snapshot(db_path, tmp_path / "exports")
    rows = {r["slug"]: r for r in read_csv(snapshot.path / "lessons.csv")}
    assert rows["lying-down-letting-go"]["removed_at"] != ""
    assert rows["lying-down-letting-go-2"]["removed_at"] == ""
    assert snapshot.counts["lessons_removed"] == 1


def test_an_archive_without_a_finished_run_has_nothing_to_export(tmp_path):
    Archive.open(tmp_path / "empty.db").close()
    result = CliRunner().invoke(main, ["export", "--db", str(tmp_path / "empty.db")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: nothing to export: no run has saved lessons into this archive yet"
    )
    assert not (tmp_path / "exports").exists()


# -- the `micropause export` command ---------------------------------------------------------


def test_export_command_writes_the_formats_asked_for(crawled_archive, tmp_path):
    out = tmp_path / "exports"
    args = ["export", "--db", str(crawled_archive), "--out", str(out), "--format", "csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in (out / "latest").iterdir()}
    assert names == {
        "lessons.csv",
        "programs.csv",
        "manifest.json",
        "datapackage.json",
        "micropause.db",
        "captures.wacz",
    }
    assert os.path.basename(os.path.realpath(out / "latest")).endswith("-csv")
    assert result.stdout.startswith(f"snapshot {os.path.realpath(out / 'latest')} of run ")


def test_export_command_defaults_to_exports_beside_the_database(crawled_archive, tmp_path):
    db_path = tmp_path / "archive" / "micropause.db"
    db_path.parent.mkdir()
    with sqlite3.connect(crawled_archive) as source, sqlite3.connect(db_path) as copy:
        source.backup(copy)
    result = CliRunner().invoke(main, ["export", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "archive" / "exports" / "latest" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--format", "pdf"],
            "error: --format: unknown format pdf (choose from csv, json, ndjson)",
        ),
        (["--db", "nowhere/micropause.db"], "error: no archive at nowhere/micropause.db"),
    ],
)
def test_export_command_errors_are_one_line(args, message, tmp_path):
    result = CliRunner().invoke(main, ["export", "--out", str(tmp_path), *args])
    assert result.exit_code == 1
    assert result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1
