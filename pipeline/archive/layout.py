"""Where an archive's files are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where an archive's files are: the database, and beside it everything else. The files
    belong to the real database file, whatever path names it: a symlink is resolved, so two
    names of one archive never split its lock, captures and exports over two folders."""

    db: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", Path(self.db).resolve())

    @property
    def captures(self) -> Path:
        """archive/micropause.db → archive/captures/"""
        return self.db.parent / "captures"

    @property
    def exports(self) -> Path:
        """archive/micropause.db → archive/exports/"""
        return self.db.parent / "exports"

    @property
    def lock(self) -> Path:
        """archive/micropause.db → archive/micropause.db.lock"""
        return self.db.with_name(self.db.name + ".lock")
