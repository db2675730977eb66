"""Each query-aware design at its shipped defaults (and the fixed ridges it replaced), 5-fold CV
on the TRAIN split of each dataset only: AIQ per fold, Brier, quality and cost share at the
default weights. The table behind docs/query_aware.md's "ridge by empirical Bayes".

    PYTHONPATH=. python benchmarks/cv_designs.py [--data routerbench,agent_steps] [--folds 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv_evoroute as cv  # noqa: E402  (this script's folder)

from evoroute.policy.evoroute import EvoRouteConfig  # noqa: E402
from evoroute.settings import offline_env  # noqa: E402

DESIGNS = [("kNN, κ auto (evoroute)", {}),
           ("linear, ridge auto (evoroute-lin)", dict(estimator="linear", ridge="auto")),
           ("linear, ridge 300", dict(estimator="linear", ridge=300.0)),
           ("linear, ridge 3", dict(estimator="linear", ridge=3.0)),
           ("paper's union (evoroute-paper)", dict(estimator="paper"))]


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="routerbench,agent_steps")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for data in args.data.split(","):
        tab, infos = cv.load_train(data, args.seed)
        print(f"{data}: train split {len(tab)} steps, {len(tab.models)} models", flush=True)
        for name, kw in DESIGNS:
            t = time.time()
            r = cv.cross_validate(tab, infos, replace(EvoRouteConfig(), **kw), args.folds, args.seed)
            print(f"  {name:34} AIQ {r['aiq']:.4f}±{r['aiq_sd']:.4f} Brier {r['brier']:.4f} "
                  f"q@default {r['q_default']:.3f} cost share {r['cost_share_default']:.2f} "
                  f"hull {r['single_hull_aiq']:.4f} folds {r['aiq_folds']} ({time.time() - t:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
