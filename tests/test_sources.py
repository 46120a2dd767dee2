"""Source parsers and readers: wiki pages, LaTeX / PDF-text booklets, Hub datasets
through ``datasets`` (offline, local files), local tables, and broken inputs."""

from __future__ import annotations

import json
import os

import pytest

from fineproofs.pipelines.sources import ParseError, SourceReader, resolve_sources
from fineproofs.pipelines.sources.booklet import booklet_fields, split_booklet
from fineproofs.pipelines.sources.rows import map_row
from fineproofs.pipelines.sources.wiki import parse_wiki_page, title_fields, wiki_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_all(paths, **kw):
    return list(SourceReader(resolve_sources([str(p) for p in paths]), **kw).run())


def test_wiki_sections():
    text = "==Problem==\nP.\n==Solutions==\nLemma.\n===Solution 1===\nA.\n===Solution 2===\nB.\n==Video Solution==\nv\n==See Also==\nx"
    statement, sols = parse_wiki_page(text)
    assert statement == "P." and sols == ["Lemma.\n\nA.", "Lemma.\n\nB."]
    with pytest.raises(ParseError) as e:
        parse_wiki_page("#REDIRECT [[Somewhere]]")
    assert e.value.reason == "redirect"
    with pytest.raises(ParseError):
        parse_wiki_page("just text, no sections")
    assert title_fields("2021 USAMO Problems/Problem 3") == ("USAMO", 2021)
    assert (
        wiki_url("2021 USAMO Problems/Problem 3")
        == "https://artofproblemsolving.com/wiki/index.php/2021_USAMO_Problems/Problem_3"
    )


def test_booklet_layouts():
    envs = r"""\begin{document}\section{Algebra}
\begin{problem}[A1] Prove $x^2\ge0$. \end{problem}
\begin{solution} Squares. \end{solution}
\begin{problem} Show that:
\begin{enumerate}\item $a>0$; \item $b>0$.\end{enumerate}
\end{problem}
\begin{proof} Both. \end{proof}
\end{document}"""
    items = split_booklet(envs)
    assert [(i.label, i.category, len(i.solutions)) for i in items] == [
        ("A1", "Algebra", 1),
        ("Algebra 2", "Algebra", 1),
    ]
    assert "(a) $a>0$;" in items[1].statement and "(b) $b>0$." in items[1].statement
    sections = (
        r"\section*{Problem 1} Prove it. % a comment"
        + "\n"
        + r"\subsection*{Solution} Done. \section*{Problem 2} Again."
    )
    items = split_booklet(sections)
    assert [(i.label, i.statement, i.solutions) for i in items] == [
        ("Problem 1", "Prove it.", ["Done."]),
        ("Problem 2", "Again.", []),
    ]
    pdf = "Problem 1. Prove that 1+1=2.\nSolution. Count.\nProblem 2. Show that 2 is prime.\nProof: It is.\n"
    items = split_booklet(pdf)
    assert [(i.label, i.statement, i.solutions) for i in items] == [
        ("1", "Prove that 1+1=2.", ["Count."]),
        ("2", "Show that 2 is prime.", ["It is."]),
    ]
    assert booklet_fields("imo_2019_shortlist.tex") == ("IMO", 2019)


def test_demo_sources_read():
    docs = list(SourceReader(resolve_sources(["demo"])).run())
    assert len(docs) == 42
    assert all(d.metadata["licence"] == "Apache-2.0 (fineproofs demo data)" for d in docs)
    kinds = {d.metadata["source"] for d in docs}
    assert {"demo_wiki", "demo_booklet"} <= kinds


def test_hub_dataset_through_datasets_offline(tmp_path):
    import datasets

    rows = [
        {"question": "Prove that $2+2=4$.", "worked": "Add.", "contest": "XYZ 2001", "kind": "proof"},
        {"question": "Prove that $3>2$.", "worked": "Compare.", "contest": "XYZ 2002", "kind": "proof"},
    ]
    d = tmp_path / "hubds"
    d.mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(d / "train-00000.parquet"))
    cols = {"problem": "question", "solution": "worked", "competition": "contest", "question_type": "kind"}
    docs = read_all([], columns=cols)  # nothing
    assert docs == []
    docs = list(SourceReader(resolve_sources([f"hf:{d}"]), columns=cols).run())
    assert [x.text for x in docs] == ["Prove that $2+2=4$.", "Prove that $3>2$."]
    assert docs[0].metadata["solutions"] == ["Add."] and docs[0].metadata["competition"] == "XYZ"
    assert docs[0].metadata["year"] == 2001 and docs[0].metadata["source"] == "hub"
    jl = tmp_path / "jsonl_ds"
    jl.mkdir()
    (jl / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    docs = list(SourceReader(resolve_sources([f"hf:{jl}@train"]), columns=cols).run())
    assert len(docs) == 2 and docs[1].metadata["year"] == 2002


def test_local_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text('problem,solution,answer\n"Prove $1<2$.",Obvious.,proof\n')
    pq.write_table(pa.table({"problem": ["Prove $5>4$."], "solution": [["One.", "Two."]]}), tmp_path / "b.parquet")
    docs = read_all([tmp_path])
    by = {d.text: d for d in docs}
    assert by["Prove $1<2$."].metadata["answer"] == "" and by["Prove $1<2$."].metadata["solutions"] == ["Obvious."]
    assert by["Prove $5>4$."].metadata["solutions"] == ["One.", "Two."]
    assert map_row({"problem": "x", "competition": "IMO 2020"})["year"] == 2020


def test_broken_inputs_become_error_docs(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"problem": "ok $x$"}\n{not json\n{"problem": "caf\xe9"}\n[1,2]\n')
    (tmp_path / "latin1.wiki").write_bytes("==Problem==\nCaf\xe9".encode("latin-1"))
    (tmp_path / "huge.tex").write_text("x" * 2000)
    (tmp_path / "empty.tex").write_text("")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    docs = read_all([tmp_path], max_bytes=1000)
    errors = sorted(d.metadata["raw_error"].split(":")[0] for d in docs if d.metadata.get("raw_error"))
    assert errors == [
        "malformed_json",
        "malformed_json",
        "no_problems_found",
        "non_utf8",
        "non_utf8",
        "too_large",
        "unreadable",
    ]
    assert [d.text for d in docs if not d.metadata.get("raw_error")] == ["ok $x$"]
