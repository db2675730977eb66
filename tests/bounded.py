"""Run a check on hostile input in a fresh interpreter that must end: a pattern gone
super-linear again then fails the test after ``seconds`` instead of hanging the suite (a guard
against hours, not a speed goal: these checks take about a second)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ends_within(code: str, seconds: float = 120.0) -> None:
    try:
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=seconds,
                           capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"did not end within {seconds:g} s (super-linear?):\n{code}") from None
    assert r.returncode == 0, r.stderr[-3000:]
