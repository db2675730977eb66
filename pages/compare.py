"""Compare: metrics of several runs, the quality-vs-cost hull, cumulative cost and regret."""

import streamlit as st

from evoroute.storage import repo
from evoroute.studio import compare
from evoroute.studio.overview import run_title
from ui import charts, state
from ui.widgets import MISSING, label_badge

st.title("Compare runs")

with state.session() as s:
    runs = [r for r in repo.list_runs(session=s, limit=300) if r.n_steps_done > 0 or r.status == "finished"]
if not runs:
    st.info("No runs with steps yet.")
    st.stop()
by_id = {r.id: r for r in runs}
default = [r.id for r in runs if r.status == "finished"][:4] or [runs[0].id]
picked = st.multiselect("runs", list(by_id), default=default, key="cmp_runs",
                        format_func=lambda i: run_title(by_id[i]))
if not picked:
    st.info("Pick at least one run.")
    st.stop()

with state.session() as s, st.spinner("computing metrics…"):
    comp = compare.compare_runs(picked, session=s)
label_badge(comp.label)
for note in comp.notes:
    st.caption(note)
if comp.table.empty:
    st.info("None of the picked runs has a finished task yet.")
    st.stop()

st.dataframe(comp.table, hide_index=True, key="cmp_table", placeholder=MISSING,
             column_config={c: st.column_config.NumberColumn(format="$%.5f")
                            for c in comp.table.columns if "USD" in c}
             | {c: st.column_config.NumberColumn(format="%.3f")
                for c in ("quality", "AIQ", "APGR", "CPT(50%)", "CPT(80%)")}
             | {c: st.column_config.NumberColumn(format="%.2f")
                for c in ("latency p50 (s)", "latency p95 (s)")}
             | {c: st.column_config.NumberColumn(format="%+.3f")
                for c in ("gain over single hull", "best gain over single hull (sweep)")}
             | {"cost share at parity": st.column_config.NumberColumn(format="percent")})
st.download_button("Download the table (CSV)", compare.comparison_csv(comp.table),
                   file_name="evoroute-compare.csv", mime="text/csv", key="cmp_download",
                   icon=":material/download:", on_click="ignore")
st.caption("Quality and cost: mean task success and USD over each run's **scope** column (the "
           "test split where the run has one, else every task outside the cold start), not over "
           "all of a run's steps; cost per task divides by the scope's tasks.")
st.caption("Latency per task: the sum of its steps' latencies — "
           + "; ".join(f"{compare.LATENCY_WORDS.get(src, src)}: run{'s' if len(ids) > 1 else ''} "
                       + ", ".join(map(str, ids))
                       for src, ids in compare.runs_by_latency_source(comp).items()) + ".")
st.caption("Headline metrics, each on the run's scope column (test split where the run has one) and "
           "per kind (replayed / simulated / live, never one hull across kinds): AIQ of each router's "
           "picked runs as its sweep; gain over single hull = the run's quality minus the hull of the "
           "single-model runs (single:<model>) among the picked ones at the run's cost per task; best "
           "gain = the largest over the router's picked runs; cost share at parity = the cheapest "
           "picked run within 0.5 pt of the best single model, as a share of its cost. The reference "
           "is the picked single-model runs, not the dataset's recorded outcomes.")

colours = charts.run_colours(comp.run_names)
st.plotly_chart(charts.quality_cost_hull(comp.points, comp.hulls,
                                         f"{comp.label} · {comp.curve_scope}", comp.run_names,
                                         colours), key="cmp_hull")
drawn, per_run = charts.thin_curves(comp.curves)
st.caption(f"Cumulative curves: the steps of each run's scope ({comp.curve_scope}), in order; "
           "step = the n-th step within that scope."
           + (f" Drawn through at most {per_run:,} evenly spaced steps per run (its first and last "
              "step included; the table above uses every step)." if per_run else ""))
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(charts.cumulative_curves(drawn, "cum_cost",
                                             f"Cumulative cost ({comp.curve_scope})", "USD",
                                             comp.label, comp.run_names, colours),
                    key="cmp_cum_cost")
with c2:
    if comp.curves["regret"].notna().any():
        st.plotly_chart(charts.cumulative_curves(drawn, "regret",
                                                 f"Cumulative regret vs the per-step oracle "
                                                 f"({comp.curve_scope})",
                                                 "quality points lost", comp.label + " · oracle = "
                                                 "best recorded model per step", comp.run_names,
                                                 colours),
                        key="cmp_regret")
    else:
        st.info("Regret needs every model's outcome per step (replay runs only).")
