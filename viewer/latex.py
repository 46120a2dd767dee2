"""LaTeX to readable HTML, on the server, with no script and no network.

Why server-side and home-made: the PyPI packages that ship KaTeX or MathJax assets
were checked; each is unusable as a dependency of a dataset tool (``sphinx-mathjax-offline``
and ``sphinxcontrib-katex`` pull in Sphinx and the latter lacks KaTeX's CSS and fonts;
``pykatex`` is an alpha C extension built for one Python version; ``jupyter-server-mathjax``
needs a Jupyter server). Rendering here keeps the page free of scripts for math, so the
Content-Security-Policy stays strict.

What it does: text outside math is HTML-escaped; math (``$..$``, ``$$..$$``, ``\\(..\\)``,
``\\[..\\]``, ``\\begin{align*}..\\end{align*}`` and friends) is parsed into a small tree
and written as HTML: Greek letters and operators as Unicode, ``^``/``_`` as
``<sup>``/``<sub>``, ``\\frac`` as a stacked fraction, ``\\sqrt`` with an overline,
``\\mathbb`` as double-struck letters, ``\\text`` upright. Unknown commands are shown as
written (``\\foo``), so nothing is lost. Every character of the input reaches the page
through :func:`html.escape`; hostile input cannot produce markup.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

MAX_DEPTH = 40  # deeper nesting is shown as written
_ESC = html.escape

SYMBOLS = {
    # Greek
    **dict(
        zip(
            [
                "alpha",
                "beta",
                "gamma",
                "delta",
                "epsilon",
                "varepsilon",
                "zeta",
                "eta",
                "theta",
                "vartheta",
                "iota",
                "kappa",
                "lambda",
                "mu",
                "nu",
                "xi",
                "pi",
                "varpi",
                "rho",
                "varrho",
                "sigma",
                "varsigma",
                "tau",
                "upsilon",
                "phi",
                "varphi",
                "chi",
                "psi",
                "omega",
                "Gamma",
                "Delta",
                "Theta",
                "Lambda",
                "Xi",
                "Pi",
                "Sigma",
                "Upsilon",
                "Phi",
                "Psi",
                "Omega",
            ],
            "αβγδεεζηθϑικλμνξπϖρϱσςτυϕφχψωΓΔΘΛΞΠΣΥΦΨΩ",
            strict=True,
        )
    ),
    # relations
    "le": "≤",
    "leq": "≤",
    "ge": "≥",
    "geq": "≥",
    "neq": "≠",
    "ne": "≠",
    "leqslant": "⩽",
    "geqslant": "⩾",
    "ll": "≪",
    "gg": "≫",
    "equiv": "≡",
    "approx": "≈",
    "sim": "∼",
    "simeq": "≃",
    "cong": "≅",
    "propto": "∝",
    "in": "∈",
    "notin": "∉",
    "ni": "∋",
    "subset": "⊂",
    "subseteq": "⊆",
    "supset": "⊃",
    "supseteq": "⊇",
    "subsetneq": "⊊",
    "mid": "∣",
    "nmid": "∤",
    "parallel": "∥",
    "perp": "⊥",
    "prec": "≺",
    "succ": "≻",
    # arrows
    "to": "→",
    "rightarrow": "→",
    "leftarrow": "←",
    "Rightarrow": "⇒",
    "Leftarrow": "⇐",
    "implies": "⟹",
    "impliedby": "⟸",
    "iff": "⟺",
    "Leftrightarrow": "⇔",
    "leftrightarrow": "↔",
    "mapsto": "↦",
    "longrightarrow": "⟶",
    "uparrow": "↑",
    "downarrow": "↓",
    # operators
    "cdot": "·",
    "times": "×",
    "div": "÷",
    "pm": "±",
    "mp": "∓",
    "ast": "∗",
    "star": "⋆",
    "circ": "∘",
    "bullet": "•",
    "oplus": "⊕",
    "otimes": "⊗",
    "cup": "∪",
    "cap": "∩",
    "setminus": "∖",
    "wedge": "∧",
    "vee": "∨",
    "land": "∧",
    "lor": "∨",
    "neg": "¬",
    "lnot": "¬",
    "bigcup": "⋃",
    "bigcap": "⋂",
    "sum": "∑",
    "prod": "∏",
    "coprod": "∐",
    "int": "∫",
    "iint": "∬",
    "oint": "∮",
    # misc
    "infty": "∞",
    "emptyset": "∅",
    "varnothing": "∅",
    "forall": "∀",
    "exists": "∃",
    "nexists": "∄",
    "partial": "∂",
    "nabla": "∇",
    "angle": "∠",
    "measuredangle": "∡",
    "triangle": "△",
    "square": "□",
    "ldots": "…",
    "dots": "…",
    "cdots": "⋯",
    "vdots": "⋮",
    "ddots": "⋱",
    "prime": "′",
    "degree": "°",
    "ell": "ℓ",
    "hbar": "ℏ",
    "aleph": "ℵ",
    "Re": "ℜ",
    "Im": "ℑ",
    "qed": "∎",
    "blacksquare": "■",
    "Box": "□",
    "lfloor": "⌊",
    "rfloor": "⌋",
    "lceil": "⌈",
    "rceil": "⌉",
    "langle": "⟨",
    "rangle": "⟩",
    "vert": "|",
    "Vert": "‖",
    "lvert": "|",
    "rvert": "|",
    "lVert": "‖",
    "rVert": "‖",
    "backslash": "\\",
    "{": "{",
    "}": "}",
    "%": "%",
    "$": "$",
    "&": "&",
    "#": "#",
    "_": "_",
    "|": "‖",
    # spacing
    ",": "\u2009",
    ";": "\u2005",
    ":": "\u2005",
    ">": "\u2005",
    " ": " ",
    "quad": "\u2003",
    "qquad": "\u2003\u2003",
    "!": "",
    "enspace": "\u2002",
    "thinspace": "\u2009",
}
NAMED_OPERATORS = frozenset(
    {
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "log",
        "ln",
        "lg",
        "exp",
        "lim",
        "liminf",
        "limsup",
        "max",
        "min",
        "sup",
        "inf",
        "gcd",
        "lcm",
        "deg",
        "det",
        "dim",
        "ker",
        "arg",
        "mod",
        "Pr",
    }
)
IGNORED = frozenset(
    {
        "left",
        "right",
        "big",
        "Big",
        "bigg",
        "Bigg",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "biggl",
        "biggr",
        "displaystyle",
        "textstyle",
        "scriptstyle",
        "limits",
        "nolimits",
        "nonumber",
        "notag",
        "middle",
        "allowbreak",
    }
)
TEXT_ARG = {
    "text",
    "textrm",
    "textit",
    "textbf",
    "mbox",
    "mathrm",
    "operatorname",
    "textup",
    "textnormal",
    "hbox",
    "emph",
    "textsf",
    "texttt",
    "mathit",
    "mathsf",
    "mathtt",
}
STYLE_ARG = {
    "mathbf": "b",
    "boldsymbol": "b",
    "bm": "b",
    "mathbb": "bb",
    "mathcal": "cal",
    "mathscr": "cal",
    "mathfrak": "frak",
}
ACCENTS = {
    "hat": "\u0302",
    "widehat": "\u0302",
    "bar": "\u0304",
    "vec": "\u20d7",
    "tilde": "\u0303",
    "widetilde": "\u0303",
    "dot": "\u0307",
    "ddot": "\u0308",
    "overrightarrow": "\u20d7",
}
DROP_ARG = {"label", "tag", "hspace", "vspace", "phantom", "hphantom", "vphantom", "color", "textcolor_"}
_DOUBLE_STRUCK = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "P": "ℙ", "H": "ℍ", "F": "𝔽", "E": "𝔼"}

_TOKEN = re.compile(r"\\([A-Za-z]+)\*?|\\(.)|([{}^_&~])|(\s+)|(.)", re.S)


def _tokens(src: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(src):
        if m.group(1) is not None:
            out.append(("cmd", m.group(1)))
        elif m.group(2) is not None:
            out.append(("cmd", m.group(2)))
        elif m.group(3) is not None:
            out.append(("op", m.group(3)))
        elif m.group(4) is not None:
            out.append(("ws", m.group(4)))
        else:
            out.append(("ch", m.group(5)))
    return out


class _Parser:
    def __init__(self, src: str):
        self.toks = _tokens(src)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> tuple[str, str] | None:
        t = self.peek()
        self.i += 1
        return t

    def sequence(self, depth: int, stop: str | None = None) -> str:
        """Render tokens until ``stop`` (a closing brace) or the end."""
        parts: list[str] = []
        while (t := self.peek()) is not None:
            if t == ("op", "}") and stop == "}":
                self.i += 1
                return "".join(parts)
            if t == ("op", "}"):  # unbalanced: show it
                self.i += 1
                parts.append("}")
                continue
            parts.append(self.item(depth))
        return "".join(parts)

    def item(self, depth: int) -> str:
        t = self.next()
        kind, val = t
        if kind == "ws":
            return " "
        if kind == "ch":
            return f"<i>{_ESC(val)}</i>" if val.isalpha() else _ESC(val)
        if kind == "op":
            if val == "{":
                return self.group_body(depth)
            if val in "^_":
                tag = "sup" if val == "^" else "sub"
                return f"<{tag}>{self.argument(depth)}</{tag}>"
            return " " if val in "&~" else _ESC(val)
        return self.command(val, depth)

    def group_body(self, depth: int) -> str:
        if depth >= MAX_DEPTH:
            raise _TooDeep
        return self.sequence(depth + 1, stop="}")

    def argument(self, depth: int) -> str:
        """One argument: a braced group or a single token."""
        while (t := self.peek()) is not None and t[0] == "ws":
            self.i += 1
        t = self.peek()
        if t is None:
            return ""
        if t == ("op", "{"):
            self.i += 1
            return self.group_body(depth)
        return self.item(depth + 1)

    def raw_argument(self) -> str:
        """A braced argument as plain text (for \\text, \\begin)."""
        while (t := self.peek()) is not None and t[0] == "ws":
            self.i += 1
        if self.peek() != ("op", "{"):
            t = self.next()
            return "" if t is None else t[1]
        self.i += 1
        level, out = 1, []
        while (t := self.next()) is not None:
            if t == ("op", "{"):
                level += 1
            elif t == ("op", "}"):
                level -= 1
                if level == 0:
                    break
            out.append(("\\" + t[1]) if t[0] == "cmd" and t[1].isalpha() else t[1])
        return "".join(out)

    def optional(self, depth: int) -> str:
        if self.peek() != ("ch", "["):
            return ""
        self.i += 1
        parts = []
        while (t := self.peek()) is not None and t != ("ch", "]"):
            parts.append(self.item(depth + 1))
        self.i += 1
        return "".join(parts)

    def command(self, name: str, depth: int) -> str:
        if name in SYMBOLS:
            return _ESC(SYMBOLS[name])
        if name in IGNORED:
            return ""
        if name == "\\":
            return "<br>"
        if name in NAMED_OPERATORS:
            return f'<span class="op">{_ESC(name)}</span>'
        if name in ("frac", "dfrac", "tfrac", "cfrac", "binom", "dbinom", "tbinom"):
            a, b = self.argument(depth), self.argument(depth)
            frac = f'<span class="frac"><span class="num">{a}</span><span class="den">{b}</span></span>'
            return f"({frac})" if "binom" in name else frac
        if name == "sqrt":
            index = self.optional(depth)
            body = self.argument(depth)
            root = f"<sup>{index}</sup>√" if index else "√"
            return f'{root}<span class="radicand">{body}</span>'
        if name in ("pmod", "bmod"):
            arg = self.argument(depth)
            return f' (<span class="op">mod</span> {arg})' if name == "pmod" else f' <span class="op">mod</span> {arg}'
        if name in ("not",):
            return self.argument(depth) + "\u0338"
        if name in ("overline", "underline"):
            return f'<span class="{name}">{self.argument(depth)}</span>'
        if name in ACCENTS:
            return f"{self.argument(depth)}{ACCENTS[name]}"
        if name in TEXT_ARG:
            return f'<span class="text">{_ESC(self.raw_argument())}</span>'
        if name in STYLE_ARG:
            return self.styled(STYLE_ARG[name], depth)
        if name in ("begin", "end"):
            env = self.raw_argument()
            return "<br>" if name == "end" and env.rstrip("*") in ("align", "aligned", "gather", "cases") else ""
        if name in DROP_ARG:
            self.raw_argument()
            return ""
        return f'<span class="unknown">\\{_ESC(name)}</span>'

    def styled(self, style: str, depth: int) -> str:
        if style == "bb":
            text = self.raw_argument()
            return "".join(_ESC(_DOUBLE_STRUCK.get(c, c)) for c in text)
        body = self.argument(depth)
        return f'<span class="{style}">{body}</span>'


class _TooDeep(Exception):
    pass


@lru_cache(maxsize=20000)
def math_html(src: str, display: bool = False) -> str:
    """One math expression (without delimiters) as HTML."""
    try:
        body = _Parser(src).sequence(0)
    except (_TooDeep, RecursionError):
        body = _ESC(src)
    cls = "math display" if display else "math"
    tag = "div" if display else "span"
    return f'<{tag} class="{cls}" title="{_ESC(src.strip())}">{body}</{tag}>'


_MATH = re.compile(
    r"(?<!\\)\$\$(?P<dd>.+?)(?<!\\)\$\$"
    r"|\\\[(?P<bd>.+?)\\\]"
    r"|\\\((?P<bi>.+?)\\\)"
    r"|(?<![\\$])\$(?P<di>(?:\\.|[^$\\])+?)\$"
    r"|(?P<env>\\begin\{(?P<name>(?:align|aligned|equation|gather|multline|eqnarray|cases|array)\*?)\}"
    r".*?\\end\{(?P=name)\})",
    re.S,
)


def render(text: str | None) -> str:
    """Prose with math, as HTML (prose escaped, newlines kept by CSS ``white-space``)."""
    if not text:
        return ""
    out: list[str] = []
    pos = 0
    for m in _MATH.finditer(text):
        out.append(_ESC(text[pos : m.start()]))
        if m.group("env"):
            out.append(math_html(m.group("env"), True))
        else:
            display = m.group("dd") is not None or m.group("bd") is not None
            src = next(g for g in (m.group("dd"), m.group("bd"), m.group("bi"), m.group("di")) if g is not None)
            out.append(math_html(src, display))
        pos = m.end()
    out.append(_ESC(text[pos:]))
    return "".join(out)
