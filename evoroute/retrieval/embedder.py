"""Instruction embeddings: sentence-transformers all-MiniLM-L6-v2, offline, CPU.

The model (:mod:`.model`) is loaded on the first text that is not cached, so importing this
module, and routing over texts already seen, costs no torch import. Lookups go: memory ->
vectors shipped in ``data/embeddings/`` (every bundled RouterBench query) -> a SQLite store
under the cache folder (:mod:`.disk_cache`, shared by all processes) -> the encoder
(:mod:`.encoders`, or the reference SentenceTransformer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.retrieval.disk_cache import DiskCache
from evoroute.retrieval.encoders import OnnxEncoder, onnx_cache_dir
from evoroute.retrieval.model import DIM, MODEL_NAME, model_path, model_sha256
from evoroute.settings import DATA_DIR, offline_env, settings

log = logging.getLogger(__name__)

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


def text_key(text: str) -> str:
    """Cache key of a text: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


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
        """Disk-cache namespace: the model, plus "#int8r7" for the quantised backend (7-bit
        weights; its vectors differ from the reference's by ~1 %, the float32 backends' by
        ~1e-6)."""
        return self.model_name + ("#int8r7" if self.backend == "onnx-int8" else "")

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


_singleton: Embedder | None = None
_singleton_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process-wide embedder (one model in memory, one cache)."""
    global _singleton
    with _singleton_lock:
        if _singleton is None:
            _singleton = Embedder()
        return _singleton
