"""One writer per archive: an advisory lock on a file next to the database.

``flock`` rather than a pid file: the kernel drops the lock when the holding process ends,
however it ends (kill -9, OOM, power loss), so a stale lock can never block the next run and no
pid has to be checked for reuse. The file's contents (pid, command, start time) only make the
"already running" message useful. The file is never deleted: removing it while another process
waits on it would let two processes hold "the" lock on two different files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ArchiveError, ArchiveWriteError, LockHeld
from .layout import Layout
from .schema import missing, now_iso, writable

# What a file system that cannot be written answers (a read-only mount; no permission).
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


@contextmanager
def archive_lock(
    db_path: Path | str, command: str, *, create: bool = True, reading: bool = False
) -> Iterator[Path | None]:
    """Hold the archive's lock for the block, or raise LockHeld at once if another process
    holds it (never wait: a scheduler's next run will come). Without ``create``, a missing
    archive is an error here, before its folder or lock file is made. ``reading`` (export):
    an archive that cannot be written here cannot change either, so it is read without a
    lock (None). A command that must write an archive that cannot be written says so."""
    db_path = Path(db_path)
    if not create and not db_path.is_file():
        raise missing(db_path)
    if reading and not writable(db_path):
        yield None
        return
    path = Layout(db_path).lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise ArchiveWriteError(
                f"{db_path} cannot be written ({exc.strerror}): `{command}` writes the "
                "archive; serve, status, diff and export --out DIR read it as it is"
            ) from None
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
