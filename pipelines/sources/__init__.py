"""Ingest sources: wiki pages (files or a crawl store), LaTeX/PDF-text booklets,
Hub datasets and local JSONL/CSV/parquet. :class:`SourceReader` turns a list of
source specs into raw datatrove documents; parsing happens in the ingest pipeline."""

from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.pipelines.sources.reader import SourceReader, resolve_sources

__all__ = ["ParseError", "SourceReader", "resolve_sources"]
