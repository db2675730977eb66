"""Static-base evaluation on the RouterBench TEST split: base = every model's train outcome
(the full protocol's start), each test query routed with posterior means at every w_c; no
learning from test outcomes (the bench's full protocol does learn). Measurement only.

    python benchmarks/static_eval_evoroute.py [--wide]
"""
import sys
import time
from dataclasses import replace

import cv_evoroute as cv  # this script's folder is on sys.path when it runs
import numpy as np

from evoroute.evaluation import metrics
from evoroute.policy.evoroute import EvoRouteConfig
from evoroute.settings import DEFAULTS, offline_env

offline_env()
W_P, W_C, W_L = DEFAULTS.weights
tr, te, infos = cv.load_splits("routerbench")
y, cost = te.task_success(), te.costs
sq, sc = np.nanmean(y, 0), np.nansum(cost, 0)
# the bench's 14-point grid; --wide adds 5, 10, 30, 100, 1000 (the sweep then reaches the
# cheapest model, which RouterBench's AIQ rewards)
GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0)
if "--wide" in sys.argv:
    GRID = GRID + (5.0, 10.0, 30.0, 100.0, 1000.0)
out = {}
for name, kw in [("evoroute (knn)", dict(estimator="knn")), ("evoroute-lin", dict(estimator="linear")),
                 ("evoroute-paper", dict(estimator="paper")),
                 ("knn no-role-tool", dict(estimator="knn", channels=("semantic",))),
                 ("knn no-pareto", dict(estimator="knn", pareto=False)),
                 ("lin ridge 30", dict(estimator="linear", ridge=30.0)),
                 ("knn kappa 8", dict(estimator="knn", prior_strength=8.0))]:
    t0 = time.time()
    r = cv._router(infos, replace(EvoRouteConfig(), **kw))
    cv._load(r, tr, np.arange(len(tr)))
    P, C, D, E, CS, DS = cv.estimates(r, te, np.arange(len(te)))
    pts = []
    for wc in GRID:
        pick = cv.choose(P, C, D, E, CS, DS, (W_P, wc, W_L), r.config.pareto)
        rows = np.arange(len(te))
        pts.append((float(cost[rows, pick].sum()), float(y[rows, pick].mean()), wc))
    out[name] = pts
    print(name, f"{time.time()-t0:.0f}s", flush=True)
axis = max(max(c for c, _, _ in p) for p in out.values())
axis = max(axis, float(sc.max()))
single = np.stack([sc, sq], 1)
print(f"single-model hull AIQ {metrics.aiq(single, max_cost=axis):.4f}; best single "
      f"{te.models[int(np.argmax(sq))]} {sq.max():.3f} ${sc[np.argmax(sq)]:.3f}; axis ${axis:.3f}")
g4c = sc[np.argmax(sq)]
for name, pts in out.items():
    arr = np.array([(c, q) for c, q, _ in pts])
    d = [p for p in pts if p[2] == W_C][0]
    print(f"{name:20} AIQ {metrics.aiq(arr, max_cost=axis):.4f}  default w_c={W_C:g}: q {d[1]:.3f} "
          f"cost ${d[0]:.3f} ({100*d[0]/g4c:.0f}% of best single)  sweep " +
          " ".join(f"{wc}:{q:.3f}/${c:.2f}" for c, q, wc in pts))
