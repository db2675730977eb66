"""How much AIQ can knowing each query's cost add on RouterBench? (issue 9, the "why" of the target)

Quality estimates are the per-(role, model) train means (the per-role table: no per-query
quality signal); the cost estimate per (query, model) is, in turn,

- ``role``:  the (role, model) train mean (what the per-role table uses),
- ``length``: a per-model least-squares line of cost on the query's input tokens (known before
  the call: it is the prompt),
- ``exact``: the query's recorded cost itself (an oracle for cost only, not for quality).

Each query goes to argmax P̂ − w_c·Ĉ/C_ref over a 61-point w_c grid (0 and 10⁻³ … 10³), C_ref
the largest candidate mean of the role (``role``) or of the query's own estimates (``step``),
and the AIQ of that sweep is printed. Measured on 5 folds of the train split (fit on four, score
on the fifth) and, as a measurement only, on the test split (fit on train). Nothing is chosen here.

    python benchmarks/cost_signal.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evoroute.datasets.routerbench import load_dataset
from evoroute.evaluation.metrics.curves import aiq

GRID = np.r_[0.0, np.geomspace(1e-3, 1e3, 60)]


def _wide(df: pd.DataFrame, models: list[str]) -> tuple[pd.DataFrame, ...]:
    piv = {c: df.pivot(index="query_id", columns="model", values=c)[models]
           for c in ("score", "cost_usd", "input_tokens")}
    keep = piv["score"].dropna().index           # queries with every model's outcome
    role = df.groupby("query_id").role.first().loc[keep]
    return piv["score"].loc[keep], piv["cost_usd"].loc[keep], piv["input_tokens"].loc[keep], role


def sweep_aiqs(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    models = sorted(train.model.unique())
    p_role = train.groupby(["role", "model"]).score.mean()
    c_role = train.groupby(["role", "model"]).cost_usd.mean()
    line = {}
    for m in models:
        d = train[train.model == m]
        line[m] = np.linalg.lstsq(np.c_[np.ones(len(d)), d.input_tokens], d.cost_usd, rcond=None)[0]
    S, C, T, role = _wide(test, models)
    P = np.array([[p_role[(r, m)] for m in models] for r in role])
    c_r = np.array([[c_role[(r, m)] for m in models] for r in role])
    # an unconstrained line can slope down (claude-*, gpt-4: longer prompts, shorter answers);
    # a cost estimate is kept above a tenth of the model's cheapest recorded call
    floor = {m: 0.1 * float(train.cost_usd[train.model == m].min()) for m in models}
    c_len = np.stack([np.maximum(line[m][0] + line[m][1] * T[m].to_numpy(), floor[m])
                      for m in models], axis=1)
    rows = np.arange(len(S))
    curves = {}
    for name, est in (("role", c_r), ("length", c_len), ("exact", C.to_numpy())):
        for ref_name, ref in (("role", c_r.max(axis=1, keepdims=True)),
                              ("step", est.max(axis=1, keepdims=True))):
            pts = []
            for w in GRID:
                j = (P - w * est / ref).argmax(axis=1)
                pts.append((C.to_numpy()[rows, j].sum(), S.to_numpy()[rows, j].mean()))
            curves[f"{name} / C_ref {ref_name}"] = np.array(pts)
    # one cost axis for all: up to the most expensive single model (or sweep point, if above)
    max_cost = max(float(C.sum(axis=0).max()), *(float(c[:, 0].max()) for c in curves.values()))
    return {k: aiq(c, max_cost) for k, c in curves.items()}


def main() -> int:
    df = load_dataset("routerbench")
    train, test = df[df.split == "train"], df[df.split == "test"]
    qids = np.sort(train.query_id.unique())
    folds = np.random.default_rng(0).permutation(len(qids)) % 5
    cv: dict[str, list[float]] = {}
    for f in range(5):
        held = set(qids[folds == f])
        res = sweep_aiqs(train[~train.query_id.isin(held)], train[train.query_id.isin(held)])
        for k, v in res.items():
            cv.setdefault(k, []).append(v)
    on_test = sweep_aiqs(train, test)
    print("cost estimate / C_ref | AIQ, 5-fold CV on train (mean ± sd) | AIQ, test split")
    for k, v in cv.items():
        print(f"{k:22s} | {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} | {on_test[k]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
