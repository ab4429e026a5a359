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
import ctypes
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


# The pipes of the workers this process holds: a child forked later closes its copies.
_WORKER_FDS: set[int] = set()
_PR_SET_PDEATHSIG = 1


def _become_child() -> None:
    # Ctrl-C reaches the whole process group: the parent decides, and kills this child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # A parent killed outright (kill -9, out of memory) takes its children with it (Linux's
    # PR_SET_PDEATHSIG), rather than leaving a parse running with nobody to answer.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    for fd in _WORKER_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _WORKER_FDS.clear()


def _outcome(fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
    """What a child sends back for one page: (True, what ``fn`` returned) or (False, the
    page's error)."""
    try:
        return True, fn(*args)
    except PageFailed as exc:
        return False, str(exc)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".rstrip(": ")


def _child(write_fd: int, fn: Callable[..., Any], args: tuple) -> None:
    _become_child()
    code = 0
    try:
        data = pickle.dumps(_outcome(fn, args), protocol=pickle.HIGHEST_PROTOCOL)
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


_DIED = "the page's parse ended without an answer (its process died)"


def _answer(data: bytes) -> Any:
    if not data:
        # Killed from outside, or out of memory: nothing was sent back.
        raise PageFailed(_DIED)
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


# -- workers that read page after page ---------------------------------------------------------

# A fork per page costs 5-20 ms (the caller's page tables are copied), more than reading the
# page: a crawl's pages go to a few forked workers instead, each reading one page after another
# and replaced when it is killed. A worker is renewed after this many pages, so whatever a
# parse leaves behind in it does not add up.
PAGES_PER_WORKER = 500
_LENGTH = 8


def _send(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_LENGTH, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> bytes | None:
    """One framed message, or None at the end of the pipe."""
    head = _read_exactly(fd, _LENGTH)
    if head is None:
        return None
    return _read_exactly(fd, int.from_bytes(head, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _worker_loop(jobs: int, answers: int) -> None:
    _become_child()
    code = 0
    try:
        while (job := _receive(jobs)) is not None:
            fn, args = pickle.loads(job)
            _send(answers, pickle.dumps(_outcome(fn, args), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class _Worker:
    def __init__(self) -> None:
        jobs_read, self.jobs = os.pipe()
        self.answers, answers_write = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (jobs_read, self.jobs, self.answers, answers_write):
                os.close(fd)
            raise
        if self.pid == 0:  # pragma: no cover - the child never returns
            os.close(self.jobs)
            os.close(self.answers)
            _worker_loop(jobs_read, answers_write)
        os.close(jobs_read)
        os.close(answers_write)
        _WORKER_FDS.update((self.jobs, self.answers))
        self.pages = 0

    def close(self) -> None:
        # Killed even when idle: a worker forked after this one holds a copy of its pipe, so
        # closing the pipe here would not end it.
        _WORKER_FDS.difference_update((self.jobs, self.answers))
        os.close(self.jobs)
        os.close(self.answers)
        _kill(self.pid)


class Workers:
    """Up to ``size`` forked workers for a crawl's pages: ``await workers.run(fn, *args,
    seconds=...)`` as ``run_async`` does, without a fork per page. Use as ``async with``."""

    def __init__(self, size: int):
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Worker] = []

    async def __aenter__(self) -> Workers:
        return self

    async def __aexit__(self, *exc) -> None:
        for worker in self._idle:
            worker.close()
        self._idle.clear()

    async def run(self, fn: Callable[..., T], *args: Any, seconds: float) -> T:
        async with self._slots:
            worker = self._idle.pop() if self._idle else _Worker()
            healthy = False
            try:
                answer = await self._ask(worker, fn, args, seconds)
                healthy = True
            finally:
                worker.pages += 1
                if healthy and worker.pages < PAGES_PER_WORKER:
                    self._idle.append(worker)
                else:
                    worker.close()
        return _answer(answer)

    async def _ask(self, worker: _Worker, fn, args, seconds: float) -> bytes:
        loop = asyncio.get_running_loop()
        job = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        received = bytearray()
        done = loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(worker.answers, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                if not done.done():
                    done.set_result(False)  # the worker died
                return
            received.extend(chunk)
            if len(received) >= _LENGTH:
                size = int.from_bytes(received[:_LENGTH], "big")
                if len(received) >= _LENGTH + size and not done.done():
                    done.set_result(True)

        loop.add_reader(worker.answers, readable)
        try:
            async with asyncio.timeout(seconds):
                # The worker is idle, reading its pipe: even a 5 MB page is taken at once.
                try:
                    _send(worker.jobs, job)
                except OSError:
                    raise PageFailed(_DIED) from None
                answered = await done
        except TimeoutError:
            raise _over(seconds) from None
        finally:
            loop.remove_reader(worker.answers)
        if not answered:
            raise PageFailed(_DIED)
        return bytes(received[_LENGTH:])
