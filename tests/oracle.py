"""A deterministic stand-in for every model role, for build tests over HTTP.

Not a model: a reply function for :class:`faultproxy.FaultServer` that answers each
fineproofs prompt in the format the stage expects — a valid 7-point rubric for the
rubric prompt, a fenced JSON verdict for the problem filter, a ``<score>N</score>``
for the grading prompts (0-7, or 0/1/6/7 on the IMO-ProofBench scale), a JSON verdict for the
decontamination verifier, a thinking block and a proof for distillation and rollouts —
with content derived from a hash of the request.
It lets the paper profile run unchanged against loopback servers and makes outputs
comparable across clean, faulty and killed-and-resumed runs.
"""

from __future__ import annotations

import hashlib
import json


def _h(*parts) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12], 16)


def oracle_reply(messages, prefill: str, seed, index: int) -> str:
    h = _h(messages, prefill, seed, index)
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"] if messages else ""
    if "write marking schemes" in system:
        a = 1 + h % 5
        return f"1. ({a} points) Establishes the first claim (variant {h % 97}).\n2. ({7 - a} points) Completes the argument."
    if "grader of olympiad proofs" in system:
        score = h % 8
        text = f"{score}</score> The proof meets {score} points of the scheme."
        return text if prefill.endswith("<score>") else f"<score>{text}"
    if "IMO coordinator grading" in system:  # the IMO-ProofBench scale (eval, SFT grader on 0/1/6/7)
        score = (0, 1, 6, 7)[h % 4]
        return f"<score>{score}</score> On the 0/1/6/7 scale the proof earns {score}."
    if "You screen olympiad problems" in system:
        # the problem filter: a verdict in a fenced JSON block; about one problem in four is flagged
        flags = {k: h % m == 0 for k, m in [("incomplete", 11), ("gaps", 13), ("wrong", 17), ("disagreement", 19)]}
        verdict = {
            "incomplete": flags["incomplete"],
            "difficulty": 1 + h % 10,
            "gaps": flags["gaps"],
            "wrong": flags["wrong"],
            "disagreement": flags["disagreement"],
            "computational": h % 3 == 0,
        }
        return f"The problem reads as stated (note {h % 97}).\n\n```json\n{json.dumps(verdict)}\n```"
    if "for contamination by a benchmark" in system:
        # the decontamination verifier: the same problem only when the two statements are equal
        a = " ".join(user.split("<<<A>>>")[1].split()) if user.count("<<<A>>>") == 2 else ""
        b = " ".join(user.split("<<<B>>>")[1].split()) if user.count("<<<B>>>") == 2 else ""
        same = bool(a) and a == b
        return json.dumps({"same": same, "reason": "the same statement" if same else f"another problem ({h % 97})"})
    kind = "rollout" if user.startswith("Generate a rigorous proof") else "teacher"
    return f"<think>\nPlan {h % 1000} for the {kind}.\n</think>\n\nProof ({kind} {h % 10007}). By induction the claim holds."
