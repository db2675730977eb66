"""evoroute.retrieval.ann.VectorIndex: exact below the threshold, HNSW (usearch) above.

Recall of the graph against an exact numpy search on random and clustered unit vectors
(seeded), incremental adds, the exact path against brute force, determinism, and the
ExperienceIndex's neighbour search and semantic channel once the graph is on."""

from __future__ import annotations

import numpy as np
import pytest

from evoroute.retrieval.ann import VectorIndex
from evoroute.retrieval.index import ExperienceIndex


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _random(n: int, dim: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng(seed).standard_normal((n, dim)))


def _clustered(n: int, dim: int, seed: int, clusters: int = 40, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((clusters, dim)))
    return _unit(centers[rng.integers(clusters, size=n)] + spread * _unit(rng.standard_normal((n, dim))))


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = x @ q
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    return order, s[order]


def _recall(ix: VectorIndex, x: np.ndarray, queries: np.ndarray, k: int) -> float:
    return float(np.mean([len(np.intersect1d(ix.search(q, k)[0], _brute(x, q, k)[0])) / k
                          for q in queries]))


def _graph(x: np.ndarray, **kw) -> VectorIndex:
    ix = VectorIndex(x.shape[1], exact_below=1, **kw)
    ix.add(x)
    assert not ix.exact
    return ix


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("k", [10, 32])
def test_hnsw_recall_against_exact_search(kind, k):
    # random 48-d and clustered 384-d (the embeddings' dimension), 3,000 vectors
    x = _random(3000, 48, 1) if kind == "random" else _clustered(3000, 384, 2)
    queries = _unit(x[:60] + 0.2 * _random(60, x.shape[1], 3))
    ix = _graph(x)
    assert _recall(ix, x, queries, k) >= 0.95


def test_exact_fallback_equals_numpy_brute_force():
    x = _clustered(700, 384, 4)
    ix = VectorIndex(384, exact_below=10_000)
    ix.add(x[:300])
    ix.add(x[300:])
    assert ix.exact and len(ix) == 700
    for q in _random(20, 384, 5):
        ids, sims = ix.search(q, 25)
        want_ids, want_sims = _brute(x, q, 25)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(sims, want_sims, rtol=0, atol=1e-6)
        hit, hs = ix.range_search(q, 0.05)
        np.testing.assert_array_equal(np.sort(hit), np.flatnonzero(x @ q >= 0.05))
        np.testing.assert_allclose(ix.scan(q, 100), (x @ q)[100:], atol=1e-6)


def test_k_larger_than_size_and_empty_index():
    ix = VectorIndex(8)
    assert ix.search(np.ones(8), 5)[0].size == 0
    assert ix.range_search(np.ones(8), 0.0)[0].size == 0
    ix.add(_random(3, 8, 6))
    ids, sims = ix.search(_random(1, 8, 7)[0], 10)
    assert sorted(ids.tolist()) == [0, 1, 2] and np.all(np.diff(sims) <= 0)


def test_switch_to_graph_keeps_ids_and_finds_each_vector():
    x = _clustered(1500, 384, 8)
    ix = VectorIndex(384, exact_below=1000)
    ids = np.arange(1500) * 7 + 3                  # arbitrary ids survive the switch
    for part in np.array_split(np.arange(1500), 6):
        ix.add(x[part], ids[part])
    assert not ix.exact and len(ix) == 1500
    found = [int(ix.search(x[i], 1)[0][0]) for i in range(0, 1500, 37)]
    assert found == [int(ids[i]) for i in range(0, 1500, 37)]
    with pytest.raises(ValueError):
        ix.add(x[:2], ids[:1])


def test_incremental_add_is_searchable_at_once_and_keeps_recall():
    x = _clustered(2600, 384, 9)
    ix = _graph(x[:2000])
    for i in range(2000, 2600):                   # one at a time, as observe() adds them
        ix.add(x[i: i + 1])
        if i % 150 == 0:
            assert int(ix.search(x[i], 1)[0][0]) == i
    queries = _unit(x[2000:2060] + 0.2 * _random(60, 384, 10))
    assert _recall(ix, x, queries, 32) >= 0.95


def test_same_vectors_same_order_give_identical_results_whatever_the_batches():
    x = _clustered(2500, 384, 11)
    a = VectorIndex(384, exact_below=500)
    a.add(x)
    b = VectorIndex(384, exact_below=500)
    for part in np.array_split(np.arange(2500), 13):
        b.add(x[part])
    for q in _unit(x[:40] + 0.3 * _random(40, 384, 12)):
        ia, sa = a.search(q, 32)
        ib, sb = b.search(q, 32)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)


def test_range_search_on_graph_finds_the_threshold_hits():
    x = _clustered(3000, 384, 13, clusters=30, spread=0.5)
    ix = _graph(x)
    got = want = tp = 0
    for q in _unit(x[:30] + 0.2 * _random(30, 384, 14)):
        truth = np.flatnonzero(x @ q >= 0.7)
        hit, sims = ix.range_search(q, 0.7, start_k=16)      # forces k to grow
        assert np.all(sims >= 0.7)
        got, want, tp = got + hit.size, want + truth.size, tp + len(np.intersect1d(hit, truth))
    assert want > 30 * 16            # the growing k was needed
    assert tp / want >= 0.95 and tp / got >= 0.99


def test_similarities_on_graph_are_float16_close():
    x = _clustered(1200, 384, 15)
    ix = _graph(x)
    q = _random(1, 384, 16)[0]
    np.testing.assert_allclose(ix.scan(q), x @ q, atol=2e-3)
    ids, sims = ix.search(q, 5)
    np.testing.assert_allclose(sims, x[ids] @ q, atol=2e-3)


def test_experience_index_neighbours_and_semantic_channel_on_the_graph(monkeypatch):
    import evoroute.retrieval.ann as ann

    monkeypatch.setattr(ann, "EXACT_BELOW", 1000)
    x = _clustered(2400, 384, 17, clusters=20, spread=0.5)
    idx = ExperienceIndex(dim=384)
    for part in np.array_split(np.arange(2400), 4):   # every text once, then replayed
        idx.add_batch(roles=["r"] * part.size, models=["m"] * part.size,
                      texts=[f"t{i}" for i in part], embeddings=x[part],
                      tools=[()] * part.size, costs=[1.0] * part.size,
                      durations=[1.0] * part.size, perf=[1.0] * part.size)
    idx.add_batch(roles=["r"] * 50, models=["m"] * 50, texts=[f"t{i}" for i in range(50)],
                  embeddings=None, tools=[()] * 50, costs=[1.0] * 50, durations=[1.0] * 50,
                  perf=[0.0] * 50)
    assert not idx._emb.exact and idx.n_texts == 2400 and len(idx) == 2450
    q = _unit(x[:1] + 0.1 * _random(1, 384, 18))[0]
    tids, sims = idx.nearest_texts(q, 32)
    assert len(np.intersect1d(tids, _brute(x, q, 32)[0])) >= 0.9 * 32
    assert np.all(np.diff(sims) <= 1e-6)
    ret = idx.retrieve("other", q, (), theta=0.8, channels=("semantic",))
    truth = np.flatnonzero(x @ q >= 0.8)
    want_records = truth.size + int(np.sum(truth < 50))      # replayed texts count twice
    got = int(ret.channel_counts["semantic"].sum())
    assert abs(got - want_records) <= 0.05 * want_records


def test_graph_then_onnx_embedding_in_one_process():
    # onnxruntime imported after usearch's extension crashed the process (segfault); ann.py
    # imports onnxruntime first. A fresh interpreter, as a router process would be.
    import subprocess
    import sys
    import textwrap

    from evoroute.settings import PROJECT_ROOT

    code = textwrap.dedent("""
        import numpy as np
        from evoroute.retrieval.ann import VectorIndex
        from evoroute.retrieval.embedder import Embedder
        ix = VectorIndex(384, exact_below=10)
        ix.add(np.random.default_rng(0).standard_normal((50, 384)).astype(np.float32))
        assert not ix.exact
        e = Embedder(cache_dir=None, shipped=False)
        v = e.encode_one("How do I reverse a list in Python?")
        assert v.shape == (384,) and e.backend_used == "onnx", e.backend_used
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
