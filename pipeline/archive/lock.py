"""One writer per archive: an advisory lock on a file next to the database.

``flock`` rather than a pid file: the kernel drops the lock when the holding process ends,
however it ends (kill -9, OOM, power loss), so a stale lock can never block the next run and no
pid has to be checked for reuse. The file's contents (pid, command, start time) only make the
"already running" message useful. The file is never deleted: removing it while another process
waits on it would let two processes hold "the" lock on two different files.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ArchiveError, LockHeld
from .layout import Layout
from .schema import missing, now_iso


@contextmanager
def archive_lock(db_path: Path | str, command: str, *, create: bool = True) -> Iterator[Path]:
    """Hold the archive's lock for the block, or raise LockHeld at once if another process
    holds it (never wait: a scheduler's next run will come). Without ``create``, a missing
    archive is an error here, before its folder or lock file is made."""
    db_path = Path(db_path)
    if not create and not db_path.is_file():
        raise missing(db_path)
    path = Layout(db_path).lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ArchiveError(f"cannot create lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"{_holder(path)} is already using {db_path} (lock {path}); "
                "nothing was done, try again when it has finished"
            ) from None
        holder = {"pid": os.getpid(), "command": command, "started": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield path
        finally:
            # Emptied before unlocking, so the file never names a process that has let go.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    """Who holds the lock, as its file says; the holder may not have written it yet."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"`{holder['command']}` (pid {holder['pid']}, started {holder['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another micropause process"
