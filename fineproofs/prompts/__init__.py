"""Versioned prompt templates.

Template format (the ``*.txt`` files of this package, and any file given to
:func:`load` as ``path``)::

    version: rubric-v2
    ---
    [system]
    system turn (optional section)
    [user]
    user turn with {{problem}} and {{solution}} placeholders

- The first line ``version: NAME`` and a line ``---`` form the header. The version
  is part of every response-store key and of the dataset card, so editing a prompt
  means bumping its version. A user file without a header gets the version
  ``NAME-file-<12 hex digits of the SHA-256 of its content>``: any edit is a new
  version by itself.
- ``[system]`` / ``[user]`` lines open the two sections; a file with neither is one
  user turn as a whole (so a plain prompt file can be used unchanged).
- ``{{name}}`` placeholders are filled by :meth:`Prompt.render` (plain substitution:
  LaTeX braces and dollars pass through untouched); every one must be given.
  A user file with no ``{{name}}`` placeholder at all is read in single-brace style
  (``{problem}``, as Python-format prompt files write them): only ``{name}`` for a
  name given to ``render`` is filled, any other brace (``\\frac{a}{b}``) stays as written.

``load(name)`` reads the packaged template; ``load(name, path)`` reads the user's
file instead (a profile maps prompt names to files).

What each asks for and what is parsed from the reply:

- ``distill``: the raw problem as the only user turn (DeepSeek-Math-V2 style). The
  reply is split at the end of the thinking block into ``reasoning_content`` and
  ``proof`` (:mod:`fineproofs.pipelines.distill`).
- ``rollout``: "Generate a rigorous proof to the following question" + problem,
  the student/RL prompt. Same split as distill.
- ``problem_filter``: problem, reference solution, where it comes from and other posts
  -> a fenced JSON verdict with six keys (``incomplete``, ``difficulty`` 1-10, ``gaps``,
  ``wrong``, ``disagreement``, ``computational``), parsed strictly by
  :mod:`fineproofs.pipelines.problem_filter`.
- ``category``: the statement (``{{problem}}``) and the labels to choose from
  (``{{labels}}``) -> one JSON object ``{"category": "<label>"}`` (under that JSON schema
  when ``category.structured``), parsed strictly by :mod:`fineproofs.pipelines.category`.
- ``rubric`` / ``rubric_retry``: a 7-point marking scheme from problem + reference
  solution (``{{problem}}``, ``{{solution}}``) in the published Markdown form: sections
  "Checkpoints (7 pts total)" (``* (P pts) ...`` bullets, optional "Chain A/B" chains
  scored by the best one, a "Total (max 7)" line), "Zero-credit items" and
  "Deductions" (``-1``/``-2`` flat penalties, ``Cap at x/7``); it carries QED-Nano's
  rubric rules in this project's words (at least 4 points for key ideas, at most 3
  for routine work, no over-fragmenting, contradictions capped, incomplete-but-sound
  proofs not penalised). The reply is parsed and validated by
  :mod:`fineproofs.rubric`, which also reads this project's older
  ``N. (P points)`` form. The retry prompt (``{{error}}``) feeds the validation error
  back.
- ``rubric_compact`` / ``rubric_compact_retry``: the same scheme in this project's
  ``N. (P points)`` form, short, with an example (for small models writing text).
- ``rubric_brief``: problem + reference solution, asking for the steps of this problem's
  proof with points (7 in total), zero-credit work and costly errors, with no example
  (a small model copies examples); meant for the structured form below.
- ``rubric_json`` / ``rubric_json_retry``: appended to the rubric request when
  ``rubrics.structured`` is on (``{{max_checkpoints}}``, ``{{chars}}``; the retry gets
  ``{{error}}``): asks for the JSON rubric of :func:`fineproofs.rubric.rubric_schema`,
  parsed and validated by :func:`fineproofs.rubric.parse_rubric_json`.
- ``grade``: problem, optional reference solution, rubric and the proof fenced
  between ``<<<PROOF>>>`` markers as data. The reply must contain exactly one
  ``<score>N</score>`` with N in 0..7 (:mod:`fineproofs.judging`).
- ``rc_reason`` / ``rc_summarize``: one reasoning-cache turn conditioned on the
  problem and the current summary, and the frozen summariser's short first-person
  summary of a turn (:mod:`fineproofs.train.rc` documents the parsing).
- ``same_problem``: a training statement and a benchmark statement, each fenced between
  ``<<<A>>>`` / ``<<<B>>>`` markers as data -> one JSON object ``{"same": bool, "reason":
  str}`` (sent as structured output), parsed strictly by :mod:`fineproofs.filters.verify`.
- ``eval_grade``: IMO-ProofBench grading with the benchmark's guidelines on the
  0/1/6/7 scale (:mod:`fineproofs.train.evaluate`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from fineproofs.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str
    style: str = "double"  # "double": {{name}} placeholders; "single": {name} for the names given
    path: str = ""  # the user file it was read from ("" = packaged)

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with placeholders filled; every ``{{name}}`` placeholder must be given."""

        def fill(text: str) -> str:
            if self.style == "single":
                return _single_fill(text, values)

            def sub(m: re.Match) -> str:
                if m.group(1) not in values:
                    raise KeyError(f"prompt {self.name} needs a value for {{{{{m.group(1)}}}}}")
                return str(values[m.group(1)])

            return _PLACEHOLDER.sub(sub, text)

        msgs = []
        if self.system:
            msgs.append({"role": "system", "content": fill(self.system)})
        msgs.append({"role": "user", "content": fill(self.user)})
        return msgs


def _single_fill(text: str, values: dict[str, str]) -> str:
    """``{name}`` replaced for the names in ``values``; other braces stay as written."""
    if not values:
        return text
    pattern = re.compile(r"\{(" + "|".join(re.escape(k) for k in values) + r")\}")
    return pattern.sub(lambda m: str(values[m.group(1)]), text)


@cache
def packaged() -> list[str]:
    """Names of the prompts shipped with the package."""
    return sorted(p.name[:-4] for p in resources.files("fineproofs.prompts").iterdir() if p.name.endswith(".txt"))


def pick(name: str, overrides: dict[str, str] | None) -> Prompt:
    """The prompt a profile uses for ``name``: ``overrides[name]`` (``profile.prompts``) is a
    template file, or the name of another packaged prompt; else the packaged ``name``."""
    return load(name, (overrides or {}).get(name))


def load(name: str, path: str | Path | None = None) -> Prompt:
    """The template ``name``: packaged, or read from ``path`` when given (same format; see
    the module docstring); a ``path`` that names another packaged prompt loads that one."""
    if isinstance(path, str) and path in packaged():
        name, path = path, None
    if path is None:
        return _parse(name, (resources.files("fineproofs.prompts") / f"{name}.txt").read_text(), user_file=False)
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"prompt {name}: cannot read {p}: {e.strerror or e}") from None
    return _parse(name, text, user_file=True, path=str(p))


def _parse(name: str, text: str, user_file: bool, path: str = "") -> Prompt:
    head, sep, body = text.partition("\n---\n")
    if head.startswith("version:") and sep:
        version = head.split(":", 1)[1].strip()
        if not version:
            raise ConfigError(f"prompt {name}: the 'version:' line is empty")
    elif user_file:
        version, body = f"{name}-file-{hashlib.sha256(text.encode()).hexdigest()[:12]}", text
    else:
        raise ConfigError(f"prompt {name}: first line must be 'version: ...'")
    sections = {"system": "", "user": ""}
    if not re.search(r"^\[(system|user)\]$", body, re.M):
        sections["user"] = body  # no sections: the whole text is one user turn
    else:
        current = None
        for line in body.splitlines(keepends=True):
            m = re.fullmatch(r"\[(system|user)\]\n?", line)
            if m:
                current = m.group(1)
                continue
            if current is None:
                if not line.strip():
                    continue
                raise ConfigError(f"prompt {name}: text before the first [system]/[user] section")
            sections[current] += line
    system, user = sections["system"].strip("\n"), sections["user"].strip("\n")
    style = "single" if user_file and not _PLACEHOLDER.search(system + user) else "double"
    return Prompt(name, version, system, user, style, path)


def versions() -> dict[str, str]:
    names = sorted(p.name[:-4] for p in resources.files("fineproofs.prompts").iterdir() if p.name.endswith(".txt"))
    return {n: load(n).version for n in names}
