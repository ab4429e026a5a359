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
from urllib.parse import parse_qs, urlsplit, urlunsplit

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
    video_url: str | None = None  # the player its page embeds, as published
    video_provider: str | None = None  # vimeo or youtube; None for any other embed
    video_id: str | None = None  # the provider's id of the video
    thumbnail_url: str | None = None

    @property
    def content_hash(self) -> str:
        """Changes exactly when what the site publishes for this lesson changes."""
        content = [self.title, self.description, self.author, self.published]
        media = [self.video_url, self.video_provider, self.video_id, self.thumbnail_url]
        # A lesson with no media hashes as it did before archives kept media (migration
        # m010), so upgrading an archive changes no stored lesson's hash by itself.
        if any(media):
            # Media on the lesson's own host count by their path: the same lesson read from a
            # local copy or after a move to https or a new domain has the same content.
            host = urlsplit(self.url).netloc
            media = [on_host_path(url, host) for url in media]
            content += media
        encoded = json.dumps(content, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()


def on_host_path(url: str | None, host: str) -> str | None:
    """``url`` as a path (and query) when it is on ``host``: what stays of it when the site
    moves to another scheme, host or port."""
    if url is None:
        return None
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, "")) if parts.netloc == host else url


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


@dataclass(frozen=True, slots=True)
class Video:
    provider: str | None
    id: str | None


# The players the Divi video module embeds, by host: Vimeo's player (and vimeo.com links) and
# YouTube's embeds in all their hosts. Ids are what the provider's own URLs use.
_VIMEO_HOSTS = frozenset({"player.vimeo.com", "vimeo.com", "www.vimeo.com"})
_VIMEO_ID = re.compile(r"^/(?:video/)?([0-9]+)(?:/|$)")
_YOUTUBE_HOSTS = frozenset(
    {
        "youtube.com",
        "www.youtube.com",
        "m.youtube.com",
        "youtube-nocookie.com",
        "www.youtube-nocookie.com",
    }
)
_YOUTUBE_PATH_ID = re.compile(r"^/(?:embed|shorts|live|v)/([A-Za-z0-9_-]{6,})(?:/|$)")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")


def video_of(url: str | None) -> Video:
    """Provider and id of an embedded player's URL: ``https://player.vimeo.com/video/7102?dnt=1``
    is vimeo 7102; YouTube's embed, watch and youtu.be URLs are youtube and the video's id.
    Any other embed (another player, a self-hosted file) has neither: its URL is all there is."""
    if not url:
        return Video(None, None)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in _VIMEO_HOSTS and (m := _VIMEO_ID.match(parts.path)):
        return Video("vimeo", m[1])
    if host in _YOUTUBE_HOSTS:
        if m := _YOUTUBE_PATH_ID.match(parts.path):
            return Video("youtube", m[1])
        if parts.path == "/watch":
            ids = parse_qs(parts.query).get("v", [])
            if ids and _YOUTUBE_ID.match(ids[0]):
                return Video("youtube", ids[0])
    if host == "youtu.be" and _YOUTUBE_ID.match(parts.path.strip("/")):
        return Video("youtube", parts.path.strip("/"))
    return Video(None, None)


def normalise(raw: RawLesson) -> Lesson:
    title = split_title(raw.title)
    video = video_of(raw.video_url)
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
        video_url=raw.video_url,
        video_provider=video.provider,
        video_id=video.id,
        thumbnail_url=raw.thumbnail_url,
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
