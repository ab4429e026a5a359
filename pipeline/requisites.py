"""A page's requisites: what a browser loads to show it (stylesheets, scripts, fonts, images),
so that a replayed page looks as it did. Pure: HTML or CSS in, URLs out; which of them a crawl
fetches is ``RequisiteScope``'s rule.

Only files on the site's own host under ``scope.requisite_prefixes`` are requisites (the
theme's files, the logo, the thumbnails); an off-site embed (the Vimeo player) stays a link in
the captured page and is never fetched.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser

from .config import Config

# What a browser fetches to render a page: (selector, attribute). Links by their rel, since
# <link> also names feeds, the canonical URL and the REST API, which are not requisites.
_SOURCES = (
    ("link[href]", "href"),
    ("script[src]", "src"),
    ("img[src]", "src"),
    ("img[srcset]", "srcset"),
    ("source[srcset]", "srcset"),
    ("source[src]", "src"),
    ("video[poster]", "poster"),
    ("input[type=image][src]", "src"),
)
_LINK_RELS = frozenset({"stylesheet", "icon", "apple-touch-icon", "preload", "modulepreload"})
# url(...) and @import "..." in a stylesheet: fonts, background images, other stylesheets.
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")\s]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")
# A versioned file (WordPress's ?ver=6.4.2) changes its URL when it changes: once captured, it
# need not be asked for again.
_VERSIONED = re.compile(r"(?:^|&)ver=[^&]+")


def page_requisites(html: str | bytes, url: str) -> tuple[str, ...]:
    """The absolute URLs of what ``html`` (the page at ``url``) loads, in document order,
    each once. Every host: which are the site's is ``RequisiteScope``'s to say."""
    tree = LexborHTMLParser(html)
    found: list[str] = []
    for selector, attribute in _SOURCES:
        for node in tree.css(selector):
            if node.tag == "link":
                rels = set((node.attributes.get("rel") or "").lower().split())
                if not rels & _LINK_RELS:
                    continue
            value = node.attributes.get(attribute) or ""
            if attribute == "srcset":
                candidates = (part.split()[0] for part in value.split(",") if part.strip())
                found.extend(_join(url, candidate) for candidate in candidates)
            elif value.strip():
                found.append(_join(url, value.strip()))
    return tuple(dict.fromkeys(u for u in found if u))


def stylesheet_requisites(css: bytes, url: str) -> tuple[str, ...]:
    """The absolute URLs a stylesheet loads (fonts, images, imported stylesheets), each once."""
    text = css.decode("utf-8", "replace")
    found = (_join(url, m.group(2) or m.group(4)) for m in _CSS_URL.finditer(text))
    return tuple(dict.fromkeys(u for u in found if u and not u.startswith("data:")))


def is_versioned(url: str) -> bool:
    return bool(_VERSIONED.search(urlsplit(url).query))


class RequisiteScope:
    """Which requisite URLs a crawl of one host fetches: on the crawl's host (a page of the
    real site read from a local copy names the real host: it is rebased), under one of the
    configured prefixes; fragments dropped."""

    def __init__(self, config: Config, origin_url: str):
        origin = urlsplit(origin_url)
        self._origin = (origin.scheme, origin.netloc)
        self._site_host = urlsplit(config.site.base_url).netloc
        self._prefixes = tuple(config.scope.requisite_prefixes)

    @property
    def enabled(self) -> bool:
        return bool(self._prefixes)

    def accepts(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https"):
            return None
        if parts.netloc == self._site_host:
            parts = parts._replace(scheme=self._origin[0], netloc=self._origin[1])
        if (parts.scheme, parts.netloc) != self._origin:
            return None
        if not parts.path.startswith(self._prefixes) or "/../" in parts.path:
            return None
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


def _join(base: str, link: str) -> str:
    try:
        return urljoin(base, link)
    except ValueError:
        return ""
