"""The benchmark report: per-router summaries over seeds, the sweep curves and the trade-off
metrics built on them (AIQ, gain over the single-model hull, parity cost share, APGR, CPT),
the ranking of the non-oracle routers, and the fixed-width table the CLI prints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from evoroute.evaluation import metrics
from evoroute.evaluation.bench.worker import RunStats

PARITY_TOLERANCE = 0.005     # "at parity": within 0.5 points of the best single model
#: the families (``Capabilities.family``) listed first in the text table
EVOROUTE_FAMILIES = ("evoroute", "evoroute-paper")


def _sd(x: Sequence[float]) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def build_report(results: list[RunStats], wanted: list[str], seeds: list[int],
            w: tuple[float, float, float], protocol: str, dataset: Any, probe: Any,
            test_table: Any, train_table: Any, model_names: list[str],
            caps: dict[str, Any], sweeps: dict[str, tuple[list[float], float | None]],
            validation: float | None = None, n_sweep_seeds: int | None = None) -> dict[str, Any]:
    main = {r: [x for x in results if x.router == r and x.knob is None] for r in wanted}
    out: dict[str, dict[str, Any]] = {}
    for r, runs in main.items():
        runs.sort(key=lambda x: x.seed)
        summ = [metrics.summarize(x.task_success, x.task_cost, x.task_latency) for x in runs]
        q = [s["quality"] for s in summ]
        c = [s["cost_usd"] for s in summ]
        lat = [s["latency_mean"] for s in summ]
        regret = [float(metrics.cumulative_regret(x.step_score, x.step_oracle)[-1]) if x.step_score.size
                  else 0.0 for x in runs]
        cps = [s["cost_per_success"] for s in summ]
        used: dict[str, int] = {}
        for x in runs:
            for m, k in x.models_used.items():
                used[m] = used.get(m, 0) + k
        total_used = sum(used.values()) or 1
        out[r] = {
            "quality": float(np.mean(q)), "quality_sd": _sd(q),
            "cost_usd": float(np.mean(c)), "cost_usd_sd": _sd(c),
            "latency_s": float(np.mean(lat)), "latency_s_sd": _sd(lat),
            "latency_p50_s": float(np.mean([s["latency_p50"] for s in summ])),
            "latency_p95_s": float(np.mean([s["latency_p95"] for s in summ])),
            "cost_per_query_usd": float(np.mean([s["cost_per_query"] for s in summ])),
            "cost_per_success_usd": None if not np.all(np.isfinite(cps)) else float(np.mean(cps)),
            "regret": float(np.mean(regret)),
            "train_cost_usd": float(np.mean([x.train_cost for x in runs])),
            "train_quality": None if runs[0].train_quality is None else
            float(np.mean([x.train_quality for x in runs])),
            "train_steps": int(runs[0].train_steps),
            "n_seeds": len(runs),
            "model_share": {m: round(k / total_used, 4) for m, k in
                            sorted(used.items(), key=lambda kv: -kv[1])},
        }

    # sweeps (mean over seeds per knob value) -> AIQ and the RouteLLM metrics
    curves: dict[str, list[dict[str, float]]] = {}
    for r in wanted:
        pts: dict[float | None, list[RunStats]] = {}
        for x in results:
            if x.router == r:
                pts.setdefault(x.knob, []).append(x)
        rows = []
        for k, xs in pts.items():
            knob = k if k is not None else sweeps[r][1]
            qs = [float(x.task_success.mean()) for x in xs]
            cs = [float(x.task_cost.sum()) for x in xs]
            rows.append({"knob": knob, "cost_usd": float(np.mean(cs)), "cost_usd_sd": _sd(cs),
                         "quality": float(np.mean(qs)), "quality_sd": _sd(qs),
                         "latency_s": float(np.mean([x.task_latency.mean() for x in xs])),
                         "train_cost_usd": float(np.mean([x.train_cost for x in xs])),
                         "n_seeds": len(xs)})
        rows.sort(key=lambda p: (p["cost_usd"], p["quality"]))
        curves[r] = rows
    points = {r: np.array([[p["cost_usd"], p["quality"]] for p in rows]) for r, rows in curves.items()}
    aiq = metrics.aiq_table(points)
    aiq_max_cost = max(float(metrics.upper_convex_hull(p)[-1, 0]) for p in points.values())

    pair = _pair(train_table, model_names)
    ref = _reference(test_table, pair, model_names)
    oracle_q = out["oracle"]["quality"] if "oracle" in out else (ref or {}).get("oracle_quality")
    single_pts = None if ref is None else np.array([[v["cost_usd"], v["quality"]]
                                                    for v in ref["singles"].values()])
    for r in wanted:
        o = out[r]
        o["aiq"] = aiq[r]
        o["sweep_points"] = len(curves[r])
        knob = caps[r].cost_knob
        o["is_oracle"] = bool(caps[r].is_oracle)
        o["family"], o["ablation_of"], o["order"] = caps[r].family, caps[r].ablation_of, caps[r].order
        o["cost_knob"] = None if knob is None else knob.param
        o["default_knob"] = sweeps[r][1]
        if single_pts is not None:
            o["gain_over_hull"] = metrics.gain_over_hull(single_pts, o["cost_usd"], o["quality"])
            o["gain_over_hull_best"] = metrics.best_gain_over_hull(single_pts, points[r])
            o["parity_cost_share"] = (metrics.cost_share_at_parity(
                points[r], ref["best_single_quality"], ref["best_single_cost"], PARITY_TOLERANCE)
                if ref["best_single_cost"] > 0 else None)
        else:
            o["gain_over_hull"] = o["gain_over_hull_best"] = o["parity_cost_share"] = None
        o["gap_to_oracle"] = None if oracle_q is None else metrics.gap_to_oracle(o["quality"], oracle_q)
        if (ref is not None and ref["strong_cost"] > ref["weak_cost"]
                and ref["strong_quality"] > ref["weak_quality"]):
            share = metrics.strong_call_share(points[r][:, 0], ref["weak_cost"], ref["strong_cost"])
            qs = points[r][:, 1]
            o["apgr"] = metrics.apgr(share, qs, ref["weak_quality"], ref["strong_quality"])
            o["cpt50"] = metrics.cpt(share, qs, ref["weak_quality"], ref["strong_quality"], 0.5)
            o["cpt80"] = metrics.cpt(share, qs, ref["weak_quality"], ref["strong_quality"], 0.8)
            o["cost_at_best_single_usd"] = metrics.cost_at_quality(points[r], ref["best_single_quality"])
        else:
            o["apgr"] = o["cpt50"] = o["cpt80"] = o["cost_at_best_single_usd"] = None

    ranking = [{"router": r, "aiq": out[r]["aiq"], "quality": out[r]["quality"],
                "cost_usd": out[r]["cost_usd"], "gain_over_hull": out[r]["gain_over_hull"],
                "gain_over_hull_best": out[r]["gain_over_hull_best"],
                "parity_cost_share": out[r]["parity_cost_share"]}
               for r in sorted((r for r in wanted if not caps[r].is_oracle),
                               key=lambda r: (-out[r]["aiq"], r))]
    knob_notes = "; ".join(
        f"{r} {caps[r].cost_knob.param} over {len(sweeps[r][0])} settings"
        for r in wanted if caps[r].cost_knob is not None and len(curves[r]) > 1)
    info = probe.describe()
    n_test = int(main[wanted[0]][0].task_success.size)
    notes = [
        f"{len(seeds)} seed(s) {seeds}; quality = mean task success on the test split, cost_usd = "
        f"total test cost, latency_s = mean per query ({info.get('latency', 'modelled')}).",
        f"protocol {protocol}: " + ("EvoRoute learns online on the train split (cold start, then "
                                    "optimisation; its cost is train_cost_usd), then routes the "
                                    "test split" if protocol == "bandit" else
                                    "EvoRoute's experience base starts with every model's outcome "
                                    "on the train split, then it routes the test split") +
        "; baselines route the test split only.",
        *_capability_notes(wanted, caps),
        "gain_over_hull: quality minus the single models' convex hull at the same cost (default "
        "setting; _best: the best sweep point); parity_cost_share: the cheapest sweep point "
        f"within {100 * PARITY_TOLERANCE:g} points of the best single model's quality, as a "
        "share of its cost (None: not reached).",
        f"split: {info.get('split')}; queries dropped because some model has no recorded outcome: "
        f"{info.get('dropped_incomplete_queries', 0)}.",
        f"AIQ on one cost axis up to ${aiq_max_cost:.4f}; sweeps: {knob_notes or 'none'}; "
        f"every other router is one point; sweep settings other than a router's own run on "
        f"the first {n_sweep_seeds or len(seeds)} seed(s).",
    ]
    return {
        "dataset": str(dataset) if validation is None else f"{dataset} (validation: "
                                                             f"{validation:.0%} of train)",
        "n_test": n_test,
        "n_train": len(probe.tasks("train")), "protocol": protocol, "weights": list(w),
        "seeds": seeds, "label": f"{info.get('label')}, latency {info.get('latency_label')}",
        "split": info.get("split"),
        "dropped_incomplete_queries": info.get("dropped_incomplete_queries", 0),
        "pair": pair, "reference": ref, "aiq_max_cost_usd": aiq_max_cost,
        "routers": out, "sweeps": curves,
        "oracles": [r for r in wanted if caps[r].is_oracle],
        "ranking_non_oracle": ranking,
        "best_non_oracle": ranking[0]["router"] if ranking else None,
        "notes": notes,
    }


def _names(routers: list[str]) -> str:
    """Router names for a note, the ``single:<model>`` routers as one "single models"."""
    singles = [r for r in routers if r.startswith("single:")]
    return ", ".join((["single models"] if singles else []) + [r for r in routers if r not in singles])


def _capability_notes(wanted: list[str], caps: dict[str, Any]) -> list[str]:
    """What the routers of this report declare (their capabilities), in words."""
    notes = []
    invariant = [r for r in wanted if caps[r].seed_invariant]
    if invariant:
        notes.append(f"routers that are deterministic and do not learn (declared seed_invariant: "
                     f"{_names(invariant)}) run once per setting and count for every seed (sd 0) "
                     f"when every seed routes the same test tasks.")
    trained = [r for r in wanted if caps[r].needs_training]
    if trained:
        notes.append(f"routers that need training ({_names(trained)}) are trained on every model's "
                     f"outcome on the full train split in both protocols (RouteLLM's setting); their "
                     f"hyperparameters come from cross-validation on the train split only.")
    preloaded = [r for r in wanted if caps[r].learns_online and caps[r].experience_preload == "table"]
    if preloaded:
        notes.append(f"{_names(preloaded)}: learn online from their own choices (bandit) or start "
                     f"from every model's train outcome (full).")
    oracles = [r for r in wanted if caps[r].is_oracle]
    if oracles:
        notes.append(f"{_names(oracles)}: read recorded outcomes no deployed system sees (declared "
                     f"is_oracle), so they are listed as oracles and kept out of the non-oracle "
                     f"ranking.")
    return notes


def _pair(train_table: Any, names: list[str]) -> dict[str, str] | None:
    """RouteLLM's strong / weak pair, chosen on the train split as the threshold router does."""
    from evoroute.policy.training import strong_weak_pair

    if train_table is None or len(train_table) == 0 or len(names) < 2:
        return None
    strong, weak = strong_weak_pair(names, train_table)
    return {"strong": strong, "weak": weak}


def _reference(test_table: Any, pair: dict[str, str] | None, names: list[str]) -> dict[str, Any] | None:
    """Test-split numbers of the pair, the best single model and the oracle (for PGR / CPT /
    cost at the best single quality; reading them from test is reporting, not tuning)."""
    if test_table is None or pair is None:
        return None
    tab = test_table
    cols = {n: j for j, n in enumerate(tab.models)}
    sc = tab.task_success()
    keys = np.unique(np.asarray(tab.task_keys, dtype=object), return_index=True)[1]
    per_task_q = {n: float(np.nanmean(sc[keys, cols[n]])) for n in names}
    per_task_c = {n: float(np.nansum(tab.costs[:, cols[n]])) for n in names}
    best = max(names, key=lambda n: (per_task_q[n], -per_task_c[n]))
    ok = ~np.isnan(sc[keys])
    singles = {n: {"quality": per_task_q[n], "cost_usd": per_task_c[n]} for n in names
               if np.isfinite(per_task_q[n])}
    return {
        "weak": pair["weak"], "weak_quality": per_task_q[pair["weak"]],
        "weak_cost": per_task_c[pair["weak"]],
        "strong": pair["strong"], "strong_quality": per_task_q[pair["strong"]],
        "strong_cost": per_task_c[pair["strong"]],
        "best_single": best, "best_single_quality": per_task_q[best],
        "best_single_cost": per_task_c[best],
        "oracle_quality": float(np.mean(np.nanmax(np.where(ok, sc[keys], -np.inf), axis=1))),
        "singles": singles,
    }


def format_table(result: dict[str, Any]) -> str:
    """The benchmark as a fixed-width text table (the CLI prints it), then the ranking of the
    non-oracle routers by AIQ. Oracles are marked with ``*``."""
    rows = result["routers"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def pts(v: Any) -> str:
        return "-" if v is None else f"{100 * v:+.1f}"

    def share(v: Any, o: dict[str, Any]) -> str:
        if v is not None:
            return f"{100 * v:.0f}%"
        return "n.r." if o.get("gain_over_hull") is not None else "-"

    head = (f"{'router':40} {'quality':>13} {'cost $':>15} {'lat s':>6} {'$/succ':>9} "
            f"{'AIQ':>6} {'gain':>6} {'gain*':>6} {'parity':>6} {'APGR':>6} {'CPT50':>6} "
            f"{'CPT80':>6} {'gap':>6} {'train $':>8}")
    lines = [f"{result['dataset']}: {result['n_test']} test queries, protocol {result['protocol']}, "
             f"weights {tuple(result['weights'])}, seeds {result['seeds']} "
             f"({result['label']})", head, "-" * len(head)]
    def group(r: str) -> int:     # EvoRoute's families, the other routers, the single models
        family = rows[r].get("family")
        return 0 if family in EVOROUTE_FAMILIES else 2 if family == "single" else 1

    order = sorted(rows, key=lambda r: (group(r), -rows[r]["quality"]))
    for name in order:
        o = rows[name]
        q = f"{o['quality']:.3f}±{o['quality_sd']:.3f}"
        c = f"{o['cost_usd']:.3f}±{o['cost_usd_sd']:.3f}"
        label = (name[:38] + " *") if o.get("is_oracle") else name[:40]
        lines.append(
            f"{label:40} {q:>13} {c:>15} {o['latency_s']:6.2f} "
            f"{f(o['cost_per_success_usd'], '9.5f'):>9} {f(o['aiq'], '6.3f'):>6} "
            f"{pts(o.get('gain_over_hull')):>6} {pts(o.get('gain_over_hull_best')):>6} "
            f"{share(o.get('parity_cost_share'), o):>6} "
            f"{f(o['apgr'], '6.3f'):>6} {f(o['cpt50'], '6.3f'):>6} {f(o['cpt80'], '6.3f'):>6} "
            f"{f(o['gap_to_oracle'], '6.3f'):>6} {o['train_cost_usd']:8.3f}")
    lines.append("* oracle (reads recorded outcomes), not ranked. gain: quality points over the "
                 "single-model hull at the same cost (default setting; gain*: best sweep point); "
                 f"parity: cost share of the cheapest sweep point within {100 * PARITY_TOLERANCE:g} "
                 "pt of the best single model (n.r. = not reached)")
    ref = result.get("reference")
    if ref:
        lines.append(f"best single: {ref['best_single']} {ref['best_single_quality']:.3f} for "
                     f"${ref['best_single_cost']:.3f}; RouteLLM pair strong {ref['strong']} / weak "
                     f"{ref['weak']}; AIQ axis up to ${result['aiq_max_cost_usd']:.3f}")
    ranking = result.get("ranking_non_oracle") or []
    if ranking:
        top = ", ".join(f"{i + 1}. {x['router']} {x['aiq']:.3f}" for i, x in enumerate(ranking[:8]))
        lines.append(f"best non-oracle by AIQ: {top}")
    t = result.get("timing")
    if t:
        lines.append(f"{t['runs']} runs in {t['total_s']:.1f} s on {t['workers']} worker(s)")
    return "\n".join(lines)


#: what two reports must share for one's routers to be merged into the other
MERGE_KEYS = ("dataset", "n_test", "n_train", "protocol", "weights", "seeds", "split",
              "sweep_seeds", "cold_start_tasks", "steps_per_task")
#: a report written before a key existed holds its default
MERGE_DEFAULTS = {"steps_per_task": 1}


def merge_reports(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the routers of ``new`` added or replaced (their summaries and sweeps), the
    non-oracle ranking recomputed: re-bench one router without rerunning all of them. Both
    reports must come from the same benchmark (:data:`MERGE_KEYS`),
    otherwise a :class:`ValidationError` names what differs. Every AIQ is recomputed on the merged
    table's common cost axis."""
    from evoroute.core.errors import ValidationError

    for k in MERGE_KEYS:
        a, b = base.get(k, MERGE_DEFAULTS.get(k)), new.get(k, MERGE_DEFAULTS.get(k))
        if a != b:
            raise ValidationError(f"cannot merge: {k} differs ({a!r} in the file, {b!r} in this "
                                  "run)", k)
    out = dict(base)
    out["routers"] = {r: dict(o) for r, o in {**base["routers"], **new["routers"]}.items()}
    out["sweeps"] = {**base["sweeps"], **new["sweeps"]}
    # AIQ is on one cost axis for the whole table (the largest hull cost of any router): recompute
    # every router's from the merged sweeps, exactly as one bench of all of them does
    points = {r: np.array([[p["cost_usd"], p["quality"]] for p in rows])
              for r, rows in out["sweeps"].items() if rows}
    aiq = metrics.aiq_table(points)
    for r, v in aiq.items():
        if r in out["routers"]:
            out["routers"][r]["aiq"] = v
    out["aiq_max_cost_usd"] = max(float(metrics.upper_convex_hull(p)[-1, 0]) for p in points.values())
    oracles = list(dict.fromkeys([*base.get("oracles", []), *new.get("oracles", [])]))
    out["oracles"] = oracles
    rows = [{"router": r, **{k: o.get(k) for k in ("aiq", "quality", "cost_usd", "gain_over_hull",
                                                  "gain_over_hull_best", "parity_cost_share")}}
            for r, o in out["routers"].items() if r not in oracles]
    out["ranking_non_oracle"] = sorted(rows, key=lambda x: (-x["aiq"], x["router"]))
    out["best_non_oracle"] = out["ranking_non_oracle"][0]["router"] if rows else None
    merged = sorted(r for r in new["routers"]
                    if not r.startswith("single:") and r not in new.get("oracles", []))
    axis = out["aiq_max_cost_usd"]
    notes = [re.sub(r"AIQ on one cost axis up to \$[0-9.]+", f"AIQ on one cost axis up to ${axis:.4f}", n)
             for n in base.get("notes", [])
             if not any(n.startswith(f"{r} left out of the default routers") for r in new["routers"])]
    out["notes"] = [*notes,
                    f"merged: {', '.join(merged)} rerun and merged into this report "
                    f"(same data, protocol and seeds; every AIQ recomputed on the merged table's "
                    "one cost axis)."]
    timing = dict(base.get("timing", {}))
    timing["merged_runs"] = [*timing.get("merged_runs", []), new.get("timing", {})]
    out["timing"] = timing
    return out
