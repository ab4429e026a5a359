"""A hostile copy of the fixture site: the same lessons, but chosen URLs answer the way a broken
or malicious server would. Tests name the case a URL serves; every other URL is the well-behaved
fixture site.

``HostileSite(cases={"/video/soft-eyes/": ["bogus-charset"] * 10})``: like ``faults``, each
path's 1st, 2nd, ... requests meet the listed cases, and the path answers normally afterwards.
The cases (see ``CASES``) rewrite the response the fixture site would have sent:

- ``bogus-charset``: ``Content-Type: text/html; charset=undefined``.
- ``control-char-links``: the listing also links to two lessons whose hrefs hold ``\\x01`` and
  ``\\x7f``.
- ``truncated-gzip``: gzip-encoded, the stream cut at 85 %, with a Content-Length that matches
  the cut body (a complete HTTP exchange of an incomplete stream).
- ``page-count-1000000``, ``page-count-10000``: the listing says "Page 1 of 1000000" (or of
  10000, the most a listing is believed to have).
- ``part-date``, ``part-5000000``, ``part-10e20``: the title's part number is 20240601,
  5 000 000 or 10^20.
- ``markup-redirect``: 302 to an off-site URL holding rich console markup (``[/oops]``).
- ``canonical-unparsable``, ``canonical-script``: the page's ``rel=canonical`` is a URL no
  parser accepts (``http://[oops/…``) or a ``javascript:`` URL.
- ``redirect-to-404``: 301 to a lesson URL of the site that answers 404 (the lesson was
  folded into one that was later unpublished).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping, Sequence

from .server import FixtureSite, _redirect, _Response

_PAGE_OF = re.compile(rb'<span class="pages">Page (\d+) of (\d+)</span>')
_TITLE = re.compile(rb'<h1 class="entry-title">(.*?)</h1>', re.S)
_GRID_END = b'<div class="wp-pagenavi"'
_CANONICAL = re.compile(rb'<link rel="canonical" href="[^"]*" />')
MARKUP_LOCATION = "http://127.0.0.2:9/[/oops][bold]x[/bold]/"


def _bogus_charset(response: _Response, base: str) -> _Response:
    response.content_type = "text/html; charset=undefined"
    return response


def _control_char_links(response: _Response, base: str) -> _Response:
    items = b"".join(
        b'<article class="et_pb_post"><h2 class="entry-title"><a href="'
        + f"{base}/video/bad{c}link/".encode()
        + b'">bad</a></h2></article>\n'
        for c in ("\x01", "\x7f")
    )
    response.body = response.body.replace(_GRID_END, items + _GRID_END, 1)
    return response


def _truncated_gzip(response: _Response, base: str) -> _Response:
    packed = gzip.compress(response.body)
    response.body = packed[: len(packed) * 85 // 100]
    response.headers = [*response.headers, ("Content-Encoding", "gzip")]
    return response


def _page_count(count: int) -> Callable[[_Response, str], _Response]:
    def rewrite(response: _Response, base: str) -> _Response:
        response.body = _PAGE_OF.sub(
            rb'<span class="pages">Page \1 of ' + str(count).encode() + b"</span>", response.body
        )
        return response

    return rewrite


def _title(title: str) -> Callable[[_Response, str], _Response]:
    def rewrite(response: _Response, base: str) -> _Response:
        heading = b'<h1 class="entry-title">' + title.encode() + b"</h1>"
        response.body = _TITLE.sub(lambda _m: heading, response.body, count=1)
        return response

    return rewrite


def _markup_redirect(response: _Response, base: str) -> _Response:
    return _redirect(MARKUP_LOCATION, status=302)


def _canonical(href: str) -> Callable[[_Response, str], _Response]:
    def rewrite(response: _Response, base: str) -> _Response:
        response.body = _CANONICAL.sub(
            b'<link rel="canonical" href="' + href.encode() + b'" />', response.body, count=1
        )
        return response

    return rewrite


def _redirect_to_404(response: _Response, base: str) -> _Response:
    return _redirect(f"{base}/video/folded-and-unpublished/")


CASES: Mapping[str, Callable[[_Response, str], _Response]] = {
    "bogus-charset": _bogus_charset,
    "control-char-links": _control_char_links,
    "truncated-gzip": _truncated_gzip,
    "page-count-1000000": _page_count(1_000_000),
    "page-count-10000": _page_count(10_000),
    "part-date": _title("Hostile program, 20240601: a date, not a part"),
    "part-5000000": _title("Hostile program, 5000000: far too many parts"),
    "part-10e20": _title("Hostile program, 100000000000000000000: past any integer column"),
    "markup-redirect": _markup_redirect,
    "canonical-unparsable": _canonical("http://[oops/video/soft-eyes/"),
    "canonical-script": _canonical("javascript:alert(1)"),
    "redirect-to-404": _redirect_to_404,
}


class HostileSite(FixtureSite):
    def __init__(self, *args, cases: Mapping[str, Sequence[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for path, names in (cases or {}).items():
            unknown = [name for name in names if name not in CASES]
            if unknown:
                raise ValueError(f"unknown hostile cases for {path}: {unknown}")
        self._cases = {path: list(names) for path, names in (cases or {}).items()}
        self.served: list[tuple[str, str]] = []  # (path, case) for every hostile answer

    def set_cases(self, cases: Mapping[str, Sequence[str]]) -> None:
        """Replace the cases between crawls (the site turned hostile after a good crawl)."""
        with self._lock:
            self._cases = {path: list(names) for path, names in cases.items()}

    def _respond(self, path: str, query: str, fault: str | None) -> _Response:
        response = super()._respond(path, query, fault)
        with self._lock:
            queue = self._cases.get(path)
            case = queue.pop(0) if queue else None
            if case is not None:
                self.served.append((path, case))
        if case is None or response.status != 200:
            return response
        # Answered in full, never as a 304: the hostile answer is what is being tested.
        response.validators = False
        return CASES[case](response, self.url)
