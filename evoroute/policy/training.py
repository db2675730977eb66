"""What the trained routers read from the train split's outcome table
(:class:`~evoroute.backends.base.OutcomeTable`): per-model means, the strong/weak pair, the
cost/quality ladder, folds by task, and a cache of fitted predictors."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError

N_FOLDS = 5
_FIT_CACHE: dict[tuple, Any] = {}  # fitted predictors per (kind, params, table fingerprint)


def l2(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def nanmean_cols(a: np.ndarray) -> np.ndarray:
    """Column means over the recorded (non-NaN) entries; NaN for a column with none."""
    with np.errstate(invalid="ignore"):
        cnt = (~np.isnan(a)).sum(axis=0)
        return np.where(cnt > 0, np.nansum(a, axis=0) / np.maximum(cnt, 1), np.nan)


def strong_weak_pair(names: Sequence[str], table: Any, weak_cost_ratio: float = 0.1
                     ) -> tuple[str, str]:
    """RouteLLM's pair from train outcomes: strong = the best single model; weak = the best
    model whose mean cost is at most ``weak_cost_ratio`` of the strong one's (else the
    cheapest other model)."""
    cols = {n: j for j, n in enumerate(table.models)}
    mine = [n for n in names if n in cols]
    if len(mine) < 2:
        raise EvoRouteError("a strong/weak pair needs train outcomes of at least two models")
    q = nanmean_cols(table.scores[:, [cols[n] for n in mine]])
    c = nanmean_cols(table.costs[:, [cols[n] for n in mine]])
    s = int(np.nanargmax(q))
    others = [i for i in range(len(mine)) if i != s]
    cheap = [i for i in others if c[i] <= weak_cost_ratio * c[s]]
    w = max(cheap, key=lambda i: (q[i], -c[i])) if cheap else min(others, key=lambda i: c[i])
    return mine[s], mine[w]


def cost_quality_ladder(names: Sequence[str], table: Any) -> list[str]:
    """Models by mean train cost, keeping each that beats every cheaper one kept: the
    train split's cost/quality frontier, cheapest first (the cascades' escalation order)."""
    cols = {n: j for j, n in enumerate(table.models)}
    mine = [n for n in names if n in cols]
    q = nanmean_cols(table.scores[:, [cols[n] for n in mine]])
    c = nanmean_cols(table.costs[:, [cols[n] for n in mine]])
    ladder, best = [], -np.inf
    for i in sorted(range(len(mine)), key=lambda i: (c[i], -q[i], mine[i])):
        if q[i] > best:
            ladder.append(mine[i])
            best = q[i]
    return ladder


def task_folds(task_keys: Sequence[str], n_folds: int = N_FOLDS) -> np.ndarray:
    """Fold of each row from a hash of its task key: independent of row order and seed, and
    the steps of one task always share a fold."""
    return np.array([zlib.crc32(str(k).encode()) % n_folds for k in task_keys], dtype=np.int64)


def _fingerprint(table: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (table.scores, table.costs, table.embeddings):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update("\x1f".join(map(str, table.models)).encode())
    h.update("\x1f".join(map(str, table.roles)).encode())
    h.update("\x1f".join(map(str, table.task_keys)).encode())
    return h.hexdigest()


def cached_fit(kind: str, params: tuple, table: Any, build: Callable[[], Any]) -> Any:
    """Fitted predictors are reused across runs on the same train table (the benchmark fits
    each router once per process, not once per cost-knob setting)."""
    key = (kind, params, _fingerprint(table))
    if key not in _FIT_CACHE:
        if len(_FIT_CACHE) >= 16:
            _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
        _FIT_CACHE[key] = build()
    return _FIT_CACHE[key]


class TrainStats:
    """Per-role and global train means of every model's score and cost, and C_ref."""

    def __init__(self, table: Any, names: Sequence[str]) -> None:
        cols = {n: j for j, n in enumerate(table.models)}
        self.models = [n for n in names if n in cols]
        if not self.models:
            raise EvoRouteError("no train outcomes of any candidate model")
        pick = [cols[n] for n in self.models]
        self.scores = np.asarray(table.scores, dtype=float)[:, pick]
        self.costs = np.asarray(table.costs, dtype=float)[:, pick]
        self.roles = np.asarray(table.roles, dtype=object)
        self.role_names = sorted({str(r) for r in self.roles})
        self.role_of = {r: i for i, r in enumerate(self.role_names)}
        self.role_idx = np.array([self.role_of[str(r)] for r in self.roles], dtype=np.int64)
        self.q_glob, self.c_glob = nanmean_cols(self.scores), nanmean_cols(self.costs)
        self.q_role = np.full((len(self.role_names), len(self.models)), np.nan)
        self.c_role = np.full_like(self.q_role, np.nan)
        self.n_role = np.zeros_like(self.q_role)
        for i in range(len(self.role_names)):
            sel = self.role_idx == i
            self.q_role[i] = nanmean_cols(self.scores[sel])
            self.c_role[i] = nanmean_cols(self.costs[sel])
            self.n_role[i] = (~np.isnan(self.scores[sel])).sum(axis=0)
        # a model without outcomes in a role falls back to its global mean
        self.q_role = np.where(np.isnan(self.q_role), self.q_glob, self.q_role)
        self.c_role = np.where(np.isnan(self.c_role), self.c_glob, self.c_role)
        finite = self.c_glob[np.isfinite(self.c_glob)]
        self.c_ref = float(finite.max()) if finite.size and finite.max() > 0 else 1.0

    def role_means(self, role: str) -> tuple[np.ndarray, np.ndarray, bool]:
        i = self.role_of.get(str(role))
        if i is None:
            return self.q_glob, self.c_glob, False
        return self.q_role[i], self.c_role[i], True


def role_onehot(role_idx: np.ndarray, n_roles: int) -> np.ndarray:
    """One-hot rows of role indices (-1: a role not in the train split, all zeros)."""
    out = np.zeros((role_idx.size, n_roles), dtype=np.float32)
    ok = role_idx >= 0
    out[np.flatnonzero(ok), role_idx[ok]] = 1.0
    return out
