"""Keyword tool predictor T̂(q) — spec §3 step 2. The dictionary is configurable."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

DEFAULT_TOOL_KEYWORDS: dict[str, tuple[str, ...]] = {
    # Specific words only: generic ones ("which", "find", "list") fire on most questions and
    # turn the tool channel into "everything" (checked on the RouterBench train split).
    "python": ("python", "code", "function", "def", "implement", "program", "script",
               "algorithm", "regex", "sandbox"),
    "calculator": ("calculate", "compute", "percent", "percentage", "average", "multiply",
                   "divide", "sum of", "product of", "arithmetic", "calculator"),
    "search": ("search", "look up", "lookup", "latest", "news", "web", "wikipedia", "google"),
    "file": ("file", "files", "csv", "json", "directory", "folder", "save to", "load from"),
}


class ToolPredictor:
    """Predicts the tools a step needs from whole-word keyword matches (case-insensitive)."""

    def __init__(self, keywords: Mapping[str, Sequence[str]] | None = None) -> None:
        self.keywords = {t: tuple(k.lower() for k in ks)
                         for t, ks in (keywords or DEFAULT_TOOL_KEYWORDS).items()}
        self._patterns = {
            tool: re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k) for k in kws) + r")(?!\w)",
                             re.IGNORECASE)
            for tool, kws in self.keywords.items() if kws}

    @property
    def tools(self) -> list[str]:
        return sorted(self.keywords)

    def predict(self, text: str) -> frozenset[str]:
        return frozenset(t for t, pat in self._patterns.items() if pat.search(text or ""))


def parse_tools(value: str | Sequence[str] | None) -> frozenset[str]:
    """Tools as stored (``'a;b'``) or given (list) -> a set of clean names."""
    if value is None:
        return frozenset()
    items = value.split(";") if isinstance(value, str) else value
    return frozenset(s.strip() for s in items if s and s.strip())
