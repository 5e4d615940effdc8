"""One place that maps a format name to its writer, reader and file extension.

An :class:`ExportFormat` lives for one export: for csv it carries the column layout every part
shares (and that a resumed export restores). Format modules are imported when used, so choosing
jsonl never imports pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from airflow_provider_kumulos._export.options import ExportOptions
from airflow_provider_kumulos._export.sink import open_decompressed

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._export.csv_format import CsvLayout

EXTENSIONS = {"jsonl": "jsonl", "json": "json", "csv": "csv", "parquet": "parquet"}


class FormatWriter(Protocol):
    """Writes batches of users to a stream; ``close`` finishes the document (not the stream)."""

    def write(self, users: Sequence[Any]) -> None:
        """Append a batch of users."""

    def close(self) -> None:
        """Finish the document (array end, parquet footer); the stream stays open."""


def extension(fmt: str, compression: str | None) -> str:
    """File name extension of a format, with ``.gz`` for gzip (part files use it)."""
    return EXTENSIONS[fmt] + (".gz" if compression == "gzip" else "")


class ExportFormat:
    """The writer factory and reader of one export's format."""

    def __init__(self, options: ExportOptions, attribute_keys: Sequence[str] | None = None) -> None:
        self.name = options.format
        self.compression = options.compression
        self.kept_fields = options.kept_fields()
        self.extension = extension(self.name, self.compression)
        self._csv: CsvLayout | None = None
        if self.name == "csv":
            from airflow_provider_kumulos._export.csv_format import CsvLayout

            self._csv = CsvLayout(self.kept_fields, options.attribute_columns or attribute_keys)

    @property
    def needs_dicts(self) -> bool:
        """Whether users must be decoded (csv, parquet) rather than passed through as bytes."""
        return self.name in ("csv", "parquet")

    @property
    def attribute_keys(self) -> list[str] | None:
        """The csv attribute columns once decided (saved in manifests and resume state)."""
        keys = self._csv.attribute_keys if self._csv is not None else None
        return None if keys is None else list(keys)

    def prepare(self, users: Sequence[Any]) -> None:
        """See the users about to be written (csv fixes its columns from the first ones)."""
        if self._csv is not None:
            self._csv.decide(users)

    def open(self, stream: IO[bytes]) -> FormatWriter:
        """A writer for one file."""
        if self._csv is not None:
            from airflow_provider_kumulos._export.csv_format import CsvWriter

            self._csv.decide(())
            return CsvWriter(stream, self._csv)
        if self.name == "parquet":
            from airflow_provider_kumulos._export.parquet_format import ParquetWriter

            return ParquetWriter(stream, self.kept_fields)
        if self.name == "json":
            from airflow_provider_kumulos._export.json_array import JsonArrayWriter

            return JsonArrayWriter(stream)
        from airflow_provider_kumulos._export.jsonl import JsonLinesWriter

        return JsonLinesWriter(stream)


def read_identifiers(path: ObjectStoragePath, fmt: str, compression: str | None) -> Iterator[str]:
    """Identifiers stored in one export file, in file order."""
    import importlib

    module = importlib.import_module(
        {
            "jsonl": "airflow_provider_kumulos._export.jsonl",
            "json": "airflow_provider_kumulos._export.json_array",
            "csv": "airflow_provider_kumulos._export.csv_format",
            "parquet": "airflow_provider_kumulos._export.parquet_format",
        }[fmt]
    )
    with open_decompressed(path, compression) as stream:
        yield from module.read_identifiers(stream)
