"""The rebuilt splits have the published Arrow schemas, field for field and in order,
nested structs included: a rebuilt shard concatenates with a published-shaped one in
pyarrow and polars (``datasets`` ignores struct field order; they do not).

The published schemas are written out here by hand from the dataset cards of
lm-provers/FineProofs-SFT and lm-provers/FineProofs-RL, independently of
``fineproofs.records``."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from test_splits import make_run

PUBLISHED_SFT = pa.schema(
    [
        ("problem", pa.string()),
        ("reasoning_content", pa.string()),
        ("proof", pa.string()),
        ("category", pa.string()),
        ("competition", pa.string()),
        ("gemini-3-pro-grade", pa.int64()),
        ("qwen3-4b-thinking-reward@128", pa.float64()),
        ("source", pa.string()),
        ("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ]
)
PUBLISHED_RL = pa.schema(
    [
        ("problem", pa.string()),
        ("source", pa.string()),
        ("rubrics", pa.string()),
        ("scores", pa.list_(pa.int64())),
        ("rewards", pa.list_(pa.float64())),
        ("num_rewards", pa.int64()),
        ("reward_mean", pa.float64()),
        ("reward_std", pa.float64()),
    ]
)


def _published_like(schema: pa.Schema, rebuilt: pa.Table) -> pa.Table:
    """A one-row table in the published schema (values taken from the rebuilt row)."""
    return pa.Table.from_pylist(rebuilt.slice(0, 1).to_pylist(), schema=schema)


def _check(rebuilt: pa.Table, schema: pa.Schema) -> None:
    assert rebuilt.schema.names == schema.names
    for got, want in zip(rebuilt.schema, schema):
        assert got.type.equals(want.type), f"{got.name}: {got.type} != {want.type}"
    published = _published_like(schema, rebuilt)
    both = pa.concat_tables([rebuilt.replace_schema_metadata(None), published])
    assert both.num_rows == rebuilt.num_rows + 1
    pl.concat([pl.from_arrow(rebuilt), pl.from_arrow(published)], how="vertical")  # strict: same schema


def test_sft_shards_concatenate_with_published(tmp_path):
    run = make_run(tmp_path / "sft", "sft")
    for config in ("default", "all"):
        (shard,) = sorted((run / "data" / config).glob("*.parquet"))
        _check(pq.read_table(shard), PUBLISHED_SFT)


def test_rl_shards_concatenate_with_published(tmp_path):
    run = make_run(tmp_path / "rl", "rl")
    (shard,) = sorted((run / "data" / "default").glob("*.parquet"))
    _check(pq.read_table(shard), PUBLISHED_RL)


def test_struct_order_matters_to_pyarrow():
    """Why the order is pinned: {role, content} does not concatenate with {content, role}."""
    a = pa.table(
        {
            "m": pa.array(
                [[{"role": "user", "content": "x"}]],
                pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
            )
        }
    )
    b = pa.table(
        {
            "m": pa.array(
                [[{"content": "x", "role": "user"}]],
                pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())])),
            )
        }
    )
    try:
        pa.concat_tables([a, b])
    except pa.ArrowInvalid:
        return
    raise AssertionError("pyarrow concatenated struct fields in another order")
