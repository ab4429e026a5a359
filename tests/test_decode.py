"""Bytes to text as a browser decodes them: a bogus label or a stray byte never fails a page."""

import pytest

from pipeline.decode import decode_html

PAGE = '<html><head><meta charset="{}"></head><body>Café – “quoted”</body></html>'


def test_the_declared_charset_is_used():
    decoded = decode_html(PAGE.format("utf-8").encode("utf-8"), "text/html; charset=UTF-8")
    assert "Café – “quoted”" in decoded.text
    assert (decoded.encoding, decoded.fallback, decoded.replaced) == ("utf-8", None, False)


@pytest.mark.parametrize("header", ["text/html; charset=undefined", "text/html; charset="])
def test_an_unknown_label_falls_back_to_the_pages_meta_charset(header):
    body = PAGE.format("windows-1252").encode("cp1252")
    decoded = decode_html(body, header)
    assert "Café – “quoted”" in decoded.text
    assert decoded.encoding == "windows-1252"
    assert not decoded.replaced
    if "undefined" in header:
        assert "unknown charset 'undefined'" in decoded.fallback


def test_labels_mean_what_they_mean_to_a_browser():
    # "latin1" and "iso-8859-1" are windows-1252 in the WHATWG standard: 0x93 is a quote mark.
    decoded = decode_html(b"\x93quoted\x94", "text/html; charset=iso-8859-1")
    assert decoded.text == "“quoted”"


def test_no_usable_label_anywhere_is_utf8():
    body = PAGE.format("bogus").encode("utf-8")
    decoded = decode_html(body, "text/html; charset=undefined")
    assert decoded.encoding == "utf-8" and "Café" in decoded.text
    assert "decoded as UTF-8" in decoded.fallback


def test_a_stray_invalid_byte_is_replaced_and_recorded():
    decoded = decode_html(b"caf\xc3\xa9 \xff ok", "text/html; charset=utf-8")
    assert decoded.text == "café \ufffd ok"
    assert decoded.replaced and "byte 6" in decoded.fallback


def test_a_byte_order_mark_wins_over_the_header():
    body = b"\xff\xfe" + "Café".encode("utf-16le")
    decoded = decode_html(body, "text/html; charset=utf-8")
    assert (decoded.text, decoded.encoding) == ("Café", "utf-16le")
