"""Row-level isolation of the sources on generated broken inputs: valid JSONL / CSV /
parquet / booklet sources with seeded random mutations. No exception escapes, every
row that was not mutated survives, every mutated row is quarantined with a reason
(and its line), and what survives goes through a strict JSON writer."""

from __future__ import annotations

import json
import os
import random

import orjson
import pytest

from fineproofs.errors import DataError
from fineproofs.pipelines.sources import SourceReader, resolve_sources
from fineproofs.tables import iter_table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

JSONL_BAD = {
    "non_object": b"[1, 2, 3]",
    "deep": b"[" * 3000 + b"]" * 3000,
    "deep_object": b'{"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 40 + b', "problem": "deep"}',
    "huge_number": b'{"problem": "p", "n": ' + b"7" * 5000 + b"}",
    "latin1": '{"problem": "Café problem"}'.encode("latin-1"),
    "surrogate": b'{"problem": "lone \\ud800 surrogate"}',
    "year_1e30": b'{"problem": "Prove the year.", "year": 1e30}',
    "year_bool": b'{"problem": "Prove the bool.", "year": true}',
    "list_problem": b'{"problem": ["Prove a list."]}',
    "struct_problem": b'{"problem": {"text": "Prove a struct."}}',
    "truncated": b'{"problem": "Prove that trunc',
    "garbage": b"\x00\x01\x02 not json",
}
CSV_BAD = {
    "extra_field": b"Prove extra,sol,2001,EXTRA",
    "unterminated": b'"Prove unterminated,sol,2002',
    "latin1": "Prove café,sol,2003".encode("latin-1"),
    "misplaced_quote": b'Prove "x" quoted,"a"b,2004',
    "missing_field": b"Prove missing",
    "year_huge": b"Prove huge year,sol,1e30",
}


def _good(i: int) -> str:
    return f"Prove that {i} plus $x_{{{i}}}$ is an integer for all integers $x$."


def read(path, **kw):
    return list(SourceReader(resolve_sources([str(path)]), **kw).run())


def _assert_writable(docs):
    for d in docs:
        orjson.dumps({"text": d.text, "id": d.id, "metadata": d.metadata})  # the datatrove JSONL writer


@pytest.mark.parametrize("seed", range(6))
def test_jsonl_mutations_cost_one_row_each(tmp_path, seed):
    rng = random.Random(seed)
    good = [json.dumps({"problem": _good(i), "solution": "Easy.", "year": 2000 + i % 20}).encode() for i in range(30)]
    bad = rng.sample(sorted(JSONL_BAD), k=rng.randrange(3, len(JSONL_BAD)))
    lines = good + [JSONL_BAD[b] for b in bad]
    rng.shuffle(lines)
    f = tmp_path / "src.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    docs = read(f)
    kept = [d for d in docs if not d.metadata.get("raw_error")]
    errors = [d for d in docs if d.metadata.get("raw_error")]
    assert sorted(d.text for d in kept) == sorted(_good(i) for i in range(30))
    assert len(errors) == len(bad)
    for d in errors:
        assert d.metadata["raw_error"].split(":")[0] in {
            "malformed_json",
            "too_deep",
            "number_out_of_range",
            "non_utf8",
            "lone_surrogate",
            "bad_field",
        }
        assert d.metadata["locator"].rsplit("#L", 1)[1].isdigit()  # the line
    _assert_writable(docs)
    assert all("b'" not in d.text and "{'text'" not in d.text and "['" not in d.text for d in kept)


@pytest.mark.parametrize("seed", range(6))
def test_csv_mutations_cost_one_row_each(tmp_path, seed):
    rng = random.Random(seed)
    good = [f'"{_good(i)}","Multi-line\nsolution {i}.",{2000 + i % 20}'.encode() for i in range(30)]
    bad = rng.sample(sorted(CSV_BAD), k=rng.randrange(2, len(CSV_BAD)))
    lines = good + [CSV_BAD[b] for b in bad]
    rng.shuffle(lines)
    header = ("\ufeff" if seed % 2 else "") + "problem,solution,year"
    f = tmp_path / "src.csv"
    f.write_bytes(header.encode() + b"\n" + b"\n".join(lines) + b"\n")
    docs = read(f)
    kept = {d.text for d in docs if not d.metadata.get("raw_error")}
    errors = [d.metadata["raw_error"] for d in docs if d.metadata.get("raw_error")]
    assert {_good(i) for i in range(30)} <= kept  # no good row lost, BOM or not
    assert not kept - {_good(i) for i in range(30)}  # no bad row kept
    assert len(errors) >= len(bad) and all(
        e.split(":")[0] in {"malformed_csv", "non_utf8", "bad_field"} for e in errors
    )
    _assert_writable(docs)


def test_parquet_wrong_types_are_quarantined_not_stringified(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": [_good(1), _good(2)], "solution": [["a"], ["b"]]}), tmp_path / "ok.parquet")
    pq.write_table(pa.table({"problem": [b"binary", b"more"]}), tmp_path / "binary.parquet")
    pq.write_table(pa.table({"problem": [{"text": "struct"}]}), tmp_path / "struct.parquet")
    pq.write_table(pa.table({"problem": [["a list"]]}), tmp_path / "list.parquet")
    pq.write_table(pa.table({"problem": [_good(3), _good(4)], "year": [2001.0, 1e30]}), tmp_path / "year.parquet")
    docs = read(tmp_path)
    kept = sorted(d.text for d in docs if not d.metadata.get("raw_error"))
    assert kept == [_good(1), _good(2), _good(3)]
    errors = sorted(d.metadata["raw_error"] for d in docs if d.metadata.get("raw_error"))
    assert len(errors) == 5 and all(e.startswith("bad_field") for e in errors)
    assert (
        any("binary" in e for e in errors) and any("struct" in e for e in errors) and any("list" in e for e in errors)
    )
    _assert_writable(docs)


@pytest.mark.parametrize("seed", range(5))
def test_a_bad_byte_in_a_booklet_costs_one_problem(tmp_path, seed):
    rng = random.Random(seed)
    probs = [
        f"\\begin{{problem}}[P{i}] {_good(i)} \\end{{problem}}\n\\begin{{solution}}S{i}.\\end{{solution}}\n"
        for i in range(12)
    ]
    victim = rng.randrange(12)
    data = bytearray(("\\begin{document}\n" + "".join(probs) + "\\end{document}\n").encode())
    at = data.index(f"[P{victim}]".encode()) + 8
    data[at : at + 1] = bytes([rng.choice([0xE9, 0xFF, 0x80, 0xC3])])
    f = tmp_path / "nlo_2022_booklet.tex"
    f.write_bytes(bytes(data))
    docs = read(f)
    errors = [d for d in docs if d.metadata.get("raw_error")]
    assert len(errors) == 1 and errors[0].metadata["raw_error"].startswith("non_utf8")
    assert errors[0].metadata["locator"].endswith(f"#P{victim}")
    assert len(docs) == 12
    _assert_writable(docs)


def test_table_reader_whole_file_errors_are_data_errors(tmp_path):
    os.mkfifo(tmp_path / "fifo.jsonl")
    for bad in (tmp_path / "missing.csv", tmp_path / "fifo.jsonl", tmp_path, tmp_path / "x.xlsx"):
        with pytest.raises(DataError):
            list(iter_table(bad))
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="repeats"):
        list(iter_table(tmp_path / "dup.csv"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(DataError):
        list(iter_table(tmp_path / "broken.parquet"))
    with pytest.raises(DataError, match="regular file"):  # refused at the edge instead of blocking
        resolve_sources([str(tmp_path / "fifo.jsonl")])


def test_metadata_values_are_sanitised(tmp_path):
    row = {"problem": _good(1), "competition": "<script>alert(1)</script>IMO\u202e 2020", "category": "Alg\x00ebra"}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    (d,) = read(tmp_path / "m.jsonl")
    assert d.metadata["competition"] == "IMO" and d.metadata["year"] == 2020 and d.metadata["category"] == "Algebra"
