"""Run metrics and router-comparison metrics (spec §6), as the peers compute them.

Two families:

* **Per-run summaries** (:func:`summarize`, :func:`gap_to_oracle`, :func:`cumulative_regret`,
  :func:`cumulative_cost`): what one run of one router did.
* **Trade-off curves** (:func:`upper_convex_hull`, :func:`aiq`, :func:`aiq_table`,
  :func:`pgr`, :func:`apgr`, :func:`cpt`, :func:`cost_at_quality`): how a router behaves
  when its cost knob is swept, so routers can be compared over the whole cost range and not
  at one arbitrary operating point.

AIQ follows RouterBench (``withmartian/routerbench``, ``evaluation/AIQ.py``); PGR, APGR and
CPT follow RouteLLM (``lm-sys/RouteLLM``, ``routellm/evals/evaluate.py``). Where we depart
from their code the docstring says so and why; ``docs/metrics.md`` has the full write-up.

One module per family (:mod:`.runs`, :mod:`.curves` for RouterBench's, :mod:`.routellm`),
re-exported here: ``metrics.aiq`` is the one name to call. Everything is pure: arrays in,
numbers out, no I/O. Bad inputs a user can cause (empty sweeps, negative costs, mismatched
lengths, no quality gap) raise :class:`~evoroute.core.errors.ValidationError` naming the offending
argument (the checks live in :mod:`._checks`).
"""

from __future__ import annotations

from evoroute.evaluation.metrics.curves import (
    aiq,
    aiq_table,
    best_gain_over_hull,
    cost_at_quality,
    cost_share_at_parity,
    gain_over_hull,
    hull_quality_at,
    upper_convex_hull,
)
from evoroute.evaluation.metrics.routellm import apgr, cpt, pgr, strong_call_share
from evoroute.evaluation.metrics.runs import cumulative_cost, cumulative_regret, gap_to_oracle, summarize

__all__ = [
    "summarize",
    "upper_convex_hull",
    "aiq",
    "aiq_table",
    "strong_call_share",
    "pgr",
    "apgr",
    "cpt",
    "cost_at_quality",
    "hull_quality_at",
    "gain_over_hull",
    "best_gain_over_hull",
    "cost_share_at_parity",
    "gap_to_oracle",
    "cumulative_regret",
    "cumulative_cost",
]
