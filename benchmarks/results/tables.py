"""The tables of docs/results.md read from the bench reports."""

from __future__ import annotations

import math
from typing import Any

from .common import (
    BEST,
    EVOROUTE,
    EVOROUTE_FAMILIES,
    FILES,
    PAPER,
    PAPER_ABLATIONS,
    best_single,
    command,
    f3,
    family,
    is_oracle,
    money,
    pct,
    pm,
    router_order,
    short,
)


# ------------------------------------------------------------------------------ tables
def router_table(rep: dict[str, Any]) -> str:
    rows = rep["routers"]
    head = ("| router | quality (replayed) | test cost $ (replayed) | latency s / query (modelled) "
            "| p95 latency s (modelled) | $ per success | AIQ | gain over single-model hull, default "
            "(points) | gain over hull, best setting (points) | cost share at parity with the best single "
            "| APGR | CPT(50%) | CPT(80%) "
            f"| gap to oracle | $ to reach {short(best_single(rep))}'s quality | exploration (train) $ "
            "| train quality |")
    lines = [head, "|---" + "|---:" * (head.count("|") - 2) + "|"]
    for r in router_order(rep):
        o = rows[r]
        train = "–" if not o.get("train_steps") else f"{o['train_cost_usd']:.3f}"
        tq = "–" if o.get("train_quality") is None else f"{o['train_quality']:.3f}"
        cps = "–" if o.get("cost_per_success_usd") is None else f"{o['cost_per_success_usd']:.5f}"
        name = f"**{r}**" if r == "evoroute" else r
        if is_oracle(rep, r) and "oracle" not in r:
            name += " (oracle)"
        par = ("–" if "parity_cost_share" not in o else pct(o["parity_cost_share"]))
        lines.append(
            f"| {name} | {pm(o['quality'], o['quality_sd'])} | {pm(o['cost_usd'], o['cost_usd_sd'])} "
            f"| {o['latency_s']:.2f} | {o['latency_p95_s']:.2f} | {cps} | {f3(o.get('aiq'))} "
            f"| {gain(o.get('gain_over_hull'))} | {gain(o.get('gain_over_hull_best'))} | {par} "
            f"| {f3(o.get('apgr'))} | {pct(o.get('cpt50'))} | {pct(o.get('cpt80'))} "
            f"| {f3(o.get('gap_to_oracle'))} | {money(o.get('cost_at_best_single_usd'))} "
            f"| {train} | {tq} |")
    return "\n".join(lines)


def share_table(rep: dict[str, Any]) -> str:
    lines = ["| router | models chosen on the test split (share of steps, all seeds) |",
             "|---|---|"]
    for r in router_order(rep):
        if family(rep, r) not in EVOROUTE_FAMILIES:
            continue
        sh = rep["routers"][r].get("model_share") or {}
        txt = ", ".join(f"{short(m)} {100 * v:.1f} %" for m, v in list(sh.items())[:5])
        lines.append(f"| {r} | {txt} |")
    return "\n".join(lines)


def sweep_table(rep: dict[str, Any], router: str, knob_name: str) -> str:
    pts = rep["sweeps"].get(router) or []
    if len(pts) < 2:
        return ""
    lines = [f"| {knob_name} | quality | test cost $ | exploration (train) $ | seeds |",
             "|---:|---:|---:|---:|---:|"]
    for p in sorted(pts, key=lambda p: p["knob"]):
        tr = "–" if not p.get("train_cost_usd") else f"{p['train_cost_usd']:.3f}"
        lines.append(f"| {p['knob']:g} | {pm(p['quality'], p['quality_sd'])} "
                     f"| {pm(p['cost_usd'], p['cost_usd_sd'])} | {tr} | {p['n_seeds']} |")
    return "\n".join(lines)


def gain(v: float | None) -> str:
    """Points of quality (a share × 100), signed."""
    return "–" if v is None else f"{100 * v:+.1f}"


def ablation_rows(rep: dict[str, Any], design: str) -> list[dict[str, Any]]:
    """The paper's ablations of one design (``evoroute`` or ``evoroute-paper``) against it."""
    rows = rep["routers"]
    evo = rows[design]
    out = []
    for suffix, label, paper in PAPER_ABLATIONS:
        name = f"{design}-{suffix}"
        if name not in rows:
            continue
        a = rows[name]
        d = 100 * (a["quality"] - evo["quality"])
        # the JSON keeps mean and sd per router, not per-seed pairs: sd of a difference of
        # independent means-of-seeds
        sd = 100 * math.hypot(a["quality_sd"], evo["quality_sd"])
        dc = a["cost_usd"] - evo["cost_usd"]
        sdc = math.hypot(a["cost_usd_sd"], evo["cost_usd_sd"])
        out.append({"name": name, "suffix": suffix, "label": label, "paper": paper, "d": d, "sd": sd,
                    "dc": dc, "sdc": sdc})
    return out


def ablation_table(reps: dict[str, dict[str, Any]]) -> str:
    """Per ablation: the paper's loss on GAIA, then Δ quality and Δ cost of each design's ablation
    in both protocols."""
    cols = [(d, k) for d in (PAPER, EVOROUTE) for k in ("bandit", "full")]
    got = {(d, k): {r["suffix"]: r for r in ablation_rows(reps[k], d)} for d, k in cols}
    head = "| ablation | paper, GAIA (points) | " + " | ".join(
        f"`{d}`, {k}: Δ quality (points) / Δ test cost $" for d, k in cols) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(cols)]
    for suffix, label, paper in PAPER_ABLATIONS:
        cells = []
        for c in cols:
            g = got[c].get(suffix)
            cells.append("–" if g is None else f"{g['d']:+.2f} ± {g['sd']:.2f} / {g['dc']:+.3f} ± "
                                               f"{g['sdc']:.3f}")
        lines.append(f"| {label} (`-{suffix}`) | {paper:+.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_table(reps: dict[str, dict[str, Any]], keys: tuple[str, str]) -> str:
    """Issue 9's headline metrics of every non-oracle router with a swept cost knob, both
    protocols side by side: AIQ, gain over the single-model hull (default, best), parity."""
    b, f = (reps[k] for k in keys)
    names = [r for r in router_order(f) if r in b["routers"] and not is_oracle(f, r)
             and len(f["sweeps"].get(r) or []) > 1]
    head = ("| router | AIQ bandit | AIQ full | gain @ default, bandit | gain @ default, full "
            "| best gain, bandit | best gain, full | parity cost share, bandit | parity cost share, full |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in names:
        ob, of = b["routers"][r], f["routers"][r]
        name = f"**{r}**" if r == EVOROUTE else r
        lines.append(f"| {name} | {f3(ob.get('aiq'))} | {f3(of.get('aiq'))} | "
                     f"{gain(ob.get('gain_over_hull'))} "
                     f"| {gain(of.get('gain_over_hull'))} | {gain(ob.get('gain_over_hull_best'))} "
                     f"| {gain(of.get('gain_over_hull_best'))} | {pct(ob.get('parity_cost_share'))} "
                     f"| {pct(of.get('parity_cost_share'))} |")
    return "\n".join(lines)


def costlean_section(reps: dict[str, dict[str, Any]]) -> str:
    parts = []
    for proto in ("bandit", "full"):
        key = f"{proto}_costlean"
        rep = reps.get(key)
        if rep is None:
            parts.append(f"*{proto}: docs/results/{FILES[key]} not found; rerun after the benchmark "
                         f"finishes.*")
            continue
        rows = rep["routers"]
        best = rows[BEST]
        lines = [f"**{proto} protocol**, weights {tuple(rep['weights'])}, seeds {rep['seeds']}: "
                 f"`{command(rep, key)}`", "",
                 "| router | quality (replayed) | % of gpt-4's quality | test cost $ (replayed) "
                 "| % of gpt-4's cost | latency s (modelled) | exploration (train) $ | models chosen |",
                 "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in [x for x in router_order(rep)]:
            o = rows[r]
            sh = ", ".join(f"{short(m)} {100 * v:.1f} %"
                           for m, v in list((o.get("model_share") or {}).items())[:4])
            tr = "–" if not o.get("train_steps") else f"{o['train_cost_usd']:.3f}"
            lines.append(f"| {r} | {pm(o['quality'], o['quality_sd'])} | "
                         f"{100 * o['quality'] / best['quality']:.1f} % "
                         f"| {pm(o['cost_usd'], o['cost_usd_sd'])} | "
                         f"{100 * o['cost_usd'] / best['cost_usd']:.1f} % "
                         f"| {o['latency_s']:.2f} | {tr} | {sh} |")
        sw = sweep_table(rep, "evoroute", "w_c (w_p = 1, w_d = 0.05)")
        if sw:
            lines += ["", f"`evoroute`'s cost-weight sweep in the same file ({proto}; settings other "
                          f"than w_c = {rep['weights'][1]:g} on seeds {rep.get('sweep_seeds')}):", "", sw]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


