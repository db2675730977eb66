"""Experience: filter, page, export and import step records; inspect a retrieval."""

import streamlit as st

from evoroute import registry
from evoroute.core.errors import EvoRouteError
from evoroute.core.types import Weights
from evoroute.csvio import export as csv_export
from evoroute.csvio import importer as csv_import
from evoroute.csvio import rows as csv_rows
from evoroute.settings import DEFAULTS
from evoroute.storage import repo
from evoroute.studio import experience, retrieval
from evoroute.studio.models import index_models
from ui import charts, state
from ui.widgets import MISSING, run_action

st.title("Experience")

with state.session() as s:
    opts = experience.filter_options(session=s)
state.experience_index_ready()   # start loading the index for the inspector in the background


def _first_page() -> None:
    st.session_state["ex_page"] = 1


SUCCESS = {"any": None, "success (≥ 0.5)": "success", "failure (< 0.5)": "failure",
           "unknown": "unknown"}
f1, f2, f3, f4, f5 = st.columns([1, 1.3, 1.5, 1, 1.5])
runs = f1.multiselect("run", opts["runs"], key="ex_runs", on_change=_first_page)
roles = f2.multiselect("role", opts["roles"], key="ex_roles", on_change=_first_page)
models = f3.multiselect("model", opts["models"], key="ex_models", on_change=_first_page)
success = f4.selectbox("success", list(SUCCESS), key="ex_success", on_change=_first_page)
text = f5.text_input("search instruction / model / error", key="ex_text", on_change=_first_page)
flt = repo.StepFilter(run_ids=runs or None, roles=roles or None, models=models or None,
                      success=SUCCESS[success], text=text.strip() or None)

p1, p2, _ = st.columns([1, 1, 4])
PAGE_SIZES = sorted({25, DEFAULTS.page_size, 100, 250})
size = p1.selectbox("rows per page", PAGE_SIZES, index=PAGE_SIZES.index(DEFAULTS.page_size),
                    key="ex_page_size",
                    on_change=_first_page)
st.session_state.setdefault("ex_page", 1)
if "ex_page_last" in st.session_state:      # the previous run asked for a page past the end
    st.session_state["ex_page"] = st.session_state.pop("ex_page_last")
page = p2.number_input("page", min_value=1, step=1, key="ex_page")
with state.session() as s:
    table, total = experience.experience_page(flt, session=s, page=int(page), page_size=int(size))
pages = experience.page_count(total, int(size))
if int(page) > pages:
    # rerun on the last page (only then: a page inside the range costs one query)
    st.session_state["ex_page_last"] = pages
    st.session_state["ex_page_note"] = f"page {int(page)} does not exist ({pages:,} " \
                                       f"page{'s' if pages > 1 else ''}): showing the last one"
    st.rerun()
note = st.session_state.pop("ex_page_note", None)
st.caption(f"{total:,} records match · page {int(page)} of {pages:,} · newest first "
           "(filters and paging run in SQL)" + (f" · {note}" if note else ""))
st.dataframe(table, hide_index=True, key="ex_table", height=420, placeholder=MISSING,
             column_config={"cost (USD)": st.column_config.NumberColumn(format="$%.6f"),
                            "latency (s)": st.column_config.NumberColumn(format="%.2f")})

# ----------------------------------------------------------------------------- export / import
e1, e2 = st.columns(2)
with e1:
    st.subheader("Export")
    st.caption("The filtered records as CSV. Cells starting with = + - @ are prefixed with a "
               "quote (no spreadsheet formulas); credentials are redacted; no API key is ever "
               "stored.")
    fkey = repr(flt)
    if st.button(f"Prepare CSV of {total:,} records", key="ex_export_prepare",
                 icon=":material/table_view:", disabled=total == 0):
        data, n = csv_export.export_csv_bytes(flt, engine=state.engine())
        st.session_state["ex_export"] = {"filter": fkey, "data": data, "n": n}
    prepared = st.session_state.get("ex_export")
    if prepared and prepared["filter"] == fkey:
        st.download_button(f"Download {prepared['n']:,} records (CSV)", prepared["data"],
                           file_name="evoroute-steps.csv", mime="text/csv",
                           key="ex_export_download", icon=":material/download:", on_click="ignore")
with e2:
    st.subheader("Import")
    st.caption(f"CSV with at least {', '.join(csv_rows.REQUIRED_COLUMNS)} (the export's "
               "columns). Everything is checked first; a bad row is named by line and column and "
               "nothing is imported. Rows land in a new run (backend import, phase import).")
    up = st.file_uploader("CSV file", type=["csv"], key="ex_import_file")
    embed = st.checkbox("compute embeddings (semantic channel)", value=True, key="ex_import_embed")
    if st.button("Import", key="ex_import_go", disabled=up is None, icon=":material/upload:"):
        def go():
            emb = state.embedder() if embed else None
            if embed and emb is None:
                raise EvoRouteError("no embedder in this installation: untick “compute embeddings”")
            return csv_import.import_csv(up.getvalue(), engine=state.engine(), name=up.name,
                                            embed=embed, embedder=emb)
        with st.spinner("validating and importing…"):
            res = run_action(go)
        if res is not None:
            imported_run, n_imported = res
            st.success(f"imported {n_imported:,} records into run #{imported_run}",
                       icon=":material/check_circle:")

# ----------------------------------------------------------------------------- inspector
st.subheader("Retrieval inspector")
st.caption("What EvoRoute retrieves and decides for one instruction against the whole stored "
           "experience, with a fixed seed (same inputs → same draws and decision).")
i1, i2 = st.columns([3, 1])
instruction = i1.text_area("instruction", key="ex_ri_text", height=90,
                           placeholder="e.g. Write a python function that sorts a list")
with i2:
    role = st.selectbox("role", opts["roles"] or ["answerer"], key="ex_ri_role",
                        accept_new_options=True)
    seed = st.number_input("seed", 0, 2**31 - 1, DEFAULTS.seed, key="ex_ri_seed")
    phase = st.selectbox("phase", ["optimize", "inference"], key="ex_ri_phase",
                         help="optimize: Thompson sampling; inference: posterior means")
w1, w2, w3 = st.columns(3)
w_p, w_c, w_d = DEFAULTS.weights
w = Weights(w1.number_input("w_p", 0.0, 10.0, w_p, 0.05, key="ex_ri_wp"),
            w2.number_input("w_c", 0.0, 10.0, w_c, 0.01, key="ex_ri_wc"),
            w3.number_input("w_d", 0.0, 10.0, w_d, 0.01, key="ex_ri_wd"))
if st.button("Inspect", key="ex_ri_go", type="primary", icon=":material/search:"):
    def inspect():
        with state.session() as s:
            cands = registry.model_infos(session=s) or index_models(opts["models"], session=s)
        with state.experience_index() as index:
            return retrieval.inspect_retrieval(index, cands, instruction=instruction,
                                               role=role or "", weights=w, seed=int(seed),
                                               embedder=state.embedder(), phase=phase)
    with st.spinner("retrieving…"):
        st.session_state["ex_ri_result"] = run_action(inspect)
res = st.session_state.get("ex_ri_result")
if res is not None:
    e = res.explanation
    if res.note:
        st.info(res.note)
    st.markdown(f"**Decision: {e.chosen}** · mode *{e.mode}* — {e.reason}")
    st.caption("predicted tools: " + (", ".join(e.predicted_tools) or "none")
               + (f" · fallback: {e.fallback}" if e.fallback else ""))
    a, b = st.columns([1, 2])
    with a:
        st.markdown("**Records per channel** (R = role ∪ semantic ∪ tool)")
        st.dataframe(res.channels, hide_index=True, key="ex_ri_channels",
                     placeholder=MISSING)
    with b:
        st.markdown("**Per-model statistics, Pareto set and sampled utility**")
        st.dataframe(res.candidates, hide_index=True, key="ex_ri_candidates",
                     placeholder=MISSING)
    pareto = res.candidates.loc[res.candidates["Pareto"] == True, "model"].tolist()  # noqa: E712
    st.caption("Pareto set: " + (", ".join(pareto) or "none (fallback or unexplored models)"))
    if not res.draws.empty:
        d1, d2, d3 = st.columns(3)
        for col_, metric in ((d1, "P"), (d2, "C"), (d3, "D")):
            with col_:
                st.plotly_chart(charts.draws_box(res.draws, metric, "posterior (NIG) draws, seed "
                                                 f"{int(seed) + 1}"), key=f"ex_ri_draws_{metric}")
