"""Embedder with the real all-MiniLM-L6-v2 from the installed package: vectors, caches
(memory, shipped, SQLite on disk, shared by processes) and the shipped RouterBench vectors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evoroute.core.errors import ValidationError
from evoroute.datasets.routerbench import load_routerbench
from evoroute.retrieval import embedder as emb
from evoroute.retrieval.disk_cache import DiskCache
from evoroute.retrieval.embedder import Embedder, get_embedder, text_key
from evoroute.retrieval.model import MODEL_NAME, model_sha256
from evoroute.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Embedder:
    """A real model, no shipped vectors, its own disk cache."""
    return Embedder(cache_dir=tmp_path_factory.mktemp("emb"), shipped=False)


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return sorted(set(load_routerbench()["query"]))


def test_shape_norm_and_meaning(live):
    texts = ["How do I reverse a list in Python?",
             "Python: reverse the order of a list",
             "The cat slept on the warm windowsill all afternoon."]
    v = live.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert live.dim == 384 and live.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    close, far = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert close > 0.7 and far < 0.2, (close, far)
    one = live.encode_one(texts[0])
    assert one.shape == (384,) and float(one @ v[0]) > 0.99999
    assert live.encode([]).shape == (0, 384)
    dup = live.encode([texts[2], texts[2]])
    assert np.array_equal(dup[0], dup[1])
    with pytest.raises(ValidationError):
        live.encode("not a list")
    with pytest.raises(ValidationError):
        live.encode(["ok", 3])


def test_disk_cache_serves_a_new_instance(tmp_path):
    texts = [f"instruction number {i}: summarise the report" for i in range(5)]
    first = Embedder(cache_dir=tmp_path, shipped=False)
    a = first.encode(texts)
    assert first.stats["computed"] == 5
    second = Embedder(cache_dir=tmp_path, shipped=False)
    b = second.encode(texts)
    assert second.stats == {"memory": 0, "shipped": 0, "disk": 5, "computed": 0}
    assert not second.loaded  # answered from disk: the model was never needed
    assert np.array_equal(a, b)
    assert second.disk.count(second.model_name) == 5
    second.encode(texts)
    assert second.stats["memory"] == 5


def test_disk_cache_is_safe_for_concurrent_processes(tmp_path):
    # Two processes write 300 vectors each (150 keys in common) into one store at once.
    code = textwrap.dedent("""
        import sys, numpy as np
        from evoroute.retrieval.disk_cache import DiskCache
        path, offset = sys.argv[1], int(sys.argv[2])
        cache = DiskCache(path)
        for start in range(offset, offset + 300, 10):
            keys = [f"k{i}" for i in range(start, start + 10)]
            cache.put_many("m", [(k, np.full(384, int(k[1:]), np.float32)) for k in keys])
        assert cache.enabled
    """)
    path = tmp_path / "shared.sqlite3"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(offset)],
                              cwd=PROJECT_ROOT) for offset in (0, 150)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    cache = DiskCache(path)
    assert cache.count("m") == 450
    got = cache.get_many("m", [f"k{i}" for i in range(450)], 384)
    assert all(float(got[f"k{i}"][0]) == i for i in range(450))


def test_shipped_vectors_match_installed_model(queries):
    meta = json.loads(emb.SHIPPED_META.read_text())
    assert meta["model_name"] == MODEL_NAME and meta["dim"] == 384
    assert meta["model_sha256"] == model_sha256()
    with np.load(emb.SHIPPED_VECTORS) as data:
        keys, vectors = data["keys"], data["vectors"]
    assert vectors.dtype == np.float16 and vectors.shape == (meta["count"], 384)
    # Every bundled query (and nothing else) has a shipped vector.
    assert {row.tobytes().hex() for row in keys} == {text_key(q) for q in queries}


def test_first_run_embeds_nothing(queries, tmp_path):
    fresh = Embedder(cache_dir=tmp_path)
    v = fresh.encode(queries)
    assert fresh.stats["shipped"] == len(queries) and fresh.stats["computed"] == 0
    assert not fresh.loaded
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_shipped_vectors_equal_real_embeddings(live, queries, tmp_path):
    rng = np.random.default_rng(0)
    sample = [queries[i] for i in rng.choice(len(queries), size=12, replace=False)]
    shipped = Embedder(cache_dir=None).encode(sample)
    real = live.encode(sample)
    cosine = np.sum(shipped * real, axis=1)
    assert cosine.min() > 0.999, cosine.min()


def test_singleton():
    assert get_embedder() is get_embedder()


# ------------------------------------------------------------------ fast backend
def _top10(v: np.ndarray) -> np.ndarray:
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :10]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Embedder:
    return Embedder(cache_dir=tmp_path_factory.mktemp("ref"), shipped=False, backend="reference")


def test_default_backend_is_onnx_and_faithful_to_the_reference(live, reference, queries):
    # `live` uses the default backend: the ONNX export of the same model run by onnxruntime
    rng = np.random.default_rng(1)
    sample = [queries[i] for i in rng.choice(len(queries), size=300, replace=False)]
    fast, ref = live.encode(sample), reference.encode(sample)
    assert live.backend_used == "onnx" and reference.backend_used == "reference"
    cosine = np.sum(fast * ref, axis=1)
    assert cosine.min() > 0.9999, cosine.min()
    agree = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(_top10(fast), _top10(ref))])
    assert agree >= 0.95, agree


def test_single_and_batched_onnx_embeddings_agree(live):
    texts = ["short", "a much longer instruction that needs many more tokens than the first one",
             "medium length question about lists"]
    batch = Embedder(cache_dir=None, shipped=False).encode(texts)   # padded together
    singles = np.vstack([Embedder(cache_dir=None, shipped=False).encode([t]) for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_unknown_backend_is_a_validation_error(monkeypatch):
    with pytest.raises(ValidationError) as err:
        Embedder(cache_dir=None, backend="gpu")
    assert err.value.field == "backend"
    monkeypatch.setenv(emb.BACKEND_ENV, "reference")
    assert Embedder(cache_dir=None).backend == "reference"


def test_a_failing_fast_backend_falls_back_to_the_reference(monkeypatch, reference, caplog):
    def broken(*args, **kwargs):
        raise ImportError("onnxruntime is not installed")

    monkeypatch.setattr(emb, "OnnxEncoder", broken)
    e = Embedder(cache_dir=None, shipped=False)
    v = e.encode(["How do I reverse a list in Python?"])
    assert e.backend_used == "reference" and "using the reference" in caplog.text
    assert float(v[0] @ reference.encode(["How do I reverse a list in Python?"])[0]) > 0.99999


def test_int8_vectors_are_cached_apart(tmp_path):
    e = Embedder(cache_dir=tmp_path, shipped=False, backend="onnx-int8")
    assert e.cache_name.endswith("#int8r7") and Embedder(cache_dir=None).cache_name == MODEL_NAME


# ------------------------------------------------------------------ ONNX variants
def test_fused_and_attention_int8_variants_are_cached_apart_and_faithful(tmp_path, queries):
    # the optimizer's graph (fused Attention) and its int8 attention-output MatMuls: each in its
    # own cache file keyed by the weights' hash and the variant, both within 1e-3 of float32
    import onnx

    from evoroute.retrieval.encoders import OnnxEncoder
    from evoroute.retrieval.model import model_path

    path = model_path()
    plain = OnnxEncoder(path, tmp_path)
    fused = OnnxEncoder(path, tmp_path, variant="fused")
    attn = OnnxEncoder(path, tmp_path, variant="fused-int8-attn")
    tag = model_sha256()[:16]
    assert plain.file.name == f"minilm-l6-{tag}.onnx"
    assert fused.file.name == f"minilm-l6-{tag}-fused.onnx"
    assert attn.file.name == f"minilm-l6-{tag}-fused-int8-attn-r7.onnx"     # 7-bit weights
    ops = [n.op_type for n in onnx.load(str(fused.file), load_external_data=False).graph.node]
    assert ops.count("Attention") == 6 and "Softmax" not in ops
    ops = [n.op_type for n in onnx.load(str(attn.file), load_external_data=False).graph.node]
    assert ops.count("MatMulInteger") == 6 and ops.count("MatMul") == 12   # of 18 MatMuls
    rng = np.random.default_rng(2)
    sample = [queries[i] for i in rng.choice(len(queries), size=40, replace=False)]
    ref = np.vstack([plain.encode([t]) for t in sample])
    for enc, bar in ((fused, 0.99999), (attn, 0.999)):
        got = np.vstack([enc.encode([t]) for t in sample])
        assert np.sum(got * ref, axis=1).min() > bar, enc.variant
    with pytest.raises(ValueError):
        OnnxEncoder(path, tmp_path, variant="fp16")
