"""Keyword tool predictor T̂(q) — spec §3 step 2. The dictionary is configurable."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

DEFAULT_TOOL_KEYWORDS: dict[str, tuple[str, ...]] = {
    "python": ("python", "code", "function", "def", "implement", "program", "script",
               "return", "list", "string", "algorithm", "sort"),
    "calculator": ("calculate", "compute", "sum", "product", "percent", "percentage",
                   "how many", "how much", "total", "average", "multiply", "divide", "square"),
    "search": ("search", "look up", "lookup", "find", "who", "when", "where", "which",
               "latest", "source", "wikipedia"),
    "file": ("file", "files", "csv", "json", "directory", "folder", "path", "save to", "load from"),
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
