"""The Pareto explorer: models and routers on quality vs cost within a scope, the front, and
the utility-optimal model under a set of weights. Every point carries the kind of its numbers
(``source``: replayed / simulated / live / imported): kinds never share a point or a front."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlmodel import Session

from evoroute.core import labels
from evoroute.core.pareto import pareto_mask
from evoroute.core.types import Weights
from evoroute.core.utility import reference_scale, utility
from evoroute.storage import repo, views
from evoroute.storage.tables import Run

POINT_COLUMNS = ["name", "kind", "source", "n", "quality", "cost", "latency", "run", "label"]


@dataclass(frozen=True)
class Scope:
    """Which records a Pareto view covers: a run, a dataset (all its runs), a role, or all."""

    kind: str = "all"           # all | run | dataset | role
    value: str | int | None = None

    def run_ids(self, *, session: Session) -> list[int] | None:
        """The runs in scope (None: not restricted by run); a dataset without runs is [-1]."""
        if self.kind == "run":
            return [int(self.value)]
        if self.kind == "dataset":
            return views.run_ids_of_dataset(str(self.value), session=session) or [-1]
        return None

    def step_filter(self, *, session: Session,
                    run_ids: Sequence[int] | None = None) -> repo.StepFilter:
        """The scope's steps, restricted to ``run_ids`` when given (the runs of one kind)."""
        if self.kind == "role":
            return repo.StepFilter(roles=[str(self.value)], run_ids=run_ids)
        return repo.StepFilter(run_ids=run_ids if run_ids is not None
                               else self.run_ids(session=session))

    def describe(self) -> str:
        return "the whole base" if self.kind == "all" else f"{self.kind} {self.value}"


def points_label(runs: Sequence[Run]) -> str:
    """The caption of a scope's points: the labels of its runs (``recorded`` without runs)."""
    return labels.caption(labels.label_of(r) for r in runs) if runs else "recorded"


def latency_source(label: str) -> str:
    """Every latency source a caption names (``modelled``, ``modelled + measured``; a run
    labelled ``simulated`` has simulated latencies), else ``as imported`` (an imported run's
    rows each carry their own)."""
    parts = [p.strip() for p in label.split("+")]
    found = [s for s in labels.LATENCY_SOURCES
             if any(p == s or f"latency {s}" in p for p in parts)]
    return " + ".join(found) or "as imported"


def sources(points: pd.DataFrame) -> list[str]:
    """The kinds of numbers among ``points``, the one with most steps first."""
    if points.empty:
        return []
    return points.groupby("source")["n"].sum().sort_values(ascending=False, kind="stable") \
        .index.tolist()


def scope_options(*, session: Session) -> dict[str, list]:
    runs = repo.list_runs(session=session, limit=200)
    datasets = sorted({r.dataset for r in runs if r.dataset})
    return {"run": [r.id for r in runs], "dataset": datasets,
            "role": views.distinct_step_values("role", session=session)}


SUMS = ["n", "p_sum", "p_n", "c_sum", "d_sum"]


def _means(agg: pd.DataFrame, by: str | list[str], *, sort: bool) -> pd.DataFrame:
    """Per group of ``by``: steps ``n`` and mean quality (over the steps with a performance
    signal), cost and latency from the (run, model) sums, in one vectorised groupby."""
    g = agg[SUMS].astype(float).groupby([agg[c] for c in ([by] if isinstance(by, str) else by)],
                                         sort=sort).sum().reset_index()
    n, pn = g["n"], g["p_n"]
    return g.assign(n=n.astype(int), quality=(g["p_sum"] / pn.where(pn > 0)),
                    cost=g["c_sum"] / n, latency=g["d_sum"] / n)


def scope_points(scope: Scope, *, session: Session) -> pd.DataFrame:
    """Models and routers on (quality, cost, latency) per step within ``scope``.

    Model points: mean performance signal (P(τ), else σ), cost and latency of the steps each
    model was given, one point per kind of numbers (a model replayed and simulated is two
    points); the front is computed within each kind. Router points: the same means over each
    run's steps. Both are observed on the steps each one handled (a bandit run routes easy and
    hard steps differently), which the page says in its caption. One GROUP BY (run, model)
    over the covering index; models and runs are summed from it.
    """
    agg = views.model_run_sums(session=session,
                               role=str(scope.value) if scope.kind == "role" else None,
                               run_ids=scope.run_ids(session=session))
    if agg.empty:
        return pd.DataFrame(columns=[*POINT_COLUMNS, "pareto"])
    runs = {r.id: r for r in views.runs_by_ids(agg["run"].dropna().astype(int).unique().tolist(),
                                               session=session)}
    agg["source"] = [labels.kind_of(runs[int(r)].backend) if pd.notna(r) and int(r) in runs
                     else labels.kind_of(None) for r in agg["run"]]
    models = _means(agg, ["source", "model"], sort=False)
    out = [{"name": r["model"], "kind": "model", "source": r["source"], "n": int(r["n"]),
            "quality": r["quality"], "cost": r["cost"], "latency": r["latency"], "run": None,
            "label": ""} for r in models.to_dict("records")]
    by_run = _means(agg.dropna(subset=["run"]), "run", sort=True)
    for r in by_run.to_dict("records"):
        run = runs.get(int(r["run"]))
        if run is None:
            continue
        out.append({"name": f"{run.router} (run {run.id})", "kind": "router",
                    "source": labels.kind_of(run.backend), "n": int(r["n"]),
                    "quality": r["quality"], "cost": r["cost"], "latency": r["latency"],
                    "run": int(run.id), "label": labels.label_of(run)})
    df = pd.DataFrame(out, columns=POINT_COLUMNS).dropna(subset=["quality", "cost"]).reset_index(drop=True)
    df["pareto"] = False
    for _, g in df.groupby("source", sort=False):
        df.loc[g.index, "pareto"] = pareto_front_2d(g["quality"].to_numpy(float),
                                                    g["cost"].to_numpy(float))
    df["pareto"] = df["pareto"].astype(bool)
    return df


def pareto_front_2d(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Points no other point beats on both quality (max) and cost (min)."""
    return pareto_mask(quality, cost, np.zeros_like(cost))


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    index: int
    utilities: np.ndarray


def operating_point(points: pd.DataFrame, weights: Weights, kind: str = "model") -> OperatingPoint | None:
    """The utility-optimal model under ``weights`` — EvoRoute's utility on posterior means.

    Same normalisation as a routing decision (spec §3 step 7): C and D divided by the largest
    mean among the candidates, so the default weights trade comparable quantities.
    """
    sub = points[points["kind"] == kind]
    if sub.empty:
        return None
    p = sub["quality"].to_numpy(float)
    c = sub["cost"].to_numpy(float)
    d = sub["latency"].fillna(0.0).to_numpy(float)
    u = utility(p, c, d, weights, reference_scale(c), reference_scale(d))
    best = int(np.argmax(u))
    return OperatingPoint(str(sub["name"].iloc[best]), int(sub.index[best]), u)
