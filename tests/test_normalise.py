"""Titles as the site publishes them → program, part, subtitle; programs merged by folded key."""

import pytest

from pipeline.extract import RawLesson
from pipeline.normalise import (
    MAX_PART,
    fold,
    normalise,
    parse_date,
    programs_of,
    slugify,
    split_title,
)

LOWER_BACK = "Body Intelligence \u2013 Finding ease for the lower back"


@pytest.mark.parametrize(
    ("title", "program", "part", "subtitle"),
    [
        # A program title with an en dash in the program name.
        (f"{LOWER_BACK}, 8: the inner massage", LOWER_BACK, 8, "the inner massage"),
        # The program name holds a comma: split on the last ", <n>: ".
        (
            "Neck, shoulders and upper back, 3: Letting the shoulder blades slide",
            "Neck, shoulders and upper back",
            3,
            "Letting the shoulder blades slide",
        ),
        # Typed with a hyphen and other case on another part: kept as typed here.
        (
            "Body Intelligence - Dive Deeper, 4: the spine as a chain",
            "Body Intelligence - Dive Deeper",
            4,
            "the spine as a chain",
        ),
        # Two-digit parts, capitalised subtitle, a colon inside the subtitle.
        ("Walking, 12: Rhythm: the long stride", "Walking", 12, "Rhythm: the long stride"),
        # Standalone titles: commas and colons but no ", <n>:".
        ("Standing, breathing rotation", None, None, None),
        ("Breathe: head light, seat heavy", None, None, None),
        ("Forward fold, circle the knees", None, None, None),
        ("Count to 10: a pause", None, None, None),
        ("Micro Pause 2", None, None, None),
        # Odd spacing stays as published.
        ("Neck , shoulders,  2:  soft jaw", "Neck , shoulders", 2, "soft jaw"),
    ],
)
def test_split_title(title, program, part, subtitle):
    parts = split_title(title)
    assert (parts.program, parts.part, parts.subtitle) == (program, part, subtitle)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Body Intelligence \u2013 Dive deeper", "Body Intelligence - Dive Deeper"),
        ("Body Intelligence\u2013Dive deeper", "body intelligence - dive deeper"),
        ("It\u2019s about the \u201cback\u201d", 'it\'s about the "back"'),
        ("Neck,  shoulders", "neck, shoulders"),
    ],
)
def test_spellings_of_one_name_fold_to_one_key(a, b):
    assert fold(a) == fold(b)
    assert slugify(a) == slugify(b)


def test_different_names_keep_different_slugs():
    assert slugify("Neck, shoulders and upper back") != slugify("Neck and shoulders")


@pytest.mark.parametrize(
    ("shown", "iso"),
    [("Jun 6, 2025", "2025-06-06"), ("Dec 24, 2024", "2024-12-24"), ("soon", None), (None, None)],
)
def test_parse_date(shown, iso):
    assert parse_date(shown) == iso


def lesson(title, url, published="Jan 1, 2025", description="text"):
    return normalise(RawLesson(url, title, description, "josefine", published))


def test_normalise_keeps_published_text_and_reads_slug():
    got = lesson(f"{LOWER_BACK}, 2: Breath", "https://x/video/ease-2/")
    assert got.title == f"{LOWER_BACK}, 2: Breath"
    assert got.slug == "ease-2"
    assert got.published == "2025-01-01"
    assert got.program_slug == "body-intelligence-finding-ease-for-the-lower-back"


def test_one_program_however_typed_with_majority_name_and_gaps():
    lessons = [
        lesson("Body Intelligence \u2013 Dive deeper, 1: a", "https://x/video/a/", "Jan 1, 2025"),
        lesson("Body Intelligence \u2013 Dive deeper, 3: c", "https://x/video/c/", "Jan 3, 2025"),
        lesson("Body Intelligence - Dive Deeper, 4: d", "https://x/video/d/", "Jan 4, 2025"),
        lesson("Standing, breathing rotation", "https://x/video/s/"),
    ]
    (program,) = programs_of(lessons)
    assert program.name == "Body Intelligence \u2013 Dive deeper"
    assert program.lesson_count == 3
    assert program.parts_missing == (2,)


def test_canonical_name_tie_goes_to_latest_published_spelling():
    lessons = [
        lesson("Walking, 1: a", "https://x/video/a/", "Jan 1, 2025"),
        lesson("walking, 2: b", "https://x/video/b/", "Feb 1, 2025"),
    ]
    assert [p.name for p in programs_of(lessons)] == ["walking"]
    assert [p.name for p in programs_of(reversed(lessons))] == ["walking"]


def test_content_hash_changes_with_content_only():
    a = lesson("Walking, 1: a", "https://x/video/a/")
    assert a.content_hash == lesson("Walking, 1: a", "https://x/video/a/").content_hash
    changed = lesson("Walking, 1: a", "https://x/video/a/", description="new")
    assert a.content_hash != changed.content_hash


@pytest.mark.parametrize(
    "title",
    [
        "Prog, 20240601: a date, not a part",
        "Prog, 5000000: far too many",
        "Prog, 100000000000000000000: past any integer column",
        "Prog, " + "9" * 5000 + ": more digits than int() converts",
        "Prog, 0: no part zero",
    ],
)
def test_a_part_number_out_of_range_is_no_part_and_says_so(title):
    parsed = split_title(title)
    assert (parsed.program, parsed.part, parsed.subtitle) == (None, None, None)
    assert "out of range" in parsed.anomaly
    assert len(parsed.anomaly) < 100


def test_the_highest_part_bounds_the_gaps_a_program_can_list():
    lessons = [
        normalise(RawLesson(f"https://x/video/p{n}/", f"Prog, {n}: x", "", None, None))
        for n in (1, MAX_PART)
    ]
    (program,) = programs_of(lessons)
    assert program.parts_missing == tuple(range(2, MAX_PART))
    assert (
        normalise(RawLesson("https://x/video/q/", f"Prog, {MAX_PART + 1}: x", "", None, None)).part
        is None
    )
