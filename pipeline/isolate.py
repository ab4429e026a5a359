"""One page's parse in a forked child with a time budget, so no page can hold the run.

Lexbor is C: a 2 MB page of 200 000 nested ``<div>``s kept it busy for 204 s without returning
to Python, so neither a signal handler nor the event loop's deadline could run, and a thread
cannot be stopped at all. A child process can be: it is killed when its budget or the run's
deadline passes, and the page fails with a message saying so.

The child is a fork of the caller (no start-up cost beyond the fork, and the caller's code as
it is, patched or not); it sends back one pickled answer and exits without running any of the
caller's exit handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PageFailed(Exception):
    """The page could not be read: its message is what ``pages.error`` records."""


class BudgetExceeded(PageFailed):
    pass


def _child(write_fd: int, fn: Callable[..., Any], args: tuple) -> None:
    # Ctrl-C reaches the whole process group: the parent decides, and kills this child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    code = 0
    try:
        try:
            answer = (True, fn(*args))
        except PageFailed as exc:
            answer = (False, str(exc))
        except Exception as exc:
            answer = (False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _fork(fn: Callable[..., Any], args: tuple) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        _child(write_fd, fn, args)
    os.close(write_fd)
    return pid, read_fd


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _answer(data: bytes) -> Any:
    if not data:
        # Killed from outside, or out of memory: nothing was sent back.
        raise PageFailed("the page's parse ended without an answer (its process died)")
    ok, value = pickle.loads(data)
    if not ok:
        raise PageFailed(value)
    return value


def _over(seconds: float) -> BudgetExceeded:
    return BudgetExceeded(
        f"reading the page took longer than its budget of {seconds:g} s "
        "(limits.page_seconds): stopped"
    )


async def run_async(fn: Callable[..., T], *args: Any, seconds: float) -> T:
    """``fn(*args)`` in a forked child, awaited without blocking the event loop. Raises
    PageFailed (BudgetExceeded past ``seconds``) with the message the page's error records;
    a cancelled await (the run's deadline) kills the child too."""
    loop = asyncio.get_running_loop()
    pid, read_fd = _fork(fn, args)
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(read_fd, 1 << 16)
        except OSError:
            chunk = b""
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(read_fd, readable)
    finished = False
    try:
        async with asyncio.timeout(seconds):
            await done
        finished = True
    except TimeoutError:
        raise _over(seconds) from None
    finally:
        loop.remove_reader(read_fd)
        os.close(read_fd)
        if finished:
            _reap(pid)
        else:
            _kill(pid)
    return _answer(b"".join(chunks))


def run_sync(fn: Callable[..., T], *args: Any, seconds: float) -> T:
    """``fn(*args)`` in a forked child, waited for at most ``seconds`` (see run_async)."""
    pid, read_fd = _fork(fn, args)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    finished = False
    try:
        poller = select.poll()
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _over(seconds)
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        finished = True
    finally:
        os.close(read_fd)
        if finished:
            _reap(pid)
        else:
            _kill(pid)
    return _answer(b"".join(chunks))
