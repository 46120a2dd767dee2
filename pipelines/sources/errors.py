"""Why a raw document could not become a problem (the quarantine reason)."""

from __future__ import annotations

from fineproofs.errors import DataError


class ParseError(DataError):
    """One source item cannot become a problem; ``reason`` is the quarantine key
    (``redirect``, ``bad_field``, ...) and ``detail`` says more."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def quarantine_reason(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason
