"""One writer per archive: an advisory lock on a file next to the database, and on the
database file itself.

``flock`` rather than a pid file: the kernel drops the lock when the holding process ends,
however it ends (kill -9, OOM, power loss), so a stale lock can never block the next run and no
pid has to be checked for reuse. The file's contents (pid, command, start time) only make the
"already running" message useful. The file is never deleted: removing it while another process
waits on it would let two processes hold "the" lock on two different files.

The lock file is beside the real database (symlinks resolved, see ``Layout``); a hard link or a
bind mount names the same file from another folder, with no symlink to resolve, so the
database file's own inode is locked too (``flock`` on it: SQLite locks with ``fcntl``, which
is independent of ``flock`` on Linux). That descriptor is opened read-only and closed only
after the block, once the command's own connections are closed.
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
    layout = Layout(db_path)
    path = layout.lock
    # The database's own inode first, so that a second name of a busy archive leaves nothing
    # beside it, not even a lock file; a new archive's file is made, and locked, under the lock.
    inode = _lock_inode(layout.db, db_path, create=False)
    try:
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
                raise _held(path, db_path) from None
            if inode is None:
                inode = _lock_inode(layout.db, db_path, create=create)
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
    finally:
        if inode is not None:
            os.close(inode)


def _lock_inode(real: Path, named: Path, *, create: bool) -> int | None:
    """Lock the database file itself (with ``create``, made empty if missing: a new
    archive), so that no other name of it (a hard link, a bind mount) lets a second writer in.
    The descriptor, or None where the file cannot be opened (the archive's own checks then
    say why)."""
    try:
        inode = os.open(real, os.O_RDONLY | (os.O_CREAT if create else 0), 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(inode, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(inode)
        raise _held(Layout(real).lock, named) from None
    except OSError:  # a filesystem without flock: the lock file still guards
        pass
    return inode


def _held(path: Path, db_path: Path) -> LockHeld:
    holder = _holder(path)
    if holder is None:
        return LockHeld(
            f"another micropause process is already using {db_path} under another name (a "
            "hard link or another mount of the same file); nothing was done, try again when "
            "it has finished"
        )
    return LockHeld(
        f"{holder} is already using {db_path} (lock {path}); "
        "nothing was done, try again when it has finished"
    )


def _holder(path: Path) -> str | None:
    """Who holds the lock, as its file says (None: no file, under a hard link's name); the
    holder may not have written it yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        holder = json.loads(text)
        return f"`{holder['command']}` (pid {holder['pid']}, started {holder['started']})"
    except (ValueError, KeyError, TypeError):
        return "another micropause process"
