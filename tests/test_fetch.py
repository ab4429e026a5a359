"""The polite client against the real local server: retries, redirects, caps, robots.txt."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import itertools
import random

import pytest

from pipeline.config import Politeness
from pipeline.errors import CrawlRefused, FetchError
from pipeline.fetch import (
    ROBOTS_MAX_BYTES,
    Fetched,
    Fetcher,
    Pacer,
    _decompress,
    read_robots,
    retry_reason,
)
from tests.conftest import START_SLUG, local_config
from tests.site.server import FixtureSite

START = f"/video/{START_SLUG}/"


def fetch(config, path, **kwargs):
    async def go():
        async with Fetcher(config) as fetcher:
            return await fetcher.get(config.site.start_urls[0].replace(START, path), **kwargs)

    return asyncio.run(go())


def hits(site, path):
    return [r for r in site.requests if r.path == path]


def test_redirect_to_trailing_slash_is_followed(site, config):
    response = fetch(config, START.rstrip("/"))
    assert response.status == 200
    assert response.url.endswith(START)
    assert [r.status for r in site.requests if r.path.startswith(START.rstrip("/"))] == [301, 200]


def test_not_found_is_not_retried(site, config):
    assert fetch(config, "/video/no-such-lesson/").status == 404
    assert len(hits(site, "/video/no-such-lesson/")) == 1


def test_server_errors_are_retried_a_bounded_number_of_times(config):
    attempts = config.retry.attempts
    with FixtureSite(faults={START: ["500"] * (attempts + 5)}) as site:
        with pytest.raises(FetchError, match=f"HTTP 500 .gave up after {attempts} attempts"):
            fetch(local_config(site), START)
        assert len(hits(site, START)) == attempts


@pytest.mark.parametrize("fault", ["503", "429", "500", "reset", "truncate", "bad-utf8"])
def test_transient_faults_are_cured_by_a_retry(fault):
    with FixtureSite(faults={START: [fault]}) as site:
        response = fetch(local_config(site), START)
        assert response.status == 200
        assert len(hits(site, START)) == 2
        assert "Forward fold" in response.decode().text


def test_read_timeout_is_retried():
    with FixtureSite(faults={START: ["slow"]}, slow_seconds=1.0) as site:
        config = local_config(site, read_timeout=0.3)
        assert fetch(config, START).status == 200
        assert len(hits(site, START)) == 2


def test_offsite_redirect_is_never_followed():
    with FixtureSite() as elsewhere:
        faults = {START: ["offsite"]}
        offsite = f"{elsewhere.url}/video/x/"
        with (
            FixtureSite(faults=faults, offsite_url=offsite) as site,
            pytest.raises(FetchError, match="redirect leaves the site"),
        ):
            fetch(local_config(site), START)
        assert elsewhere.request_count == 0


def test_redirect_loop_ends():
    with FixtureSite(faults={START: ["loop"]}) as site:
        config = local_config(site)
        with pytest.raises(FetchError, match="more than 5 redirects"):
            fetch(config, START)
        assert len(site.requests) <= config.politeness.max_redirects + 2  # + robots.txt


def test_oversized_body_is_refused_without_reading_it_all():
    with FixtureSite(faults={START: ["huge"]}) as site:
        config = local_config(site, max_response_bytes=200_000)
        with pytest.raises(FetchError, match="response too large"):
            fetch(config, START)
        (huge,) = hits(site, START)
    # The server streams 20 MB; the client stopped reading soon after the cap.
    assert huge.bytes_sent < 5_000_000


def test_declared_length_over_the_cap_is_refused_before_the_body(site, config):
    small = dataclasses.replace(
        config, politeness=dataclasses.replace(config.politeness, max_response_bytes=1000)
    )
    with pytest.raises(FetchError, match=r"response too large: [0-9]+ bytes"):
        fetch(small, START)


def test_robots_disallowed_url_is_refused_without_a_request(site, config):
    with pytest.raises(FetchError, match=r"disallowed by robots\.txt"):
        fetch(config, "/video/staff-preview/")
    assert not hits(site, "/video/staff-preview/")


def test_conditional_request_gets_304(site, config):
    first = fetch(config, START)
    again = fetch(config, START, etag=first.header("etag"))
    assert again.status == 304
    assert hits(site, START)[-1].headers["if-none-match"] == first.header("etag")


def test_a_body_with_invalid_bytes_on_every_attempt_is_kept_with_them_replaced(config):
    attempts = config.retry.attempts
    with FixtureSite(faults={START: ["bad-utf8"] * (attempts + 5)}) as site:
        response = fetch(local_config(site), START)
        assert len(hits(site, START)) == attempts
    decoded = response.decode()
    assert decoded.replaced and "\ufffd" in decoded.text
    assert "Forward fold" in decoded.text


def test_request_starts_on_a_host_are_spaced_by_the_delay():
    # The client's own schedule, not wall-clock gaps seen at a server: those shrink whenever a
    # loaded machine delays one request's arrival and not the next one's.
    async def turns():
        pacer = Pacer(delay=0.05, jitter=0.02, rng=random.Random(3))
        return await asyncio.gather(*(pacer.turn() for _ in range(6)))

    starts = sorted(asyncio.run(turns()))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.05 <= gap <= 0.07 + 1e-9 for gap in gaps), gaps


def test_no_delay_means_no_waiting_turns():
    async def turns():
        pacer = Pacer(delay=0.0, jitter=0.5, rng=random.Random(3))
        loop = asyncio.get_running_loop()
        began = loop.time()
        given = await asyncio.gather(*(pacer.turn() for _ in range(5)))
        return began, given

    began, given = asyncio.run(turns())
    assert max(given) == pytest.approx(began, abs=0.01)


# -- the layers alone, on plain responses ------------------------------------------------------


def answer(status, body=b"", **headers) -> Fetched:
    return Fetched(
        url="http://127.0.0.1:8765/robots.txt",
        status=status,
        headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()),
        body=body,
        request_headers=(),
        http_version="HTTP/1.1",
        fetched_at="2025-06-01T04:00:00+00:00",
    )


POLITENESS = Politeness(user_agent="micropause-test", max_crawl_delay=30.0)


@pytest.mark.parametrize("status", [404, 410, 403])
def test_a_robots_txt_that_is_not_there_allows_everything(status):
    assert read_robots(answer(status, b"User-agent: *\nDisallow: /"), POLITENESS).can_fetch(
        "http://127.0.0.1:8765/video/a/", "micropause-test"
    )


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (answer(503), "answered HTTP 503"),
        (answer(301, location="https://elsewhere.example/robots.txt"), "redirects off the site"),
        (answer(200, b"User-agent: *\nCrawl-delay: 86400\n"), "Crawl-delay: 86400 s"),
    ],
)
def test_a_robots_txt_that_cannot_be_read_or_asks_too_much_refuses_the_crawl(response, message):
    with pytest.raises(CrawlRefused, match=message):
        read_robots(response, POLITENESS)


def test_only_the_first_500_kib_of_robots_txt_are_read():
    rules = b"User-agent: *\nDisallow: /private/\n"
    padding = b"# " + b"x" * (ROBOTS_MAX_BYTES) + b"\n"
    robots = read_robots(answer(200, rules + padding + b"Disallow: /video/\n"), POLITENESS)
    assert not robots.can_fetch("http://127.0.0.1:8765/private/a/", "micropause-test")
    assert robots.can_fetch("http://127.0.0.1:8765/video/a/", "micropause-test")


@pytest.mark.parametrize(
    ("response", "final", "retry"),
    [
        (answer(503, retry_after="7"), False, "HTTP 503"),
        (answer(503), True, "HTTP 503"),  # a transient status is retried up to the last try
        (answer(404), False, None),
        (answer(200, b"caf\xe9", content_type="text/html; charset=utf-8"), False, "undecodable"),
        (answer(200, b"caf\xe9", content_type="text/html; charset=utf-8"), True, None),
        (answer(200, b"caf\xc3\xa9", content_type="text/html; charset=utf-8"), False, None),
    ],
)
def test_which_answers_deserve_another_attempt(response, final, retry):
    reason = retry_reason(response, (429, 500, 503), final=final)
    if retry is None:
        assert reason is None
    else:
        assert reason is not None and reason.reason.startswith(retry)
    if response.header("retry-after"):
        assert reason.retry_after == 7.0


def test_a_compressed_body_is_decoded_whole_or_not_at_all():
    body = b"<p>" + b"lesson text " * 2000 + b"</p>"
    packed = gzip.compress(body)
    assert _decompress("u", packed, "gzip", cap=1_000_000) == body
    with pytest.raises(Exception, match="truncated gzip body"):
        _decompress("u", packed[: len(packed) * 85 // 100], "gzip", cap=1_000_000)
    with pytest.raises(FetchError, match="inflates past"):
        _decompress("u", packed, "gzip", cap=1000)
