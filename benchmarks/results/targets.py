"""The issues' targets against the measured values."""

from __future__ import annotations

from typing import Any

from .common import BEST, EVOROUTE, FILES, PAPER, best_single, f3, is_oracle, pct, pm, runs_of, short
from .tables import gain


# ------------------------------------------------------------------------------ targets
def seeds_meeting_costlean(runs: list[dict[str, Any]], best: dict[str, Any]) -> int:
    """Replay-check runs that meet the cost-leaning target on their own (≥ 90 % of the best
    single model's quality at ≤ 10 % of its cost)."""
    return sum(r["quality"] / best["quality"] >= 0.90 and r["cost"] / best["cost_usd"] <= 0.10
               for r in runs)


def targets(reps: dict[str, dict[str, Any]], checks: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """The targets of issue 4 (for ``evoroute``) against the measured values; returns the table and
    a summary."""
    lines = ["| target (issue 4) | protocol | measured | met? | gap |", "|---|---|---|---|---|"]
    summary: list[str] = []
    for proto in ("bandit", "full"):
        rep = reps[proto]
        rows = rep["routers"]
        evo, best = rows["evoroute"], rows[BEST]
        dq = 100 * (evo["quality"] - best["quality"])
        cr = evo["cost_usd"] / best["cost_usd"]
        ok_q, ok_c = dq >= -0.5, cr <= 0.70
        gap = []
        if not ok_q:
            gap.append(f"quality {-dq - 0.5:.2f} points short of the allowed 0.5")
        if not ok_c:
            gap.append(f"cost {100 * (cr - 0.70):.1f} % of gpt-4's cost over the allowed 70 %")
        met = "**met**" if ok_q and ok_c else "not met"
        lines.append(
            f"| default weights: within 0.5 points of gpt-4's quality at ≤ 70 % of its cost | {proto} "
            f"| quality {pm(evo['quality'], evo['quality_sd'])} vs {best['quality']:.3f} "
            f"({dq:+.2f} points); cost ${evo['cost_usd']:.3f} ± {evo['cost_usd_sd']:.3f} = "
            f"{100 * cr:.1f} % of ${best['cost_usd']:.3f} | {met} | {'; '.join(gap) or '–'} |")
        summary.append(f"default weights, {proto}: {met.replace('*', '')} ({dq:+.2f} points at "
                       f"{100 * cr:.1f} % "
                       f"of the cost)")
    for proto in ("bandit", "full"):
        key = f"{proto}_costlean"
        rep = reps.get(key)
        if rep is None:
            lines.append(f"| cost-leaning weights: ≥ 90 % of gpt-4's quality at ≤ 10 % of its cost "
                         f"| {proto} | not measured: docs/results/{FILES[key]} is missing | – | – |")
            summary.append(f"cost-leaning, {proto}: not measured")
            continue
        rows = rep["routers"]
        evo, best = rows["evoroute"], rows[BEST]
        qr = evo["quality"] / best["quality"]
        cr = evo["cost_usd"] / best["cost_usd"]
        ok = qr >= 0.90 and cr <= 0.10
        gap = []
        if qr < 0.90:
            gap.append(f"quality {100 * (0.90 - qr):.1f} % of gpt-4's quality short")
        if cr > 0.10:
            gap.append(f"cost {100 * (cr - 0.10):.1f} % of gpt-4's cost over")
        met = "**met**" if ok else "not met"
        runs = runs_of(checks, EVOROUTE, key)
        if ok and runs:
            # the mean can clear the bar while single seeds do not: say so
            n_ok = seeds_meeting_costlean(runs, best)
            if n_ok < len(runs):
                met = "**met** on the mean only"
                gap.append(f"by {100 * (qr - 0.90):.2f} points of gpt-4's quality; {n_ok} of {len(runs)} "
                           f"seeds meet it on their own (per-seed quality "
                           + ", ".join(f"{r['quality']:.3f}" for r in runs) + ")")
        w = ",".join(f"{x:g}" for x in rep["weights"])
        lines.append(
            f"| cost-leaning weights ({w}): ≥ 90 % of gpt-4's quality at ≤ 10 % of its cost | {proto} "
            f"| quality {pm(evo['quality'], evo['quality_sd'])} = {100 * qr:.1f} % of {best['quality']:.3f}; "
            f"cost ${evo['cost_usd']:.3f} ± {evo['cost_usd_sd']:.3f} = {100 * cr:.1f} % of "
            f"${best['cost_usd']:.3f} | {met} | {'; '.join(gap) or '–'} |")
        summary.append(f"cost-leaning, {proto}: {met.replace('*', '')} ({100 * qr:.1f} % of the quality at "
                       f"{100 * cr:.1f} % of the cost)")
    for proto in ("bandit", "full"):
        rows = reps[proto]["routers"]
        others = {r: o["aiq"] for r, o in rows.items()
                  if not is_oracle(reps[proto], r) and o.get("aiq") is not None}
        rank = sorted(others, key=lambda r: -others[r])
        pos = rank.index("evoroute") + 1
        ok = pos == 1
        ahead = [f"{r} {others[r]:.3f}" for r in rank[: pos - 1]]
        met = "**met**" if ok else "not met"
        gap_txt = "–" if ok else f"{others[rank[0]] - others['evoroute']:.3f} AIQ below {rank[0]}"
        lines.append(
            f"| `evoroute`'s AIQ highest of all non-oracle routers | {proto} | evoroute "
            f"{others['evoroute']:.3f}, "
            f"rank {pos} of {len(rank)}; ahead of it: {', '.join(ahead) or 'none'} | {met} "
            f"| {gap_txt} |")
        summary.append(f"AIQ, {proto}: {met.replace('*', '')} (rank {pos}; ahead: "
                       f"{', '.join(ahead) or 'none'})")
        best = rank[0]
        bo = rows[best]
        par = bo.get("parity_cost_share")
        summary.append(f"best non-oracle router by AIQ, {proto}: {best} {others[best]:.3f}"
                       + ("" if bo.get("gain_over_hull") is None else
                          f" (gain over the single-model hull {100 * bo['gain_over_hull']:+.1f} points at "
                          "its "
                          f"default setting, {100 * bo['gain_over_hull_best']:+.1f} best; cost at parity "
                          f"with the best single model {pct(par)})"))
    for proto in ("bandit", "full"):
        t = reps[proto].get("timing") or {}
        total, cpu = t.get("total_s", float("nan")), t.get("cpu_s", float("nan"))
        # the benches ran beside other jobs on the same 2 cores: wall time is an upper bound,
        # the runs' CPU seconds (≥ cpu / 2 s of wall on 2 idle cores) the fairer number
        met = ("**met**" if total < 180 else "not met on wall time; **met** on CPU time"
               if cpu / 2 < 180 else "not met")
        gap = "–" if total < 180 else (f"{total - 180:.0f} s over on wall time; the CPU time "
                                       f"({cpu / 2:.0f} s on 2 cores) is "
                                       + ("within 3 minutes" if cpu / 2 < 180 else f"{cpu / 2 - 180:.0f} s "
                                                                                   "over"))
        lines.append(
            f"| full `bench` (all routers, 5 seeds) under 3 minutes on 2 cores | {proto} "
            f"| {total:.1f} s wall, measured while other jobs shared the 2 cores; {t.get('runs')} runs on "
            f"{t.get('workers')} workers used {cpu:.1f} CPU s, i.e. ≥ {cpu / 2:.0f} s on 2 idle cores "
            f"| {met} | {gap} |")
        summary.append(f"bench time, {proto}: {met.replace('*', '')} ({total:.0f} s wall under load, "
                       f"{cpu:.0f} CPU s)")
        run_s = (t.get("run_s_by_router") or {}).get(EVOROUTE)
        cpu_s = (t.get("run_cpu_s_by_router") or {}).get(EVOROUTE)
        emb = t.get("embedding_s", 0.0)
        if run_s is not None:
            what = ("cold start + optimisation on the train queries + the test queries"
                    if proto == "bandit" else "every model's train records loaded + the test queries")
            serial = ""
            ss = [r["seconds"] for r in runs_of(checks, EVOROUTE, proto)]
            if ss:
                serial = (f"; run one at a time by the replay checks of this document, beside other jobs: "
                          f"{min(ss):.1f}–{max(ss):.1f} s wall per run")
            ok_wall, ok_cpu = run_s + emb < 20, cpu_s + emb < 20
            met = ("**met**" if ok_wall else "not met on wall time; **met** on CPU time" if ok_cpu
                   else "not met")
            lines.append(
                f"| one `evoroute` replay of the test split under 20 s incl. embeddings | {proto} "
                f"| {run_s:.1f} s wall per run in the bench under load ({cpu_s:.1f} CPU s; {what}) + "
                f"{emb:.2f} s embeddings (disk cache){serial} | {met} "
                f"| {'–' if ok_wall else f'{run_s + emb - 20:.1f} s over on wall time'} |")
    return "\n".join(lines), summary




# issue 9, item 7 (bundled RouterBench test split, bench --seeds 5)
AIQ_TARGET = {"bandit": 0.840, "full": 0.845}
PARITY_COST_TARGET = {"bandit": 0.70, "full": 0.60}
PARITY_POINTS = 0.5


def issue9_targets(reps: dict[str, dict[str, Any]]) -> tuple[str, list[str], dict[str, Any]]:
    """Issue 9's targets for ``evoroute`` (``evoroute-paper`` and the best non-oracle router
    beside it); returns the table, a summary and the verdicts."""
    lines = ["| target (issue 9) | protocol | `evoroute` | met? | gap | `evoroute-paper` | best non-oracle "
             "by AIQ |", "|---|---|---|---|---|---|---|"]
    summary: list[str] = []
    verdict: dict[str, Any] = {}
    for proto in ("bandit", "full"):
        rep = reps[proto]
        rows = rep["routers"]
        best = rows[best_single(rep)]
        top = rep["best_non_oracle"]
        evo, pap = rows[EVOROUTE], rows.get(PAPER, {})
        # 1. AIQ
        goal = AIQ_TARGET[proto]
        ok = evo["aiq"] >= goal
        verdict[(proto, "aiq")] = ok
        short_by = "–" if ok else f"{goal - evo['aiq']:.3f} AIQ short"
        lines.append(f"| AIQ ≥ {goal:.3f} | {proto} | {evo['aiq']:.3f} | {'**met**' if ok else 'not met'} "
                     f"| {short_by} | {f3(pap.get('aiq'))} | {top} {rows[top]['aiq']:.3f} |")
        summary.append(f"AIQ ≥ {goal:.3f}, {proto}: {'met' if ok else 'not met'} (evoroute {evo['aiq']:.3f}; "
                       f"evoroute-paper {f3(pap.get('aiq'))}; best non-oracle {top} {rows[top]['aiq']:.3f})")
        # 2. parity at the default weights
        share = PARITY_COST_TARGET[proto]
        dq = 100 * (evo["quality"] - best["quality"])
        cr = evo["cost_usd"] / best["cost_usd"]
        ok = dq >= -PARITY_POINTS and cr <= share
        verdict[(proto, "parity")] = ok
        gap = []
        if dq < -PARITY_POINTS:
            gap.append(f"{-dq - PARITY_POINTS:.1f} points of quality short")
        if cr > share:
            gap.append(f"cost {100 * (cr - share):.1f} % of the best single's over")
        sweep_par = evo.get("parity_cost_share")
        gap.append("on the sweep parity is " + ("never reached" if sweep_par is None else
                                                f"first reached at {pct(sweep_par)} of its cost"))

        def at_default(o: dict[str, Any], best: dict[str, Any] = best) -> str:
            if not o:
                return "–"
            return (f"{100 * (o['quality'] - best['quality']):+.1f} points at "
                    f"{100 * o['cost_usd'] / best['cost_usd']:.1f} % (sweep parity "
                    f"{pct(o.get('parity_cost_share'))})")
        lines.append(f"| default weights: within {PARITY_POINTS} points of {short(best_single(rep))} at ≤ "
                     f"{100 * share:.0f} % of its cost | {proto} | {at_default(evo)} "
                     f"| {'**met**' if ok else 'not met'} | {'; '.join(gap)} | {at_default(pap)} "
                     f"| {top}: {at_default(rows[top])} |")
        summary.append(f"parity at default weights (≤ {100 * share:.0f} % of the cost), {proto}: "
                       f"{'met' if ok else 'not met'} ({dq:+.1f} points at {100 * cr:.1f} % of the cost)")
        # 3. above the single-model hull at the default weights
        g = evo.get("gain_over_hull")
        ok = g is not None and g > 0
        verdict[(proto, "hull")] = ok
        lines.append(f"| default weights: above the single-model hull | {proto} | {100 * g:+.1f} points "
                     f"| {'**met**' if ok else 'not met'} | {'–' if ok else 'below the hull'} "
                     f"| {gain(pap.get('gain_over_hull'))} points | {top}: "
                     f"{gain(rows[top].get('gain_over_hull'))} "
                     "points |")
        summary.append(f"above the single-model hull at default weights, {proto}: "
                       f"{'met' if ok else 'not met'} "
                       f"({100 * g:+.1f} points)")
    return "\n".join(lines), summary, verdict
