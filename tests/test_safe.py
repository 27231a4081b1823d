"""What may leave ringwatch as a link or a spreadsheet cell."""

from __future__ import annotations

import pytest

from bot.safe import csv_cell, http_url, markdown_text, plain_text

LINKS = [
    ("https://ring.com/agency/1", "https://ring.com/agency/1"),
    ("http://example.org/x?a=1", "http://example.org/x?a=1"),
    ("  HTTPS://Example.org/  ", "HTTPS://Example.org/"),
    ("javascript:alert(document.domain)", None),
    ("JaVaScRiPt:alert(1)", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("vbscript:msgbox(1)", None),
    ("//evil.example/x", None),
    ("/relative/path", None),
    ("agency/1", None),
    ("https://", None),
    ("https://ex\nample.org/", None),
    ("", None),
    (None, None),
    (42, None),
]


@pytest.mark.parametrize(("value", "expected"), LINKS)
def test_only_absolute_http_links_survive(value, expected):
    assert http_url(value) == expected


CELLS = [
    ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("Crystal Police Department", "Crystal Police Department"),
    ("", ""),
    (12, 12),
    (None, None),
]


@pytest.mark.parametrize(("value", "expected"), CELLS)
def test_csv_cells_never_start_a_formula(value, expected):
    assert csv_cell(value) == expected


MARKDOWN = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("Smith & Jones <Township>", "Smith &amp; Jones &lt;Township&gt;"),
    ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
    ("**b** _i_ `c`", "\\*\\*b\\*\\* \\_i\\_ \\`c\\`"),
    ("a|b ~~c~~", "a&#124;b &#126;&#126;c&#126;&#126;"),
    ("# Heading", "\\# Heading"),
    ("- item", "\\- item"),
    ("1. first", "1\\. first"),
    ("Crystal Police Department (MN)", "Crystal Police Department (MN)"),
    ("line\nbreak", "line break"),
]


@pytest.mark.parametrize(("value", "expected"), MARKDOWN)
def test_markdown_text_escapes_only_what_would_mean_something(value, expected):
    assert markdown_text(value) == expected


def test_plain_text_drops_direction_overrides_and_controls():
    assert plain_text("Evil\u202etnemtrapeD\u2066x\u2069\x00 PD\n") == "Evil tnemtrapeD x PD"
