"""Bytes to text the way a browser does it (the WHATWG Encoding standard), never an exception.

A byte-order mark wins; then the Content-Type header's ``charset``; then the page's own
``<meta charset>`` within its first 1024 bytes; then UTF-8. A label nobody knows
(``charset=undefined``) falls through to the next source instead of failing the page, and a
stray invalid byte becomes U+FFFD. ``Decoded.fallback`` says when either happened, so the run
can record it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import webencodings

_PRESCAN_BYTES = 1024
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.IGNORECASE
)
_UTF8 = webencodings.lookup("utf-8")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    encoding: str  # the WHATWG name of the encoding used
    fallback: str | None = None  # why the declared encoding was not used as is, if it was not
    replaced: bool = False  # invalid bytes were replaced: possibly corrupted on the way


def header(headers, name: str) -> str | None:
    """The first value of header ``name`` (any case) among (name, value) pairs."""
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def media_type(content_type: str | None) -> str:
    """``text/html; charset=utf-8`` → ``text/html``"""
    return (content_type or "").split(";")[0].strip().lower()


def is_html(content_type: str | None) -> bool:
    return media_type(content_type) in HTML_TYPES


# Bytes no text holds (the "binary data bytes" of the WHATWG MIME Sniffing standard, §7.1).
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_SNIFF_BYTES = 1445


def not_html(body: bytes, content_type: str | None) -> str | None:
    """Why a body sent as HTML is not HTML, or None when it may be: binary bytes near its start
    (an image or a PDF under the wrong Content-Type), or no markup at all. An empty body is
    the fetcher's to judge (see fetch.odd_answer)."""
    head = body[:_SNIFF_BYTES]
    utf16 = (charset_of(content_type) or "").lower().replace("-", "").startswith("utf16")
    if utf16 or body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None  # UTF-16 text: its NUL bytes are half of every ASCII character
    if _BINARY.search(head):
        return f"body is not HTML though sent as HTML: binary data, starting {body[:16]!r}"
    if body and b"<" not in body:
        return f"body is not HTML though sent as HTML: no markup, starting {body[:16]!r}"
    return None


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, as written."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def decode_html(body: bytes, content_type: str | None) -> Decoded:
    notes = []
    encoding, bom = _bom(body)
    if encoding is None:
        label = charset_of(content_type)
        encoding = webencodings.lookup(label) if label else None
        if label and encoding is None:
            notes.append(f"unknown charset {label!r} in Content-Type")
    if encoding is None:
        meta = _META_CHARSET.search(body[:_PRESCAN_BYTES])
        if meta:
            label = meta[1].decode("ascii")
            encoding = webencodings.lookup(label)
            if encoding is None:
                notes.append(f"unknown charset {label!r} in <meta>")
            elif encoding.name in ("utf-16le", "utf-16be"):
                # A <meta> that could be read as ASCII is not UTF-16 (WHATWG prescan rule).
                encoding = _UTF8
    if encoding is None:
        encoding = _UTF8
        if notes:
            notes.append("decoded as UTF-8")
    payload = body[bom:]
    try:
        text = encoding.codec_info.decode(payload, "strict")[0]
    except UnicodeDecodeError as exc:
        text = encoding.codec_info.decode(payload, "replace")[0]
        notes.append(f"invalid {encoding.name} at byte {exc.start + bom} replaced")
        return Decoded(text, encoding.name, "; ".join(notes), replaced=True)
    return Decoded(text, encoding.name, "; ".join(notes) or None)


def _bom(body: bytes) -> tuple[webencodings.Encoding | None, int]:
    if body.startswith(b"\xef\xbb\xbf"):
        return _UTF8, 3
    if body.startswith(b"\xff\xfe"):
        return webencodings.lookup("utf-16le"), 2
    if body.startswith(b"\xfe\xff"):
        return webencodings.lookup("utf-16be"), 2
    return None, 0
