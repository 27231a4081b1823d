"""JSON: a list of agency objects, or GeoJSON features, wherever source.records_path says."""

from __future__ import annotations

import json
from collections.abc import Container, Iterator

from bot.config import SourceConfig
from bot.source.document import ParseError, RawRecord
from bot.source.formats.base import Format, fields_digest, rename_fields


def _pick(record: object, path: str) -> object:
    for part in filter(None, path.split(".")):
        if not isinstance(record, dict) or part not in record:
            raise ParseError(f"no {path!r} in the JSON document (source.records_path)")
        record = record[part]
    return record


def _flatten_json_record(item: object) -> dict[str, str]:
    if not isinstance(item, dict):
        raise ParseError(f"expected each JSON record to be an object, got {type(item).__name__}")
    if item.get("type") == "Feature":  # GeoJSON
        fields = {k: v for k, v in (item.get("properties") or {}).items()}
        coordinates = (item.get("geometry") or {}).get("coordinates")
        if isinstance(coordinates, list) and len(coordinates) >= 2:
            fields["coordinates"] = f"{coordinates[0]},{coordinates[1]}"
        item = fields
    return {str(k): "" if v is None else str(v) for k, v in item.items() if not isinstance(v, dict)}


def json_records(body: bytes, records_path: str = "") -> list[object]:
    """The list of agency objects in a JSON document, as the source wrote them."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"malformed JSON: {exc}") from None
    records = _pick(document, records_path)
    if isinstance(records, dict) and "features" in records and not records_path:
        records = records["features"]
    if not isinstance(records, list):
        raise ParseError("the JSON document holds no list of agencies (set source.records_path)")
    return records


class JsonFormat(Format):
    name = "json"  # application/geo+json too

    def looks_like(self, body: bytes) -> bool:
        return body.lstrip()[:1] in (b"[", b"{")

    def records(
        self,
        body: bytes,
        config: SourceConfig,
        known: Container[str] = frozenset(),
        *,
        scan: bool = True,
    ) -> Iterator[RawRecord]:
        for item in json_records(body, config.records_path):
            fields = rename_fields(_flatten_json_record(item), config.fields)
            yield fields_digest(fields), fields

    def quotes(self, body: bytes, config: SourceConfig, count: int) -> list[str] | None:
        items = json_records(body, config.records_path)
        return [json.dumps(item, indent=2, ensure_ascii=False) for item in items]
