"""Versioned prompt templates.

Each ``*.txt`` file in this package starts with ``version: NAME-vN`` and ``---``,
then ``[system]`` / ``[user]`` sections; ``{{name}}`` placeholders are filled by
:func:`render` (plain substitution: LaTeX braces and dollars pass through untouched).
The version is part of every response-store key and of the dataset card, so editing
a prompt means bumping its version.

What each asks for and what is parsed from the reply:

- ``distill``: the raw problem as the only user turn (DeepSeek-Math-V2 style). The
  reply is split at the end of the thinking block into ``reasoning_content`` and
  ``proof`` (:mod:`fineproofs.pipelines.distill`).
- ``rollout``: "Generate a rigorous proof to the following question" + problem,
  the student/RL prompt. Same split as distill.
- ``rubric`` / ``rubric_retry``: a 7-point marking scheme from problem + reference
  solution, as numbered ``N. (P points) ...`` checkpoints, optional ``Alternative X:``
  chains, ``Zero credit:`` and ``Deductions:`` lists; parsed and validated by
  :mod:`fineproofs.rubric`. The retry prompt feeds the validation error back.
- ``grade``: problem, optional reference solution, rubric and the proof fenced
  between ``<<<PROOF>>>`` markers as data. The reply must contain exactly one
  ``<score>N</score>`` with N in 0..7 (:mod:`fineproofs.pipelines.grade`).
- ``rc_reason`` / ``rc_summarize``: one reasoning-cache turn conditioned on the
  problem and the current summary, and the frozen summariser's short first-person
  summary of a turn (:mod:`fineproofs.train.rc` documents the parsing).
- ``eval_grade``: IMO-ProofBench grading with the benchmark's guidelines on the
  0/1/6/7 scale (:mod:`fineproofs.train.evaluate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with placeholders filled; every placeholder must be given."""

        def fill(text: str) -> str:
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


@lru_cache(maxsize=None)
def load(name: str) -> Prompt:
    text = (resources.files("fineproofs.prompts") / f"{name}.txt").read_text()
    head, _, body = text.partition("\n---\n")
    if not head.startswith("version:"):
        raise ValueError(f"prompt {name}: first line must be 'version: ...'")
    version = head.split(":", 1)[1].strip()
    sections = {"system": "", "user": ""}
    current = None
    for line in body.splitlines(keepends=True):
        m = re.fullmatch(r"\[(system|user)\]\n?", line)
        if m:
            current = m.group(1)
            continue
        if current is None:
            raise ValueError(f"prompt {name}: text before the first [system]/[user] section")
        sections[current] += line
    return Prompt(name, version, sections["system"].strip("\n"), sections["user"].strip("\n"))


def versions() -> dict[str, str]:
    names = sorted(p.name[:-4] for p in resources.files("fineproofs.prompts").iterdir() if p.name.endswith(".txt"))
    return {n: load(n).version for n in names}
