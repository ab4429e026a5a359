"""`micropause diff` and the `diff` canned query: what changed between two runs."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.diff import Change, LessonState, Run, Version, choose_runs, compare, lessons_at
from pipeline.errors import ConfigError
from pipeline.publish import build_datasette
from pipeline.run import crawl_into_archive


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def expected(recrawled) -> list[dict]:
    """Added first, then changed, then removed, each by title."""
    feet, heavy = recrawled.edited["feet-on-the-ground"], recrawled.edited["the-heavy-arms"]

    def changed(slug, title, fields):
        return {
            "change": "changed",
            "url": recrawled.url(slug),
            "title": title,
            "fields": sorted(fields),
            "old": {name: old for name, (old, _new) in fields.items()},
            "new": {name: new for name, (_old, new) in fields.items()},
        }

    return [
        {
            "change": "added",
            "url": recrawled.url(recrawled.added),
            "title": "A new pause",
            "fields": [],
            "old": None,
            "new": None,
        },
        changed("feet-on-the-ground", "Feet on the ground, really", feet),
        changed("the-heavy-arms", "The heavy arms", heavy),
        {
            "change": "removed",
            "url": recrawled.url(recrawled.removed),
            "title": "Lying down, letting go",
            "fields": [],
            "old": None,
            "new": None,
        },
    ]


def test_diff_json_lists_exactly_the_edits_the_removal_and_the_addition(recrawled_archive):
    result = invoke("diff", "--db", recrawled_archive.db_path, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected(recrawled_archive)


def test_default_runs_are_the_last_two_complete_ones(recrawled_archive):
    explicit = invoke(
        "diff",
        "--db",
        recrawled_archive.db_path,
        "--from",
        recrawled_archive.first_run,
        "--to",
        recrawled_archive.second_run,
        "--format",
        "json",
    )
    default = invoke("diff", "--db", recrawled_archive.db_path, "--format", "json")
    assert explicit.exit_code == 0
    assert explicit.output == default.output


def test_diff_backwards_is_the_reverse(recrawled_archive):
    result = invoke(
        "diff",
        "--db",
        recrawled_archive.db_path,
        "--from",
        recrawled_archive.second_run,
        "--to",
        recrawled_archive.first_run,
        "--format",
        "json",
    )
    changes = json.loads(result.output)
    assert [c["change"] for c in changes] == ["added", "changed", "changed", "removed"]
    assert changes[0]["url"] == recrawled_archive.url(recrawled_archive.removed)
    assert changes[-1]["url"] == recrawled_archive.url(recrawled_archive.added)


def test_text_gives_the_counts_first_then_each_lesson(recrawled_archive):
    result = invoke("diff", "--db", recrawled_archive.db_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"run {recrawled_archive.first_run} (")
    assert lines[0].endswith("1 added, 2 changed, 1 removed")
    assert f"  added    A new pause  {recrawled_archive.url('a-new-pause')}" in lines
    assert any(
        line.strip().startswith('title: "Feet on the ground" → "Feet on the ground, really"')
        for line in lines
    )
    assert any(line.strip().startswith("description: ") for line in lines)


def test_csv_has_the_rows_of_the_json(recrawled_archive):
    as_json = json.loads(
        invoke("diff", "--db", recrawled_archive.db_path, "--format", "json").output
    )
    output = invoke("diff", "--db", recrawled_archive.db_path, "--format", "csv").output
    table = list(csv.DictReader(io.StringIO(output, newline="")))
    assert [r["url"] for r in table] == [c["url"] for c in as_json]
    assert [json.loads(r["fields"]) for r in table] == [c["fields"] for c in as_json]
    assert [json.loads(r["new"]) if r["new"] else None for r in table] == [
        c["new"] for c in as_json
    ]


def test_canned_query_gives_the_same_rows_as_the_command(recrawled_archive, tmp_path):
    db_path = tmp_path / "micropause.db"
    shutil.copy(recrawled_archive.db_path, db_path)
    datasette = build_datasette(db_path)
    command = json.loads(invoke("diff", "--db", db_path, "--format", "json").output)
    for params in ("", f"from={recrawled_archive.first_run}&to={recrawled_archive.second_run}"):
        response = asyncio.run(datasette.client.get(f"/micropause/diff.json?_shape=array&{params}"))
        assert response.status_code == 200, response.text
        rows = [
            {
                **row,
                "fields": json.loads(row["fields"]),
                "old": json.loads(row["old"]) if row["old"] else None,
                "new": json.loads(row["new"]) if row["new"] else None,
            }
            for row in response.json()
        ]
        assert rows == command
    backwards = asyncio.run(
        datasette.client.get(
            f"/micropause/diff.json?_shape=array&from={recrawled_archive.second_run}"
            f"&to={recrawled_archive.first_run}"
        )
    ).json()
    assert [r["change"] for r in backwards] == ["added", "changed", "changed", "removed"]


def test_an_unchanged_recrawl_has_no_changes(site, config, tmp_path):
    db_path = tmp_path / "micropause.db"
    crawl_into_archive(config, db_path)
    crawl_into_archive(config, db_path)
    result = invoke("diff", "--db", db_path)
    assert result.exit_code == 0
    assert result.output.splitlines()[0].endswith(": 0 added, 0 changed, 0 removed")
    assert json.loads(invoke("diff", "--db", db_path, "--format", "json").output) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "99"), "error: --to 99: no such run in the archive (it has runs 1 to 1)"),
        (("--from", "7"), "error: --from 7: no such run in the archive (it has runs 1 to 1)"),
    ],
)
def test_unknown_runs_are_one_line_errors(crawled_archive, args, message):
    result = invoke("diff", "--db", crawled_archive, *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [message]


def test_a_single_run_is_too_few_to_compare(crawled_archive):
    result = invoke("diff", "--db", crawled_archive)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no complete run before run 1: nothing to compare it with (give --from, or "
        "crawl again)"
    ]


def test_an_unknown_from_run_is_named(recrawled_archive):
    result = invoke("diff", "--db", recrawled_archive.db_path, "--from", "42")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: --from 42: no such run in the archive (it has runs 1 to 2)"
    )


def test_a_missing_archive_is_one_line(tmp_path):
    result = invoke("diff", "--db", tmp_path / "none.db")
    assert result.exit_code == 1
    assert result.output.startswith("error: no archive at")


# -- the pure core ----------------------------------------------------------------------------


def test_replay_follows_removals_restorations_and_field_changes():
    versions = [
        Version(1, "u1", 1, 1, "created", {"title": "A", "description": "a", "author": None}),
        Version(1, "u1", 2, 2, "changed", {"description": "b"}),
        Version(1, "u1", 3, 3, "removed", {}),
        Version(1, "u1", 4, 4, "restored", {"author": "x"}),
        Version(2, "u2", 1, 3, "created", {"title": "B"}),
    ]
    assert lessons_at(versions, 1) == {
        1: LessonState("u1", True, {"title": "A", "description": "a", "author": None})
    }
    assert lessons_at(versions, 3)[1].present is False
    assert lessons_at(versions, 4)[1] == LessonState(
        "u1", True, {"title": "A", "description": "b", "author": "x"}
    )
    changes = compare(lessons_at(versions, 1), lessons_at(versions, 4))
    assert changes == (
        Change("added", "u2", "B"),
        Change(
            "changed",
            "u1",
            "A",
            ("author", "description"),
            {"author": None, "description": "a"},
            {"author": "x", "description": "b"},
        ),
    )
    assert [c.change for c in compare(lessons_at(versions, 2), lessons_at(versions, 3))] == [
        "added",
        "removed",
    ]


def test_runs_are_chosen_among_complete_ones():
    runs = [
        Run(1, "crawl", "ok", True, None),
        Run(2, "crawl", "incomplete", False, None),
        Run(3, "reparse", "ok", False, None),
        Run(4, "crawl", "ok", True, None),
        Run(5, "crawl", "failed", False, None),
    ]
    assert [r.id for r in choose_runs(runs, None, None)] == [1, 4]
    assert [r.id for r in choose_runs(runs, 2, None)] == [2, 4]
    assert [r.id for r in choose_runs(runs, None, 3)] == [1, 3]
    with pytest.raises(ConfigError, match="no complete run before run 1"):
        choose_runs(runs, None, 1)
    with pytest.raises(ConfigError, match="--to 6: no such run"):
        choose_runs(runs, None, 6)
    with pytest.raises(ConfigError, match="no complete run in the archive yet"):
        choose_runs(runs[1:3], None, None)
