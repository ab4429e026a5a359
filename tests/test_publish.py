"""Publishing: the real Datasette app over a crawled archive, through its own HTTP client."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlite_utils
from click.testing import CliRunner

from pipeline.archive import LESSON_COLUMNS, PROGRAM_COLUMNS
from pipeline.archive.history import refresh_programs, refresh_search
from pipeline.cli import main
from pipeline.errors import ArchiveError, ConfigError
from pipeline.publish import build_datasette, load_metadata

HOSTILE_TITLE = "<script>alert(1)</script> Shoulder rolls"
DIVE_DEEPER = "body-intelligence-dive-deeper"
STARTUP_SECONDS = 30


def get(datasette, path: str, **kwargs) -> httpx.Response:
    return asyncio.run(datasette.client.get(path, **kwargs))


def rows(datasette, path: str) -> list[dict]:
    response = get(datasette, path)
    assert response.status_code == 200, response.text
    return response.json()


def copy_archive(source: Path, target: Path) -> Path:
    """A private copy of the shared crawled archive, safe to add lessons to."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def add_lessons(path: Path, *lessons: dict) -> None:
    """Write lessons the way the store does, then refresh programs and the search index."""
    db = sqlite_utils.Database(path)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for n, lesson in enumerate(lessons):
        slug = f"added-{n}"
        row = {
            "url": f"https://movementality.se/video/{slug}/",
            "slug": slug,
            "description": "",
            "author": "josefine",
            "published": "2025-01-01",
            "first_seen": now,
            "last_seen": now,
            "content_hash": slug,
            **lesson,
        }
        db["lessons"].insert(row)
    with db.atomic():
        refresh_programs(db)
        refresh_search(db)
    db.close()


def archive_with_hostile_lesson(crawled_archive: Path, directory: Path) -> Path:
    """The crawled archive plus a lesson whose title and text carry a script tag."""
    path = copy_archive(crawled_archive, directory / "hostile.db")
    add_lessons(
        path,
        {
            "title": HOSTILE_TITLE,
            "description": "Roll the shoulders.\n\n<script>alert(2)</script> then rest.",
        },
    )
    return path


def read_only(path: Path) -> sqlite_utils.Database:
    """The shared crawled archive is read through connections that cannot write it."""
    return sqlite_utils.Database(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))


def lesson_count(path: Path) -> int:
    db = read_only(path)
    try:
        return db["lessons"].count
    finally:
        db.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Served:
    url: str
    archive: Path | None
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"micropause serve exited with {process.returncode}: {process.stderr.read()}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # between polls; readiness is the answer above, not this pause
    pytest.fail(f"micropause serve did not answer at {url} within {STARTUP_SECONDS}s")


def default_sigint() -> None:
    # A shell's background jobs ignore Ctrl-C, and children inherit that: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def serving(
    archive: Path | None,
    micropause: Sequence[str] = (sys.executable, "-m", "pipeline"),
    **popen,
) -> Iterator[Served]:
    """`micropause serve` as a real process on a free port, once it answers; ``archive`` None
    serves the default --db, ``micropause`` is the command (an installed one, say)."""
    port = free_port()
    db = ["--db", str(archive)] if archive is not None else []
    process = subprocess.Popen(
        [*micropause, "serve", *db, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        **popen,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/micropause.json", process)
        yield Served(url, archive, process)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def datasette(crawled_archive):
    return build_datasette(crawled_archive)


def test_home_and_lessons_pages_carry_the_project_metadata(datasette):
    home = get(datasette, "/")
    assert "<h1>Micro Pause lesson archive</h1>" in home.text
    assert '<a href="https://movementality.se/">' in home.text
    assert "archived for research, not relicensed" in home.text

    lessons = get(datasette, "/micropause/lessons")
    assert "One row per lesson URL ever seen on the site" in lessons.text
    assert "<dt>removed_at</dt>" in lessons.text
    queries = {q["name"]: q["title"] for q in rows(datasette, "/micropause.json")["queries"]}
    assert queries == {
        "syllabus": "Program syllabus",
        "program_lessons": "Lessons of a program, in order",
        "recent": "Lessons first seen in the last N days",
        "search": "Lessons mentioning a phrase",
        "run_health": "Crawl runs and their health",
        "diff": "What changed between two runs",
        "changes": "Micro Pause lessons added, changed and removed",
    }


def programs_of(path: Path) -> list[dict]:
    db = read_only(path)
    try:
        return list(db.query("select id, slug, name, lesson_count from programs order by name"))
    finally:
        db.close()


@pytest.mark.parametrize("page", ["/", "/micropause"])
def test_home_and_database_pages_lead_with_lessons_programs_and_the_syllabus(
    datasette, crawled_archive, page
):
    text = get(datasette, page).text
    lessons = text.index('href="/micropause/lessons"')
    programs = text.index('href="/micropause/programs"')
    syllabus = text.index('href="/micropause/syllabus"')
    # Then the rest: the history tables, the crawl bookkeeping, the custom SQL box.
    rest = ('href="/micropause/lesson_versions"', 'href="/micropause/pages"', "Custom SQL query")
    assert max(lessons, programs, syllabus) < min(text.find(s) for s in rest if s in text)
    assert f"{lesson_count(crawled_archive)} lessons ever seen on the site" in text
    # Every program, each linked to its syllabus, under its canonical name.
    for program in programs_of(crawled_archive):
        link = f'href="/micropause/syllabus?program={program["slug"]}">{program["name"]}</a>'
        assert f"{link} ({program['lesson_count']} lessons)" in text


def test_every_column_of_the_main_tables_is_described_as_in_snapshots(datasette):
    """Datasette and the snapshot manifest read column meanings from one place (the schema)."""
    for table, schema in (
        ("lessons", LESSON_COLUMNS),
        ("lessons_in_order", LESSON_COLUMNS),
        ("programs", PROGRAM_COLUMNS),
    ):
        described = datasette.metadata(table=table, database="micropause")["columns"]
        columns = rows(datasette, f"/micropause/{table}.json?_size=1")["columns"]
        assert set(described) == set(columns)
        meanings = {c.name: c.description for c in schema}
        assert described == {name: meanings[name] for name in columns}


def test_lessons_are_faceted_by_program_and_author(datasette):
    page = rows(datasette, "/micropause/lessons.json")
    programs = {v["label"]: v["count"] for v in page["facet_results"]["program_id"]["results"]}
    assert programs["Body Intelligence – Dive deeper"] == 5
    assert programs["Body Intelligence – Finding ease for the lower back"] == 8
    assert "author" in page["facet_results"]


def test_search_box_finds_a_lesson_by_a_phrase_from_its_description(datasette):
    found = rows(datasette, "/micropause/lessons.json?_search=recieve+the+weight&_shape=array")
    assert [row["slug"] for row in found] == ["lying-down-letting-go"]

    ranked = rows(datasette, "/micropause/search.json?phrase=recieve+the+weight&_shape=array")
    assert [row["title"] for row in ranked] == ["Lying down, letting go"]
    assert "<mark>recieve the weight</mark>" in ranked[0]["passage"]


def test_phrase_search_puts_the_best_match_first(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "ranked.db")
    add_lessons(
        path,
        {
            "title": "Passing mention",
            "description": "A long walk through the whole body, from the feet upwards, "
            "noticing the knees, the hips, the ribs, the shoulders and at the end, briefly, "
            "a pelvic clock, before resting on the floor for a few minutes of quiet.",
        },
        {"title": "The pelvic clock", "description": "The pelvic clock, slowly."},
    )
    ranked = rows(build_datasette(path), "/micropause/search.json?phrase=pelvic+clock&_shape=array")
    assert [row["title"] for row in ranked] == ["The pelvic clock", "Passing mention"]


def test_phrase_search_matches_the_phrase_not_just_its_words(datasette):
    # Both words occur in many lessons, never side by side.
    assert rows(datasette, "/micropause/search.json?phrase=floor+pelvis&_shape=array") == []
    assert rows(datasette, "/micropause/search.json?phrase=&_shape=array") == []


def test_syllabus_lists_every_part_in_order_with_the_gap(datasette):
    syllabus = rows(datasette, f"/micropause/syllabus.json?program={DIVE_DEEPER}&_shape=array")
    assert [row["part"] for row in syllabus] == [1, 2, 3, 4, 5, 6]
    gap = syllabus[1]
    assert gap["lesson"] == "part 2: not found on the site"
    assert gap["url"] is None
    assert syllabus[2]["lesson"] == "part 3: Pelvis as a bowl"
    assert all(row["url"] for row in syllabus if row["part"] != 2)


def test_syllabus_takes_a_program_name_or_nothing_for_every_program(datasette):
    by_name = rows(
        datasette, "/micropause/syllabus.json?program=Body+Intelligence+–+Dive+deeper&_shape=array"
    )
    assert len(by_name) == 6
    everything = rows(datasette, "/micropause/syllabus.json?_shape=array")
    assert {row["program"] for row in everything} == {
        "Body Intelligence – Dive deeper",
        "Body Intelligence – Finding ease for the lower back",
        "Let’s begin the day",
        "Neck, shoulders and upper back",
    }
    assert len(everything) == 6 + 8 + 5 + 4


def test_syllabus_and_program_lessons_take_a_programs_id(datasette, crawled_archive):
    (program,) = (p for p in programs_of(crawled_archive) if p["slug"] == DIVE_DEEPER)
    by_slug = rows(datasette, f"/micropause/syllabus.json?program={DIVE_DEEPER}&_shape=array")
    by_id = rows(datasette, f"/micropause/syllabus.json?program={program['id']}&_shape=array")
    assert by_id == by_slug
    lessons = rows(
        datasette, f"/micropause/program_lessons.json?program={program['id']}&_shape=array"
    )
    assert [row["part"] for row in lessons] == [1, 3, 4, 5, 6]
    assert rows(datasette, "/micropause/syllabus.json?program=99999&_shape=array") == []


def test_syllabus_shows_a_removed_part_as_removed(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "removed.db")
    db = sqlite_utils.Database(path)
    db.execute(
        "UPDATE lessons SET removed_at = '2025-03-01T08:00:00+00:00' "
        "WHERE slug LIKE 'lets-begin-the-day-3-%'"
    )
    db.conn.commit()
    syllabus = rows(
        build_datasette(path), "/micropause/syllabus.json?program=lets-begin-the-day&_shape=array"
    )
    assert syllabus[2]["lesson"] == "part 3: the first steps (removed from the site 2025-03-01)"


def test_syllabus_is_linked_from_the_programs_and_lessons_pages(datasette):
    syllabus_link = f'href="/micropause/syllabus?program={DIVE_DEEPER}"'
    programs = get(datasette, "/micropause/programs").text
    assert syllabus_link in programs
    assert "part 2: not found on the site" in programs

    lessons = get(datasette, "/micropause/lessons?_search=skeleton").text
    assert '<a href="/micropause/syllabus">' in lessons
    assert syllabus_link in lessons  # the part number of a Dive deeper lesson

    in_order = get(datasette, "/micropause/lessons_in_order").text
    assert "/micropause/syllabus?program=" in in_order


def test_lessons_in_order_runs_by_program_then_part(datasette):
    lessons = rows(datasette, "/micropause/lessons_in_order.json?_shape=array&_size=max")
    numbered = [(row["program"], row["part"]) for row in lessons if row["program"]]
    assert numbered == sorted(numbered)
    assert numbered[:5] == [("Body Intelligence – Dive deeper", part) for part in (1, 3, 4, 5, 6)]
    assert all(row["program"] is None for row in lessons[len(numbered) :])


def test_lessons_of_a_program_come_in_part_order(datasette):
    lessons = rows(
        datasette, "/micropause/program_lessons.json?program=lets-begin-the-day&_shape=array"
    )
    assert [row["part"] for row in lessons] == [1, 2, 3, 4, 5]
    assert lessons[1]["title"] == "Let’s begin the day, 2: Stretch like a cat"


def test_recent_lists_lessons_first_seen_in_the_last_n_days(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "recent.db")
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat(timespec="seconds")
    db = sqlite_utils.Database(path)
    db.execute("UPDATE lessons SET first_seen = ? WHERE slug = 'sitting-bones'", [month_ago])
    db.conn.commit()
    datasette = build_datasette(path)

    def titles(query: str) -> list[str]:
        return [row["title"] for row in rows(datasette, f"/micropause/recent.json?{query}")]

    assert "Sitting bones" not in titles("days=7&_shape=array&_size=max")
    assert "Sitting bones" not in titles("_shape=array&_size=max")  # 7 days by default
    assert "Sitting bones" in titles("days=31&_shape=array&_size=max")
    assert len(titles("days=31&_shape=array&_size=max")) == lesson_count(path)


def test_runs_query_reports_each_run_and_its_health(datasette, crawled_archive):
    (run,) = rows(datasette, "/micropause/run_health.json?_shape=array")
    assert run["status"] == "ok"
    assert run["crawl"] == "complete"
    assert run["health"] == "healthy"
    assert run["lessons_found"] == lesson_count(crawled_archive)


def test_lesson_url_is_a_link_and_its_description_has_paragraphs(datasette, crawled_archive):
    db = read_only(crawled_archive)
    lesson = next(db["lessons"].rows_where("slug = ?", ["lying-down-letting-go"]))
    db.close()
    page = get(datasette, f"/micropause/lessons/{lesson['id']}").text
    assert f'<a href="{lesson["url"]}">' in page
    assert "<p>Lie down on your back" in page
    assert "<p>Letting go is not something you do" in page


def test_markup_in_lesson_text_is_shown_as_text(crawled_archive, tmp_path):
    datasette = build_datasette(archive_with_hostile_lesson(crawled_archive, tmp_path))
    for path in (
        "/micropause/lessons?_search=shoulder+rolls",
        "/micropause/search?phrase=roll+the+shoulders",
        "/micropause/lessons_in_order?_search=rolls",
    ):
        page = get(datasette, path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "<script>alert(" not in page, path


def test_web_requests_cannot_write_the_archive(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "readonly.db")
    before = sha256(path)
    datasette = build_datasette(path)

    async def attempts():
        client = datasette.client
        return [
            await client.post("/micropause/lessons", data={"title": "x"}),
            await client.post("/micropause/lessons/-/insert", json={"row": {"title": "x"}}),
            await client.get("/micropause.json?sql=delete+from+lessons"),
            await client.get(
                "/micropause.json?sql=insert+into+programs+(slug,+name)+values+('x',+'x')"
            ),
        ]

    post_form, post_json, delete, insert = asyncio.run(attempts())
    assert post_form.status_code == post_json.status_code == 405
    assert "read-only" in post_form.json()["error"]
    assert delete.status_code == insert.status_code == 400
    assert insert.json()["error"] == "Statement must be a SELECT"
    assert sha256(path) == before


def test_the_archive_connection_itself_refuses_writes(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "readonly.db")
    lessons = lesson_count(path)
    database = build_datasette(path).get_database("micropause")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(database.execute_write("DELETE FROM lessons"))
    assert lesson_count(path) == lessons


def test_the_memory_mapped_archive_is_never_truncated_under_its_readers(crawled_archive):
    """serve reads the archive through a memory map, which is safe only while no writer
    shrinks the file: SQLite does that only with auto_vacuum (or VACUUM, which nothing runs)."""
    conn = sqlite3.connect(crawled_archive)
    try:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    finally:
        conn.close()


def test_any_file_is_published_as_micropause(crawled_archive, tmp_path):
    path = copy_archive(crawled_archive, tmp_path / "snapshot-2025.db")
    datasette = build_datasette(path)
    assert get(datasette, "/micropause/lessons.json").status_code == 200
    assert get(datasette, "/micropause/no-such-table").status_code == 404


def test_serve_answers_until_ctrl_c_then_stops_cleanly(crawled_archive):
    with serving(crawled_archive) as served:
        syllabus = httpx.get(f"{served.url}/micropause/syllabus.json?program={DIVE_DEEPER}")
        assert syllabus.status_code == 200
        served.process.send_signal(signal.SIGINT)
        out, err = served.process.communicate(timeout=10)
    assert served.process.returncode == 0, err
    assert f"read-only at {served.url}/micropause" in out
    assert "Stopped." in out
    assert "interrupted" not in err


def test_serve_refuses_a_missing_archive(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 1
    assert "no archive at" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_database_that_is_not_an_archive(tmp_path):
    other = tmp_path / "other.db"
    sqlite_utils.Database(other)["things"].insert({"a": 1})
    with pytest.raises(ArchiveError, match="not a micropause archive"):
        build_datasette(other)


def test_serve_refuses_a_port_in_use(crawled_archive):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["serve", "--db", str(crawled_archive), "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_metadata_with_a_writing_query_is_refused(tmp_path):
    metadata = tmp_path / "metadata.yml"
    metadata.write_text(
        "databases:\n  micropause:\n    queries:\n      wipe:\n"
        "        sql: delete from lessons\n        write: true\n"
    )
    with pytest.raises(ConfigError, match="'wipe' writes"):
        load_metadata(metadata)
