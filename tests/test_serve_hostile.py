"""No query can stall the published archive or learn where it lives on the server's disk.

Against a real `micropause serve` process: each expensive single-call query that once took
10-15 s (SQLite's time limit is checked between opcodes, never inside one function call) now
fails at once, while other requests are answered."""

from __future__ import annotations

import concurrent.futures
import shutil
import time

import httpx
import pytest

from pipeline import publish
from tests.test_publish import serving

EXPENSIVE = [
    "select randomblob(300000000)",
    "select length(printf('%.*c', 2000000000, 'x'))",
    "select length(printf('%.2000000000c', 'x'))",
    "select length(format('%.*c', 2000000000, 'x'))",
    "select length(zeroblob(1000000000))",
    "select length(replace(hex(zeroblob(4000000)), '0', '0123456789'))",
    "with recursive s(x) as (select 'x' union all select x || x from s limit 40) "
    "select max(length(x)) from s",
]


@pytest.fixture(scope="module")
def served(crawled_archive, tmp_path_factory):
    copy = tmp_path_factory.mktemp("served") / "micropause.db"
    shutil.copy(crawled_archive, copy)
    with serving(copy) as running:
        yield running


# Each expensive query once took 10-15 s; refused at once, it must answer well within this.
ANSWER_SECONDS = 5.0


def run_sql(url: str, sql: str) -> httpx.Response:
    """The answer to ``sql``. Turned away while other queries run (429/503, see
    tests/test_serve_fair.py), it asks again, as a client told to retry does."""
    deadline = time.monotonic() + ANSWER_SECONDS
    while True:
        answer = httpx.get(f"{url}/micropause.json", params={"sql": sql}, timeout=ANSWER_SECONDS)
        if answer.status_code not in (429, 503) or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def timed(call, *args, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


@pytest.mark.timeout(60)
def test_huge_values_fail_at_once_while_other_requests_are_answered(served):
    with concurrent.futures.ThreadPoolExecutor(len(EXPENSIVE) + 1) as pool:
        expensive = [pool.submit(timed, run_sql, served.url, sql) for sql in EXPENSIVE]
        lessons = pool.submit(
            timed, httpx.get, f"{served.url}/micropause/lessons.json", timeout=ANSWER_SECONDS
        )
        answers = [future.result() for future in expensive]
        lessons_answer, lessons_seconds = lessons.result()
    assert lessons_answer.status_code == 200
    assert lessons_seconds < ANSWER_SECONDS
    for sql, (answer, seconds) in zip(EXPENSIVE, answers, strict=True):
        assert answer.status_code == 400, (sql, answer.text[:200])
        assert seconds < ANSWER_SECONDS, (sql, seconds)
    # Ordinary queries still work, and so do values up to the limit.
    for sql, expected in [
        ("select length(zeroblob(1000000))", 1000000),
        ("select printf('%05d|%-3s|%.2f', 42, 'ab', 3.14159)", "00042|ab |3.14"),
        ("select format('%.*c', 3, 'x')", "xxx"),
    ]:
        ok = run_sql(served.url, sql)
        assert ok.status_code == 200 and ok.json()["rows"] == [[expected]], sql


def test_the_archive_path_on_the_servers_disk_is_not_published(served):
    path = str(served.archive.resolve().parent)
    for route in ("/-/databases.json", "/-/databases"):
        answer = httpx.get(served.url + route, timeout=10.0)
        assert answer.status_code == 404 and path not in answer.text
    answer = run_sql(served.url, "select * from pragma_database_list")
    assert path not in answer.text
    assert answer.status_code in (400, 403)
    # Datasette's own pages still work.
    for route in ("/", "/micropause", "/micropause/lessons?_search=breath", "/-/versions.json"):
        assert httpx.get(served.url + route, timeout=10.0).status_code == 200, route


@pytest.mark.parametrize(
    ("host", "public"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True)],
)
def test_a_listen_address_others_can_reach_is_warned_about(host, public):
    warning = publish.public_warning(host)
    assert (warning is not None) == public
    if public:
        assert host in warning and "public" in warning and "\n" not in warning


def test_an_archive_on_a_read_only_filesystem_is_served_immutable(
    crawled_archive, tmp_path, monkeypatch
):
    copy = tmp_path / "micropause.db"
    shutil.copy(crawled_archive, copy)
    assert publish.build_datasette(copy).databases["micropause"].is_mutable
    # As root, permissions cannot make a file read-only: the check the server makes is faked.
    monkeypatch.setattr(publish.os, "access", lambda path, mode: False)
    database = publish.build_datasette(copy).databases["micropause"]
    assert not database.is_mutable
