"""Short answers: LaTeX-ish answer → sympy expression → canonical string, so
``\\frac{1}{2}``, ``0.5`` and ``1/2`` compare equal and "is this a short closed-form
answer?" has a precise meaning (it parses)."""

from __future__ import annotations

import re
from functools import lru_cache

_CMD = [
    (r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))"),
    (r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)"),
    (r"\\(?:cdot|times)", "*"),
    (r"\\pi\b", "pi"),
    (r"\\left|\\right|\\,|\\!|\\;|\\displaystyle", ""),
    (r"\^\{([^{}]*)\}", r"**(\1)"),
    (r"\^", "**"),
    (r"[{}]", ""),
]


def _to_python(ans: str) -> str:
    s = ans.strip().strip("$").strip()
    s = re.sub(r"^\\boxed\{(.*)\}$", r"\1", s)
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)  # "n = 5"
    s = s.replace("\\!", "")
    for _ in range(3):
        for pat, rep in _CMD:
            s = re.sub(pat, rep, s)
    return s


@lru_cache(maxsize=4096)
def normalise_answer(ans: str) -> str | None:
    """Canonical sympy string of a short answer, or None if it is not one."""
    if not ans or len(ans) > 60:
        return None
    from sympy import nsimplify, sympify
    from sympy.core.sympify import SympifyError

    s = _to_python(ans)
    if not re.fullmatch(r"[0-9a-z()+\-*/. ]+", s) or re.search(r"[a-z]{2,}", s.replace("sqrt", "").replace("pi", "")):
        return None
    from sympy.parsing.sympy_parser import implicit_multiplication_application, parse_expr, standard_transformations

    try:
        expr = parse_expr(
            s, transformations=standard_transformations + (implicit_multiplication_application,), evaluate=True
        )
        expr = sympify(expr, rational=True)
        return str(nsimplify(expr))
    except (SympifyError, SyntaxError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None


def same_answer(a: str, b: str) -> bool:
    na, nb = normalise_answer(a), normalise_answer(b)
    return na is not None and na == nb
