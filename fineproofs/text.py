"""Text hygiene and linear-time scanning, shared by the sources, the filters and the core.

- :func:`clean_text` removes what never belongs in a statement: C0/C1 control
  characters (NUL included; tab, newline and carriage return stay), ANSI escape
  sequences, bidi overrides and isolates, zero-width characters and joiners, soft
  hyphens and byte-order marks; lone surrogates become U+FFFD.
- :func:`html_to_text` reduces HTML to text: ``<script>``, ``<style>``, ``<iframe>``
  and the like go with their content (an unterminated one takes the rest of the
  text), comments go, known tags and any tag carrying an ``on*=`` attribute go,
  entities are unescaped.
- :func:`fold_confusables` folds full-width forms and other compatibility
  characters (NFKC) and Cyrillic/Greek letters that look like Latin ones to ASCII,
  so a disguised copy compares equal to the original.
- :func:`iter_delimited`, :func:`replace_delimited` and :func:`split_math` find
  ``opener ... closer`` spans in time linear in the text: a closer that is missing
  after one opener is known to be missing after every later opener, so nothing is
  rescanned (a lazy ``opener(.*?)closer`` regex rescans to the end from every
  unterminated opener, quadratic time).

Everything here is pure, linear in the length of the input, and never raises on
any ``str``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterator

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u206a\u206b\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0"
)
_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + _INVISIBLE + "]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BIDI_OR_INVISIBLE = re.compile("[" + _INVISIBLE + "]")


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """``text`` without control characters, ANSI escapes, bidi overrides and invisible
    characters; lone surrogates become U+FFFD. Tab, newline and CR are kept."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    text = _JUNK.sub("", text)
    if has_surrogates(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


# --- linear scanning ------------------------------------------------------------------


def iter_delimited(
    text: str, opener: re.Pattern[str], closer: Callable[[re.Match[str]], str | re.Pattern[str]], start: int = 0
) -> Iterator[tuple[re.Match[str], int, int]]:
    """``(opener match, body end, span end)`` for each ``opener ... closer`` span, left to
    right, not overlapping; the closer is the first one after the opener (like a lazy
    ``.*?``). Unterminated openers are skipped. Linear: a closer found missing once is
    never searched for again."""
    missing: set = set()
    pos = start
    while (m := opener.search(text, pos)) is not None:
        close = closer(m)
        key = close if isinstance(close, str) else close.pattern
        found = None if key in missing else _find(text, close, m.end())
        if found is None:
            missing.add(key)
            pos = max(m.end(), m.start() + 1)
            continue
        yield m, found[0], found[1]
        pos = max(found[1], m.start() + 1)


def _find(text: str, close: str | re.Pattern[str], at: int) -> tuple[int, int] | None:
    if isinstance(close, str):
        i = text.find(close, at)
        return None if i < 0 else (i, i + len(close))
    c = close.search(text, at)
    return None if c is None else (c.start(), c.end())


def replace_delimited(
    text: str,
    opener: re.Pattern[str],
    closer: Callable[[re.Match[str]], str | re.Pattern[str]],
    repl: Callable[[re.Match[str], str], str],
) -> str:
    """Replace each ``opener body closer`` span by ``repl(opener_match, body)``; unterminated
    openers are left as they are. Linear (see :func:`iter_delimited`)."""
    out: list[str] = []
    pos = 0
    for m, body_end, end in iter_delimited(text, opener, closer):
        out.append(text[pos : m.start()])
        out.append(repl(m, text[m.end() : body_end]))
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def split_math(text: str) -> list[str]:
    r"""``re.split(r"(\$\$.*?\$\$|\$.*?\$)", text, flags=re.S)`` in linear time: prose at even
    indexes, formulas (with their dollars) at odd ones."""
    if "$" not in text:
        return [text]
    out: list[str] = []
    pos = i = 0
    no_display = False  # no "$$" after some point: none after any later point either
    while (i := text.find("$", i)) >= 0:
        if text.startswith("$$", i) and not no_display:
            j = text.find("$$", i + 2)
            if j >= 0:
                out += [text[pos:i], text[i : j + 2]]
                pos = i = j + 2
                continue
            no_display = True
        j = text.find("$", i + 1)
        if j < 0:
            break
        out += [text[pos:i], text[i : j + 1]]
        pos = i = j + 1
    out.append(text[pos:])
    return out


# --- HTML -----------------------------------------------------------------------------

_DANGEROUS = "script|style|iframe|object|noscript|template|svg|applet|textarea|xmp|noembed|noframes|select"
_DANGEROUS_OPEN = re.compile(r"<(" + _DANGEROUS + r")\b[^<>]*>", re.I)
_VOID_DANGEROUS = re.compile(r"<(?:embed|frame|frameset|base|meta|link|param|source|track)\b[^<>]*>", re.I)
_COMMENT_OPEN = re.compile(r"<!--")
_TAGS = (
    "a|abbr|acronym|address|article|aside|b|bdi|bdo|big|blink|blockquote|body|br|button|caption|center|cite|code|"
    "col|colgroup|data|dd|del|details|dfn|dialog|dir|div|dl|dt|em|fieldset|figcaption|figure|font|footer|form|"
    "h[1-6]|head|header|hr|html|i|img|input|ins|kbd|label|legend|li|main|mark|marquee|menu|nav|nobr|nowiki|ol|"
    "optgroup|option|p|picture|pre|q|rb|rp|rt|rtc|ruby|s|samp|section|small|span|strike|strong|sub|summary|sup|"
    "table|tbody|td|tfoot|th|thead|time|tr|tt|u|ul|var|video|audio|wbr|ref|references|gallery|poem|onlyinclude|"
    "includeonly|noinclude|syntaxhighlight|source|hiero|indicator|templatestyles"
)
_HTML_TAG = re.compile(r"</?(?:" + _TAGS + r")(?:\s[^<>]*)?/?>", re.I)
_EVENT_TAG = re.compile(r"</?[a-zA-Z][\w:-]*\s[^<>]*?\bon[a-zA-Z]+\s*=[^<>]*>")
_STRAY_CLOSE = re.compile(r"</(?:" + _DANGEROUS + r")\s*>", re.I)


def _drop_elements(text: str) -> str:
    """Remove dangerous elements with their content and HTML comments; an unterminated
    one takes the rest of the text."""
    for opener, closer in (
        (_COMMENT_OPEN, lambda m: "-->"),
        (_DANGEROUS_OPEN, lambda m: re.compile(r"</" + m.group(1) + r"\s*>", re.I)),
    ):
        if "<" not in text:
            return text
        out, pos = [], 0
        while (m := opener.search(text, pos)) is not None:
            out.append(text[pos : m.start()] + " ")
            found = _find(text, closer(m), m.end())
            pos = len(text) if found is None else found[1]
        out.append(text[pos:])
        text = "".join(out)
    return _STRAY_CLOSE.sub(" ", _VOID_DANGEROUS.sub(" ", text))


def html_to_text(text: str) -> str:
    """HTML reduced to text: dangerous elements (with content), comments, known tags and
    tags with event-handler attributes removed, entities unescaped. Linear."""
    if "<" not in text and "&" not in text:
        return text
    if "<" in text:
        text = _drop_elements(text)
        text = _EVENT_TAG.sub(" ", _HTML_TAG.sub(" ", text))
    if "&" in text:
        text = html.unescape(text)
        if "<" in text:  # entities that spelled markup (&lt;script&gt;) never become markup
            text = _EVENT_TAG.sub(" ", _drop_elements(text))
    return text


# --- confusables ------------------------------------------------------------------------

_LOOKALIKES = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "ѕ": "s",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    "ɡ": "g",
    "А": "A",
    "В": "B",
    "Е": "E",
    "Ё": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "У": "Y",
    "Х": "X",
    "Ѕ": "S",
    "І": "I",
    "Ї": "I",
    "Ј": "J",
    "Ԁ": "D",
    "Ԛ": "Q",
    "Ԝ": "W",
    "Һ": "H",
    "Ӏ": "I",
    "Ү": "Y",
    "ү": "y",
    "Ғ": "F",
    # Greek capitals and omicron (lower-case Greek letters are math symbols: kept)
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    "ο": "o",
    "ϲ": "c",
    "Ϲ": "C",
    "ϳ": "j",
    # Latin look-alikes outside ASCII
    "ı": "i",
    "ȷ": "j",
    "ǀ": "l",
    "ℓ": "l",
}
_LOOKALIKE_TABLE = str.maketrans(_LOOKALIKES)


def fold_confusables(text: str, keep: str = "") -> str:
    """Full-width and compatibility forms → their plain form (NFKC), then Cyrillic/Greek
    look-alike letters → ASCII. Characters in ``keep`` are left untouched (callers keep
    the symbols they convert themselves, e.g. ``²`` or ``…``). Linear."""
    if text.isascii():
        return text
    if keep:
        parts = re.split("([" + re.escape(keep) + "]+)", text)
        parts[::2] = [unicodedata.normalize("NFKC", p) for p in parts[::2]]
        text = "".join(parts)
    else:
        text = unicodedata.normalize("NFKC", text)
    return text.translate(_LOOKALIKE_TABLE)


def sanitize_field(value: str, limit: int = 2000) -> str:
    """A short metadata value (competition, category, url...): hygiene, HTML reduced to
    text, whitespace collapsed, cut at ``limit`` characters."""
    value = html_to_text(clean_text(value[: limit * 4]))
    return " ".join(value.split())[:limit]


__all__ = [
    "clean_text",
    "fold_confusables",
    "has_surrogates",
    "html_to_text",
    "iter_delimited",
    "replace_delimited",
    "sanitize_field",
    "split_math",
]
