"""The retrieval inspector: what EvoRoute retrieves and decides for one typed instruction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evoroute.core.errors import ValidationError
from evoroute.core.types import Explanation, StepContext, Weights
from evoroute.settings import DEFAULTS
from evoroute.studio.explain import candidates_frame

CHANNELS = ("role", "semantic", "tool")


@dataclass(frozen=True)
class RetrievalInspection:
    role: str
    instruction: str
    semantic_available: bool
    note: str
    channels: pd.DataFrame            # per model: records per channel and in the union
    explanation: Explanation
    candidates: pd.DataFrame
    draws: pd.DataFrame               # per model: posterior draws of P, C, D (K samples)


def inspect_retrieval(index: Any, models: Sequence[Any], *, instruction: str, role: str,
                      weights: Weights, seed: int = DEFAULTS.seed, n_draws: int = 200,
                      embedder: Any = None, phase: str = "optimize") -> RetrievalInspection:
    """What EvoRoute sees and decides for one instruction, against the stored experience.

    ``index`` is an :class:`~evoroute.retrieval.index.ExperienceIndex` (from a SyncedIndex);
    the decision is ``EvoRouteRouter.decide`` with ``numpy.random.default_rng(seed)``, so the
    same inputs give the same draws and the same choice.
    """
    from evoroute.core.posterior import nig_sample, variance_floor
    from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter

    instruction = (instruction or "").strip()
    if not instruction:
        raise ValidationError("type an instruction to inspect", "instruction")
    if not (role or "").strip():
        raise ValidationError("pick a role", "role")
    note, emb = "", None
    if embedder is not None:
        emb = embedder.encode_one(instruction)
    else:
        note = "no embedder available: the semantic channel is off for this inspection"
    channels = CHANNELS if emb is not None else ("role", "tool")
    router = EvoRouteRouter(list(models), EvoRouteConfig(weights=weights, channels=channels),
                            index=index)
    step = StepContext(task_key="inspect", step_index=0, role=role, instruction=instruction,
                       phase=phase, embedding=emb)
    ret = router.retrieve(step)
    names = router.model_names
    idx = {m: i for i, m in enumerate(ret.models)}
    ch_rows = []
    for m in names:
        i = idx.get(m)
        row = {"model": m}
        for ch in CHANNELS:
            row[ch] = int(ret.channel_counts[ch][i]) if i is not None and ch in ret.channel_counts else 0
        row["union"] = int(ret.stats[i, 0]) if i is not None else 0
        ch_rows.append(row)
    expl = router.decide(step, np.random.default_rng(seed)).explanation
    est = ret.for_models(names)
    rng = np.random.default_rng(seed + 1)
    draws = []
    ok = est.n >= 2
    if ok.any():
        keep = np.flatnonzero(ok)
        for metric, mean, var, n in (("P", est.p_mean, est.p_var, est.n),
                                     ("C", est.c_mean, est.c_var, est.n_records),
                                     ("D", est.d_mean, est.d_var, est.n_records)):
            m = mean[keep]
            s = nig_sample(m, var[keep], n[keep], variance_floor(m, metric.lower()), rng, n_draws)
            for j, k in enumerate(keep):
                draws.append(pd.DataFrame({"model": names[k], "metric": metric, "draw": s[:, j]}))
    draws_df = pd.concat(draws, ignore_index=True) if draws else \
        pd.DataFrame(columns=["model", "metric", "draw"])
    return RetrievalInspection(role, instruction, emb is not None, note,
                               pd.DataFrame(ch_rows), expl, candidates_frame(expl), draws_df)
