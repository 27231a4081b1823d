"""CSV: a header row naming the columns (source.fields maps them), one agency a row."""

from __future__ import annotations

import csv
import io
from collections.abc import Container, Iterator

from bot.config import SourceConfig
from bot.source.document import ParseError, RawRecord
from bot.source.formats.base import Format, fields_digest, rename_fields


class CsvFormat(Format):
    name = "csv"

    def looks_like(self, body: bytes) -> bool:
        return b"," in body[:2048]

    def records(
        self,
        body: bytes,
        config: SourceConfig,
        known: Container[str] = frozenset(),
        *,
        scan: bool = True,
    ) -> Iterator[RawRecord]:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(f"the CSV is not UTF-8: {exc}") from None
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or len(reader.fieldnames) < 2:
            raise ParseError("the CSV has no header row with agency columns")
        for row in reader:
            if None in row:
                raise ParseError(f"CSV line {reader.line_num} has more cells than the header")
            if None in row.values():  # a half-written file: cut-off rows are no agencies
                raise ParseError(f"CSV line {reader.line_num} has fewer cells than the header")
            fields = rename_fields({k: v or "" for k, v in row.items()}, config.fields)
            yield fields_digest(fields), fields

    def quotes(self, body: bytes, config: SourceConfig, count: int) -> list[str] | None:
        # Each row under the header, so that a quoted row says which column is which.
        rows = [row for row in csv.reader(io.StringIO(body.decode("utf-8-sig"))) if row]
        header, texts = rows[0], []
        for row in rows[1:]:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([header, row])
            texts.append(out.getvalue().rstrip("\n"))
        return texts
