"""Source specs → raw datatrove documents.

A spec is ``demo`` (the bundled sample), ``hf:<dataset id or local dataset dir>[@split]``
(streamed with ``datasets``), a local file/directory (.wiki, .tex, .txt, .jsonl, .json,
.csv, .parquet), or a :class:`~fineproofs.config.SourceEntry` (one of those with its own
column mapping, ``source`` label, licence and Hub split/subset; presets such as
``aops`` arrive resolved into one). Each raw document carries ``metadata["format"]``:

- ``wiki``: ``text`` is the page's wikitext (parsed later);
- ``item``: already split (booklet problem or table row): ``text`` is the raw statement
  and ``metadata["solutions"]`` the raw solutions.

Anything unreadable (non-UTF-8, oversized, malformed JSON) still becomes a document,
with ``metadata["raw_error"]``, so the parse step quarantines it with that reason.
Isolation is per item: a bad table row (see :mod:`fineproofs.tables`) or a wrongly
typed field costs that row; a booklet problem holding bytes that are not UTF-8 costs
that problem (the others of the booklet proceed); a wiki page is one item. Files are
sharded over tasks by position in the sorted list of files.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from fineproofs import fieldpath, tables
from fineproofs.errors import ConfigError
from fineproofs.pipelines.sources import booklet, rows, wiki
from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.text import has_surrogates

DEMO_LICENCE = "Apache-2.0 (fineproofs demo data)"
WIKI_EXT = {".wiki", ".mediawiki"}
TEX_EXT = {".tex", ".txt"}
TABLE_EXT = {".jsonl", ".json", ".csv", ".parquet"}
CRAWL_INDEX = "crawl_index.json"


@dataclass(frozen=True)
class SourceFile:
    """One unit of reading: a file, or a Hub dataset (``path`` = ``hf:...``)."""

    path: str
    kind: str  # wiki | tex | table | hub
    demo: bool = False
    display: str = ""  # path shown in urls (relative for demo data)
    # the source's own settings (a SourceEntry): columns, source_label, licence, split, config, data_files
    settings: Any = field(default=None, compare=False, hash=False)


def demo_dir() -> Path:
    return Path(str(resources.files("fineproofs.data") / "demo"))


def _kind(p: Path) -> str | None:
    s = p.suffix.lower()
    return "wiki" if s in WIKI_EXT else "tex" if s in TEX_EXT else "table" if s in TABLE_EXT else None


def resolve_sources(paths: list) -> list[SourceFile]:
    """Expand specs (text or :class:`~fineproofs.config.SourceEntry`) into a sorted,
    de-duplicated list of source files; an entry's settings travel with each of its files."""
    out: list[SourceFile] = []
    for item in paths:
        spec, settings = (item, None) if isinstance(item, str) else (item.path, item)
        if spec.startswith("hf:"):
            out.append(SourceFile(spec, "hub", display=spec, settings=settings))
            continue
        demo = spec == "demo"
        root = demo_dir() if demo else Path(spec).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"source {spec!r} does not exist")
        if not root.is_dir():
            tables.check_regular_file(root, "source")  # a FIFO or device would block or never end
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if f.name == CRAWL_INDEX or f.name.lower() == "readme.md":
                continue
            if kind := _kind(f):
                # shown relative to the source as given (never the absolute path: urls reach the
                # screener's prompt and dedup's tie-break, so the same files elsewhere build the same rows)
                rel = f.relative_to(root).as_posix() if root.is_dir() else ""
                shown = "demo/" + rel if demo else f"{root.name}/{rel}" if rel else root.name
                out.append(SourceFile(str(f), kind, demo, shown, settings))
    seen, uniq = set(), []
    for s in out:
        if s.path not in seen:
            seen.add(s.path)
            uniq.append(s)
    shown = Counter(s.display for s in uniq)
    # two files shown alike (same name in two source directories): their full paths tell them apart
    return [dataclasses.replace(s, display=s.path) if shown[s.display] > 1 else s for s in uniq]


class SourceReader(PipelineStep):
    """Yield one raw document per wiki page, booklet problem or table row."""

    name = "📖 sources"
    type = "📖 - READER"

    def __init__(
        self,
        sources: list[SourceFile],
        columns: dict[str, str] | None = None,
        wiki_base_url: str = wiki.AOPS_WIKI,
        licence: str = "",
        max_bytes: int = 5_000_000,
        hub_split: str = "train",
    ):
        super().__init__()
        self.sources = sources
        self.columns = dict(columns or {})
        for cols in [self.columns, *(dict(s.settings.columns) for s in sources if s.settings is not None)]:
            try:
                fieldpath.check_mapping(cols)
            except ValueError as e:
                raise ConfigError(f"sources: {e}") from None
        self.wiki_base_url = wiki_base_url
        self.licence = licence
        self.max_bytes = max_bytes
        self.hub_split = hub_split

    # -- helpers -----------------------------------------------------------------
    def _base(self, src: SourceFile, fmt: str, tag: str, k: int | str) -> dict:
        own = src.settings
        return {
            "format": fmt,
            "origin": src.display,
            "source": ("demo_" + tag) if src.demo else (own.source_label if own is not None else "") or tag,
            "licence": DEMO_LICENCE if src.demo else (own.licence if own is not None else "") or self.licence,
            "locator": f"{src.display}#{_printable(str(k))}",
        }

    def _error_doc(self, src: SourceFile, k, reason: str, text: str = "") -> Document:
        meta = self._base(src, "error", src.kind, k) | {"raw_error": reason}
        return Document(text=_printable(text[:2000]), id=meta["locator"], metadata=meta)

    def _read_text(self, src: SourceFile, errors: str = "replace") -> tuple[str, str]:
        """The file's text and '' , or what is wrong with it; with ``errors="surrogateescape"``
        undecodable bytes stay in the text as lone surrogates (U+DC80-U+DCFF)."""
        p = tables.check_regular_file(src.path, "source")
        size = p.stat().st_size
        if size > self.max_bytes:
            return "", f"too_large: {size} bytes > {self.max_bytes}"
        data = p.read_bytes()
        try:
            return data.decode("utf-8-sig"), ""
        except UnicodeDecodeError as e:
            text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors=errors)
            return text, f"non_utf8: {e.reason} at byte {e.start}"

    # -- per kind ----------------------------------------------------------------
    def _wiki(self, src: SourceFile) -> Iterator[Document]:
        text, err = self._read_text(src)
        if err:
            yield self._error_doc(src, 0, err, text)
            return
        entry = _index_entry(Path(src.path))
        title = entry.get("title") or wiki.title_from_filename(src.path)
        comp, year = wiki.title_fields(title)
        meta = self._base(src, "wiki", "wiki" if src.demo else "aops_wiki", 0) | {
            "title": title,
            "url": entry.get("url") or wiki.wiki_url(title, self.wiki_base_url),
            "competition": comp,
            "year": year,
            "category": wiki.category_of(text),
        }
        meta["locator"] = meta["url"]
        yield Document(text=text, id=meta["url"], metadata=meta)

    def _tex(self, src: SourceFile) -> Iterator[Document]:
        text, err = self._read_text(src, errors="surrogateescape")
        if err and not err.startswith("non_utf8"):
            yield self._error_doc(src, 0, err, text)
            return
        comp, year = booklet.booklet_fields(src.path)
        items = booklet.split_booklet(text)
        if not items:
            yield self._error_doc(src, 0, err or "no_problems_found", _printable(text))
        for it in items:
            if bad := _bad_bytes(it.statement, *it.solutions):
                yield self._error_doc(src, it.label, f"non_utf8: {bad}", _printable(it.statement))
                continue
            meta = self._base(src, "item", "booklet", it.label) | {
                "url": f"{src.display}#{_printable(it.label)}",
                "competition": comp,
                "year": year,
                "category": _printable(it.category),
                "solutions": it.solutions,
            }
            yield Document(text=it.statement, id=meta["url"], metadata=meta)

    def _rows(self, src: SourceFile, rows_iter) -> Iterator[Document]:
        tag, own = "hub", src.settings
        columns = dict(own.columns) if own is not None else self.columns
        label = own.source_label if own is not None and not src.demo else ""
        for i, row, err in rows_iter:
            if err:
                yield self._error_doc(src, f"L{i}", err)
                continue
            try:
                r = rows.map_row(row, columns)
            except ParseError as e:
                yield self._error_doc(src, f"L{i}", e.quarantine_reason)
                continue
            meta = self._base(src, "item", tag, f"L{i}")
            licence = meta["licence"] if src.demo else (r["licence"] or meta["licence"])
            tag_source = meta["source"]
            meta.update({k: v for k, v in r.items() if k != "problem"})
            meta["source"] = label or r["source"] or tag_source
            meta["licence"] = licence
            meta["url"] = r["url"] or meta["locator"]
            yield Document(text=r["problem"], id=meta["locator"], metadata=meta)

    def _iter_source(self, src: SourceFile) -> Iterator[Document]:
        if src.kind == "wiki":
            yield from self._wiki(src)
        elif src.kind == "tex":
            yield from self._tex(src)
        elif src.kind == "table":
            yield from self._rows(src, tables.iter_table(src.path, what="source"))
        else:  # hub
            own = src.settings
            hub = (
                {"split": own.split or self.hub_split, "config": own.config, "data_files": list(own.data_files)}
                if own is not None
                else {"split": self.hub_split}
            )
            yield from self._rows(src, tables.iter_table(src.path, what="source", **hub))

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        for src in self.sources[rank::world_size]:
            try:
                for doc in self._iter_source(src):
                    self.stat_update("read")
                    yield doc
            except Exception as e:  # an unreadable file is quarantined, never fatal
                yield self._error_doc(src, "file", f"unreadable: {type(e).__name__}: {e}"[:300])


def _index_entry(path: Path) -> dict:
    """The crawl index entry of a crawled page ({} when there is none or it is damaged)."""
    index_path = path.parent / CRAWL_INDEX
    try:
        entry = json.loads(index_path.read_text(encoding="utf-8")).get(path.name, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return entry if isinstance(entry, dict) else {}


def _bad_bytes(*texts: str) -> str:
    """Where the first undecodable byte (kept as a lone surrogate) is, or ''."""
    for t in texts:
        if has_surrogates(t):
            for k, ch in enumerate(t):
                if "\udc80" <= ch <= "\udcff":
                    return f"byte 0x{ord(ch) - 0xDC00:02x} at character {k} (Latin-1 or another encoding?)"
            return "unpaired surrogate"
    return ""


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="replace").decode("utf-8") if has_surrogates(text) else text
