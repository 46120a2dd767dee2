r"""Canonical token streams of a problem statement, shared by near-dup detection and
decontamination so both sides of every comparison are normalised the same way.

Pipeline: markup normalisation (wiki, ``\( \[``, unicode math) → LaTeX command
aliases (``\geq``→``ge``, ``\rightarrow``→``to``, ``\dfrac``→``frac``, font wrappers
unwrapped) → tokens. Prose words are lower-cased, lightly stemmed and mapped through
a synonym table (show/demonstrate → prove, determine → find, reals → real number);
articles and filler are dropped. In math, every single-letter variable becomes ``v``
in the *word stream* (robust to renamed variables); the *math stream* keeps only math
tokens, letters renamed by first appearance within each formula.

Before anything else the text is cleaned (:func:`fineproofs.text.clean_text`: controls,
bidi and zero-width characters) and look-alikes are folded
(:func:`fineproofs.text.fold_confusables`: full-width forms, mathematical alphanumerics,
Cyrillic/Greek letters that look Latin), so a disguised copy gives the same streams
as the original. The unicode math symbols the canonical form converts itself (``²``,
``ℝ``, ``…``) are kept for that conversion. Linear in the length of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fineproofs.filters.markup import (
    _SUB_RE,
    _SUBSCRIPTS,
    _SUP_RE,
    _SUPERSCRIPTS,
    _TEXT_PUNCT,
    _UNI_RE,
    UNICODE_MATH,
    unify_delimiters,
    wiki_to_latex,
)
from fineproofs.text import clean_text, fold_confusables, split_math

_WRAPPERS = re.compile(
    r"\\(?:mathbb|mathbf|mathcal|mathrm|mathit|mathsf|boldsymbol|text|textbf|textit|emph|operatorname|mbox|hbox)\s*\{([^{}]*)\}"
)
_ALIASES = {
    "geq": "ge",
    "geqslant": "ge",
    "leq": "le",
    "leqslant": "le",
    "neq": "ne",
    "rightarrow": "to",
    "longrightarrow": "to",
    "mapsto": "to",
    "dfrac": "frac",
    "tfrac": "frac",
    "ldots": "dots",
    "cdots": "dots",
    "dotsc": "dots",
    "dotsb": "dots",
    "vdots": "dots",
    "lvert": "|",
    "rvert": "|",
    "vert": "|",
    "mid": "|",
    "divides": "|",
    "lfloor": "floor",
    "rfloor": "floor",
    "lceil": "ceil",
    "rceil": "ceil",
    "varphi": "phi",
    "varepsilon": "epsilon",
    "le": "le",
    "ge": "ge",
    "ne": "ne",
    "to": "to",
    "implies": "to",
    "Rightarrow": "to",
    "gt": ">",
    "lt": "<",
    "binom": "binom",
    "choose": "binom",
    "over": "/",
    "dbinom": "binom",
    "tbinom": "binom",
}
_DROP_CMDS = {
    "left",
    "right",
    "displaystyle",
    "textstyle",
    "cdot",
    "times",
    "quad",
    "qquad",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "big",
    "Big",
    "limits",
    "nolimits",
    "hspace",
    "vspace",
    "medskip",
    "noindent",
    "circ",
}
_SYNONYMS = {
    "show": "prove",
    "demonstrate": "prove",
    "verify": "prove",
    "establish": "prove",
    "determine": "find",
    "compute": "find",
    "calculate": "find",
    "reals": "real",
    "naturals": "natural",
    "satisfying": "such",
    "satisfies": "such",
    "satisfy": "such",
    "where": "such",
    "which": "such",
    "wherein": "such",
    "fulfil": "such",
    "fulfill": "such",
    "fulfilling": "such",
    "holds": "hold",
    "holding": "hold",
    "nonnegative": "non-negative",
    "non negative": "non-negative",
    "whole": "integer",
    "smallest": "least",
    "minimal": "least",
    "minimum": "least",
    "largest": "greatest",
    "maximal": "greatest",
    "maximum": "greatest",
    "triangles": "triangle",
    "function": "function",
    "functions": "function",
    "arbitrary": "any",
    "every": "all",
    "each": "all",
    "any": "all",
    "colour": "color",
    "coloured": "colored",
    "colours": "color",
    "centre": "center",
    "neighbour": "neighbor",
    "painted": "colored",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "twelve": "12",
    "twenty": "20",
}
_STOP = {
    "a",
    "an",
    "the",
    "that",
    "is",
    "are",
    "be",
    "of",
    "so",
    "it",
    "its",
    "this",
    "these",
    "those",
    "then",
    "and",
    "also",
    "we",
    "you",
    "let",
    "given",
    "some",
    "there",
    "as",
    "such",
    "for",
    "to",
    "in",
    "on",
    "with",
    "by",
    "at",
    "which",
    "whose",
    "has",
    "have",
    "been",
    "do",
    "does",
    "can",
    "will",
    "please",
    "hi",
    "hey",
}
_NUMBER_KINDS = {
    "real",
    "natural",
    "rational",
    "complex",
    "prime",
    "positive",
    "negative",
    "non-negative",
    "odd",
    "even",
}
_NOT_AFTER_ARTICLE = {"be", "is", "are", "and", "or", "divides", "to", "in", "equals", "has", "with"}
_TOKEN = re.compile(r"\\[a-zA-Z]+|[a-zA-Z]+(?:-[a-zA-Z]+)*|\d+(?:\.\d+)?|[^\s\w{}\\$]")
# braces are tokens inside formulas (they group the terms of :attr:`Canonical.terms`), and
# dropped from every other stream
_MATH_TOKEN = re.compile(r"\\[a-zA-Z]+|[a-zA-Z]+|\d+(?:\.\d+)?|[^\s\w\\$]")
# \frac32, \frac1a: the one-character arguments TeX allows without braces
_BARE_FRAC = re.compile(r"\\([dt]?frac|binom)\s*([0-9A-Za-z])\s*([0-9A-Za-z])")
_KEEP = "".join(UNICODE_MATH) + "".join(_SUPERSCRIPTS) + "".join(_SUBSCRIPTS) + "".join(_TEXT_PUNCT)


@dataclass
class Canonical:
    words: list[str]  # full stream: prose words + math tokens (variables → "v")
    math: list[str]  # math tokens only, "|" between formulas, letters renamed per formula
    compact: str  # letters/digits of the canonical text, no spaces (char shingles)
    prose: list[str]  # prose words only (stemmed, synonyms, no stop words)
    anon: list[str]  # math tokens only, every letter → "v", no formula boundaries
    numbers: set[str]  # numeric constants (other than 0, 1, 2)
    # the terms of every formula: split at its top-level relations, signs and commas, every
    # letter → "v", numbers kept ("1+2^x+2^{2x+1}=y^2" → 2^v, 2^{2v+1}, v^2); the same
    # multiset whatever the order of the summands or the names of the variables
    terms: list[str] = field(default_factory=list)


def _stem(w: str) -> str:
    w = _SYNONYMS.get(w, w)
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return _SYNONYMS.get(w, w)


def _math_tokens(s: str) -> list[str]:
    out = []
    for t in _MATH_TOKEN.findall(s):
        if t.startswith("\\"):
            name = t[1:]
            if name in _DROP_CMDS:
                continue
            out.append(_ALIASES.get(name, name.lower()))
        elif t[0].isalpha() and len(t) > 1 and t.isalpha():
            out.extend(t.lower())  # "xy" in math is x*y; "abc" is a product / a triangle name
        elif t in "*":
            continue
        else:
            out.append(t.lower() if t.isalpha() else t)
    return out


# phrases a rewording swaps for one another, folded to one word before tokenising
_PHRASES = [
    (r"(?:cent(?:er|re)|middle) of (?:the |its )?(?:circumscribed circle|circumcircle)", "circumcenter"),
    (r"(?:cent(?:er|re)|middle) of (?:the |its )?(?:inscribed circle|incircle)", "incenter"),
    (r"(?:intersection|common point) of (?:the |its )?(?:three )?altitudes", "orthocenter"),
    (r"(?:relatively prime|co-prime)", "coprime"),
    (r"(?:perfect|full|exact) (square|cube)", r"\1"),
    (r"(square|cube) of an integer", r"\1"),
    (r"natural numbers?", "positive integer"),
    (r"whole numbers?", "integer"),
    (r"(?:is|are) (?:a )?multiples? of", "divisible by"),
    (r"greatest common divisor", "gcd"),
    (r"acute[- ]angled", "acute"),
    (r"at least", "least"),
    (r"no(?:t)? (?:more|greater) than", "most"),
    (r"at most", "most"),
]
_PHRASE_RE = [(re.compile(r"\b" + a + r"\b", re.I), b) for a, b in _PHRASES]


def canonical(text: str) -> Canonical:
    """Canonical streams of a statement (any markup)."""
    t = unify_delimiters(wiki_to_latex(fold_confusables(clean_text(text), keep=_KEEP)))
    for rx, rep in _PHRASE_RE:
        t = rx.sub(rep, t)
    for k, v in _TEXT_PUNCT.items():
        t = t.replace(k, v)
    t = _SUP_RE.sub(lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group(0)) + "}", t)
    t = _SUB_RE.sub(lambda m: "_{" + "".join(_SUBSCRIPTS[c] for c in m.group(0)) + "}", t)
    t = _UNI_RE.sub(lambda m: " " + UNICODE_MATH[m.group(0)] + " ", t)
    t = t.replace("\\\\", " ")
    t = _BARE_FRAC.sub(r"\\\1{\2}{\3}", t)
    t = re.sub(r"\\(?:mathbb|mathbf|mathcal|mathrm)\s+([A-Za-z])", r" \1 ", t)
    for _ in range(2):
        t = _WRAPPERS.sub(lambda m: " " + m.group(1) + " ", t)
    out = Canonical([], [], "", [], [], set(), [])
    compact: list[str] = []
    for i, part in enumerate(split_math(t)):
        if i % 2:  # a formula
            _add_formula(_math_tokens(part.strip("$")), out, compact)
            continue
        run: list[str] = []  # math written as plain text (forum copies)
        found = list(_TOKEN.finditer(part))
        toks = [m.group(0) for m in found]
        for j, tok in enumerate(toks):
            low = tok.lower()
            nxt = toks[j + 1].lower() if j + 1 < len(toks) else ""
            if tok.startswith("\\"):
                run.extend(_math_tokens(tok))
            elif tok[0].isalpha() and len(tok) > 1 and _mathy_word(tok, part, found[j]):
                run.extend(tok.lower())
            elif tok[0].isalpha() and len(tok) > 1:
                if run:
                    _add_formula(run, out, compact)
                    run = []
                w = _stem(low)
                compact.append(w)
                if w[0].isdigit():
                    out.numbers.add(w)
                if w == "number" and out.prose and out.prose[-1] in _NUMBER_KINDS:
                    continue  # "real numbers" = "reals"
                if w not in _STOP:
                    out.words.append(w)
                    out.prose.append(w)
            elif low in ("a", "i") and nxt.isalpha() and len(nxt) > 1 and nxt not in _NOT_AFTER_ARTICLE:
                if run:
                    _add_formula(run, out, compact)
                    run = []
            elif tok in ".,;:!?\"'`()[]":
                mathy_next = (len(nxt) == 1 and nxt.isalnum()) or nxt[:1].isdigit() or nxt[:1] == "\\"
                if (
                    (tok in "([" and (run or mathy_next))
                    or (tok in ")]" and run)
                    or (tok == "," and run and mathy_next)
                ):
                    run.append(tok)
                elif run:
                    _add_formula(run, out, compact)
                    run = []
            else:
                run.append(low)
        if run:
            _add_formula(run, out, compact)
    out.compact = "".join(compact)
    return out


def _add_formula(toks: list[str], out: Canonical, compact: list[str]) -> None:
    out.terms.extend(formula_terms(toks))
    toks = [x for x in toks if x not in ("{", "}")]
    while toks and toks[-1] in ".,;:":
        toks.pop()
    if not toks:
        return
    names: dict[str, str] = {}
    if out.math:
        out.math.append("|")
    for x in toks:
        if len(x) == 1 and x.isalpha():
            out.words.append("v")
            out.math.append(names.setdefault(x, "v" + str(len(names))))
            out.anon.append("v")
        else:
            out.math.append(x)
            if x not in (",", ".", ";", ":"):
                out.words.append(x)
                out.anon.append(x)
            if x[0].isdigit() and x not in ("0", "1", "2"):
                out.numbers.add(x)
    compact.extend(toks)


_OPEN, _CLOSE = {"(", "[", "{"}, {")", "]", "}"}
_RELATIONS = {"=", "<", ">", "le", "ge", "ne", "|", ",", ";", ":", "to", "in", "approx", "equiv", "sim", "cong"}
_SIGNS = {"+", "-", "pm", "mp"}
_TRIVIAL_TERMS = {"", "v", "0", "1", "2", "dots", "( v )", "( v , v )"}
_NAME_RUN = re.compile(r"(?:(?:angle|triangle|overline|arc|odot) )?v(?: v)*")


def _tree(toks: list[str]) -> list:
    """Tokens as nested lists: every bracket group (braces included) is a sub-list."""
    stack: list[list] = [[]]
    for x in toks:
        if x in _OPEN:
            stack.append([])
        elif x in _CLOSE:
            if len(stack) > 1:
                g = stack.pop()
                stack[-1].append(g)
        else:
            stack[-1].append("v" if len(x) == 1 and x.isalpha() else x)
    while len(stack) > 1:  # an unclosed group closes at the end
        g = stack.pop()
        stack[-1].append(g)
    return _fracs(stack[0])


def _fracs(items: list) -> list:
    """``frac A B`` → ``A / B`` (groups kept), recursively."""
    out: list = []
    i = 0
    while i < len(items):
        x = items[i]
        if x == "frac" and i + 2 < len(items):
            out += [_fracs(items[i + 1]) if isinstance(items[i + 1], list) else items[i + 1], "/"]
            out.append(_fracs(items[i + 2]) if isinstance(items[i + 2], list) else items[i + 2])
            i += 3
            continue
        out.append(_fracs(x) if isinstance(x, list) else x)
        i += 1
    return out


def _render(items: list) -> str:
    parts = []
    for x in items:
        if isinstance(x, list):
            inner = _render(x)
            # brackets only where they group a sum or a relation: a_{n}, \\frac{1}{a_n} and 1/a_n agree
            grouped = any(isinstance(y, str) and (y in _SIGNS or y in _RELATIONS) for y in x)
            parts.append(f"( {inner} )" if grouped else inner)
        else:
            parts.append(x)
    return " ".join(parts)


def _split(items: list, at: set) -> list[tuple[str, list]]:
    """Top-level pieces of ``items`` cut at the tokens of ``at``, each with the token before it."""
    out, cur, sep = [], [], ""
    for x in items:
        if isinstance(x, str) and x in at:
            out.append((sep, cur))
            cur, sep = [], x
        else:
            cur.append(x)
    out.append((sep, cur))
    return [(s, c) for s, c in out if c]


def _signed(side: list) -> list[str]:
    return [("-" if sign in ("-", "mp") else "+") + _render(term) for sign, term in _split(side, _SIGNS)]


def _operand(side: list) -> str:
    grouped = any(isinstance(y, str) and y in _SIGNS for y in side)
    return f"( {_render(side)} )" if grouped else _render(side)


def _flip(t: str) -> str:
    return ("-" if t[0] == "+" else "+") + t[1:]


def _expression(items: list, out: list[str], depth: int = 0) -> None:
    sides = _split(items, _RELATIONS)
    for k, (rel, side) in enumerate(sides):
        rendered = _signed(side)
        for _sign, term in _split(side, _SIGNS):
            t = _render(term)
            if t not in _TRIVIAL_TERMS and not _NAME_RUN.fullmatch(t):
                out.append(t)
            if depth < 2:
                for g in term:
                    if isinstance(g, list) and any(isinstance(y, str) and y in _SIGNS | _RELATIONS for y in g):
                        _expression(g, out, depth + 1)
        if len(rendered) > 1:  # the side up to the order of its summands
            out.append(" ".join(sorted(rendered)))
        if k == 0:
            continue
        prev = sides[k - 1][1]
        if rel == "=":  # an equation up to moving summands across and swapping its sides
            lhs = _signed(prev) + [_flip(t) for t in rendered]
            a, b = sorted(lhs), sorted(_flip(t) for t in lhs)
            out.append("eq " + " ".join(min(a, b)))
        elif rel == "|":  # a | b is b / a an integer
            out.append(_operand(side) + " / " + _operand(prev))


def formula_terms(toks: list[str]) -> list[str]:
    """The terms of one formula's tokens (see :attr:`Canonical.terms`): every summand of
    every side (relations ``= < ≤ | ,`` cut sides, ``+ -`` cut summands), every side with
    two summands or more as the sorted list of its signed summands, and the same inside
    bracket groups (two levels deep). Letters are anonymised, ``\\frac{a}{b}`` is
    ``a / b``; summands that are only names (``AB``, ``∠ABC``) or trivial are left out."""
    out: list[str] = []
    _expression(_tree(toks), out)
    return out


def _mathy_word(tok: str, part: str, m: re.Match) -> bool:
    """A short letter group written as plain text that is really math: point names
    (``ABC``), products (``xy``) glued to operators, brackets or digits."""
    if len(tok) > 4:
        return False
    if tok.isupper() and tok.isalpha():
        return True
    before = _neighbour(part, m.start() - 1, -1)
    after = _neighbour(part, m.end(), 1)
    ops = "=+-*/^_<>|"
    glued = (m.start() and part[m.start() - 1] in "()[]0123456789") or (
        m.end() < len(part) and part[m.end()] in "()[]0123456789"
    )
    return before in ops or after in ops or bool(glued)


def _neighbour(text: str, i: int, step: int) -> str:
    """The first non-space character from ``i`` walking by ``step`` (" " at either end).
    Only the blank run next to a token is walked, so all calls together stay linear."""
    while 0 <= i < len(text) and text[i].isspace():
        i += step
    return text[i] if 0 <= i < len(text) else " "


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def shingles(s: str, k: int) -> set[str]:
    if len(s) < k:
        return {s} if s else set()
    return {s[i : i + k] for i in range(len(s) - k + 1)}
