"""A synthetic long-format dataset whose best model depends on the query, benched like any
imported dataset: does EvoRoute find the per-query best model where the paper's union cannot?

Three topics of generated questions (cooking, astronomy, programming; unique texts from
templates, embedded with the bundled MiniLM like any dataset) and three models, one role:

    model   cost/query   P(success): cooking  astronomy  programming
    small   $0.0001                  0.90     0.15       0.40
    medium  $0.001                   0.50     0.90       0.40
    large   $0.01                    0.92     0.92       0.92

Per topic the best cheap choice differs (small on cooking, medium on astronomy, large on
programming); a router that gives every query of the role the same estimate must choose one
model for all. Outcomes are Bernoulli draws from a seeded generator; 60 % train, 40 % test.

    python benchmarks/synthetic_routing.py [--n 600] [--seed 0] [--protocol full]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from evoroute.settings import offline_env

MODELS = {"small": (1e-4, (0.90, 0.15, 0.40)), "medium": (1e-3, (0.50, 0.90, 0.40)),
          "large": (1e-2, (0.92, 0.92, 0.92))}
WORDS = {
    0: ("How long should I {v} {a} {d} with {i} for dinner?",
        dict(v=["bake", "roast", "simmer", "grill", "braise"], a=["a", "the", "my"],
             d=["chicken", "lentil stew", "salmon", "risotto", "pork shoulder", "tofu"],
             i=["garlic", "thyme", "lemon", "paprika", "coconut milk", "red wine"])),
    1: ("What is the {v} of {a} {d} as seen from {i}?",
        dict(v=["apparent magnitude", "distance", "orbital period", "angular size"],
             a=["the planet", "the moon", "the star", "the galaxy"],
             d=["Jupiter", "Betelgeuse", "Titan", "Andromeda", "Sirius", "Europa"],
             i=["Earth", "Mars", "the Sun", "a telescope in Chile"])),
    2: ("Write a Python function that {v} {a} {d} using {i}.",
        dict(v=["sorts", "parses", "deduplicates", "validates", "merges"],
             a=["a list of", "a file of", "a stream of", "a dictionary of"],
             d=["integers", "JSON records", "dates", "email addresses", "intervals"],
             i=["recursion", "a heap", "regular expressions", "itertools", "a dict"])),
}


def make_dataset(n: int, seed: int) -> "object":
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(seen) < n:
        topic = int(rng.integers(3))
        tmpl, slots = WORDS[topic]
        text = tmpl.format(**{k: v[int(rng.integers(len(v)))] for k, v in slots.items()})
        text += f" (case {int(rng.integers(10**6))})"
        if text in seen:
            continue
        seen.add(text)
        qid = f"q{len(seen)}"
        split = "train" if rng.random() < 0.6 else "test"
        for m, (cost, ps) in MODELS.items():
            rows.append(dict(query_id=qid, query=text, model=m,
                             score=float(rng.random() < ps[topic]), cost_usd=cost,
                             role="qa", split=split, topic=topic))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    from evoroute.evaluation.bench.report import format_table
    from evoroute.evaluation.bench.run import run_bench

    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--protocol", default="full")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--routers", default="evoroute,evoroute-lin,evoroute-paper,per-role,"
                                         "single:small,single:medium,single:large,oracle")
    args = ap.parse_args(argv)
    df = make_dataset(args.n, args.seed)
    test = df[df["split"] == "test"]
    best = test.pivot_table(index="query_id", columns="model", values="score")
    print(f"synthetic: {df.query_id.nunique()} queries ({(df.split == 'test').sum() // 3} test); "
          f"single-model test quality {best.mean().round(3).to_dict()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.csv"
        df.drop(columns=["topic"]).to_csv(path, index=False)
        rep = run_bench(str(path), routers=args.routers.split(","), protocol=args.protocol,
                        seeds=args.seeds, progress=False)
    print(format_table(rep))
    for r in ("evoroute", "evoroute-lin", "evoroute-paper"):
        if r in rep["routers"]:
            print(f"{r}: model share {rep['routers'][r]['model_share']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
