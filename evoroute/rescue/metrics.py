"""What Atropos reports, computed from replayed runs (one value per run of a split).

With ``base`` the runs' success under the base policy alone, ``success`` / ``cost`` under the
rescue policy, ``swapped`` whether the rescue swapped the run, and the strong model's quality
``Q_s`` (share of runs it completes) and total cost ``C_s`` on the same runs:

- ``quality_kept`` = mean(success) / Q_s: the share of the strong model's quality kept;
- ``cost_share`` = sum(cost) / C_s: at what share of its cost;
- ``rescue_rate`` = #(base fails and success) / #(base fails): among the runs the base policy
  would fail, the share the rescue completes (a run it did not swap is not rescued);
- ``swap_precision_rescued`` = #(swapped, base fails, success) / #(swapped, base fails): of the
  swapped runs that were going to fail, the share the swap saves;
- ``false_swap_rate`` = #(swapped and base succeeds) / #(swapped): swapped runs that would have
  succeeded anyway (their swap cost was spent for nothing);
- ``broken`` = #(swapped, base succeeds, not success): runs the swap turned into failures (the
  strong model failed a step the base got right);
- ``swap_rate`` = #(swapped) / #(runs).

A ratio whose denominator is 0 is None.
"""

from __future__ import annotations

import numpy as np


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def atropos_metrics(base: np.ndarray, success: np.ndarray, swapped: np.ndarray, cost: np.ndarray,
                    strong_quality: float, strong_cost: float) -> dict[str, float | int | None]:
    b = np.asarray(base, dtype=float) >= 0.5
    s = np.asarray(success, dtype=float) >= 0.5
    w = np.asarray(swapped, dtype=bool)
    c = np.asarray(cost, dtype=float)
    return {
        "runs": int(b.size),
        "quality": float(s.mean()) if s.size else None,
        "cost": float(c.sum()),
        "quality_kept": _ratio(float(s.mean()), strong_quality) if s.size else None,
        "cost_share": _ratio(float(c.sum()), strong_cost),
        "base_failures": int((~b).sum()),
        "rescued": int((~b & s).sum()),
        "rescue_rate": _ratio(float((~b & s).sum()), float((~b).sum())),
        "swapped": int(w.sum()),
        "swap_rate": _ratio(float(w.sum()), float(b.size)),
        "swap_precision_rescued": _ratio(float((w & ~b & s).sum()), float((w & ~b).sum())),
        "false_swaps": int((w & b).sum()),
        "false_swap_rate": _ratio(float((w & b).sum()), float(w.sum())),
        "broken": int((w & b & ~s).sum()),
    }
