"""What changed in the archive between two runs: lessons added, changed and removed.

The archive as it stood after run N is replayed from ``lesson_versions``: a lesson is present
after its ``created`` version and after each ``restored`` one, absent after ``removed``, and
each field holds the value of the newest version up to run N that set it. Two such states are
compared. By default the two are the latest complete run and the complete run before it.

Plain functions over plain dataclasses; the runs and versions come from the Archive.
``config/metadata.yml``'s canned query ``diff`` replays the same history in SQL and gives the
same rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .archive import Archive, Run, Version
from .archive.schema import LESSON_CONTENT
from .errors import ConfigError
from .safe_text import csv_cell

KINDS = ("added", "changed", "removed")
# The fields a version records, in the order lesson_versions.changed lists them: alphabetical.
FIELDS = tuple(sorted(LESSON_CONTENT))
COLUMNS = ("change", "url", "title", "fields", "old", "new")


@dataclass(frozen=True)
class LessonState:
    url: str
    present: bool
    values: dict[str, str | None]


@dataclass(frozen=True)
class Change:
    change: str  # added, changed, removed
    url: str
    title: str | None
    fields: tuple[str, ...] = ()  # for "changed": the fields whose values differ
    old: dict[str, str | None] | None = None  # their values after the first run
    new: dict[str, str | None] | None = None  # … and after the second

    def as_dict(self) -> dict:
        return {
            "change": self.change,
            "url": self.url,
            "title": self.title,
            "fields": list(self.fields),
            "old": self.old,
            "new": self.new,
        }


@dataclass(frozen=True)
class Diff:
    before: Run
    after: Run
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        return {kind: sum(c.change == kind for c in self.changes) for kind in KINDS}


# -- the pure core -------------------------------------------------------------------------


def choose_runs(runs: Sequence[Run], before: int | None, after: int | None) -> tuple[Run, Run]:
    """The two runs to compare: ``after`` defaults to the latest complete run, ``before`` to
    the complete run before ``after``. An unknown run, or too few runs, is a ConfigError."""
    by_id = {run.id: run for run in runs}
    complete = sorted(run.id for run in runs if run.complete)

    def known(run_id: int, option: str) -> Run:
        if run_id not in by_id:
            have = f"runs {min(by_id)} to {max(by_id)}" if by_id else "no runs"
            raise ConfigError(f"{option} {run_id}: no such run in the archive (it has {have})")
        return by_id[run_id]

    if after is not None:
        second = known(after, "--to")
    elif complete:
        second = by_id[complete[-1]]
    else:
        raise ConfigError("no complete run in the archive yet: nothing to compare")
    if before is not None:
        first = known(before, "--from")
    else:
        earlier = [run_id for run_id in complete if run_id < second.id]
        if not earlier:
            raise ConfigError(
                f"no complete run before run {second.id}: nothing to compare it with "
                "(give --from, or crawl again)"
            )
        first = by_id[earlier[-1]]
    return first, second


def lessons_at(versions: Iterable[Version], run_id: int) -> dict[int, LessonState]:
    """Every lesson as the archive held it once run ``run_id`` had finished."""
    states: dict[int, LessonState] = {}
    for v in sorted(versions, key=lambda v: (v.lesson_id, v.version)):
        if v.run_id > run_id:
            continue
        state = states.get(v.lesson_id) or LessonState(v.url, False, {})
        present = {"created": True, "restored": True, "removed": False}.get(v.event, state.present)
        states[v.lesson_id] = LessonState(v.url, present, {**state.values, **v.new})
    return states


def compare(before: dict[int, LessonState], after: dict[int, LessonState]) -> tuple[Change, ...]:
    """The lessons added, changed and removed from ``before`` to ``after``: added first, then
    changed, then removed, each by title and URL."""
    changes = []
    for lesson_id in before.keys() | after.keys():
        old = before.get(lesson_id)
        new = after.get(lesson_id)
        was = old is not None and old.present
        is_ = new is not None and new.present
        if is_ and not was:
            changes.append(Change("added", new.url, new.values.get("title")))
        elif was and not is_:
            changes.append(Change("removed", old.url, old.values.get("title")))
        elif was and is_:
            differ = tuple(f for f in FIELDS if old.values.get(f) != new.values.get(f))
            if differ:
                changes.append(
                    Change(
                        "changed",
                        new.url,
                        new.values.get("title"),
                        differ,
                        {f: old.values.get(f) for f in differ},
                        {f: new.values.get(f) for f in differ},
                    )
                )
    return tuple(sorted(changes, key=lambda c: (KINDS.index(c.change), c.title or "", c.url)))


def diff_versions(versions: Sequence[Version], before: Run, after: Run) -> Diff:
    return Diff(
        before, after, compare(lessons_at(versions, before.id), lessons_at(versions, after.id))
    )


# -- output: pure, from a Diff to text ---------------------------------------------------------


def as_json(diff: Diff, *, ascii_only: bool = False) -> str:
    """``ascii_only`` writes every non-ASCII character as its \\u escape: the same JSON, with
    nothing a terminal could obey."""
    changes = [c.as_dict() for c in diff.changes]
    return json.dumps(changes, ensure_ascii=ascii_only, indent=2) + "\n"


def as_csv(diff: Diff, *, line_end: str = "\r\n") -> str:
    """One row per lesson; ``fields``, ``old`` and ``new`` as JSON text (empty when the lesson
    was added or removed), the way the canned query shows them. Cells a spreadsheet would run
    are neutralised (see safe_text.CSV_RULE)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(COLUMNS)
    for c in diff.changes:
        row = c.as_dict()
        cells = [
            row["change"],
            row["url"],
            row["title"] or "",
            _json_text(row["fields"]),
            "" if row["old"] is None else _json_text(row["old"]),
            "" if row["new"] is None else _json_text(row["new"]),
        ]
        writer.writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue()


def as_lines(diff: Diff, width: int = 60) -> list[str]:
    """A readable summary: the two runs and the counts first, then one line per lesson and,
    for a changed one, a line per field with the old and new values (long ones cut around
    where they first differ)."""
    counts = diff.counts()
    lines = [
        f"run {_run_label(diff.before)} → run {_run_label(diff.after)}: "
        + ", ".join(f"{counts[kind]} {kind}" for kind in KINDS)
    ]
    for c in diff.changes:
        lines.append(f"  {c.change:<8} {c.title}  {c.url}")
        for name in c.fields:
            old, new = excerpts(c.old[name], c.new[name], width)
            lines.append(f"           {name}: {old} → {new}")
    return lines


def excerpts(old: str | None, new: str | None, width: int = 60) -> tuple[str, str]:
    """Both values quoted, each at most about ``width`` characters, starting a little before
    the first character where they differ."""
    if old is None or new is None:
        return _quoted(old, width), _quoted(new, width)
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    start = max(0, start - width // 3)
    return _quoted(old, width, start), _quoted(new, width, start)


def _quoted(value: str | None, width: int, start: int = 0) -> str:
    if value is None:
        return "(none)"
    text = value[start : start + width]
    return json.dumps(
        ("…" if start else "") + text + ("…" if start + width < len(value) else ""),
        ensure_ascii=False,
    )


def _run_label(run: Run) -> str:
    when = (run.finished or "")[:16].replace("T", " ")
    return f"{run.id} ({', '.join(filter(None, [when, run.status]))})"


def _json_text(value) -> str:
    # SQLite's own JSON text (the canned query's): no spaces, non-ASCII kept.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- the shell: reading the archive ---------------------------------------------------------


def diff_archive(db_path: Path | str, before: int | None = None, after: int | None = None) -> Diff:
    """What changed in the archive at ``db_path`` from run ``before`` to run ``after``."""
    with Archive.open(db_path, create=False, read_only=True) as archive:
        first, second = choose_runs(archive.run_summaries(), before, after)
        return diff_versions(archive.versions_between(first.id, second.id), first, second)
