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
- ``deep-nesting``: 200 000 nested ``<div>``s (2.2 MB) after the title, which Lexbor takes
  minutes to parse.
- ``whitespace-title``: a title of 4.9 MB of spaces around one soft hyphen.
- ``pages-past-count``: the pagination block also links to page 9 999 of the page's own
  listing, and its "next" link goes one page past the last.
- ``unsolicited-304``: 304 Not Modified, whatever the request sent.
- ``empty-200``: 200 text/html with no body.
- ``binary-as-html``: a PDF's bytes sent as text/html.

``EndlessSite`` is a site that never ends: every lesson page lists ``per_page`` lessons no
page listed before (``/video/endless-<n>/``).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping, Sequence

from .server import START_SLUG, FixtureSite, _redirect, _Response

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


def _deep_nesting(response: _Response, base: str) -> _Response:
    depth = 200_000
    nest = b"<div>" * depth + b"deep" + b"</div>" * depth
    response.body = _TITLE.sub(lambda m: m[0] + nest, response.body, count=1)
    return response


def _pages_past_count(response: _Response, base: str) -> _Response:
    last = _PAGE_OF.search(response.body)
    pages = int(last[2]) if last else 1
    lesson = re.search(rb'<link rel="canonical" href="([^"]+)"', response.body)[1].decode()
    lesson = re.sub(r"page/\d+/$", "", lesson)
    links = (
        f'<a class="page larger" href="{lesson}page/9999/">9999</a>'
        f'<a class="nextpostslink" rel="next" href="{lesson}page/{pages + 1}/">»</a>'
    ).encode()
    at = response.body.find(b"\n</div>", response.body.find(_GRID_END))
    response.body = response.body[:at] + links + response.body[at:]
    return response


def _unsolicited_304(response: _Response, base: str) -> _Response:
    return _Response(304, headers=[("ETag", '"hostile"')])


def _empty_200(response: _Response, base: str) -> _Response:
    response.body = b""
    return response


def _binary_as_html(response: _Response, base: str) -> _Response:
    response.body = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00\x01\x02" + bytes(range(256)) * 40
    return response


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
    "deep-nesting": _deep_nesting,
    "whitespace-title": _title(" " * 2_450_000 + "\u00ad" + " " * 2_450_000),
    "pages-past-count": _pages_past_count,
    "unsolicited-304": _unsolicited_304,
    "empty-200": _empty_200,
    "binary-as-html": _binary_as_html,
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


ENDLESS_PREFIX = "/video/endless-"


class EndlessSite(HostileSite):
    """The fixture site, where the start lesson (and every endless one) also lists
    ``per_page`` lessons never listed before."""

    def __init__(self, *args, listed: int = 500, **kwargs):
        super().__init__(*args, **kwargs)
        self.listed = listed
        self._next = 0

    def _respond(self, path: str, query: str, fault: str | None) -> _Response:
        if path.startswith(ENDLESS_PREFIX):
            return self._endless(path)
        response = super()._respond(path, query, fault)
        if response.status == 200 and path == f"/video/{START_SLUG}/":
            response.validators = False
            response.body = response.body.replace(_GRID_END, self._items() + _GRID_END, 1)
        return response

    def _items(self) -> bytes:
        with self._lock:
            first, self._next = self._next, self._next + self.listed
        return b"".join(
            b'<article class="et_pb_post"><h2 class="entry-title"><a href="'
            + f"{self.url}{ENDLESS_PREFIX}{n}/".encode()
            + b'">More</a></h2></article>\n'
            for n in range(first, first + self.listed)
        )

    def _endless(self, path: str) -> _Response:
        html = (
            f"<!DOCTYPE html><html><head><title>Endless</title></head><body>"
            f'<article class="et_pb_post"><h1 class="entry-title">Endless {path}</h1>'
            f'<div class="entry-content"><div class="et_pb_text_inner"><p>More.</p></div>'
            f'<div class="et_pb_blog_grid">'
        ).encode()
        html += self._items() + b'<div class="wp-pagenavi"></div></div></div></article>'
        return _Response(200, html + b"</body></html>", "text/html; charset=utf-8")
