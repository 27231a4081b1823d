"""`ringwatch evidence`: the polls behind a change and the source's record, before and after."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import poll_samples, run_cli
from tests.support.synthetic import mutate, to_kml

# A map of one to five agencies gaining one: more than the default additions guard believes.
TINY_MAP = "[guard]\nmax_added_share = 1\n"


def evidence(config: Path, change_id: int) -> dict:
    result = run_cli("evidence", str(change_id), "--format", "json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def change_id(config: Path, kind: str, name: str) -> int:
    result = run_cli("changes", "--format", "json", "--kind", kind, "--config", str(config))
    return next(c["id"] for c in json.loads(result.stdout) if c["name"] == name)


def snapshot_of(config: Path, sha256: str) -> bytes:
    """A stored document, read back the way a reader would check it."""
    from bot.config import load_config
    from bot.snapshots import SnapshotStore

    return SnapshotStore(load_config(config).snapshots_dir).read(sha256)


def assert_quoted_from(config: Path, record: dict) -> None:
    """The record is the source's own bytes, inside the snapshot it names, whose hash checks."""
    body = snapshot_of(config, record["snapshot"])
    assert hashlib.sha256(body).hexdigest() == record["snapshot"]
    assert record["record"].encode() in body


def test_an_addition_shows_the_record_after_and_the_poll_that_lacked_it(sample_config):
    found = evidence(sample_config, change_id(sample_config, "added", "Crystal Police Department"))

    assert set(found) == {"change", "polls", "before", "after"}
    assert found["change"]["kind"] == "added" and found["before"] is None
    after = found["after"]
    assert after["format"] == "kml" and after["record"].startswith("<Placemark>")
    assert "<name>Crystal Police Department</name>" in after["record"]
    assert after["record"].endswith("</Placemark>")
    assert_quoted_from(sample_config, after)
    polls = found["polls"]
    assert [p["outcome"] for p in polls] == ["baseline", "ok"]
    assert polls[1]["snapshot"] == after["snapshot"] != polls[0]["snapshot"]
    assert polls[1]["http_status"] == 200 and polls[1]["url"].endswith("/samples.kml")
    assert polls[1]["etag"] and "last_modified" in polls[1]
    assert b"Crystal Police Department" not in snapshot_of(sample_config, polls[0]["snapshot"])


def test_a_rename_shows_the_old_record_and_the_new(sample_config):
    found = evidence(
        sample_config, change_id(sample_config, "renamed", "City of Mesa Police Department")
    )

    assert "<name>Mesa Police Department</name>" in found["before"]["record"]
    assert "<name>City of Mesa Police Department</name>" in found["after"]["record"]
    assert found["before"]["snapshot"] != found["after"]["snapshot"]
    assert_quoted_from(sample_config, found["before"])
    assert_quoted_from(sample_config, found["after"])


def test_a_field_change_shows_both_values_in_the_records(source_server, tmp_path):
    # A change of a field that alerts has a change-log row (others are churn, without ids).
    config = poll_samples(source_server, tmp_path, '[alerts]\nalert_fields = ["video_requests"]\n')
    found = evidence(config, change_id(config, "changed", "Westfield Police Department"))

    assert found["change"]["fields"] == ["video_requests"]
    assert "<value>12</value>" in found["before"]["record"]
    assert "<value>19</value>" in found["after"]["record"]


def test_an_ending_lists_the_snapshots_it_was_missing_from_one_per_confirmation(sample_config):
    found = evidence(
        sample_config, change_id(sample_config, "removed", "Ridgeland Police Department")
    )

    assert set(found) == {"change", "polls", "before", "after", "missing_in"}
    assert found["after"] is None
    assert "<name>Ridgeland Police Department</name>" in found["before"]["record"]
    missing = found["missing_in"]
    assert len(missing) == 2  # guard.removal_confirmations
    assert [p["http_status"] for p in missing] == [200, 304]  # a 304 confirms too
    for poll in missing:
        assert b"Ridgeland Police Department" not in snapshot_of(sample_config, poll["snapshot"])
    assert [p["id"] for p in found["polls"]] == [1, 2, 3]


def test_the_text_is_a_note_a_journalist_can_paste(sample_config):
    ended = change_id(sample_config, "removed", "Ridgeland Police Department")

    result = run_cli("evidence", str(ended), "--config", str(sample_config))

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"Change #{ended}: removed - Ridgeland Police Department, Ridgeland, MS")
    assert "Before (snapshot " in text and "<name>Ridgeland Police Department</name>" in text
    assert "After: not listed" in text
    assert "Missing in 2 polls in a row:" in text
    assert "HTTP 304" in text and "ringwatch snapshot SHA256 | sha256sum" in text


def test_an_unknown_change_is_one_clear_line(sample_config):
    result = run_cli("evidence", "99999", "--config", str(sample_config))

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ringwatch: no change #99999 (ringwatch changes --format json lists ids)"
    )


@pytest.mark.parametrize(
    ("path", "first", "later", "quoted"),
    [
        (
            "/agencies.json",
            [{"name": "Ames PD", "address": "Ames, IA"}],
            [
                {"name": "Ames PD", "address": "Ames, IA"},
                {"name": "Crystal PD", "address": "Crystal, MN", "note": "\u001b[31m"},
            ],
            '{\n  "name": "Crystal PD",\n  "address": "Crystal, MN",\n  "note": "\\u001b[31m"\n}',
        ),
        (
            "/agencies.csv",
            # A state in every address: a first document without states is no baseline.
            'name,address\nAmes PD,"Ames, IA"\n',
            'name,address\nAmes PD,"Ames, IA"\nCrystal PD\x1b[31m,"Crystal, MN"\n',
            'name,address\nCrystal PD\x1b[31m,"Crystal, MN"',
        ),
    ],
)
def test_json_objects_and_csv_rows_are_quoted_as_written(
    tmp_path, source_server, path, first, later, quoted
):
    def body(document) -> bytes:
        return document.encode() if isinstance(document, str) else json.dumps(document).encode()

    bot = Bot.create(tmp_path, source_server.serve(path, body(first), body(later)), TINY_MAP)
    bot.poll()
    bot.poll()
    (added,) = bot.changes(kinds=("added",))

    found = evidence(bot.config_path, added["id"])

    assert found["after"]["format"] == path.rsplit(".", 1)[1]
    assert found["after"]["record"] == quoted
    text = run_cli("evidence", str(added["id"]), "--config", str(bot.config_path)).stdout
    assert "Crystal PD" in text and "\x1b" not in text  # shown, not run by the terminal


def test_a_change_whose_poll_is_gone_is_one_clear_line(tmp_path, source_server):
    later = to_kml(mutate(agencies(5), seed=2, add=1))
    bot = Bot.create(
        tmp_path, source_server.serve("/map.kml", to_kml(agencies(5)), later), TINY_MAP
    )
    bot.poll()
    bot.poll()
    (added,) = bot.changes(kinds=("added",))
    with sqlite3.connect(bot.config.db_path) as conn:
        conn.execute("update changes set poll_id = 99 where id = ?", [added["id"]])

    result = run_cli("evidence", str(added["id"]), "--config", str(bot.config_path))

    assert result.returncode == 2
    assert f"change #{added['id']} cites poll 99, which is not in the database" in result.stderr
    assert "Traceback" not in result.stderr
