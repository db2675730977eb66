"""Seeded generator of the bundled agent tasks: word problems with answers computed here.

Multi-step arithmetic, unit conversion and list manipulation problems. Every number is drawn
from a ``numpy`` Generator seeded by ``--seed``; every answer is computed exactly with
``fractions.Fraction`` (not by the agent's tools, so the tools are checked, not trusted) and
rounded to the precision the question states. Values that sit on a rounding tie are redrawn,
so "rounded to 2 decimals" has exactly one right answer.

The shipped file ``data/agent_tasks/tasks.jsonl`` is the output of::

    python -m evoroute.agent.taskgen --seed 2601 --n 60 --test 20 --out data/agent_tasks/tasks.jsonl

and a test regenerates it and compares byte for byte. The tiered set
``data/agent_tasks/tiered.jsonl`` (easy / medium / hard tiers, for the local models) is::

    python -m evoroute.agent.taskgen --tiered --out data/agent_tasks/tiered.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from fractions import Fraction as F
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SEED = 2601
DEFAULT_N = 60
DEFAULT_TEST = 20

NAMES = ("Maya", "Omar", "Lena", "Kofi", "Ines", "Ravi", "Sofia", "Tomas", "Aiko", "Nadia")
ITEMS = (("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("ticket", "tickets"),
         ("mug", "mugs"), ("battery", "batteries"), ("candle", "candles"), ("towel", "towels"))


def _money(rng: np.random.Generator, lo: float, hi: float, step: float = 0.05) -> F:
    k = int(rng.integers(round(lo / step), round(hi / step) + 1))
    return F(k) * F(step).limit_denominator(1000)


def _fmt(x: F) -> str:
    """Exact decimal text of a drawn value (they all have short decimal expansions)."""
    if x.denominator == 1:
        return str(x.numerator)
    for d in range(1, 10):
        scaled = x * 10 ** d
        if scaled.denominator == 1:
            s = f"{scaled.numerator / 10 ** d:.{d}f}"
            return s
    return f"{float(x):.6g}"


def _usd(x: F) -> str:
    return f"{float(x):.2f}"


def _round(x: F, decimals: int) -> float | None:
    """Round half away from zero; None when x is (nearly) on a tie, so the caller redraws."""
    scaled = x * 10 ** decimals
    frac = abs(scaled - int(scaled))
    if abs(frac - F(1, 2)) < F(1, 1000):
        return None
    n = int(scaled + (F(1, 2) if scaled >= 0 else F(-1, 2)))
    return n / 10 ** decimals


# Each maker returns (question, exact answer, decimals, tool, reference expression).
Made = tuple[str, F, int, str, str]


def change(rng: np.random.Generator) -> Made:
    who = NAMES[int(rng.integers(len(NAMES)))]
    i, j = rng.choice(len(ITEMS), size=2, replace=False)
    (_, p1), (_, p2) = ITEMS[int(i)], ITEMS[int(j)]
    a, b = _money(rng, 0.5, 6.0), _money(rng, 0.5, 4.0)
    n1, n2 = int(rng.integers(2, 10)), int(rng.integers(2, 15))
    total = n1 * a + n2 * b
    note = next(v for v in (20, 50, 100, 200) if v > total)
    q = (f"A shop sells {p1} at ${_usd(a)} each and {p2} at ${_usd(b)} each. {who} buys {n1} "
         f"{p1} and {n2} {p2} and pays with a ${note} note. How much change does {who} get, in "
         f"dollars? Round to 2 decimal places.")
    return q, note - total, 2, "calculator", f"{note} - ({n1}*{_usd(a)} + {n2}*{_usd(b)})"


def discount_tax(rng: np.random.Generator) -> Made:
    price = F(int(rng.integers(20, 400)))
    disc, tax = int(rng.integers(1, 8)) * 5, int(rng.integers(3, 13))
    final = price * (1 - F(disc, 100)) * (1 + F(tax, 100))
    q = (f"A jacket costs ${_fmt(price)}. It is discounted by {disc}%, and then a {tax}% sales tax "
         f"is added to the discounted price. What is the final price in dollars? Round to 2 "
         f"decimal places.")
    return q, final, 2, "calculator", f"{_fmt(price)} * (1 - {disc}/100) * (1 + {tax}/100)"


def speed(rng: np.random.Generator) -> Made:
    km = F(int(rng.integers(30, 250)), 10)
    minutes = int(rng.integers(12, 140))
    v = km * 1000 / (minutes * 60)
    q = (f"A cyclist covers {_fmt(km)} km in {minutes} minutes. What is the average speed in "
         f"metres per second? Round to 2 decimal places.")
    return q, v, 2, "calculator", f"{_fmt(km)} * 1000 / ({minutes} * 60)"


_CONVERSIONS = (
    ("litres", "US gallons", F(3785, 1000), "1 US gallon = 3.785 litres",
     "A water tank holds {x} {a}. How many {b} is that?"),
    ("miles", "kilometres", F(1609344, 1000000), "1 mile = 1.609344 km",
     "A hiking trail is {x} {a} long. How long is it in {b}?"),
    ("pounds", "kilograms", F(45359237, 100000000), "1 pound = 0.45359237 kg",
     "A parcel weighs {x} {a}. What is its weight in {b}?"),
    ("feet", "metres", F(3048, 10000), "1 foot = 0.3048 m",
     "A wall is {x} {a} high. How high is it in {b}?"),
)


def convert(rng: np.random.Generator) -> Made:
    a, b, factor, fact, tmpl = _CONVERSIONS[int(rng.integers(len(_CONVERSIONS)))]
    x = F(int(rng.integers(15, 900)))
    inverse = a == "litres"
    v = x / factor if inverse else x * factor
    q = tmpl.format(x=_fmt(x), a=a, b=b) + f" Use {fact}. Round to 2 decimal places."
    ref = f"{_fmt(x)} / {_fmt(factor)}" if inverse else f"{_fmt(x)} * {_fmt(factor)}"
    return q, v, 2, "calculator", ref


def production(rng: np.random.Generator) -> Made:
    per_day = int(rng.integers(12, 60)) * 10
    days = int(rng.integers(3, 25))
    defect = int(rng.integers(1, 10)) * 2
    good = F(per_day * days) * (1 - F(defect, 100))
    q = (f"A factory makes {per_day} widgets per day for {days} days. {defect}% of the widgets are "
         f"defective. How many widgets are not defective? Round to a whole number.")
    return q, good, 0, "calculator", f"{per_day} * {days} * (1 - {defect}/100)"


def duration(rng: np.random.Generator) -> Made:
    h1, m1 = int(rng.integers(5, 12)), int(rng.integers(0, 12)) * 5
    dur = int(rng.integers(35, 600))
    end = h1 * 60 + m1 + dur
    h2, m2 = divmod(end, 60)
    stops = int(rng.integers(2, 6))
    q = (f"A train leaves at {h1:02d}:{m1:02d} and arrives at {h2:02d}:{m2:02d} the same day, "
         f"with {stops} stops on the way. How many minutes does the journey take?")
    return q, F(dur), 0, "calculator", f"({h2}*60 + {m2}) - ({h1}*60 + {m1})"


def split_bill(rng: np.random.Generator) -> Made:
    bill = _money(rng, 30.0, 240.0, 0.25)
    tip = int(rng.integers(2, 5)) * 5
    people = int(rng.integers(2, 8))
    each = bill * (1 + F(tip, 100)) / people
    q = (f"A restaurant bill is ${_usd(bill)}. The group adds a {tip}% tip and splits the total "
         f"equally between {people} people. How much does each person pay, in dollars? Round to "
         f"2 decimal places.")
    return q, each, 2, "calculator", f"{_usd(bill)} * (1 + {tip}/100) / {people}"


def _numbers(rng: np.random.Generator, n_lo: int = 7, n_hi: int = 12) -> list[int]:
    n = int(rng.integers(n_lo, n_hi + 1))
    return [int(v) for v in rng.choice(np.arange(1, 100), size=n, replace=False)]


def sum_even(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    while not any(x % 2 == 0 for x in xs):
        xs = _numbers(rng)
    q = f"Here is a list of numbers: {xs}. What is the sum of the even numbers in the list?"
    return q, F(sum(x for x in xs if x % 2 == 0)), 0, "python", f"sum(x for x in {xs} if x % 2 == 0)"


def top3_sum(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    q = (f"Sort the list {xs} in descending order. What is the sum of its three largest "
         f"numbers?")
    return q, F(sum(sorted(xs)[-3:])), 0, "python", f"sum(sorted({xs})[-3:])"


def spread(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    q = f"What is the difference between the largest and the smallest number in the list {xs}?"
    return q, F(max(xs) - min(xs)), 0, "python", f"max({xs}) - min({xs})"


def count_above(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    t = int(rng.integers(20, 80))
    q = f"How many numbers in the list {xs} are greater than {t}?"
    return q, F(sum(1 for x in xs if x > t)), 0, "python", f"len([x for x in {xs} if x > {t}])"


def median(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    s = sorted(xs)
    n = len(s)
    med = F(s[n // 2]) if n % 2 else F(s[n // 2 - 1] + s[n // 2], 2)
    q = f"What is the median of the list {xs}? Give the answer with 1 decimal place."
    return q, med, 1, "python", f"median({xs})"


def second_largest(rng: np.random.Generator) -> Made:
    xs = _numbers(rng)
    k = int(rng.integers(2, 6))
    q = (f"Multiply the second largest number in the list {xs} by {k}. What is the result?")
    return q, F(sorted(xs)[-2] * k), 0, "python", f"sorted({xs})[-2] * {k}"


# ---------------------------------------------------------------- easier tiers
# One operation (easy) or two (medium) on numbers written in the question: what a 135M-270M
# local model can do once its output is held to the tool-line grammar and it sees a solved
# example. The hard tier is the kinds above.

def _who_items(rng: np.random.Generator) -> tuple[str, str]:
    return NAMES[int(rng.integers(len(NAMES)))], ITEMS[int(rng.integers(len(ITEMS)))][1]


def add(rng: np.random.Generator) -> Made:
    who, items = _who_items(rng)
    a, b = int(rng.integers(12, 90)), int(rng.integers(5, 60))
    q = f"{who} has {a} {items} and buys {b} more. How many {items} does {who} have now?"
    return q, F(a + b), 0, "calculator", f"{a} + {b}"


def take(rng: np.random.Generator) -> Made:
    who, items = _who_items(rng)
    a = int(rng.integers(40, 120))
    b = int(rng.integers(5, a - 5))
    q = f"{who} has {a} {items} and gives away {b} of them. How many {items} are left?"
    return q, F(a - b), 0, "calculator", f"{a} - {b}"


def times(rng: np.random.Generator) -> Made:
    _, items = _who_items(rng)
    k, n = int(rng.integers(4, 25)), int(rng.integers(3, 19))
    q = f"A box holds {k} {items}. How many {items} are there in {n} boxes?"
    return q, F(k * n), 0, "calculator", f"{k} * {n}"


def share(rng: np.random.Generator) -> Made:
    who, items = _who_items(rng)
    each, k = int(rng.integers(3, 30)), int(rng.integers(2, 9))
    q = (f"{who} shares {each * k} {items} equally among {k} friends. How many {items} does each "
         f"friend get?")
    return q, F(each), 0, "calculator", f"{each * k} / {k}"


def list_max(rng: np.random.Generator) -> Made:
    xs = _numbers(rng, 5, 8)
    q = f"What is the largest number in the list {xs}?"
    return q, F(max(xs)), 0, "python", f"max({xs})"


def list_sum(rng: np.random.Generator) -> Made:
    xs = _numbers(rng, 4, 7)
    q = f"What is the sum of the numbers in the list {xs}?"
    return q, F(sum(xs)), 0, "python", f"sum({xs})"


def total_cost(rng: np.random.Generator) -> Made:
    who, items = _who_items(rng)
    n, p = int(rng.integers(2, 12)), _money(rng, 0.5, 9.0)
    fee = _money(rng, 1.0, 6.0, 0.5)
    q = (f"{who} buys {n} {items} at ${_usd(p)} each and pays ${_usd(fee)} for delivery. What is "
         f"the total cost in dollars? Round to 2 decimal places.")
    return q, n * p + fee, 2, "calculator", f"{n} * {_usd(p)} + {_usd(fee)}"


def wage(rng: np.random.Generator) -> Made:
    who, _ = _who_items(rng)
    h, r, d = int(rng.integers(3, 9)), int(rng.integers(9, 31)), int(rng.integers(2, 7))
    q = (f"{who} works {h} hours a day for {d} days and earns ${r} per hour. How many dollars "
         f"does {who} earn in total?")
    return q, F(h * r * d), 0, "calculator", f"{h} * {r} * {d}"


def mean_list(rng: np.random.Generator) -> Made:
    xs = _numbers(rng, 4, 6)
    q = f"What is the average of the numbers in the list {xs}? Give the answer with 1 decimal place."
    return q, F(sum(xs), len(xs)), 1, "python", f"sum({xs}) / len({xs})"


TIERS: dict[str, dict[str, Callable[[np.random.Generator], Made]]] = {
    "easy": {"add": add, "take": take, "times": times, "share": share, "list_max": list_max,
             "list_sum": list_sum},
    "medium": {"total_cost": total_cost, "wage": wage, "mean_list": mean_list},
}

KINDS: dict[str, Callable[[np.random.Generator], Made]] = {
    "change": change, "discount_tax": discount_tax, "speed": speed, "convert": convert,
    "production": production, "duration": duration, "split_bill": split_bill,
    "sum_even": sum_even, "top3_sum": top3_sum, "spread": spread, "count_above": count_above,
    "median": median, "second_largest": second_largest,
}


def _draw(kind: str, maker: Callable[[np.random.Generator], Made],
          rng: np.random.Generator) -> tuple[str, F, float, int, str, str]:
    for _ in range(100):
        q, exact, dec, tool, ref = maker(rng)
        ans = _round(exact, dec)
        if ans is not None:
            return q, exact, ans, dec, tool, ref
    raise RuntimeError(f"could not draw a {kind} task without a rounding tie")  # pragma: no cover


def generate(seed: int = DEFAULT_SEED, n: int = DEFAULT_N,
             n_test: int = DEFAULT_TEST) -> list[dict[str, Any]]:
    """``n`` tasks, kinds balanced round-robin, ``n_test`` of them (seeded choice) in test."""
    if not 0 < n_test < n:
        raise ValueError("need 0 < n_test < n")
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    tasks = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        q, _, ans, dec, tool, ref = _draw(kind, KINDS[kind], rng)
        tasks.append({"id": f"agent-{i:03d}", "kind": kind, "question": q,
                      "answer": int(ans) if dec == 0 else ans, "decimals": dec, "tool": tool,
                      "reference": ref})
    test_ids = set(rng.choice(n, size=n_test, replace=False).tolist())
    for i, t in enumerate(tasks):
        t["split"] = "test" if i in test_ids else "train"
    return tasks


TIERED_SEED = 2602
TIERED_PER_TIER = 20
TIERED_TEST_PER_TIER = 8


def generate_tiered(seed: int = TIERED_SEED, per_tier: int = TIERED_PER_TIER,
                    test_per_tier: int = TIERED_TEST_PER_TIER) -> list[dict[str, Any]]:
    """``per_tier`` tasks in each of three tiers (easy: one operation, medium: two, hard: the
    kinds of :func:`generate`), kinds round-robin within a tier; ``test_per_tier`` of each tier
    (seeded choice) in test, so both splits hold every tier alike."""
    if not 0 < test_per_tier < per_tier:
        raise ValueError("need 0 < test_per_tier < per_tier")
    rng = np.random.default_rng(seed)
    tiers = {**TIERS, "hard": KINDS}
    tasks: list[dict[str, Any]] = []
    for tier, makers in tiers.items():
        names = list(makers)
        block = []
        for i in range(per_tier):
            kind = names[i % len(names)]
            q, _, ans, dec, tool, ref = _draw(kind, makers[kind], rng)
            block.append({"id": f"tier-{len(tasks) + i:03d}", "tier": tier, "kind": kind,
                          "question": q, "answer": int(ans) if dec == 0 else ans,
                          "decimals": dec, "tool": tool, "reference": ref})
        test_ids = set(rng.choice(per_tier, size=test_per_tier, replace=False).tolist())
        for i, t in enumerate(block):
            t["split"] = "test" if i in test_ids else "train"
        tasks.extend(block)
    return tasks


def write_jsonl(tasks: list[dict[str, Any]], path: Path) -> None:
    keys = ("id", "split", "tier", "kind", "question", "answer", "decimals", "tool", "reference")
    with Path(path).open("w", encoding="utf-8") as fh:
        for t in tasks:
            fh.write(json.dumps({k: t[k] for k in keys if k in t}, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evoroute.agent.taskgen",
                                description="Generate the bundled agent tasks (seeded).")
    p.add_argument("--seed", type=int, default=None, help=f"default {DEFAULT_SEED}")
    p.add_argument("--n", type=int, default=None, help=f"default {DEFAULT_N}")
    p.add_argument("--test", type=int, default=None, help=f"default {DEFAULT_TEST}")
    p.add_argument("--out", default="data/agent_tasks/tasks.jsonl")
    p.add_argument("--tiered", action="store_true",
                   help="the tiered set (easy / medium / hard, --n and --test per tier; defaults "
                        f"--seed {TIERED_SEED} --n {TIERED_PER_TIER} --test {TIERED_TEST_PER_TIER})")
    a = p.parse_args(argv)
    def given(v: int | None, default: int) -> int:
        return default if v is None else v

    if a.tiered:
        tasks = generate_tiered(given(a.seed, TIERED_SEED), given(a.n, TIERED_PER_TIER),
                                given(a.test, TIERED_TEST_PER_TIER))
    else:
        tasks = generate(given(a.seed, DEFAULT_SEED), given(a.n, DEFAULT_N),
                         given(a.test, DEFAULT_TEST))
    write_jsonl(tasks, Path(a.out))
    n_test = sum(t["split"] == "test" for t in tasks)
    print(f"wrote {len(tasks)} tasks ({len(tasks) - n_test} train, {n_test} test) to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
