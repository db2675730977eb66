"""Which approximate-nearest-neighbour library backs the semantic search (issue 9, item 6).

    python benchmarks/ann_libraries.py --lib hnswlib --n 100000 --json
    python benchmarks/ann_libraries.py --lib faiss --n 1000000 --json
    python benchmarks/ann_libraries.py --lib usearch --dtype f16 --n 1000000 --json
    python benchmarks/ann_libraries.py --crossover 2500,5000,10000,20000

``--crossover`` times evoroute.retrieval.ann.VectorIndex itself, exact scan against its HNSW
graph, at each size (k=32, one thread): where the graph gets faster is ann.EXACT_BELOW.

Only usearch is in requirements.txt (the one chosen); to rerun the comparison install the
others first: ``pip install faiss-cpu==1.15.1 hnswlib==0.8.0`` (hnswlib builds from source).

One library per process (so the resident-memory growth is that library's alone). Data: the
synthetic 384-d unit vectors of ``decision_overhead.py`` (500 topic centres, each vector at
cosine 0.78-0.98 to its centre) or ``--data random`` (uniform on the sphere: no structure, the
hardest case for a graph index). Measured: build time (bulk add), resident memory added by the
index, query latency p50/p99 at k=32 and k=64 (batch of one, one thread), recall@k against the
exact float32 inner-product top-k, the latency of adding one vector to the built index, and
whether two builds with the same seed return identical neighbours. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

DIM = 384


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_data(n: int, kind: str, rng: np.random.Generator, clusters: int = 500,
              chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    centers = unit(rng.standard_normal((clusters, DIM), dtype=np.float32))
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        u = unit(rng.standard_normal((k, DIM), dtype=np.float32))
        if kind == "random":
            out[s:s + k] = u
        else:
            r = rng.uniform(0.2, 0.8, k).astype(np.float32)
            out[s:s + k] = unit(centers[rng.integers(clusters, size=k)] + r[:, None] * u)
    return out, centers


def queries(n: int, kind: str, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = unit(rng.standard_normal((n, DIM), dtype=np.float32))
    if kind == "random":
        return u
    return unit(centers[rng.integers(len(centers), size=n)] + 0.3 * u).astype(np.float32)


def exact_topk(data: np.ndarray, q: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.empty((len(q), 0), np.int64)
    for s in range(0, len(data), chunk):
        sims = q @ data[s:s + chunk].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        cs = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], 1)
        ci = np.concatenate([best_i, part + s], 1)
        top = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1)
    return best_i


class Lib:
    """build(data) / search(q, k) -> ids / add_one(vec, id) for one library."""

    def __init__(self, name: str, dtype: str, m: int, ef_construction: int, seed: int,
                 threads: int) -> None:
        self.name, self.dtype, self.m, self.efc, self.seed = name, dtype, m, ef_construction, seed
        self.threads = threads
        self.ef = 64

    def build(self, data: np.ndarray) -> None:
        n = len(data)
        if self.name == "hnswlib":
            import hnswlib
            self.ix = hnswlib.Index(space="ip", dim=DIM)
            self.ix.init_index(max_elements=n + 10_000, M=self.m, ef_construction=self.efc,
                               random_seed=self.seed)
            self.ix.set_num_threads(self.threads)
            self.ix.add_items(data, np.arange(n))
            self.ix.set_num_threads(1)
        elif self.name == "faiss":
            import faiss
            faiss.omp_set_num_threads(self.threads)
            if self.dtype == "f16":
                self.ix = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_fp16, self.m,
                                            faiss.METRIC_INNER_PRODUCT)
                self.ix.train(data[:1000])
            else:
                self.ix = faiss.IndexHNSWFlat(DIM, self.m, faiss.METRIC_INNER_PRODUCT)
            self.ix.hnsw.efConstruction = self.efc
            self.ix.add(data)
            faiss.omp_set_num_threads(1)
        elif self.name == "usearch":
            from usearch.index import Index
            self.ix = Index(ndim=DIM, metric="ip", dtype=self.dtype, connectivity=self.m,
                            expansion_add=self.efc, expansion_search=self.ef)
            self.ix.add(np.arange(n), data, threads=self.threads)
        else:
            raise SystemExit(f"unknown library {self.name}")

    def set_ef(self, ef: int) -> None:
        self.ef = ef
        if self.name == "hnswlib":
            self.ix.set_ef(ef)
        elif self.name == "faiss":
            self.ix.hnsw.efSearch = ef
        else:
            self.ix.expansion_search = ef

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        if self.name == "hnswlib":
            return self.ix.knn_query(q, k=k, num_threads=1)[0][0]
        if self.name == "faiss":
            return self.ix.search(q[None, :], k)[1][0]
        return self.ix.search(q, k, threads=1).keys

    def add_one(self, vec: np.ndarray, key: int) -> None:
        if self.name == "hnswlib":
            self.ix.add_items(vec[None, :], np.array([key]), num_threads=1)
        elif self.name == "faiss":
            self.ix.add(vec[None, :])
        else:
            self.ix.add(key, vec, threads=1)


def crossover(sizes: list[int], seed: int) -> dict:
    from threadpoolctl import threadpool_limits

    from evoroute.retrieval.ann import VectorIndex

    threadpool_limits(1, user_api="blas")
    rng = np.random.default_rng(seed)
    data, centers = make_data(max(sizes), "clustered", rng)
    qs = queries(200, "clustered", centers, rng)
    rows = []
    for n in sizes:
        exact = VectorIndex(DIM, exact_below=10**12)
        exact.add(data[:n])
        t0 = time.perf_counter()
        graph = VectorIndex(DIM, exact_below=1)
        graph.add(data[:n])
        row = {"n": n, "graph_build_s": round(time.perf_counter() - t0, 1)}
        for name, ix in (("exact", exact), ("graph", graph)):
            ts = []
            for q in qs:
                t1 = time.perf_counter()
                ix.search(q, 32)
                ts.append((time.perf_counter() - t1) * 1e3)
            row[f"{name}_p50_ms"] = round(float(np.median(ts)), 3)
        row["recall_at_32"] = round(float(np.mean(
            [len(np.intersect1d(graph.search(q, 32)[0], exact.search(q, 32)[0])) / 32
             for q in qs])), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"crossover": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", choices=["hnswlib", "faiss", "usearch"])
    ap.add_argument("--crossover", default=None, help="sizes: exact scan vs graph of ann.py")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--data", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--dtype", default="f32", help="f32 or f16 (faiss: IndexHNSWSQ fp16; "
                    "usearch: f16, i8 too)")
    ap.add_argument("--m", type=int, default=16, help="HNSW connectivity M")
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", default="64,128,256", help="search depths to measure")
    ap.add_argument("--threads", type=int, default=2, help="threads for the bulk build")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--determinism", action="store_true",
                    help="also build a second index from the same data and compare results")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.crossover:
        return crossover([int(n) for n in args.crossover.split(",")], args.seed)
    if not args.lib:
        ap.error("--lib or --crossover is required")
    rng = np.random.default_rng(args.seed)
    data, centers = make_data(args.n, args.data, rng)
    qs = queries(args.queries, args.data, centers, rng)
    truth = {k: exact_topk(data, qs, k) for k in (32, 64)}
    load0 = os.getloadavg()[0]
    lib = Lib(args.lib, args.dtype, args.m, args.ef_construction, args.seed, args.threads)
    r0 = rss_mb()
    t0 = time.perf_counter()
    lib.build(data)
    build_s = time.perf_counter() - t0
    index_mb = rss_mb() - r0
    out: dict = {"lib": args.lib, "dtype": args.dtype, "n": args.n, "data": args.data,
                 "M": args.m, "ef_construction": args.ef_construction,
                 "build_threads": args.threads, "build_s": round(build_s, 1),
                 "index_rss_mb": round(index_mb), "data_f32_mb": round(data.nbytes / 2**20),
                 "search": []}
    for ef in (int(e) for e in args.ef.split(",")):
        for k in (32, 64):
            lib.set_ef(max(ef, k))
            for q in qs[:10]:
                lib.search(q, k)
            ts, rec = [], []
            for i, q in enumerate(qs):
                t1 = time.perf_counter()
                ids = lib.search(q, k)
                ts.append((time.perf_counter() - t1) * 1e3)
                rec.append(len(np.intersect1d(ids, truth[k][i])) / k)
            out["search"].append({"ef": max(ef, k), "k": k,
                                  "p50_ms": round(float(np.percentile(ts, 50)), 3),
                                  "p99_ms": round(float(np.percentile(ts, 99)), 3),
                                  "recall": round(float(np.mean(rec)), 4),
                                  "recall_min": round(float(np.min(rec)), 3)})
    extra = unit(rng.standard_normal((300, DIM), dtype=np.float32))
    ta = []
    for j, v in enumerate(extra):
        t1 = time.perf_counter()
        lib.add_one(v, args.n + j)
        ta.append((time.perf_counter() - t1) * 1e3)
    lib.set_ef(64)
    found = lib.search(extra[-1], 1)
    out["add_one_p50_ms"] = round(float(np.percentile(ta, 50)), 3)
    out["add_one_p99_ms"] = round(float(np.percentile(ta, 99)), 3)
    out["added_vector_found"] = bool(int(found[0]) == args.n + len(extra) - 1)
    if args.determinism:
        twin = Lib(args.lib, args.dtype, args.m, args.ef_construction, args.seed, args.threads)
        twin.build(data)
        twin.set_ef(64)
        lib2 = Lib(args.lib, args.dtype, args.m, args.ef_construction, args.seed, args.threads)
        lib2.build(data)
        lib2.set_ef(64)
        same = [np.array_equal(lib2.search(q, 32), twin.search(q, 32)) for q in qs[:100]]
        out["same_seed_identical"] = float(np.mean(same))
    out["load"] = f"{load0:.2f}->{os.getloadavg()[0]:.2f}"
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
