"""What may leave ringwatch as a link or a spreadsheet cell."""

from __future__ import annotations

import pytest

from bot.safe import csv_cell, http_url

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
