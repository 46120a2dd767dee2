"""What a model's reply is made of: reasoning, then the answer (a proof, a grade).

:func:`split_reasoning` cuts a reply at the end of its thinking block:

- ``<think> ... </think>`` (or just a closing ``</think>``, as Qwen3-Thinking and
  DeepSeek chat templates open the block in the prompt): reasoning before the
  close, answer after it;
- an opened but never closed block: all reasoning, no answer (``unterminated``);
- no thinking tags (non-reasoning models such as SmolLM2): no reasoning, the whole
  reply is the answer.

When the server returned the reasoning separately (``reasoning_content`` /
``reasoning``: vLLM with a reasoning parser, gpt-oss; kept as
``Completion.reasoning`` / ``StoredResponse.reasoning``), pass it as ``reasoning``:
the whole text is then the answer, minus any inline think block, so a ``<score>``
or a draft mentioned while thinking never reaches the answer. Either way callers
get the reasoning and the answer apart: ``split_reasoning(r.text, r.reasoning)``.

A trailing self-evaluation section (DeepSeek-Math-V2 appends one) is stripped from
the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Where a self-evaluation starts; it runs to the end of the text. Two kinds of line:
# - a Markdown heading naming an evaluation, the form QED-Nano's evaluation code strips
#   (eval/src/imobench/evaluation.py remove_self_evaluation): one or more ``#``, bold
#   markers or spaces, up to two of "Self" / "Final", then the word "Evaluation":
#   ``# Evaluation``, ``## Self Evaluation``, ``### Final Evaluation``, ``## **Self
#   Evaluation**``, ``# Final Self Evaluation``. Matched case-blind and with a hyphen
#   allowed (``## Self-Evaluation``), a superset of the release's case-sensitive pattern;
# - a line (optionally a heading or bold) opening with "Self-evaluation", "Here is my evaluation of the
#   solution/proof" or "Evaluation of the (above) solution/proof", as DeepSeek-Math-V2
#   also writes it without a heading (never at the very start of the text).
_SELF_EVAL = re.compile(
    r"(?:^|\n)[ \t]*#+\s*[*\s]*(?:(?:self|final)[\s*-]*){0,2}evaluation\b.*\Z"
    r"|\n[ \t]*(?:#+\s*|\*\*)?\s*(?:self[- ]evaluation|here is my evaluation of the (?:solution|proof)|"
    r"evaluation of the (?:above )?(?:solution|proof))\b.*\Z",
    re.I | re.S,
)


@dataclass
class SplitReply:
    reasoning: str
    proof: str  # the answer (a proof, a grade), self-evaluation stripped
    unterminated: bool  # thinking never ended: there is no answer

    @property
    def answer(self) -> str:
        return self.proof


def split_reasoning(text: str, reasoning: str = "") -> SplitReply:
    """Reasoning and answer of a reply; ``reasoning`` is what a server returned apart."""
    inline = _split_inline(text)
    if not reasoning.strip():
        return inline
    joined = "\n\n".join(p for p in (reasoning.strip(), inline.reasoning) if p)
    # all reasoning and an empty answer: cut while thinking (vLLM puts it all in reasoning_content)
    return SplitReply(joined, inline.proof, inline.unterminated or not text.strip())


def answer_of(text: str, reasoning: str = "") -> str | None:
    """The final answer of a reply (a grade, a rubric): the text after the thinking block,
    as written; ``None`` when the reply ended inside its reasoning (no answer at all).
    What a model reasoned, inline or returned apart, is never part of the answer."""
    if THINK_CLOSE in text:
        return text.rpartition(THINK_CLOSE)[2].strip()
    if THINK_OPEN in text or (reasoning.strip() and not text.strip()):
        return None
    return text.strip()


def answer_or_raise(completion, error: type[Exception]) -> str:
    """The answer of a completion that must have one, else ``error`` whose message is the
    failure reason (``engine_failure: ...`` or ``no_answer: ...``) for the caller to record."""
    if not completion.ok:
        raise error(f"engine_failure: {completion.reason}")
    answer = answer_of(completion.text, completion.reasoning)
    if answer is None:
        raise error("no_answer: the reply ended inside its reasoning")
    return answer


def join_reasoning(text: str, reasoning: str = "") -> str:
    """A reply in its raw inline form (``<think>`` reasoning ``</think>`` answer), e.g. to
    hand a whole turn to code that splits it later."""
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{text}" if reasoning.strip() else text


def _split_inline(text: str) -> SplitReply:
    if THINK_CLOSE in text:
        before, _, after = text.rpartition(THINK_CLOSE)
        reasoning = before.split(THINK_OPEN, 1)[-1]
        return SplitReply(reasoning.strip(), strip_self_evaluation(after.strip()), False)
    if THINK_OPEN in text:
        return SplitReply(text.split(THINK_OPEN, 1)[1].strip(), "", True)
    return SplitReply("", strip_self_evaluation(text.strip()), False)


def strip_self_evaluation(proof: str) -> str:
    """``proof`` without its self-evaluation section: from the first line that opens one
    (see :data:`_SELF_EVAL`) to the end, as QED-Nano's evaluation code cuts it."""
    return _SELF_EVAL.sub("", proof, count=1).rstrip()
