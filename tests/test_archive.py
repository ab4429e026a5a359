"""The Archive on a temporary database, with no crawl: runs, history, what a crawl is told, and
reads, through the object every command uses."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.archive import Archive, KnownPage, Layout, PageRecord, RunOutcome, read_snapshot
from pipeline.archive import history as history_module
from pipeline.captures import CaptureRef
from pipeline.errors import ArchiveError, ArchiveWriteError
from pipeline.extract import RawLesson
from pipeline.normalise import normalise

SITE = "https://movementality.se/video"


def lesson(slug: str, title: str, description: str = "Text.", published="2025-01-01"):
    return normalise(RawLesson(f"{SITE}/{slug}/", title, description, "josefine", published))


def crawl_outcome(lessons, *, complete=True, gone=(), pages=(), captures=None) -> RunOutcome:
    """A run that read ``lessons`` and was told 404 for the lessons named by ``gone``."""
    urls = {item.url for item in lessons}
    return RunOutcome(
        status="ok" if complete else "incomplete",
        lessons=lessons,
        lessons_found=len(urls),
        gone={f"{SITE}/{slug}/" for slug in gone} if complete else (),
        pages=pages,
        captures=captures or {},
        figures={"complete": int(complete), "requests": len(pages)},
    )


@pytest.fixture
def archive(tmp_path):
    with Archive.open(tmp_path / "a" / "micropause.db") as opened:
        yield opened


def save(archive: Archive, outcome: RunOutcome):
    with archive.recorded_run(["https://movementality.se/video/start/"]) as run_id:
        return run_id, archive.save_run(run_id, outcome)


def lessons_table(archive: Archive) -> dict[str, dict]:
    return {row["slug"]: row for row in archive.db.query("SELECT * FROM lessons")}


def test_its_files_are_laid_out_beside_the_database(tmp_path):
    layout = Layout(tmp_path / "micropause.db")
    assert layout.captures == tmp_path / "captures"
    assert layout.exports == tmp_path / "exports"
    assert layout.lock == tmp_path / "micropause.db.lock"


def test_a_saved_run_counts_what_it_did_and_keeps_history(archive):
    first = [lesson("a-1", "Dive deeper, 1: breath"), lesson("a-3", "Dive deeper, 3: eyes")]
    _, counts = save(archive, crawl_outcome(first))
    assert (counts.lessons_found, counts.new, counts.changed, counts.removed) == (2, 2, 0, 0)
    assert counts.programs == 1
    (program,) = archive.db.query("SELECT name, lesson_count, parts_missing FROM programs")
    assert program == {"name": "Dive deeper", "lesson_count": 2, "parts_missing": "[2]"}

    # The next complete run: one lesson edited, one gone.
    second = [lesson("a-1", "Dive deeper, 1: breath", description="Edited.")]
    run_id, counts = save(archive, crawl_outcome(second, gone=["a-3"]))
    assert (counts.new, counts.changed, counts.removed) == (0, 1, 1)
    rows = lessons_table(archive)
    assert rows["a-1"]["description"] == "Edited."
    assert rows["a-3"]["removed_at"] is not None
    events = [
        (row["event"], row["run_id"])
        for row in archive.db.query("SELECT event, run_id FROM lesson_versions ORDER BY id")
    ]
    assert events == [("created", 1), ("created", 1), ("changed", run_id), ("removed", run_id)]


def test_an_incomplete_run_marks_nothing_removed(archive):
    save(archive, crawl_outcome([lesson("a", "A"), lesson("b", "B")]))
    _, counts = save(archive, crawl_outcome([lesson("a", "A")], complete=False, gone=["b"]))
    assert counts.removed == 0
    assert lessons_table(archive)["b"]["removed_at"] is None


def test_a_reparse_rewrites_text_without_claiming_the_site_was_seen(archive):
    save(archive, crawl_outcome([lesson("a", "A"), lesson("b", "B")]))
    save(archive, crawl_outcome([lesson("a", "A")], gone=["b"]))
    before = lessons_table(archive)
    reparsed = RunOutcome(
        status="ok",
        lessons=[lesson("a", "A", "Better."), lesson("b", "B", "Better.")],
        lessons_found=2,
        observed=False,
    )
    save(archive, reparsed)
    after = lessons_table(archive)
    for slug in ("a", "b"):
        assert after[slug]["description"] == "Better."
        assert after[slug]["last_seen"] == before[slug]["last_seen"]
        assert after[slug]["removed_at"] == before[slug]["removed_at"]
    assert before["b"]["removed_at"] is not None


def test_a_crawl_is_told_every_page_to_ask_again_and_each_pages_capture(archive):
    capture = CaptureRef("1.warc.gz", 120, "<urn:uuid:1>", "2025-06-01T04:00:00Z")
    pages = [
        PageRecord(f"{SITE}/a/", "lesson", status=200, etag='"e1"', sha256="x", bytes=10),
        PageRecord(f"{SITE}/a/page/2/", "listing", status=200, last_modified="Sun"),
        PageRecord(f"{SITE}/broken/", "lesson", error="HTTP 500"),
    ]
    save(
        archive,
        crawl_outcome(
            [lesson("a", "A"), lesson("gone", "Gone")],
            pages=pages,
            captures={f"{SITE}/a/": capture},
        ),
    )
    save(archive, crawl_outcome([lesson("a", "A")], gone=["gone"]))  # "gone" is removed
    assert archive.known_pages() == {
        f"{SITE}/a/": KnownPage("lesson", '"e1"', None),
        f"{SITE}/a/page/2/": KnownPage("listing", None, "Sun"),
        # A removed lesson is asked for again, in case it comes back.
        f"{SITE}/gone/": KnownPage("lesson", None, None),
    }
    assert archive.earlier_captures() == {f"{SITE}/a/": capture}


def test_the_health_baseline_is_the_last_healthy_complete_run(archive):
    assert archive.healthy_baseline() is None
    save(archive, crawl_outcome([lesson("a", "A"), lesson("b", "B")]))
    save(archive, crawl_outcome([lesson("a", "A"), lesson("c", "C")], complete=False))
    # The lessons of the healthy run, by path: not the later incomplete run's new one.
    assert archive.healthy_baseline() == {"/video/a/", "/video/b/"}


def test_status_and_snapshot_read_what_was_saved(archive, tmp_path):
    run_id, _ = save(archive, crawl_outcome([lesson("p-1", "P, 1: x"), lesson("b", "B")]))
    state = archive.status(last=5)
    assert (state.lessons, state.removed, state.programs, state.versions) == (2, 0, 1, 2)
    assert [run["id"] for run in state.runs] == [run_id]
    archive.copy_as_of(run_id, tmp_path / "snapshot.db")
    rows = read_snapshot(tmp_path / "snapshot.db")
    assert rows.run["id"] == run_id and rows.run["complete"] is True
    assert [row[2] for row in rows.tables["lessons"]] == ["p-1", "b"]  # programs first
    assert [row[1] for row in rows.tables["programs"]] == ["p"]


def test_nothing_to_snapshot_before_a_run_saved_lessons(archive):
    with pytest.raises(ArchiveError, match="nothing to export"):
        archive.latest_saved_run()


def test_a_run_that_raises_is_recorded_as_failed_and_writes_nothing(archive):
    with pytest.raises(RuntimeError), archive.recorded_run([]) as run_id:
        raise RuntimeError("the crawl broke")
    (run,) = archive.db.query("SELECT id, status, error FROM runs")
    assert run == {"id": run_id, "status": "failed", "error": "RuntimeError: the crawl broke"}
    assert lessons_table(archive) == {}


def test_a_save_that_fails_rolls_back_as_one_archive_write_error(archive, monkeypatch):
    save(archive, crawl_outcome([lesson("a", "A")]))

    def disk_full(db):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(history_module, "refresh_search", disk_full)
    with pytest.raises(ArchiveWriteError, match=r"disk is full.*rolled back"):
        save(archive, crawl_outcome([lesson("a", "A", "Never stored."), lesson("b", "B")]))
    assert set(lessons_table(archive)) == {"a"}
    assert lessons_table(archive)["a"]["description"] == "Text."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no archive at"),
        (b"", "is an empty file, not an archive"),
        (b"not sqlite" * 100, "cannot open archive"),
    ],
)
def test_a_missing_or_foreign_file_is_refused_without_being_touched(tmp_path, content, message):
    path = tmp_path / "micropause.db"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        Archive.open(path, create=False)
    assert (path.read_bytes() if content is not None else None) == content
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["micropause.db"] if content is not None else []
    )


def test_another_applications_database_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    with pytest.raises(ArchiveError, match="not a micropause archive"):
        Archive.open(path)
