"""In-memory experience index: the three retrieval channels of spec §3 step 3, vectorised.

Design (see docs/decisions.md):
- Per-(role, tool-set) group aggregates of sufficient statistics per model are kept up to
  date on every append, so the role and tool channels cost O(#groups), not O(#records).
- Instructions are de-duplicated: the semantic channel scans one embedding per unique text.
  Only records found by the semantic channel and not already in a role/tool group are
  aggregated one by one.
- Optional caps (spec §3): ``max_per_channel`` keeps the most recent N records of the role and
  tool channels and the N most similar of the semantic channel; ``sem_scan_limit`` scans only
  the most recent N unique texts. Both default to None: the paper's full union.
The index only grows (append, fill task success); the owner syncs it from the database
incrementally by record id.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from evoroute.retrieval.ann import VectorIndex
from evoroute.settings import DEFAULTS

# Sufficient statistics per model: count, Σc, Σc², Σd, Σd², count with known P, ΣP, ΣP².
N, SC, SC2, SD, SD2, NP, SP, SP2 = range(8)
NSTAT = 8
CHANNELS = ("role", "semantic", "tool")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Similarity scans are matrix-vector products: one BLAS thread is several times faster
    than a pool that wakes and synchronises for each (measured on 2 shared cores: 13 ms vs
    1 ms per step). Wrap loops of decisions in it, not single calls."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


class _Grow:
    """A numpy array that grows its capacity by 1.5× on append (into np.empty: capacity not
    yet written is not resident memory; at 1M records doubling into np.full held 4 GB)."""

    def __init__(self, dtype, shape_tail: tuple[int, ...] = (), fill=0, cap: int = 1024) -> None:
        self.fill = fill
        self.a = np.full((cap, *shape_tail), fill, dtype=dtype)
        self.n = 0

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        if need > len(self.a):
            cap = max(need, len(self.a) + len(self.a) // 2)
            b = np.empty((cap, *self.a.shape[1:]), dtype=self.a.dtype)
            b[: self.n] = self.a[: self.n]
            self.a = b

    def extend(self, values: np.ndarray) -> None:
        self.reserve(len(values))
        self.a[self.n: self.n + len(values)] = values
        self.n += len(values)

    @property
    def view(self) -> np.ndarray:
        return self.a[: self.n]


@dataclass
class Retrieval:
    """Aggregated statistics of the retrieved set R, per model of the index."""

    models: list[str]
    stats: np.ndarray                 # (n_models, NSTAT)
    channel_counts: dict[str, np.ndarray]   # channel -> (n_models,) record counts

    def for_models(self, names: Sequence[str]) -> "Estimates":
        idx = {m: i for i, m in enumerate(self.models)}
        rows = np.array([self.stats[idx[m]] if m in idx else np.zeros(NSTAT) for m in names])
        return Estimates.from_stats(list(names), rows.reshape(len(names), NSTAT))

    def channel_totals(self, names: Sequence[str]) -> dict[str, int]:
        idx = [i for i, m in enumerate(self.models) if m in set(names)]
        out = {ch: int(cnt[idx].sum()) for ch, cnt in self.channel_counts.items()}
        out["union"] = int(self.stats[idx, N].sum()) if idx else 0
        return out


@dataclass
class Estimates:
    """Per-model means and sample variances of P, C, D and the counts behind them."""

    models: list[str]
    n_records: np.ndarray   # records retrieved (C and D known)
    n: np.ndarray           # records with a known performance signal (n_m of the spec)
    p_mean: np.ndarray
    p_var: np.ndarray
    c_mean: np.ndarray
    c_var: np.ndarray
    d_mean: np.ndarray
    d_var: np.ndarray

    @classmethod
    def from_stats(cls, models: list[str], s: np.ndarray) -> "Estimates":
        def mv(cnt, s1, s2):
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
                var = np.where(cnt > 1, (s2 - cnt * mean ** 2) / np.maximum(cnt - 1, 1), 0.0)
            return mean, np.maximum(var, 0.0)

        pm, pv = mv(s[:, NP], s[:, SP], s[:, SP2])
        cm, cv = mv(s[:, N], s[:, SC], s[:, SC2])
        dm, dv = mv(s[:, N], s[:, SD], s[:, SD2])
        return cls(models, s[:, N].astype(int), s[:, NP].astype(int), pm, pv, cm, cv, dm, dv)


class ExperienceIndex:
    """Append-only index of experience records for one router (or the whole base)."""

    def __init__(self, dim: int = 384, perf_signal: str = "task") -> None:
        if perf_signal not in ("task", "step"):
            raise ValueError("perf_signal must be 'task' or 'step'")
        self.dim, self.perf_signal = dim, perf_signal
        self.model_ids: dict[str, int] = {}
        self.role_ids: dict[str, int] = {}
        self.tool_bits: dict[str, int] = {}
        self._text_ids: dict[str, int] = {}
        self._texts: list[str] = []            # text id -> text (explanations name neighbours)
        self._emb = VectorIndex(dim)       # one vector per unique text; exact, then HNSW
        self._group_ids: dict[tuple[int, int], int] = {}
        self._g_role = _Grow(np.int32)
        self._g_mask = _Grow(np.int64)
        self._G = np.zeros((16, 16, NSTAT))
        self._r_model = _Grow(np.int32)
        self._r_role = _Grow(np.int32)
        self._r_mask = _Grow(np.int64)
        self._r_group = _Grow(np.int32)
        self._r_text = _Grow(np.int32, fill=-1)
        self._r_cost = _Grow(np.float64)
        self._r_dur = _Grow(np.float64)
        self._r_perf = _Grow(np.float64, fill=np.nan)
        self._r_dbid = _Grow(np.int64, fill=-1)     # database record id (-1: not stored)
        self._tasks: dict[Hashable, list[int]] = {}
        self.last_db_id = 0
        # bumped by every write: readers cache what depends only on the base (role priors)
        # under (revision, ...) and so never serve a stale value
        self.revision = 0
        self._cache: dict = {}

    # ------------------------------------------------------------ sizes and ids
    def __len__(self) -> int:
        return self._r_model.n

    @property
    def models(self) -> list[str]:
        return list(self.model_ids)

    @property
    def n_texts(self) -> int:
        return len(self._emb)

    def _id(self, table: dict[str, int], key: str) -> int:
        if key not in table:
            table[key] = len(table)
        return table[key]

    def tool_mask(self, tools: Iterable[str], create: bool = False) -> int:
        mask = 0
        for t in tools:
            if t not in self.tool_bits:
                if not create:
                    continue
                if len(self.tool_bits) >= 63:
                    raise ValueError("at most 63 distinct tools are supported")
                self.tool_bits[t] = len(self.tool_bits)
            mask |= 1 << self.tool_bits[t]
        return mask

    def _group(self, role_id: int, mask: int) -> int:
        key = (role_id, mask)
        if key not in self._group_ids:
            self._group_ids[key] = len(self._group_ids)
            self._g_role.extend(np.array([role_id]))
            self._g_mask.extend(np.array([mask], dtype=np.int64))
        return self._group_ids[key]

    def _ensure_G(self) -> None:
        g, m = len(self._group_ids), len(self.model_ids)
        if g > self._G.shape[0] or m > self._G.shape[1]:
            G = np.zeros((max(g, 2 * self._G.shape[0]), max(m, 2 * self._G.shape[1]), NSTAT))
            G[: self._G.shape[0], : self._G.shape[1]] = self._G
            self._G = G

    # ------------------------------------------------------------ writes
    def add_batch(self, *, roles: Sequence[str], models: Sequence[str], texts: Sequence[str],
                  embeddings: np.ndarray | Sequence[np.ndarray | None] | None,
                  tools: Sequence[Iterable[str]], costs: Sequence[float],
                  durations: Sequence[float], perf: Sequence[float | None],
                  task_refs: Sequence[Hashable] | None = None,
                  db_ids: Sequence[int] | None = None) -> None:
        """Append records. ``perf`` is the chosen performance signal or None if not yet known.

        ``embeddings`` may be None (no semantic channel for these records), an (n, dim) array,
        or a list with None entries. Texts seen before reuse their stored embedding.
        """
        k = len(models)
        if k == 0:
            return
        self._touch()
        start = len(self)
        m_ids = np.fromiter((self._id(self.model_ids, m) for m in models), np.int32, k)
        r_ids = np.fromiter((self._id(self.role_ids, r) for r in roles), np.int32, k)
        masks = np.fromiter((self.tool_mask(t, create=True) for t in tools), np.int64, k)
        groups = np.fromiter((self._group(int(r), int(t)) for r, t in zip(r_ids, masks)), np.int32, k)
        text_ids = np.full(k, -1, np.int32)
        new_vecs = []
        for i, txt in enumerate(texts):
            tid = self._text_ids.get(txt)
            if tid is None:
                vec = None if embeddings is None else embeddings[i]
                if vec is None:
                    continue
                tid = len(self._emb) + len(new_vecs)
                self._text_ids[txt] = tid
                self._texts.append(txt)
                new_vecs.append(np.asarray(vec, np.float32))
            text_ids[i] = tid
        if new_vecs:
            self._emb.add(np.vstack(new_vecs))
        cost = np.asarray(costs, np.float64)
        dur = np.asarray(durations, np.float64)
        p = np.array([np.nan if v is None else float(v) for v in perf], np.float64)
        for arr, vals in ((self._r_model, m_ids), (self._r_role, r_ids), (self._r_mask, masks),
                          (self._r_group, groups), (self._r_text, text_ids), (self._r_cost, cost),
                          (self._r_dur, dur), (self._r_perf, p)):
            arr.extend(vals)
        self._r_dbid.extend(np.full(k, -1, np.int64) if db_ids is None or not len(db_ids)
                            else np.asarray(db_ids, np.int64))
        self._ensure_G()
        known = ~np.isnan(p)
        pk = np.where(known, p, 0.0)
        contrib = np.stack([np.ones(k), cost, cost ** 2, dur, dur ** 2, known.astype(float),
                            pk, pk ** 2], axis=1)
        np.add.at(self._G, (groups, m_ids), contrib)
        if task_refs is not None:
            for i, ref in enumerate(task_refs):
                if ref is not None:
                    self._tasks.setdefault(ref, []).append(start + i)
        if db_ids is not None and len(db_ids):
            self.last_db_id = max(self.last_db_id, int(max(db_ids)))

    def has_text(self, text: str) -> bool:
        """Whether the index holds an embedding for ``text`` (its records reuse it)."""
        return text in self._text_ids

    def add(self, *, role: str, model: str, text: str, embedding: np.ndarray | None,
            tools: Iterable[str], cost: float, duration: float, perf: float | None,
            task_ref: Hashable | None = None, db_id: int | None = None) -> None:
        self.add_batch(roles=[role], models=[model], texts=[text],
                       embeddings=None if embedding is None else [embedding], tools=[tools],
                       costs=[cost], durations=[duration], perf=[perf],
                       task_refs=None if task_ref is None else [task_ref],
                       db_ids=None if db_id is None else [db_id])

    def _touch(self) -> None:
        self.revision += 1
        self._cache.clear()

    def cached(self, key: Hashable, compute):
        """``compute()`` once per revision of the base and ``key`` (a value that depends only on
        the stored records; callers must not mutate it)."""
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    def pending_tasks(self) -> list[Hashable]:
        """Task references whose records still wait for the task's success."""
        return list(self._tasks)

    def set_task_perf(self, task_ref: Hashable, value: float) -> int:
        """Fill the performance signal of a finished task into its records still unknown."""
        recs = np.asarray(self._tasks.pop(task_ref, []), dtype=np.int64)
        if recs.size == 0:
            return 0
        self._touch()
        perf = self._r_perf.view
        recs = recs[np.isnan(perf[recs])]
        perf[recs] = value
        g, m = self._r_group.view[recs], self._r_model.view[recs]
        contrib = np.tile([1.0, value, value * value], (len(recs), 1))
        np.add.at(self._G, (g, m, NP), contrib[:, 0])
        np.add.at(self._G, (g, m, SP), contrib[:, 1])
        np.add.at(self._G, (g, m, SP2), contrib[:, 2])
        return int(recs.size)

    # ------------------------------------------------------------ reads
    def _accumulate(self, recs: np.ndarray) -> np.ndarray:
        nm = len(self.model_ids)
        out = np.zeros((nm, NSTAT))
        if recs.size == 0:
            return out
        m = self._r_model.view[recs]
        c, d, p = self._r_cost.view[recs], self._r_dur.view[recs], self._r_perf.view[recs]
        known = ~np.isnan(p)
        pk = np.where(known, p, 0.0)
        for j, w in enumerate((None, c, c * c, d, d * d, known.astype(float), pk, pk * pk)):
            out[:, j] = np.bincount(m, weights=w, minlength=nm)
        return out

    def group_stats(self, role: str | None = None) -> np.ndarray:
        """Statistics over all records of ``role`` (or all records): the fallbacks of step 9."""
        ng, nm = len(self._group_ids), len(self.model_ids)
        G = self._G[:ng, :nm]
        if role is None:
            return G.sum(axis=0)
        rid = self.role_ids.get(role, -1)
        return G[self._g_role.view == rid].sum(axis=0)

    def similarities(self, embedding: np.ndarray, sem_scan_limit: int | None = None
                     ) -> tuple[np.ndarray, int]:
        """Cosine of ``embedding`` with every stored text (the ``sem_scan_limit`` most recent):
        a full scan, exact float32 below ann.EXACT_BELOW texts, float16 vectors above."""
        lo = 0 if sem_scan_limit is None else max(0, self.n_texts - sem_scan_limit)
        return self._emb.scan(embedding, lo), lo

    def text(self, text_id: int) -> str:
        return self._texts[text_id]

    def nearest_texts(self, embedding: np.ndarray, k: int, sem_scan_limit: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` unique texts most similar to ``embedding``: (text ids, cosine similarities),
        most similar first. The one neighbour search of the query-aware estimator
        (evoroute/policy/estimators/): exact below ann.EXACT_BELOW texts, the HNSW graph
        above (recall vs exact ≥ 0.95, measured in tests/unit/test_ann.py and
        benchmarks/decision_overhead.py); a ``sem_scan_limit`` window is scanned exactly."""
        if not self.n_texts or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if sem_scan_limit is None or sem_scan_limit >= self.n_texts:
            tids, sims = self._emb.search(embedding, int(k))
            return tids.astype(np.int64), sims
        sims, lo = self.similarities(embedding, sem_scan_limit)
        if sims.size > k:
            top = np.argpartition(-sims, k - 1)[:k]
        else:
            top = np.arange(sims.size)
        top = top[np.argsort(-sims[top], kind="stable")]
        return (top + lo).astype(np.int64), sims[top]

    def retrieve(self, role: str, embedding: np.ndarray | None, tools: Iterable[str],
                 theta: float = DEFAULTS.theta, channels: Sequence[str] = CHANNELS,
                 max_per_channel: int | None = None,
                 sem_scan_limit: int | None = None) -> Retrieval:
        """R = R_role ∪ R_sem ∪ R_tool with per-model statistics (spec §3 steps 3–4)."""
        nm, ng = len(self.model_ids), len(self._group_ids)
        rid = self.role_ids.get(role, -1)
        tmask = self.tool_mask(tools)
        zeros = np.zeros(nm)
        counts = {ch: zeros.copy() for ch in CHANNELS}
        sem_recs, sims_of_recs = np.empty(0, np.int64), np.empty(0)
        if "semantic" in channels and embedding is not None and self.n_texts:
            if sem_scan_limit is None or sem_scan_limit >= self.n_texts:
                # every text with cosine ≥ θ: exact scan while small, HNSW k-NN with a growing
                # k once large (approximate; its recall is printed by decision_overhead.py)
                hit, hsims = self._emb.range_search(embedding, theta)
                lo = 0
            else:
                sims, lo = self.similarities(embedding, sem_scan_limit)
                hit = np.flatnonzero(sims >= theta)
                hsims = sims[hit]
            if hit.size:
                tids = self._r_text.view
                want = np.zeros(self.n_texts + 1, bool)
                want[hit + lo] = True
                sem_recs = np.flatnonzero(want[tids])       # tids == -1 maps to the last slot
                tsim = np.full(self.n_texts + 1, -np.inf)
                tsim[hit + lo] = hsims
                sims_of_recs = tsim[tids[sem_recs]]
        if max_per_channel is None:
            G = self._G[:ng, :nm]
            in_role = (self._g_role.view == rid) if "role" in channels else np.zeros(ng, bool)
            in_tool = ((self._g_mask.view & tmask) != 0) if ("tool" in channels and tmask) \
                else np.zeros(ng, bool)
            gsel = in_role | in_tool
            stats = G[gsel].sum(axis=0) if gsel.any() else np.zeros((nm, NSTAT))
            counts["role"] = G[in_role, :, N].sum(axis=0) if in_role.any() else zeros
            counts["tool"] = G[in_tool, :, N].sum(axis=0) if in_tool.any() else zeros
            if sem_recs.size:
                counts["semantic"] = np.bincount(self._r_model.view[sem_recs], minlength=nm)
                extra = sem_recs[~gsel[self._r_group.view[sem_recs]]]
                stats = stats + self._accumulate(extra)
            return Retrieval(self.models, stats, counts)
        cap = int(max_per_channel)
        parts = []
        if "role" in channels:
            r = np.flatnonzero(self._r_role.view == rid)[-cap:]
            counts["role"] = np.bincount(self._r_model.view[r], minlength=nm)
            parts.append(r)
        if "tool" in channels and tmask:
            t = np.flatnonzero((self._r_mask.view & tmask) != 0)[-cap:]
            counts["tool"] = np.bincount(self._r_model.view[t], minlength=nm)
            parts.append(t)
        if sem_recs.size:
            if sem_recs.size > cap:
                top = np.argpartition(-sims_of_recs, cap - 1)[:cap]
                sem_recs = np.sort(sem_recs[top])
            counts["semantic"] = np.bincount(self._r_model.view[sem_recs], minlength=nm)
            parts.append(sem_recs)
        union = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        return Retrieval(self.models, self._accumulate(union), counts)
