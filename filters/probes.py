r"""The project's own decontamination probe set, and the detector measured on it.

``fineproofs/data/decontam/probes.json`` holds problems written for fineproofs: 30
*references* (well-known public olympiad problems, restated by the project, standing in
for benchmark rows), 40 *paraphrases* of them (another wording, renamed variables, a
forum post, a translated booklet) and 40 *negatives* (unrelated problems, many on a
reference's template). Mechanical disguises of every reference are generated here
(:data:`DISGUISES`): re-wrapped lines, ``\( \)`` delimiters, wiki ``<math>`` markup,
renamed variables, forum framing, unicode math, math with its ``$`` stripped.

:func:`measure` indexes the references *beside the benchmarks of the build* (so the
figures hold with every benchmark of the profile in the index, as the detector runs)
and counts, per disguise kind, how many probes are matched to their own reference, and
how many negatives are flagged at all. :func:`table` renders the result for the CLI and
the dataset card.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from fineproofs.filters.decontaminate import BenchmarkProblem, Decontaminator

PROBE_BENCHMARK = "fineproofs-probes"
_MATH = re.compile(r"\$\$.*?\$\$|\$.*?\$", re.S)
_LETTER = re.compile(r"(?<![A-Za-z\\])[A-Za-z](?![A-Za-z])")
_FRAMES = [
    ("Can someone help me with this? ", " Thanks!"),
    ("Found this in an old olympiad booklet: ", " I am stuck, any hint?"),
    ("Problem 3. ", " (source: a regional olympiad)"),
]
_UNICODE = [
    (r"\geq", "≥"),
    (r"\ge", "≥"),
    (r"\leq", "≤"),
    (r"\le", "≤"),
    (r"\neq", "≠"),
    (r"\to", "→"),
    (r"\infty", "∞"),
    (r"\cdot", "·"),
    (r"\mathbb{R}", "ℝ"),
    (r"\mathbb{N}", "ℕ"),
]


def _rewrap(t: str, rng: random.Random) -> str:
    out, width = [], 0
    for w in t.split(" "):
        width += len(w) + 1
        out.append(w + ("\n" if width > rng.randint(35, 60) else " "))
        width = 0 if out[-1].endswith("\n") else width
    return "".join(out).strip()


def _redelimit(t: str, rng: random.Random) -> str:
    return _MATH.sub(lambda m: r"\(" + m.group(0).strip("$") + r"\)", t)


def _wiki(t: str, rng: random.Random) -> str:
    return _MATH.sub(lambda m: "<math>" + m.group(0).strip("$") + "</math>", t)


def _rename(t: str, rng: random.Random) -> str:
    used = sorted({c for f in _MATH.findall(t) for c in _LETTER.findall(f)})
    pool = [c for c in "pqrsuvwklmtPQRSUVWKLMT" if c not in used]
    mapping = {}
    for c in used:
        same_case = [x for x in pool if x.isupper() == c.isupper() and x not in mapping.values()]
        mapping[c] = same_case[0] if same_case else c
    return _MATH.sub(lambda m: _LETTER.sub(lambda n: mapping[n.group(0)], m.group(0)), t)


def _forum(t: str, rng: random.Random) -> str:
    pre, post = _FRAMES[rng.randrange(len(_FRAMES))]
    return pre + t + post


def _unicode(t: str, rng: random.Random) -> str:
    for a, b in _UNICODE:
        t = t.replace(a, b)
    return t.replace("$", "")


def _strip_dollars(t: str, rng: random.Random) -> str:
    return t.replace("$", "")


DISGUISES: dict[str, list[Callable[[str, random.Random], str]]] = {
    "rewrap": [_rewrap],
    "redelimit": [_redelimit],
    "wiki": [_wiki],
    "rename": [_rename],
    "forum": [_forum],
    "unicode": [_unicode],
    "no-dollars": [_strip_dollars],
    "rename+forum": [_rename, _forum],
    "wiki+rewrap": [_wiki, _rewrap],
}


@dataclass(frozen=True)
class Probe:
    kind: str  # a disguise kind, "paraphrase:<style>", or "negative"
    expected: str | None  # the reference id it must match; None for a negative
    text: str


def disguise(refs: list[BenchmarkProblem], seed: int = 0) -> list[Probe]:
    """Every :data:`DISGUISES` kind applied to every reference, in a fixed order."""
    rng = random.Random(seed)
    probes = []
    for kind, steps in DISGUISES.items():
        for r in refs:
            t = r.text
            for step in steps:
                t = step(t, rng)
            probes.append(Probe(kind, r.id, t))
    return probes


def load_probes() -> tuple[list[BenchmarkProblem], list[Probe]]:
    """The references (as benchmark problems of :data:`PROBE_BENCHMARK`) and every probe:
    mechanical disguises of each reference, the written paraphrases, the negatives."""
    data = json.loads((resources.files("fineproofs.data") / "decontam" / "probes.json").read_text("utf-8"))
    refs = [BenchmarkProblem(PROBE_BENCHMARK, r["id"], r["problem"]) for r in data["references"]]
    probes = disguise(refs)
    probes += [Probe(f"paraphrase:{p['kind']}", p["id"], p["problem"]) for p in data["paraphrases"]]
    probes += [Probe("negative", None, t) for t in data["negatives"]]
    return refs, probes


@dataclass
class KindResult:
    probes: int = 0
    caught: int = 0  # positives matched to their own reference; negatives flagged at all

    @property
    def rate(self) -> float:
        return self.caught / self.probes if self.probes else 0.0


def measure(
    benchmarks: list[BenchmarkProblem],
    detector: Callable[[list[BenchmarkProblem]], Callable[[str], str | None]] | None = None,
    **params,
) -> dict[str, KindResult]:
    """Per probe kind, how the detector does with the references indexed beside
    ``benchmarks``. ``detector(index)`` returns a function text → matched id (None: clean);
    the default is :class:`Decontaminator` built with ``params``. Keys: every disguise
    kind, ``paraphrase`` (all styles together) and ``negative``."""
    refs, probes = load_probes()
    index = refs + [b for b in benchmarks if b.benchmark != PROBE_BENCHMARK]
    if detector is None:
        dec = Decontaminator(index, **params)

        def find(text: str) -> str | None:
            m = dec.match(text)
            return m.benchmark_id if m else None
    else:
        find = detector(index)
    out: dict[str, KindResult] = {}
    for p in probes:
        kind = p.kind.split(":", 1)[0]
        got = find(p.text)
        r = out.setdefault(kind, KindResult())
        r.probes += 1
        r.caught += (got is not None) if p.expected is None else (got == p.expected)
    return out


def summary(results: dict[str, KindResult]) -> dict:
    """The figures a card and a manifest keep: recall on mechanical disguises, recall on
    paraphrases, false positives on negatives, and each kind."""
    mech = [r for k, r in results.items() if k not in ("paraphrase", "negative")]
    m_probes, m_caught = sum(r.probes for r in mech), sum(r.caught for r in mech)
    para, neg = results.get("paraphrase", KindResult()), results.get("negative", KindResult())
    return {
        "disguise_recall": round(m_caught / m_probes, 4) if m_probes else None,
        "disguise_probes": m_probes,
        "paraphrase_recall": round(para.rate, 4),
        "paraphrase_probes": para.probes,
        "false_positives": neg.caught,
        "negatives": neg.probes,
        "kinds": {k: {"probes": r.probes, "caught": r.caught} for k, r in results.items()},
    }


def table(results: dict[str, KindResult]) -> list[str]:
    """Lines of a plain-text table: kind, probes, caught, rate."""
    lines = [f"{'probe kind':<16}{'probes':>8}{'caught':>8}{'rate':>8}"]
    for k, r in results.items():
        what = "flagged (FP)" if k == "negative" else ""
        lines.append(f"{k:<16}{r.probes:>8}{r.caught:>8}{r.rate:>8.3f}  {what}".rstrip())
    return lines
