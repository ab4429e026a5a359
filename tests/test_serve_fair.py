"""`micropause serve` shares itself fairly and bounds what a query can build, against a real
`micropause serve` process: arbitrary SQL (?sql=) cannot occupy every worker, and SQL functions
that can build a large value are bounded by what their arguments do, whatever their type."""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from pipeline.publish import SQL_IN_FLIGHT, SqlGate, format_cost, load_metadata
from tests.test_publish import free_port, serving

# Runs until Datasette's time limit (1 s) stops it.
SLOW = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
CLIENTS = 30
PIPELINE = (sys.executable, "-m", "pipeline")
ANSWER_SECONDS = 2.0


@pytest.fixture(scope="module")
def served(crawled_archive, tmp_path_factory):
    copy = tmp_path_factory.mktemp("served") / "micropause.db"
    shutil.copy(crawled_archive, copy)
    with serving(copy) as running:
        yield running


def client_from(n: int) -> httpx.Client:
    """A client whose connections come from loopback address 127.0.0.<n>: another visitor."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.0.{n}"), timeout=30)


@pytest.mark.timeout(120)
def test_thirty_slow_queries_in_flight_leave_table_pages_answering(served):
    stop = threading.Event()
    statuses: list[tuple[int, str | None]] = []

    def visitor(n: int) -> None:
        with client_from(n) as client:
            while not stop.is_set():
                answer = client.get(f"{served.url}/micropause.json", params={"sql": SLOW})
                statuses.append((answer.status_code, answer.headers.get("retry-after")))

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        visitors = [pool.submit(visitor, n) for n in range(2, 2 + CLIENTS)]
        try:
            # Every visitor has asked at least once before the pages are timed.
            deadline = time.monotonic() + 60
            while len(statuses) < CLIENTS and time.monotonic() < deadline:
                time.sleep(0.05)
            timings = []
            for path in ("lessons.json", "lessons.json?_search=breath", "syllabus.json"):
                started = time.monotonic()
                answer = httpx.get(f"{served.url}/micropause/{path}", timeout=30)
                timings.append((path, answer.status_code, time.monotonic() - started))
        finally:
            stop.set()
        for future in visitors:
            future.result()
    for path, status, seconds in timings:
        assert status == 200, path
        assert seconds < ANSWER_SECONDS, (path, seconds)
    seen = {status for status, _ in statuses}
    # Some ran to the time limit (400); the rest were turned away at once, told when to retry.
    assert 400 in seen and 503 in seen and seen <= {400, 503}, seen
    assert all(after == "1" for status, after in statuses if status == 503)


@pytest.mark.timeout(60)
def test_one_client_gets_one_query_at_a_time(served):
    first_done = threading.Event()

    def first() -> None:
        with client_from(40) as client:
            client.get(f"{served.url}/micropause.json", params={"sql": SLOW})
        first_done.set()

    runner = threading.Thread(target=first)
    runner.start()
    seen = []
    with client_from(40) as same, client_from(41) as other:
        while not first_done.is_set():
            answer = same.get(f"{served.url}/micropause.json", params={"sql": "select 1"})
            seen.append((answer.status_code, answer.headers.get("retry-after")))
            if answer.status_code == 429:
                # Another visitor is not held up by this one's query.
                assert (
                    other.get(
                        f"{served.url}/micropause.json", params={"sql": "select 1"}
                    ).status_code
                    == 200
                )
                break
    runner.join()
    assert (429, "1") in seen
    assert "too many SQL queries from one client" in answer.json()["error"]
    # Once it has answered, the client may ask again.
    with client_from(40) as same:
        assert (
            same.get(f"{served.url}/micropause.json", params={"sql": "select 1"}).status_code == 200
        )


def test_the_charts_own_queries_are_not_turned_away(served):
    """The charts page asks for every chart's SQL at once from one browser."""
    charts = load_metadata()["plugins"]["datasette-dashboards"]["micropause"]["charts"]
    queries = [chart["query"] for chart in charts.values()] * 3
    assert len(queries) > SQL_IN_FLIGHT

    def ask(sql: str) -> int:
        with client_from(50) as client:
            return client.get(f"{served.url}/micropause.json", params={"sql": sql}).status_code

    with concurrent.futures.ThreadPoolExecutor(len(queries)) as pool:
        assert set(pool.map(ask, queries)) == {200}


def test_the_gate_counts_per_client_and_in_all():
    gate = SqlGate(total=2, per_client=1)
    assert gate.refusal("a") is None
    with gate.held("a"):
        assert gate.refusal("a")[0] == 429
        assert gate.refusal("b") is None
        with gate.held("b"):
            assert gate.refusal("c")[0] == 503
        assert gate.refusal("c") is None
    assert gate.in_flight == 0 and gate.by_client == {}
    assert SQL_IN_FLIGHT < 4  # Datasette's num_sql_threads (publish.SETTINGS) keeps a spare


# -- values bounded by what they do ------------------------------------------------------------

# Each asks for a 2 000 000 000-character string (or more), with its number of every type
# SQLite converts: printf's loop runs to the end (15-18 s) even once the result is too big.
TYPED = [
    "select length(printf('%.*c', 2e9, 'x'))",
    "select length(printf('%.*c', '2000000000', 'x'))",
    "select length(printf('%.*c', ' 2e9 ', 'x'))",
    "select length(printf('%.*c', cast('2000000000' as blob), 'x'))",
    "select length(printf('%.*c', 2000000000.0, 'x'))",
    "select length(printf('%*c', -2000000000, 'x'))",
    "select length(printf('%*.*c', '1e9', 1e9, 'x'))",
    "select length(format('%.*c', 2e9, 'x'))",
    "select length(printf(cast('%.*c' as blob), 2e9, 'x'))",
    # Widths written in the format: one of 8 digits, or several below the cap adding up past it.
    "select length(printf('%99999999c', 'x'))",
    "select length(printf('%9999999c%9999999c', 'x', 'y'))",
    # SQLite's own length limit holds whatever the type of the size.
    "select length(zeroblob('1000000000'))",
    "select length(zeroblob(1e9))",
    "select length(randomblob('300000000'))",
    "select length(randomblob(3e8))",
    "select length(replace(hex(zeroblob(4e6)), '0', '0123456789'))",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sql", TYPED)
def test_large_values_are_refused_at_once_whatever_the_type(served, sql):
    started = time.monotonic()
    answer = httpx.get(f"{served.url}/micropause.json", params={"sql": sql}, timeout=30)
    assert answer.status_code == 400, answer.text[:300]
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select printf('%.*c', 3.0, 'x')", "xxx"),
        ("select printf('%.*c', '3', 'x')", "xxx"),
        ("select printf('%5s|%-4d|', 'ab', 7)", "   ab|7   |"),
        ("select printf('%d%%', 50)", "50%"),
        ("select printf('%s', '2000000000')", "2000000000"),
    ],
)
def test_ordinary_formats_still_work(served, sql, expected):
    answer = httpx.get(f"{served.url}/micropause.json", params={"sql": sql}, timeout=30)
    assert answer.status_code == 200 and answer.json()["rows"] == [[expected]], answer.text


def test_format_cost_reads_star_arguments_as_sqlite_does():
    assert format_cost(("%.*c", "2000000000abc", "x")) == 2e9
    assert format_cost(("%.*c", b" 12", "x")) == 12
    assert format_cost(("%.*c", "abc", "x")) == 0
    assert format_cost(("%s %.*c", "2000000000", 5, "x")) == 5  # %s's value is not a width
    assert format_cost(("%" + "9" * 5000 + "c", "x")) > 1e10


# -- serve's own output ------------------------------------------------------------------------


def test_serve_warns_on_its_own_output_when_asked_for_a_public_address(crawled_archive):
    """The real command, asked to listen on an address others could reach: 192.0.2.1, a
    documentation address that is not this machine's, so nothing ever listens. The warning
    comes first all the same, then the one-line failure to bind."""
    port = str(free_port())
    done = subprocess.run(
        [*PIPELINE, "serve", "--db", str(crawled_archive), "--host", "192.0.2.1", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "warning: listening on 192.0.2.1: the archive is public to anyone who can reach this "
        "address (use --host 127.0.0.1 to keep it on this machine)"
    )
    assert "cannot listen on 192.0.2.1" in lines[1] and "Traceback" not in done.stderr


def test_serve_on_loopback_gives_no_warning(crawled_archive, tmp_path):
    copy = tmp_path / "micropause.db"
    shutil.copy(crawled_archive, copy)
    with serving(copy) as running:
        running.process.terminate()
        out, err = running.process.communicate(timeout=30)
    assert "read-only at http://127.0.0.1:" in out
    assert "warning" not in err
