"""One filter per concern, as datatrove steps, with their quarantine."""

from __future__ import annotations

import json

from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter

from fineproofs.filters import (
    FigureDependence,
    LanguageFilter,
    LatexSanity,
    LengthFilter,
    MarkupNormaliser,
    MultiPartDetector,
    QuestionTypeClassifier,
    StatementSolutionSeparator,
    normalise_markup,
)
from fineproofs.filters.answers import normalise_answer, same_answer
from fineproofs.filters.canonical import canonical
from fineproofs.filters.classify import classify
from fineproofs.filters.dedup import CanonicalMinhashSignature, minhash_config
from fineproofs.filters.latex import latex_problem


def doc(text, **meta):
    return Document(text=text, id="d", metadata={"solutions": [], **meta})


def run(step, docs):
    return list(step.run(iter(docs)))


def test_markup_normalisation():
    assert normalise_markup("Let <math>x\\ge 1</math> and\n<cmath>x^2=1</cmath>") == "Let $x\\ge 1$ and\n\n$$x^2=1$$"
    assert normalise_markup(r"If \(a\) then \[b\] and \begin{align*}c\end{align*}") == "If $a$ then $$b$$ and $$c$$"
    assert (
        normalise_markup("For x ≥ 2 and f: ℤ → ℤ, x² ≠ 3")
        == r"For x $\ge$ 2 and f: $\mathbb{Z}$ $\to$ $\mathbb{Z}$, x$^{2}$ $\ne$ 3"
    )
    assert (
        normalise_markup("[[Pigeonhole Principle|pigeonhole]] '''bold''' &lt; {{box|x}}  a\n\n\n\nb")
        == "pigeonhole bold < a\n\nb"
    )
    once = normalise_markup("Let <math>x</math> be \\(y\\)")
    assert normalise_markup(once) == once
    d = doc("<math>x</math> is real", solutions=["<math>y</math>.", "   "])
    run(MarkupNormaliser(), [d])
    assert d.text == "$x$ is real" and d.metadata["solutions"] == ["$y$."]


def test_broken_latex_is_quarantined(tmp_path):
    assert latex_problem(r"$\frac{a}{b$") == "unbalanced_braces"
    assert latex_problem("cost \\$5 and $x$") == ""
    assert latex_problem("$x") == "unbalanced_dollars"
    assert latex_problem(r"\begin{cases} x") == "unclosed_environment"
    q = JsonlWriter(str(tmp_path), output_filename="${rank}.jsonl", compression=None)
    kept = run(LatexSanity(q), [doc("$x$ fine"), doc("$x broken")])
    assert [d.text for d in kept] == ["$x$ fine"]
    rows = [json.loads(x) for x in (tmp_path / "00000.jsonl").read_text().splitlines()]
    assert rows[0]["metadata"]["filter_reason"] == "broken_latex: unbalanced_dollars"
    assert rows[0]["metadata"]["decisions"][-1] == {
        "step": "latex",
        "kept": False,
        "reason": "broken_latex: unbalanced_dollars",
    }


def test_statement_solution_separation():
    d = doc("Prove that $x>0$.\nSolution: Since $x=1$, done.", solutions=["Answer: $42$.\nBecause."])
    run(StatementSolutionSeparator(), [d])
    assert d.text == "Prove that $x>0$." and d.metadata["solutions"][0] == "Since $x=1$, done."
    assert d.metadata["answer"] == "$42$"


def test_answers_with_sympy():
    assert (
        same_answer(r"\frac{1}{2}", "0.5")
        and same_answer("$2^{10}$", "1024")
        and same_answer(r"\boxed{3\sqrt{2}}", r"\sqrt{18}")
    )
    assert normalise_answer("proof") is None and normalise_answer("all primes p") is None
    assert not same_answer("3", "4")


def test_classification():
    assert classify("Prove that $n^2\\ge 0$.") == "proof"
    assert classify("Find all functions $f$ such that ...") == "proof"
    assert classify("Find the number of positive divisors of $2024$.", "16", "math-word-problem") == "answer"
    assert classify("How many primes are below $20$?") == "answer"
    assert classify("Let $x=3$.", "7") == "answer"
    d = doc("Compute $1+1$.", answer="2")
    assert run(QuestionTypeClassifier(keep=("proof",)), [d]) == []
    assert d.metadata["question_type"] == "answer" and d.metadata["answer_normalised"] == "2"


def test_multipart_and_figure():
    parts = doc("Let $n\\ge1$.\n(a) Prove $n>0$.\n(b) Prove $n\\ne 0$.")
    assert run(MultiPartDetector(), [parts]) == [parts] and parts.metadata["multi_part"]
    assert run(MultiPartDetector(drop=True), [doc("(i) one (ii) two")]) == []
    fig = doc("In the figure below, $ABCD$ is a square. Prove that $AC=BD$.")
    assert run(FigureDependence(), [fig]) == [] and fig.metadata["decisions"][-1]["reason"].startswith(
        "figure_dependent"
    )
    assert run(FigureDependence(), [doc("Prove $AC=BD$.\n[asy]draw(A--B);[/asy]")]) == []
    ok = doc("Let $ABCD$ be a square. Prove that $AC=BD$.")
    assert run(FigureDependence(), [ok]) == [ok]


def test_language_and_length():
    en = doc("Let $n$ be a positive integer. Prove that $n^2+n$ is even for every such number.")
    fr = doc("Soit $n$ un entier positif. Montrer que $n^2+n$ est pair pour tout entier naturel donné.")
    ru = doc("Докажите, что $n^2+n$ чётно для любого натурального $n$.")
    assert run(LanguageFilter(), [en, fr, ru]) == [en]
    assert fr.metadata["decisions"][-1]["reason"].startswith("not_english")
    assert [
        d.text for d in run(LengthFilter(min_chars=5, max_chars=20), [doc("abc"), doc("abcdefgh"), doc("x" * 30)])
    ] == ["abcdefgh"]


def test_canonical_is_markup_and_renaming_invariant():
    a = canonical(r"Find all functions $f:\mathbb{Z}\to\mathbb{Z}$ with \[f(2x)+2f(y)=f(f(x+y)).\]")
    b = canonical("find all functions g: ℤ → ℤ with g(2a)+2g(b)=g(g(a+b))")
    c = canonical(
        "Find all functions <math>h:\\mathbb{Z}\\rightarrow\\mathbb{Z}</math> with <math>h(2p)+2h(q)=h(h(p+q))</math>."
    )
    assert a.words == b.words == c.words
    assert a.anon == b.anon == c.anon


def test_minhash_signature_uses_canonical_tokens(tmp_path):
    cfg = minhash_config(0.7)
    sig = CanonicalMinhashSignature(str(tmp_path), cfg)
    s1 = sig.get_shingles("Let $a,b,c$ be positive reals with $a+b+c=3$. Show that $a^2+b^2+c^2\\geq 3$.")
    s2 = sig.get_shingles(
        "Let <math>x,y,z</math> be positive real numbers such that <math>x+y+z=3</math>. Prove that <math>x^2+y^2+z^2\\ge 3</math>."
    )
    assert set(s1.ravel()) == set(s2.ravel()) and s1.size > 5
    assert cfg.hash_config.hash_fc == "sha1" and abs((1 / cfg.num_buckets) ** (1 / cfg.hashes_per_bucket) - 0.7) < 0.02
