"""One exception hierarchy for everything a user can fix.

Every error fineproofs raises on purpose is a :class:`FineproofsError`; the CLI
prints its message as one line (no traceback) and exits 2 for configuration and
usage problems, 1 otherwise. Anything else is a bug and keeps its traceback.
Messages say what to do, and never carry secrets (see :func:`redact`).
"""

from __future__ import annotations

import re


class FineproofsError(Exception):
    """Base of every expected fineproofs error. ``exit_code`` is the CLI's exit status."""

    exit_code = 1

    def __init__(self, message: str = ""):
        super().__init__(redact(message))


class ConfigError(FineproofsError, ValueError):
    """A profile, config file or command-line value is wrong; the message says how to fix it."""

    exit_code = 2


class DataError(FineproofsError, ValueError):
    """Input data (sources, benchmarks, a run directory) is missing, unreadable or malformed."""


class EngineError(FineproofsError, RuntimeError):
    """A model engine or server cannot run (not installed, unreachable, refused the request)."""


class PushError(FineproofsError, RuntimeError):
    """A push to the Hub failed or was refused."""


class CardError(FineproofsError, ValueError):
    """A dataset card is invalid (missing metadata, wrong features, unrendered placeholders)."""


class IncompleteBuild(FineproofsError):
    """A build that lost work to transient failures (a server that did not answer within
    the retry budget): nothing was published; the same command finishes it."""

    exit_code = 3


#: failure kinds that say nothing about the data: the server did not answer (in time, or
#: with content). A build with any of them is incomplete, never a finished dataset.
TRANSIENT_KINDS = frozenset({"engine_failure", "judge_failure", "breaker_open", "empty_reply"})


def incomplete_counts(dropped: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per stage, the failures of ``dropped`` (stage -> kind -> count) of a transient kind."""
    out: dict[str, dict[str, int]] = {}
    for stage, kinds in dropped.items():
        got = {k: n for k, n in kinds.items() if k in TRANSIENT_KINDS and n}
        if got:
            out[stage] = got
    return out


def incomplete_message(transient: dict[str, dict[str, int]], where: str) -> str:
    """The one line a build that lost work ends with."""
    total = sum(n for kinds in transient.values() for n in kinds.values())
    parts = "; ".join(
        f"{st}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) for st, kinds in transient.items()
    )
    return (
        f"build incomplete: {total} item(s) failed for transient reasons ({parts}); no split, card or push was "
        f"written from it. Re-run the same command to finish: {where} keeps every completion, only the failed "
        "ones are asked again"
    )


class Submitted(FineproofsError):
    """Work was submitted to a scheduler (Slurm, Ray); re-run the command to collect it."""

    exit_code = 0


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.I)
_KEYLIKE = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_-]{20,}"
    r"|xox[baprs]-[A-Za-z0-9-]{8,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
)
_BEARER = re.compile(r"(?i)\b(bearer|api[_-]?key|token|password|secret)(\s*[:=]\s*|\s+)([^\s,;'\"]{6,})")


_SECRETS: set[str] = set()  # key values read from the environment (HTTP engines register theirs)


def register_secret(value: str) -> None:
    """Redact ``value`` itself from now on, whatever its shape (a key a server may echo back)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with URL credentials (``user:password@``), every registered secret value
    and anything shaped like an API key or token replaced by ``***``."""
    if not text:
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)
    text = _KEYLIKE.sub("***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
