"""Markup normalisation: every source's markup becomes one plain LaTeX-in-text form.

- wiki: ``<math>``/``<cmath>`` → ``$``/``$$``, ``[[link|text]]`` → text, ``'''bold'''`` →
  bold, templates/categories/HTML tags dropped, entities unescaped;
- LaTeX: ``\\( \\)`` → ``$``, ``\\[ \\]`` and display environments → ``$$``;
- unicode math (≥, ≤, →, ℤ, ², …) → LaTeX commands (wrapped in ``$`` outside math);
- whitespace: line endings unified, runs of blanks collapsed, ≤ 1 empty line in a row;
- hygiene first (:func:`fineproofs.text.clean_text`): control characters, NULs, ANSI
  escapes, bidi overrides and zero-width characters removed; HTML reduced to text
  (:func:`fineproofs.text.html_to_text`: ``<script>``/``<iframe>`` with their content,
  ``on*=`` attributes, known tags).

Every step is linear in the text: paired delimiters are found with
:func:`fineproofs.text.replace_delimited` (an unterminated ``<math>``, ``\\(`` or
``\\begin{equation}`` is left as it is, never rescanned), so 1 MB of unterminated
openers costs what 1 MB of prose costs.

:func:`normalise_markup` is the pure function; :class:`MarkupNormaliser` is the
datatrove step applying it to the statement and every solution.
"""

from __future__ import annotations

import re

from datatrove.data import Document

from fineproofs.filters.base import ProblemStep
from fineproofs.text import clean_text, html_to_text, replace_delimited, split_math

_WIKI_MATH = re.compile(r"<math(?:\s[^<>]*)?>", re.I)
_WIKI_CMATH = re.compile(r"<cmath(?:\s[^<>]*)?>", re.I)
_MATH_CLOSE = re.compile(r"</math>", re.I)
_CMATH_CLOSE = re.compile(r"</cmath>", re.I)
_WIKI_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]")
_WIKI_CATEGORY = re.compile(r"\[\[Category:[^\[\]]*\]\]", re.I)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_BOLD_ITALIC = re.compile(r"'{2,5}")
_INLINE_PAREN = re.compile(r"\\\(")
_DISPLAY_BRACKET = re.compile(r"\\\[")
_DISPLAY_ENV = re.compile(r"\\begin\{(equation|align|gather|multline|eqnarray)(\*?)\}")

UNICODE_MATH = {
    "≥": r"\ge",
    "⩾": r"\ge",
    "≤": r"\le",
    "⩽": r"\le",
    "≠": r"\ne",
    "→": r"\to",
    "⟶": r"\to",
    "⇒": r"\Rightarrow",
    "⟹": r"\implies",
    "⇔": r"\iff",
    "∈": r"\in",
    "∉": r"\notin",
    "×": r"\times",
    "·": r"\cdot",
    "⋅": r"\cdot",
    "∞": r"\infty",
    "√": r"\sqrt",
    "∑": r"\sum",
    "∏": r"\prod",
    "ℤ": r"\mathbb{Z}",
    "ℕ": r"\mathbb{N}",
    "ℝ": r"\mathbb{R}",
    "ℚ": r"\mathbb{Q}",
    "ℂ": r"\mathbb{C}",
    "∣": r"\mid",
    "≡": r"\equiv",
    "±": r"\pm",
    "∠": r"\angle",
    "△": r"\triangle",
    "⊂": r"\subset",
    "⊆": r"\subseteq",
    "∪": r"\cup",
    "∩": r"\cap",
    "∀": r"\forall",
    "∃": r"\exists",
    "°": r"^\circ",
    "π": r"\pi",
    "α": r"\alpha",
    "β": r"\beta",
    "γ": r"\gamma",
    "δ": r"\delta",
    "θ": r"\theta",
    "λ": r"\lambda",
    "μ": r"\mu",
    "σ": r"\sigma",
    "φ": r"\varphi",
    "ω": r"\omega",
    "ε": r"\varepsilon",
    "−": "-",
    "–": "-",
    "∗": "*",
    "⌊": r"\lfloor",
    "⌋": r"\rfloor",
    "⌈": r"\lceil",
    "⌉": r"\rceil",
    "…": r"\dots",
    "⋯": r"\cdots",
}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹ⁿ", "0123456789n", strict=True))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789", strict=True))
_TEXT_PUNCT = {"“": '"', "”": '"', "‘": "'", "’": "'", "\u00a0": " ", "\u2009": " ", "\u200b": ""}
_UNI_RE = re.compile("|".join(map(re.escape, sorted(UNICODE_MATH, key=len, reverse=True))))
_SUP_RE = re.compile("[" + "".join(_SUPERSCRIPTS) + "]+")
_SUB_RE = re.compile("[" + "".join(_SUBSCRIPTS) + "]+")


def wiki_to_latex(text: str) -> str:
    """AoPS-wiki markup → LaTeX-in-text."""
    if "<" in text:
        text = replace_delimited(
            text, _WIKI_CMATH, lambda m: _CMATH_CLOSE, lambda m, body: "\n$$" + body.strip() + "$$\n"
        )
        text = replace_delimited(text, _WIKI_MATH, lambda m: _MATH_CLOSE, lambda m, body: "$" + body.strip() + "$")
    if "[[" in text:
        text = _WIKI_CATEGORY.sub("", text)
        text = _WIKI_LINK.sub(lambda m: m.group(1), text)
    for _ in range(3):  # nested templates
        if "{{" not in text:
            break
        text = _TEMPLATE.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    return html_to_text(text)


def unify_delimiters(text: str) -> str:
    r"""``\( \)`` → ``$ $``; ``\[ \]`` and equation-like environments → ``$$ $$``."""
    if "\\" not in text:
        return text
    text = replace_delimited(text, _DISPLAY_ENV, _env_closer, lambda m, body: "$$" + body.strip() + "$$")
    text = replace_delimited(text, _DISPLAY_BRACKET, lambda m: "\\]", lambda m, body: "$$" + body.strip() + "$$")
    return replace_delimited(text, _INLINE_PAREN, lambda m: "\\)", lambda m, body: "$" + body.strip() + "$")


def _env_closer(m: re.Match) -> str:
    return "\\end{" + m.group(1) + m.group(2) + "}"


def _uni_in_math(s: str) -> str:
    s = _SUP_RE.sub(lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group(0)) + "}", s)
    s = _SUB_RE.sub(lambda m: "_{" + "".join(_SUBSCRIPTS[c] for c in m.group(0)) + "}", s)
    return _UNI_RE.sub(lambda m: UNICODE_MATH[m.group(0)] + " ", s)


def unicode_math_to_latex(text: str) -> str:
    """Unicode math symbols → LaTeX; outside ``$`` they get their own ``$...$``."""
    for k, v in _TEXT_PUNCT.items():
        text = text.replace(k, v)
    parts = split_math(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # math
            out.append(_uni_in_math(part))
        else:
            part = _SUP_RE.sub(lambda m: "$^{" + "".join(_SUPERSCRIPTS[c] for c in m.group(0)) + "}$", part)
            part = _SUB_RE.sub(lambda m: "$_{" + "".join(_SUBSCRIPTS[c] for c in m.group(0)) + "}$", part)
            out.append(_UNI_RE.sub(lambda m: "$" + UNICODE_MATH[m.group(0)] + "$", part))
    return "".join(out)


def normalise_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = re.sub(r"[ \f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def normalise_markup(text: str) -> str:
    """Any source markup → one LaTeX-in-text form (idempotent), hygiene first."""
    text = wiki_to_latex(clean_text(text))
    text = unify_delimiters(text)
    text = unicode_math_to_latex(text)
    return normalise_whitespace(text)


class MarkupNormaliser(ProblemStep):
    """Normalise markup of the statement and of every solution; never drops."""

    name = "markup"

    def decide(self, doc: Document) -> tuple[bool, str]:
        doc.text = normalise_markup(doc.text)
        doc.metadata["solutions"] = [s for s in (normalise_markup(x) for x in doc.metadata.get("solutions", [])) if s]
        return True, ""
