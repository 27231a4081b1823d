"""`ringwatch export` (CSV, JSON, GeoJSON) and the Datasette metadata shipped in the package."""

from __future__ import annotations

import csv
import io
import json
import shlex
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import run_cli


def export(config, *args: str) -> str:
    result = run_cli("export", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_feature_collection(document: dict) -> list[dict]:
    assert document["type"] == "FeatureCollection"
    for feature in document["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        if geometry is not None:
            assert geometry["type"] == "Point"
            lon, lat = geometry["coordinates"]
            # RFC 7946 order is [lon, lat]: in the US, lon is west (negative), lat north.
            assert -180 <= lon < -60 and 15 < lat < 72, (lon, lat)
    return document["features"]


def test_agencies_as_geojson(sample_config):
    features = check_feature_collection(json.loads(export(sample_config, "--format", "geojson")))
    assert len(features) == 151
    carmel = next(f for f in features if f["properties"]["name"] == "Carmel Police Department")
    assert carmel["geometry"]["coordinates"] == [
        -86.118,
        39.9784,
    ]  # baseline.kml: "-86.118,39.9784,0"
    assert carmel["properties"]["state"] == "IN"
    assert "lat" not in carmel["properties"]


def test_changes_as_geojson_place_an_ending_where_it_was(sample_config):
    document = json.loads(export(sample_config, "--what", "changes", "--format", "geojson"))
    features = check_feature_collection(document)
    assert len(features) == 32
    ended = next(f for f in features if f["properties"]["kind"] == "removed")
    assert ended["properties"]["name"] == "Ridgeland Police Department"
    before = ended["properties"]["before"]
    assert ended["geometry"]["coordinates"] == [before["lon"], before["lat"]]


def test_changes_as_json_equal_the_changes_command(sample_config):
    exported = json.loads(export(sample_config, "--what", "changes", "--format", "json"))
    result = run_cli("changes", "--config", str(sample_config), "--format", "json")
    assert exported == json.loads(result.stdout)
    assert {row["kind"] for row in exported} == {"added", "removed", "renamed", "changed"}


def test_agencies_as_csv_with_a_state_filter(sample_config):
    rows = list(csv.DictReader(io.StringIO(export(sample_config, "--state", "mn"))))
    assert len(rows) == 8
    assert {row["state"] for row in rows} == {"MN"}
    crystal = next(row for row in rows if row["name"] == "Crystal Police Department")
    assert crystal["active_date"] == "2020-06-03"
    assert json.loads(crystal["extra"]) == {}


def test_changes_csv_is_the_same_from_both_commands(sample_config):
    exported = export(sample_config, "--what", "changes", "--format", "csv")
    result = run_cli("changes", "--config", str(sample_config), "--format", "csv")
    assert exported == result.stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    renamed = next(row for row in rows if row["kind"] == "renamed")
    assert json.loads(renamed["before"])["name"] == "Mesa Police Department"


def test_export_to_a_file(sample_config, tmp_path):
    out = tmp_path / "out" / "agencies.json"
    out.parent.mkdir()
    result = run_cli(
        "export", "--config", str(sample_config), "--format", "json", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 151 agencies to {out}"
    assert len(json.loads(out.read_text())) == 151


def test_export_rejects_an_unknown_format(sample_config):
    result = run_cli("export", "--config", str(sample_config), "--format", "xlsx")
    assert result.returncode == 2
    assert "'xlsx' is not one of 'csv', 'json', 'geojson'" in result.stderr


@pytest.fixture(scope="module")
def metadata(sample_config) -> dict:
    """The metadata file `ringwatch datasette` hands to Datasette."""
    printed = run_cli("datasette", "--config", str(sample_config), "--print")
    assert printed.returncode == 0, printed.stderr
    words = shlex.split(printed.stdout)
    return json.loads(Path(words[words.index("--metadata") + 1]).read_text(encoding="utf-8"))


def test_datasette_metadata_describes_real_tables_and_columns(sample_config, metadata):
    db = sqlite3.connect(sample_config.parent / "state" / "ringwatch.db")
    tables = metadata["databases"]["ringwatch"]["tables"]
    names = {row[0] for row in db.execute("select name from sqlite_master")}
    for table, spec in tables.items():
        assert table in names, table
        assert spec["title"] and spec["description"]
        columns = {row[1] for row in db.execute(f"pragma table_info({table})")}
        assert set(spec.get("columns", {})) <= columns, table
        assert set(spec.get("units", {})) <= columns, table


def test_datasette_canned_queries_answer_on_the_sample(sample_config, metadata):
    db = sqlite3.connect(sample_config.parent / "state" / "ringwatch.db")
    queries = metadata["databases"]["ringwatch"]["queries"]
    assert set(queries) == {"added_since", "ended_partnerships", "by_state", "agency_history"}
    params = {"since": "2020-05-25", "agency": "Mesa"}
    results = {name: db.execute(q["sql"], params).fetchall() for name, q in queries.items()}
    same = run_cli("changes", "--config", str(sample_config), "--kind", "added",
                   "--since", "2020-05-25", "--by", "active-date", "--format", "json")  # fmt: skip
    assert len(results["added_since"]) == len(json.loads(same.stdout)) == 29
    assert [row[1] for row in results["ended_partnerships"]] == ["Ridgeland Police Department"]
    assert sum(row[1] for row in results["by_state"]) == 151
    kinds = [row[2] for row in results["agency_history"]]
    assert kinds == ["baseline", "renamed"]  # Mesa's whole history, across the rename
