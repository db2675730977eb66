"""The Compare page: per-run metrics, headline metrics per run kind, quality-vs-cost hulls,
cumulative cost and regret against the per-step oracle of a replay dataset."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlmodel import Session

from evoroute.core import labels
from evoroute.core.errors import EvoRouteError
from evoroute.evaluation import metrics
from evoroute.storage import views
from evoroute.storage.tables import Run

#: A run -> its per-step oracle (best score per query id), or None when it has none.
OracleLookup = Callable[[Run], "dict[str, float] | None"]

CURVE_COLUMNS = ["run", "step", "cum_cost", "regret"]
POINT_COLUMNS = ["run", "router", "cost per task", "quality", "label", "kind"]
HEADLINE_COLUMNS = ("AIQ", "gain over single hull", "best gain over single hull (sweep)",
                    "cost share at parity")


@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame                     # one row per run
    points: pd.DataFrame                    # run, router, cost per task, quality, label, kind
    #: (router, kind) -> hull vertices (cost per task, quality): kinds never share a hull
    hulls: dict[tuple[str, str], np.ndarray]
    curves: pd.DataFrame                    # run, step, cumulative cost, cumulative regret
    notes: list[str]
    label: str
    #: run -> "router · run N · label", the name of the run in every table and chart
    run_names: dict[int, str]
    #: run -> where its latencies come from (modelled / measured / simulated / recorded)
    latency_sources: dict[int, str]
    #: the steps the curves cover: the table's scope ("test split", ...), or "mixed: ..."
    curve_scope: str


def run_name(run: Run) -> str:
    """``router · run N · label``: the name of a run in the legend of every chart."""
    return f"{run.router} · run {run.id} · {labels.label_of(run)}"


#: How the page words each latency source.
LATENCY_WORDS = {"modelled": "modelled from token counts", "measured": "measured",
                 "simulated": "simulated", "recorded": "as recorded in the imported file",
                 "unknown": "as the imported rows give them (source not stated)"}


def runs_by_latency_source(comp: Comparison) -> dict[str, list[int]]:
    """Latency source -> the runs in the table whose latencies come from it."""
    out: dict[str, list[int]] = {}
    for run in comp.table["run"] if not comp.table.empty else []:
        out.setdefault(comp.latency_sources[int(run)], []).append(int(run))
    return out


def latency_source(run: Run) -> str:
    """Where a run's latencies come from: the source its label names, else its backend's."""
    label = labels.label_of(run)
    for source in labels.LATENCY_SOURCES:
        if label == source or f"latency {source}" in label:
            return source
    return labels.DEFAULT_LATENCY.get(run.backend or "", "unknown")


def _evaluated_tasks(run_id: int, *, session: Session) -> pd.DataFrame:
    """The test split if the run has one, else every task outside the cold start."""
    df = views.finished_tasks(run_id, session=session)
    if (df["split"] == "test").any():
        return df[df["split"] == "test"]
    if (df["phase"] != "cold_start").any():
        return df[df["phase"] != "cold_start"]
    return df


def _scope(t: pd.DataFrame) -> str:
    if (t["split"] == "test").all():
        return "test split"
    if (t["phase"] != "cold_start").all():
        return "after cold start"
    return "all tasks"


def _headline(table: pd.DataFrame, points: pd.DataFrame, notes: list[str]) -> None:
    """AIQ, gain over the single-model hull (per run, best over each router's sweep) and cost
    share at parity with the best single model, per run kind (replayed / simulated / live
    points never share a hull). Reference: the ``single:<model>`` runs among the picked ones."""
    for c in HEADLINE_COLUMNS:
        table[c] = np.nan
    kinds = list(dict.fromkeys(points["kind"]))
    if len(kinds) > 1:
        notes.append("the picked runs mix kinds (" + ", ".join(kinds) + "): AIQ, hulls, gain and "
                     "parity are computed per kind, never across kinds")
    for kind in kinds:
        pk = points[points["kind"] == kind]
        curves = {rt: g[["cost per task", "quality"]].to_numpy(float) for rt, g in pk.groupby("router")}
        for rt, v in metrics.aiq_table(curves).items():
            table.loc[(table["router"] == rt) & (table["kind"] == kind), "AIQ"] = v
        singles = pk[pk["router"].str.startswith("single:")]
        if singles.empty:
            notes.append(f"{kind}: gain over the single-model hull and cost share at parity need "
                         "single:<model> runs of that kind among the picked runs")
            continue
        ref = singles[["cost per task", "quality"]].to_numpy(float)
        best = singles.sort_values(["quality", "cost per task"], ascending=[False, True]).iloc[0]
        for i in pk.index:
            m = table["run"] == pk.at[i, "run"]
            table.loc[m, "gain over single hull"] = metrics.gain_over_hull(
                ref, pk.at[i, "cost per task"], pk.at[i, "quality"])
        for rt, pts in curves.items():
            m = (table["router"] == rt) & (table["kind"] == kind)
            table.loc[m, "best gain over single hull (sweep)"] = metrics.best_gain_over_hull(ref, pts)
            if best["cost per task"] > 0:
                share = metrics.cost_share_at_parity(pts, best["quality"], best["cost per task"])
                table.loc[m, "cost share at parity"] = np.nan if share is None else share
        notes.append(f"{kind}: single-model hull from {len(singles)} single-model run(s) among the "
                     f"picked ones; best single model = {best['router']} (run {best['run']}, quality "
                     f"{best['quality']:.3f}); parity = cheapest picked run of the router within "
                     "0.5 pt of it; empty = never reached")


def _routellm(table: pd.DataFrame, points: pd.DataFrame, notes: list[str]) -> None:
    """APGR and CPT(50%, 80%) per run kind, with the cheapest picked single-model run of that
    kind as "weak" and the best one as "strong" (RouteLLM's setting)."""
    for c in ("APGR", "CPT(50%)", "CPT(80%)"):
        table[c] = np.nan
    kinds = list(dict.fromkeys(points["kind"]))
    for kind in kinds:
        _routellm_kind(table, points[points["kind"] == kind], notes,
                       f"{kind}: " if len(kinds) > 1 else "")


def _routellm_kind(table: pd.DataFrame, points: pd.DataFrame, notes: list[str],
                   prefix: str) -> None:
    singles = points[points["router"].str.startswith("single:")]
    if len(singles) < 2:
        notes.append(f"{prefix}APGR / CPT need two single-model runs (single:<model>) among the "
                     "picked runs, as weak and strong")
        return
    weak = singles.loc[singles["cost per task"].idxmin()]
    strong = singles.loc[singles["quality"].idxmax()]
    if not (strong["quality"] > weak["quality"] and strong["cost per task"] > weak["cost per task"]):
        notes.append(f"{prefix}APGR / CPT need a strong single model that is both better and "
                     "dearer than the weak one among the picked runs")
        return
    for _, g in points.groupby("router"):
        share = metrics.strong_call_share(g["cost per task"], weak["cost per task"],
                                          strong["cost per task"])
        q = g["quality"].to_numpy(float)
        c50 = metrics.cpt(share, q, weak["quality"], strong["quality"], 0.5)
        c80 = metrics.cpt(share, q, weak["quality"], strong["quality"], 0.8)
        m = table["run"].isin(g["run"])
        table.loc[m, "APGR"] = metrics.apgr(share, q, weak["quality"], strong["quality"])
        table.loc[m, "CPT(50%)"] = np.nan if c50 is None else c50
        table.loc[m, "CPT(80%)"] = np.nan if c80 is None else c80
    notes.append(f"{prefix}APGR / CPT: weak = {weak['router']} (run {weak['run']}), strong = "
                 f"{strong['router']} (run {strong['run']}); CPT is a share of the "
                 "weak-to-strong cost gap")


def compare_runs(run_ids: Sequence[int], *, session: Session,
                 oracle_lookup: OracleLookup | None = None) -> Comparison:
    """Metrics table, quality-vs-cost points with hulls, and cumulative curves for ``run_ids``.

    Tasks compared: the test split if the run has one, else every task outside the cold
    start; the cumulative curves cover the steps of those same tasks. Costs are per task so
    runs over different numbers of tasks line up; AIQ uses each router's runs as its sweep of
    the cost knob (weights, seeds), on one common axis per run kind. APGR / CPT need two
    single-model runs of a kind among those picked: the cheapest is "weak", the best one
    "strong" (RouteLLM's setting).
    """
    notes: list[str] = []
    runs = views.runs_by_ids(run_ids, session=session)
    if oracle_lookup is None:
        prefetch_oracles(runs)
    rows, pts, scopes = [], [], {}
    for r in runs:
        t = _evaluated_tasks(r.id, session=session)
        scopes[r.id] = t
        if t.empty:
            notes.append(f"run {r.id} has no finished task yet; left out")
            continue
        s = metrics.summarize(np.clip(t["success"].to_numpy(float), 0, 1),
                              t["cost"].to_numpy(float), t["duration"].to_numpy(float))
        label, kind = labels.label_of(r), labels.kind_of(r.backend)
        rows.append({"run": r.id, "router": r.router, "label": label, "kind": kind,
                     "scope": _scope(t), "tasks": int(s["n"]),
                     "quality": s["quality"], "cost (USD)": s["cost_usd"],
                     "cost per task (USD)": s["cost_per_query"],
                     "latency p50 (s)": s["latency_p50"], "latency p95 (s)": s["latency_p95"],
                     "cost per success (USD)": s["cost_per_success"]})
        pts.append({"run": r.id, "router": r.router, "cost per task": s["cost_per_query"],
                    "quality": s["quality"], "label": label, "kind": kind})
    table = pd.DataFrame(rows)
    points = pd.DataFrame(pts, columns=POINT_COLUMNS)
    hulls: dict[tuple[str, str], np.ndarray] = {}
    if not table.empty:
        hulls = {(rt, kind): metrics.upper_convex_hull(g[["cost per task", "quality"]].to_numpy(float))
                 for (rt, kind), g in points.groupby(["router", "kind"], sort=False)}
        _headline(table, points, notes)
        _routellm(table, points, notes)
        if points["router"].nunique() > 1:
            notes.append("AIQ compares routers on one cost axis (cost per task) per run kind; each "
                         "router's picked runs are its sweep")
    curve_frames = []
    for r in runs:
        if scopes[r.id].empty:
            continue
        c = step_curves(r, session=session, oracle_lookup=oracle_lookup,
                        task_ids=scopes[r.id]["id"].tolist())
        if c is None:
            continue
        if c["regret"].isna().all():
            notes.append(f"run {r.id}: no oracle for its steps (only replay runs know every model's "
                         "outcome), so no regret curve")
        curve_frames.append(c)
    curves_df = pd.concat(curve_frames, ignore_index=True) if curve_frames else \
        pd.DataFrame(columns=CURVE_COLUMNS)
    curve_scopes = sorted({_scope(t) for t in scopes.values() if not t.empty})
    curve_scope = (curve_scopes[0] if len(curve_scopes) == 1 else
                   "mixed: " + ", ".join(curve_scopes) if curve_scopes else "no finished task")
    if len(curve_scopes) > 1:
        notes.append("the picked runs have different scopes (" + ", ".join(curve_scopes) + "): "
                     "each curve covers its run's scope column")
    return Comparison(table, points, hulls, curves_df, notes,
                      labels.caption(labels.label_of(r) for r in runs),
                      {int(r.id): run_name(r) for r in runs},
                      {int(r.id): latency_source(r) for r in runs}, curve_scope)


def step_curves(run: Run, *, session: Session, oracle_lookup: OracleLookup | None = None,
                task_ids: Sequence[int] | None = None) -> pd.DataFrame | None:
    """Cumulative cost and (for replay runs) cumulative regret against the per-step oracle,
    over the steps of ``task_ids`` (None: every step of the run)."""
    steps = views.step_outcomes(run.id, session=session)
    if task_ids is not None:
        steps = steps[steps["task_id"].isin(list(task_ids))].reset_index(drop=True)
    if steps.empty:
        return None
    cost = steps["cost_usd"].fillna(0.0).to_numpy(float)
    out = pd.DataFrame({"run": run.id, "step": np.arange(1, len(steps) + 1),
                        "cum_cost": metrics.cumulative_cost(cost), "regret": np.nan})
    oracle = (oracle_lookup or replay_oracle)(run)
    if oracle is not None:
        chosen = steps["step_success"].astype(float).to_numpy()
        best = np.array([oracle.get(q, np.nan) for q in steps["query_id"]], float)
        ok = np.isfinite(chosen) & np.isfinite(best)
        if ok.any():
            reg = np.zeros(len(steps))
            reg[ok] = best[ok] - chosen[ok]
            out["regret"] = np.cumsum(reg)
    return out


_ORACLES: dict[str, dict[str, float]] = {}
_ORACLE_LOADS: dict[str, threading.Thread] = {}
_ORACLE_LOCK = threading.Lock()


def _load_oracle(dataset: str) -> None:
    from evoroute.datasets import load_dataset

    try:
        df = load_dataset(dataset)
    except EvoRouteError:
        return                     # no oracle; the next call tries again
    _ORACLES[dataset] = df.groupby("query_id")["score"].max().astype(float).to_dict()


def prefetch_oracles(runs: Sequence[Run]) -> None:
    """Start reading the per-step oracle of every replay dataset among ``runs`` in a background
    thread: the bundled data takes a few tenths of a second to read, which then overlaps the
    SQL reads of :func:`compare_runs` instead of following them."""
    for dataset in dict.fromkeys(r.dataset for r in runs if r.backend == "replay" and r.dataset):
        prefetch_oracle(dataset)


def prefetch_oracle(dataset: str) -> None:
    """Start reading one replay dataset's per-step oracle in a background thread (once)."""
    with _ORACLE_LOCK:
        if dataset in _ORACLES or dataset in _ORACLE_LOADS:
            return
        _ORACLE_LOADS[dataset] = t = threading.Thread(
            target=_load_oracle, args=(dataset,), name=f"oracle-{dataset}", daemon=True)
    t.start()


def replay_oracle(run: Run) -> dict[str, float] | None:
    """Best recorded score per query id of a replay run's dataset (the per-step oracle),
    computed once per dataset and process (a prefetch in flight is waited for)."""
    if run.backend != "replay" or not run.dataset:
        return None
    if run.dataset not in _ORACLES:
        with _ORACLE_LOCK:
            loading = _ORACLE_LOADS.pop(run.dataset, None)
        if loading is not None:
            loading.join()
        if run.dataset not in _ORACLES:
            _load_oracle(run.dataset)
    return _ORACLES.get(run.dataset)


def comparison_csv(table: pd.DataFrame) -> bytes:
    """The comparison table as CSV, text cells escaped against spreadsheet formulas."""
    from evoroute.csvio.cells import escape_cell

    safe = table.copy()
    for c in safe.columns:
        if safe[c].dtype == object:
            safe[c] = safe[c].map(lambda v: escape_cell(v) if isinstance(v, str) else v)
    return safe.to_csv(index=False).encode()
