"""What a tool call returns: :class:`ToolResult` (a failed call is an outcome, not a crash)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class ToolError(ValueError):
    """An expression a tool refuses or cannot compute (the message says why)."""


@dataclass(frozen=True)
class ToolResult:
    """One tool call: what was asked, what came back, how long it took."""

    tool: str
    expression: str
    ok: bool
    value: Any = None
    error: str | None = None
    elapsed_s: float = 0.0
    isolation: str | None = None    # python tool: the OS isolation it ran in (bwrap, unshare...)

    def number(self) -> float | None:
        """The result as a finite number, if it is one."""
        if not self.ok or isinstance(self.value, bool):
            return None
        if isinstance(self.value, (int, float)) and math.isfinite(float(self.value)):
            return float(self.value)
        return None

    def display(self) -> str:
        if not self.ok:
            return f"error: {self.error}"
        return format_value(self.value)


def format_value(v: Any) -> str:
    """Numbers without float noise (0.1+0.2 -> 0.3), everything else as JSON-ish text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.10g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
