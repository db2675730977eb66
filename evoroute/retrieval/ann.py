"""Nearest-neighbour search over unit vectors (cosine = inner product), exact while small,
an HNSW graph (usearch) once large (issue 9, item 6; the choice is measured in docs/performance.md).

:class:`VectorIndex` is append-only and incremental: ``add`` puts new vectors in the same
structure that ``search`` reads, so it is always in sync with what was added.

- Below ``exact_below`` vectors they live in a float32 numpy array and every search is an
  exact matrix-vector scan (faster than a graph at that size, and exact).
- When the count reaches ``exact_below`` the stored vectors are moved into a usearch HNSW
  index over float16 vectors (inner product) and the float32 array is freed: from then on the
  graph is the only copy (768 bytes per 384-d vector instead of 1,536). Similarities it
  returns are computed on float16 vectors (error ≲ 10⁻³ on unit vectors).
- Deterministic: usearch inserts on one thread (``threads=1``) in the order of the vectors,
  and its level generator has a fixed seed inside the library (it cannot be set from Python),
  so the same vectors added in the same order give the same graph whatever the batch sizes of
  the ``add`` calls were (tests/unit/test_ann.py checks both).

usearch is imported lazily, on the first switch to the graph.
"""

from __future__ import annotations

import numpy as np

EXACT_BELOW = 5_000       # vectors; below this an exact scan is as fast as the graph (measured)
HNSW_M = 16               # graph degree (level 0 keeps 2·M links)
EF_CONSTRUCTION = 64      # search depth when inserting
EF_SEARCH = 128           # minimum search depth of a query (raised to 2·k for larger k)


class VectorIndex:
    """Append-only nearest-neighbour index of unit vectors with integer ids."""

    def __init__(self, dim: int, *, exact_below: int | None = None, m: int = HNSW_M,
                 ef_construction: int = EF_CONSTRUCTION, ef_search: int = EF_SEARCH) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.dim = int(dim)
        self.exact_below = EXACT_BELOW if exact_below is None else int(exact_below)
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self._vec = np.empty((1024, self.dim), np.float32)   # exact store (None once a graph)
        self._ids = np.empty(1024, np.int64)                   # position -> id
        self._n = 0
        self._graph = None

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return self._n

    @property
    def exact(self) -> bool:
        """True while searches are exact scans (no graph yet)."""
        return self._graph is None

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._n]

    # ------------------------------------------------------------------ writes
    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append ``vectors`` (n, dim); ``ids`` default to their positions (len before, …)."""
        x = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        k = len(x)
        if k == 0:
            return
        new_ids = np.arange(self._n, self._n + k, dtype=np.int64) if ids is None \
            else np.asarray(ids, np.int64).reshape(-1)
        if len(new_ids) != k:
            raise ValueError(f"{k} vectors but {len(new_ids)} ids")
        self._ids = _reserve(self._ids, self._n + k)
        self._ids[self._n: self._n + k] = new_ids
        if self._graph is None and self._n + k < self.exact_below:
            self._vec = _reserve(self._vec, self._n + k)
            self._vec[self._n: self._n + k] = x
            self._n += k
            return
        if self._graph is None:
            self._to_graph()
        self._insert(x)
        self._n += k

    def _to_graph(self) -> None:
        _onnxruntime_first()
        from usearch.index import Index  # heavy: lazy

        self._graph = Index(ndim=self.dim, metric="ip", dtype="f16", connectivity=self.m,
                            expansion_add=self.ef_construction, expansion_search=self.ef_search)
        old = self._vec[: self._n]
        self._vec = None
        self._insert(old, 0)

    def _insert(self, x: np.ndarray, start: int | None = None) -> None:
        start = self._n if start is None else start
        # keys are positions; one thread: insertion order, hence the graph, is deterministic
        self._graph.add(np.arange(start, start + len(x), dtype=np.uint64), x, threads=1)

    # ------------------------------------------------------------------ reads
    def search(self, query: np.ndarray, k: int, ef: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest vectors to ``query``: (ids, inner products), most similar first."""
        k = min(int(k), self._n)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, self.dim))
        if self._graph is None:
            sims = self._vec[: self._n] @ q[0]
            top = np.argpartition(-sims, k - 1)[:k] if k < self._n else np.arange(self._n)
            top = top[np.lexsort((top, -sims[top]))]          # by similarity, then position
            return self._ids[top], sims[top]
        self._graph.expansion_search = max(self.ef_search, 2 * k, int(ef or 0))
        found = self._graph.search(q[0], k, threads=1)
        pos = np.asarray(found.keys, np.int64)
        sims = (1.0 - np.asarray(found.distances, np.float32)).astype(np.float32)  # ip: 1 − q·x
        return self._ids[pos], sims

    def range_search(self, query: np.ndarray, theta: float, start_k: int = 64,
                     max_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All vectors with inner product ≥ ``theta`` (exact scan), or, with the graph, the
        k-nearest with k doubled until the k-th falls below ``theta`` (or ``max_k``, default
        every vector, is reached): approximate, its recall is measured in the tests."""
        if self._n == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self._graph is None:
            sims = self._vec[: self._n] @ np.asarray(query, np.float32).reshape(self.dim)
            hit = np.flatnonzero(sims >= theta)
            return self._ids[hit], sims[hit]
        cap = self._n if max_k is None else min(int(max_k), self._n)
        k = min(max(1, int(start_k)), cap)
        while True:
            ids, sims = self.search(query, k)
            if sims.size < k or sims[-1] < theta or k >= cap:
                keep = sims >= theta
                return ids[keep], sims[keep]
            k = min(2 * k, cap)

    def scan(self, query: np.ndarray, start: int = 0) -> np.ndarray:
        """Inner products of ``query`` with every vector from position ``start`` on (a full
        scan: exact float32 while small, on the graph's float16 vectors after)."""
        q = np.asarray(query, np.float32).reshape(self.dim)
        start = max(0, int(start))
        if self._graph is None:
            return self._vec[start: self._n] @ q
        out = np.empty(max(0, self._n - start), np.float32)
        for lo in range(start, self._n, 65_536):
            hi = min(self._n, lo + 65_536)
            vecs = self._graph.get(np.arange(lo, hi, dtype=np.uint64), dtype=np.float32)
            out[lo - start: hi - start] = vecs @ q
        return out


def _onnxruntime_first() -> None:
    """Import onnxruntime (the embedder's fast path) before usearch: importing onnxruntime
    *after* usearch's extension is loaded crashes the process (segmentation fault in
    onnxruntime's pybind module, usearch 2.26.6 / onnxruntime 1.32.0, seen here); the other
    order works."""
    import importlib.util
    import sys

    if "usearch.compiled" not in sys.modules and importlib.util.find_spec("onnxruntime"):
        import onnxruntime  # noqa: F401


def _reserve(a: np.ndarray, need: int) -> np.ndarray:
    """``a`` with room for ``need`` rows: grows by 1.5× into np.empty (untouched pages of the
    new capacity are not resident, and the old array is freed right after the copy)."""
    if need <= len(a):
        return a
    b = np.empty((max(need, len(a) + len(a) // 2), *a.shape[1:]), a.dtype)
    b[: len(a)] = a
    return b


__all__ = ["VectorIndex", "EXACT_BELOW", "HNSW_M", "EF_CONSTRUCTION", "EF_SEARCH"]
