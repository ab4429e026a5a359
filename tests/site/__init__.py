"""The local fixture website the crawler's tests and ``make demo`` crawl (never the internet)."""

from .server import (
    DEFAULT_DATA,
    FAULT_KINDS,
    START_SLUG,
    TRANSIENT_FAULTS,
    FixtureSite,
    Lesson,
    RequestRecord,
    load_lessons,
)

__all__ = [
    "DEFAULT_DATA",
    "FAULT_KINDS",
    "START_SLUG",
    "TRANSIENT_FAULTS",
    "FixtureSite",
    "Lesson",
    "RequestRecord",
    "load_lessons",
]
