"""Publishing a folder atomically: stage it, exchange it with the old one, recover after a
crash, fsync on the way.

A folder (a snapshot) is built in a hidden ``.partial-*`` directory beside its final place and
renamed into place (swapped with the old one in one step, where one of the same name exists),
then ``<out>/latest`` is re-pointed by renaming a new symlink over it: readers see the old
folder or the new one, never half of one, and a process killed at any step leaves ``latest``
naming a whole one. What goes inside is the caller's business (``export``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

LATEST = "latest"


def stage(out: Path) -> Path:
    """A new hidden folder in ``out`` to build a snapshot in, after tidying what an export
    that died left behind."""
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    partial.chmod(0o755)  # mkdtemp makes it private; a snapshot is meant to be read
    return partial


def publish(out: Path, name: str, files: dict[str, bytes], partial: Path) -> Path:
    """Add ``files`` to the staged snapshot ``partial``, put it in place as ``<out>/<name>``
    and point ``latest`` at it.

    Whenever the process dies, ``latest`` names a whole snapshot, the old one or the new one:
    the new one is complete and on disk before anything visible moves, ``latest`` only ever
    moves by renaming a new symlink over it, and whatever it points at is never removed."""
    for file, data in files.items():
        _write(partial / file, data)
    for built in partial.iterdir():
        if built.name not in files:  # the SQLite file and the WACZ, written in place
            _fsync_file(built)
    _sync(partial)
    target = out / name
    if not target.exists():
        os.rename(partial, target)
    elif _exchange(partial, target):
        # One atomic step: <name> (and so `latest`) was the old snapshot, is now the new one;
        # the old one is in the hidden folder, removed below.
        pass
    else:
        _replace_without_exchange(out, target, partial)
    _point_latest(out, name)
    _sync(out)
    _remove_leftovers(out)
    return target


def _replace_without_exchange(out: Path, target: Path, partial: Path) -> None:
    """Where directories cannot be swapped, the old <date> is moved aside and the new one
    renamed into its place: for that instant there is no <date>. If `latest` names <date>, it
    first names a copy of the old snapshot (hard links: no data copied), so it never dangles."""
    pid = os.getpid()
    old = out / f".old-{target.name}-{pid}"
    moved_latest = _latest_is(out, target)
    if moved_latest:
        prev = out / f".prev-{target.name}-{pid}"
        _link_copy(target, prev)
        _point_latest(out, prev.name)
    try:
        os.rename(target, old)
        os.rename(partial, target)
    except BaseException:
        # Put the old snapshot back, as far as the disk lets us; `latest` names a whole one
        # throughout, and the leftovers go with the next export.
        with contextlib.suppress(OSError):
            if not target.exists() and old.exists():
                os.rename(old, target)
            if moved_latest and target.exists():
                _point_latest(out, target.name)
        raise


def _link_copy(source: Path, copy: Path) -> None:
    """``copy`` holds the files of ``source``: hard links where the filesystem has them.
    Snapshot files are never rewritten in place, so a link is as good as a copy."""
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    copy.chmod(0o755)
    for entry in source.iterdir():
        try:
            os.link(entry, copy / entry.name)
        except OSError:
            shutil.copy2(entry, copy / entry.name)
    _sync(copy)


def _point_latest(out: Path, name: str) -> None:
    """Re-point ``<out>/latest`` at ``name`` in one step: a new link renamed over it."""
    link = out / f".latest-{os.getpid()}"
    link.unlink(missing_ok=True)
    # Relative, so the exports folder can be moved or committed to git as it is.
    os.symlink(name, link)
    os.replace(link, out / LATEST)


def _latest_is(out: Path, path: Path) -> bool:
    latest = out / LATEST
    return latest.exists() and os.path.samefile(latest, path)


def _recover(out: Path) -> None:
    """Tidy what an export that died left behind (only one export runs at a time, under the
    lock): a snapshot it had moved aside goes back if its replacement never arrived; other
    leftovers go, except the one `latest` names, which stays until `latest` moves on."""
    for old in out.glob(".old-*"):
        original = out / old.name.removeprefix(".old-").rsplit("-", 1)[0]
        if not original.exists():
            os.rename(old, original)
    _remove_leftovers(out)


def _remove_leftovers(out: Path) -> None:
    for leftover in [*out.glob(".partial-*"), *out.glob(".old-*"), *out.glob(".prev-*")]:
        if not _latest_is(out, leftover):
            shutil.rmtree(leftover, ignore_errors=True)
    for link in out.glob(".latest-*"):
        link.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2). False where the system or
    the filesystem cannot; nothing has changed then."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        # On disk before the rename makes it visible: a power cut must not publish empty files.
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
