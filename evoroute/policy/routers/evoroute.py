"""EvoRoute's registry names: ``evoroute`` (the query-aware default) and ``evoroute-paper``
(the paper's literal union), each with its ablations ``-no-cold-start``, ``-no-role-tool``,
``-no-ts``, ``-no-pareto``; ``evoroute-knn`` / ``evoroute-lin``: each estimator by name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from evoroute.core.types import ModelInfo
from evoroute.policy.base import Router
from evoroute.policy.evoroute import ABLATIONS, EvoRouteConfig, EvoRouteRouter

#: registry family -> the estimator it sets (None: the configuration's own, "knn" by default)
VARIANTS: dict[str, str | None] = {"evoroute": None, "evoroute-paper": "paper",
                                   "evoroute-knn": "knn", "evoroute-lin": "linear"}
#: the variants whose ablations are registered
ABLATED = ("evoroute", "evoroute-paper")


def _factory(variant: str, ablation: str | None = None):
    estimator = VARIANTS[variant]

    def make(models: list[ModelInfo], config: EvoRouteConfig | None = None,
             **overrides: Any) -> Router:
        cfg = config or EvoRouteConfig()
        if estimator is not None:
            cfg = replace(cfg, estimator=estimator)
        if ablation:
            cfg = replace(cfg, **ABLATIONS[ablation])
        router = EvoRouteRouter(models, cfg, name=variant + (f"-{ablation}" if ablation else ""),
                                **overrides)
        router.family = "evoroute-paper" if variant == "evoroute-paper" else "evoroute"
        router.ablation_of = variant if ablation else None
        return router
    return make


ROUTERS = {name: _factory(name) for name in VARIANTS}
ROUTERS.update({f"{v}-{a}": _factory(v, a) for v in ABLATED for a in ABLATIONS})
