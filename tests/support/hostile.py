"""A map edited by someone hostile: names and links that try to become markup, links,
formulas or mentions wherever ringwatch republishes them.

`poll_hostile` polls two JSON snapshots through the real CLI: a calm baseline, then the
hostile agencies as additions (with an ordinary field change beside them), so every
output (reports, feed, exports, Datasette) has them in every section it shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_cli, write_config
from tests.support.source_server import SourceServer

RTL_OVERRIDE = "\u202e"
HOSTILE_NAMES = (
    "<script>alert(1)</script> Police Department",
    "<img src=x onerror=alert(1)> Sheriff's Office",
    "[Click me](javascript:alert(1)) Police Department",
    '=HYPERLINK("http://evil.example","x")',
    "@everyone Police Department",
    "Smith & Jones <Township> Police Department",
    f"Evil{RTL_OVERRIDE}tnemtrapeD eciloP",
    "**Bold** _Police_ `Department` ![x](http://evil.example/x.png)",
)
UNSAFE_URLS = (
    "javascript:alert(document.domain)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "/agency/relative",
    "//evil.example/protocol-relative",
)
SAFE_URL = "https://ring.com/agency/ok?a=1&b=2"
FORMULA_CITY = "+cmd|' /C calc'!A0"


def _record(name: str, city: str, lat: float, **fields: object) -> dict[str, object]:
    return {"name": name, "city": city, "state": "PA", "active_date": "2020-06-01",
            "latitude": lat, "longitude": -77.0, **fields}  # fmt: skip


CALM = _record("Calm Police Department", "Calmtown", 40.0, video_requests=1)


def hostile_records() -> list[dict[str, object]]:
    """Each hostile name once; the first five with an unsafe profile URL, then a safe one."""
    urls = (*UNSAFE_URLS, SAFE_URL, SAFE_URL, SAFE_URL)
    return [
        _record(name, FORMULA_CITY if i == 0 else f"Town {i}", 40.1 + i / 10, profile_url=url)
        for i, (name, url) in enumerate(zip(HOSTILE_NAMES, urls, strict=True))
    ]


def snapshots() -> tuple[bytes, bytes]:
    later = [{**CALM, "video_requests": 2}, *hostile_records()]
    return json.dumps([CALM]).encode(), json.dumps(later).encode()


def poll_hostile(server: SourceServer, directory: Path, extra_config: str = "") -> Path:
    """Poll the calm baseline, then the hostile snapshot; return the config path."""
    url = server.serve("/hostile.json", *snapshots())
    # Eight additions to one known agency: far above the additions guard, on purpose.
    guard = "[guard]\nmax_added_share = 10\n"
    config = write_config(
        directory, f'[source]\nurl = "{url}"\nformat = "json"\n{guard}{extra_config}'
    )
    for _ in range(2):
        result = run_cli("poll", "--config", str(config))
        assert result.returncode == 0, result.stderr
    return config
