"""Pure normalisation: a lesson as published → a lesson with its program, part and subtitle.

Titles in a program read ``<program>, <part>: <subtitle>``. Program names may themselves hold
commas ("Neck, shoulders and upper back, 3: …"), so the split is on the *last* ``, <n>: ``.
A program is typed differently across its parts ("Dive deeper" / "Dive Deeper", "–" / "-"):
every spelling folds to one key, and the key is the program.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from .extract import RawLesson

# Greedy program group: the split happens at the last ", <n>:" in the title.
_NUMBERED_TITLE = re.compile(
    r"^(?P<program>.*\S)\s*,\s*(?P<part>[0-9]+)\s*:\s*(?P<subtitle>.*)$", re.S
)
# A number above this after the last comma is not a part ("Prog, 20240601: …" is a date): the
# title is read as a standalone lesson. It also bounds parts_missing, which lists the gaps from
# 1 to a program's highest part: never more than MAX_PART - 1 numbers.
MAX_PART = 1000
_FOLD_CHARS = str.maketrans(
    {
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4`", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),
    }
)
_SPACES = re.compile(r"\s+")
_SPACE_AROUND_DASH = re.compile(r"\s*-\s*")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_DATE_FORMATS = ("%b %d, %Y", "%B %d, %Y", "%Y-%m-%d", "%d %B %Y")


@dataclass(frozen=True, slots=True)
class Title:
    program: str | None
    part: int | None
    subtitle: str | None
    anomaly: str | None = None  # a part number out of range, read as no part at all


@dataclass(frozen=True, slots=True)
class Lesson:
    url: str
    slug: str
    title: str
    program: str | None  # the program's name as typed in this lesson's title
    program_slug: str | None  # the folded key shared by every spelling of the program
    part: int | None
    subtitle: str | None
    description: str
    author: str | None
    published: str | None  # ISO date
    anomaly: str | None = None  # what in the title could not be believed (see split_title)

    @property
    def content_hash(self) -> str:
        """Changes exactly when what the site publishes for this lesson changes."""
        content = [self.title, self.description, self.author, self.published]
        encoded = json.dumps(content, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True, slots=True)
class Program:
    slug: str
    name: str
    lesson_count: int
    parts_missing: tuple[int, ...]


def split_title(title: str) -> Title:
    """``"Neck, shoulders and upper back, 3: relax"`` → program, 3, subtitle. A title without
    ``, <n>:``, or whose n is not 1..MAX_PART, is a standalone lesson: no program, part or
    subtitle (the title itself stays the lesson's title)."""
    m = _NUMBERED_TITLE.match(title)
    if m is None:
        return Title(program=None, part=None, subtitle=None)
    digits = m["part"]
    part = int(digits) if len(digits) <= len(str(MAX_PART)) else None
    if part is None or not 1 <= part <= MAX_PART:
        shown = digits if len(digits) <= 20 else f"{digits[:20]}… ({len(digits)} digits)"
        return Title(None, None, None, anomaly=f"part number {shown} out of range 1..{MAX_PART}")
    return Title(program=m["program"], part=part, subtitle=m["subtitle"] or None)


def fold(text: str) -> str:
    """The matching key of a piece of text: case, dash, quote and spacing variants agree."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD_CHARS).casefold()
    text = _SPACE_AROUND_DASH.sub("-", _SPACES.sub(" ", text))
    return text.strip()


def slugify(text: str) -> str:
    # Apostrophes vanish rather than split a word, as in WordPress slugs: "let’s" → "lets".
    folded = fold(text).replace("'", "")
    ascii_text = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_text).strip("-")


def parse_date(text: str | None) -> str | None:
    """``"Jun 6, 2025"`` → ``"2025-06-06"``; anything unrecognised → None (the raw text stays
    in the capture, so a better parser can be applied later by ``reparse``)."""
    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    return None


def normalise(raw: RawLesson) -> Lesson:
    title = split_title(raw.title)
    return Lesson(
        url=raw.url,
        slug=lesson_slug(raw.url),
        title=raw.title,
        program=title.program,
        program_slug=slugify(title.program) if title.program else None,
        part=title.part,
        subtitle=title.subtitle,
        description=raw.description,
        author=raw.author,
        published=parse_date(raw.published),
        anomaly=title.anomaly,
    )


def lesson_slug(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def programs_of(lessons: Iterable[Lesson]) -> list[Program]:
    """One program per folded slug, sorted by slug.

    Canonical display name: the spelling used by most of the program's lessons; on a tie, the
    spelling of the most recently published lesson (then the highest part). Parts missing are
    the numbers from 1 to the highest part seen that no lesson has; nothing is renumbered.
    """
    members: dict[str, list[Lesson]] = defaultdict(list)
    for lesson in lessons:
        if lesson.program_slug is not None:
            members[lesson.program_slug].append(lesson)
    programs = []
    for slug, group in members.items():
        spellings = Counter(lesson.program for lesson in group)
        latest = {}
        for lesson in sorted(group, key=lambda x: (x.published or "", x.part or 0, x.url)):
            latest[lesson.program] = (lesson.published or "", lesson.part or 0, lesson.url)
        name = max(spellings, key=lambda s: (spellings[s], latest[s]))
        parts = {lesson.part for lesson in group}
        missing = tuple(n for n in range(1, max(parts) + 1) if n not in parts)
        programs.append(
            Program(
                slug=slug,
                name=name,
                lesson_count=len(group),
                parts_missing=missing,
            )
        )
    return sorted(programs, key=lambda p: p.slug)
