"""Robustness of the parsers and normalisers on generated hostile text: no exception,
no hang (1 MB of adversarial input parses well within a generous bound), and the
linear scanners agree with the regexes they replace on ordinary text."""

from __future__ import annotations

import random
import re
import time

import pytest

from fineproofs.filters.canonical import canonical
from fineproofs.filters.language import english_score
from fineproofs.filters.latex import latex_problem
from fineproofs.filters.markup import normalise_markup
from fineproofs.pipelines.sources.booklet import split_booklet
from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.pipelines.sources.wiki import parse_wiki_page
from fineproofs.text import clean_text, fold_confusables, html_to_text, replace_delimited, split_math

OPENERS = [
    "<math>",
    "<cmath>",
    "[[a|",
    "\\(",
    "\\[",
    "\\begin{problem}",
    "\\begin{equation}",
    "\\begin{enumerate}",
    "\\item[",
    "\\label{",
    "<br ",
    "[[Category:",
    "$$",
    "$",
    "{{",
    "<math ",
    "\\begin{problem}[",
    "==",
    "Problem 1. ",
    "<b onclick=",
    "&lt;",
    "\\begin{document}",
    "%",
    "\\section{",
]
PROSE = ["Prove that", "for all", "$n$", "$a^2+b^2\\ge 2ab$", "triangle $ABC$", "Let", "x", "Solution.", "(", ")"]
BLANKS = [" ", "\n", " " * 200, "\n" * 100, "\t"]
BOUND_S = 5.0  # a hang guard, not a speed target (that is bench/bench_parsers.py)


def hostile(n: int, seed: int) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n:
        r = rng.random()
        piece = rng.choice(OPENERS) if r < 0.4 else rng.choice(BLANKS) if r < 0.55 else rng.choice(PROSE) + " "
        out.append(piece)
        size += len(piece)
    return "".join(out)[:n]


def one_opener(opener: str, n: int = 1 << 20) -> str:
    return (opener + "x ") * (n // (len(opener) + 2))


PARSERS = {
    "normalise_markup": normalise_markup,
    "canonical": canonical,
    "latex_problem": latex_problem,
    "english_score": english_score,
    "split_booklet": split_booklet,
    "wiki": lambda t: _wiki(t),
}


def _wiki(t: str):
    try:
        return parse_wiki_page("==Problem==\n" + t + "\n==Solution==\n" + t)
    except ParseError:
        return None


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_one_mb_of_mixed_openers_is_fast(name):
    text = hostile(1 << 20, seed=7)
    t0 = time.perf_counter()
    PARSERS[name](text)
    assert time.perf_counter() - t0 < BOUND_S


@pytest.mark.parametrize(
    "opener",
    [
        "<math>",
        "[[a|",
        "\\(",
        "\\begin{problem}",
        "\\begin{equation}",
        "<cmath>",
        "\\begin{enumerate}",
        "\\item[",
        "\\label{",
        "<br ",
        "\\begin{problem}[",
        "$$ $",
    ],
)
def test_one_mb_of_one_unterminated_opener(opener):
    text = one_opener(opener)
    t0 = time.perf_counter()
    normalise_markup(text)
    split_booklet(text)
    latex_problem(text)
    assert time.perf_counter() - t0 < BOUND_S


def test_canonical_of_a_large_statement_is_linear():
    small, big = hostile(64 << 10, 1), hostile(1 << 20, 1)
    t0 = time.perf_counter()
    canonical(small)
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    canonical(big)
    t_big = time.perf_counter() - t0
    assert t_big < BOUND_S
    assert t_big < 16 * 8 * max(t_small, 1e-3)  # 16x the input; quadratic would be 256x


@pytest.mark.parametrize("seed", range(40))
def test_random_mutations_never_raise(seed):
    rng = random.Random(seed)
    base = hostile(4000, seed)
    chars = list(base)
    for _ in range(50):  # byte flips, control characters, surrogates, bidi, truncation
        i = rng.randrange(len(chars))
        chars[i] = rng.choice(["\x00", "\x1b[31m", "\u202e", "\u200b", "\ud800", "\ufeff", "é", "＄", "<script>", "}"])
    text = "".join(chars)[: rng.randrange(1, len(chars))]
    for fn in PARSERS.values():
        fn(text)
    out = normalise_markup(text)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff\ud800-\udfff]", out)
    out.encode("utf-8")  # no lone surrogate survives


def _regex_split(text: str) -> list[str]:
    return re.split(r"(\$\$.*?\$\$|\$.*?\$)", text, flags=re.S)


@pytest.mark.parametrize("seed", range(200))
def test_split_math_agrees_with_the_regex(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(["$", "$$", "a", " ", "\n", "b$c"]) for _ in range(rng.randrange(0, 30)))
    assert split_math(text) == _regex_split(text)


@pytest.mark.parametrize("seed", range(200))
def test_replace_delimited_agrees_with_the_lazy_regex(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(["<math>", "</math>", "x", " ", "\n", "<"]) for _ in range(rng.randrange(0, 25)))
    want = re.sub(r"<math>(.*?)</math>", lambda m: "[" + m.group(1) + "]", text, flags=re.S)
    got = replace_delimited(text, re.compile("<math>"), lambda m: "</math>", lambda m, body: "[" + body + "]")
    assert got == want


def test_html_is_reduced_to_text():
    bad = (
        '<script>alert(1)</script>Prove <b onclick="x()">that</b> <img src=x onerror=alert(1)> $a<b$ and '
        '$c>d$. <iframe src="http://evil"></iframe><svg onload=alert(1)>x</svg> &lt;script&gt;alert(2)&lt;/script&gt;'
        '<div onmouseover="y">z</div>'
    )
    out = normalise_markup(bad)
    assert "script" not in out.lower() and "iframe" not in out.lower() and "onerror" not in out
    assert "onclick" not in out and "onload" not in out and "alert" not in out and "onmouseover" not in out
    assert "Prove that" in out and "$a<b$ and $c>d$" in out and "z" in out
    assert html_to_text("<script>never closed ... everything after") == " "


def test_hygiene_removes_invisible_and_control_characters():
    text = "Pro\u200bve\x00 that \x1b[1;31m$x$\x1b[0m is \u202epositive\u202c\u2066.\x07"
    assert clean_text(text) == "Prove that $x$ is positive."
    assert normalise_markup(text) == "Prove that $x$ is positive."


def test_confusables_fold_to_ascii():
    assert fold_confusables("Рrоvе thаt ＡＢＣ is ｅｑｕｉｌａｔｅｒａｌ") == "Prove that ABC is equilateral"
    assert fold_confusables("x² … ℝ", keep="²…ℝ") == "x² … ℝ"
    assert canonical("Рrоvе thаt $ｘ^2 \\ge 0$").words == canonical("Prove that $x^2 \\ge 0$").words


def test_valid_markup_unchanged():
    text = "Let <math>x>0</math>. Show [[Inequality|that]] \\(x^2>0\\) and \\begin{equation}y=1\\end{equation}."
    assert normalise_markup(text) == "Let $x>0$. Show that $x^2>0$ and $$y=1$$."
    booklet = (
        "\\begin{problem}[A1] P1 \\end{problem}\\begin{problem} unterminated" + "\\begin{problem}[B2] P2 \\end{problem}"
    )
    assert [i.label for i in split_booklet(booklet)] == ["A1", "Problem 2"]  # as the lazy regex paired them
