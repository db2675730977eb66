"""Pareto explorer: models and routers on quality vs cost; weights move the operating point."""

import streamlit as st

from evoroute.core import labels
from evoroute.core.types import Weights
from evoroute.evaluation import counterfactual as cf
from evoroute.settings import DEFAULTS
from evoroute.storage import repo
from evoroute.studio import launch, pareto
from evoroute.studio.models import index_models
from ui import charts, state
from ui.widgets import MISSING, delta, label_badge, num, query_int, run_action, usd, weights_sliders

st.title("Pareto explorer")

with state.session() as s:
    options = pareto.scope_options(session=s)

KINDS = {"all": "whole base", "run": "a run", "dataset": "a dataset (all its runs)", "role": "a role"}
if "pe_kind" not in st.session_state and query_int("run") in options["run"]:
    st.session_state["pe_kind"] = "run"
    st.session_state["pe_value"] = query_int("run")
c1, c2 = st.columns([1, 2])
kind = c1.selectbox("scope", list(KINDS), format_func=KINDS.get, key="pe_kind")
value = None
if kind != "all":
    values = options[kind]
    if not values:
        st.info(f"No {kind} in the base yet.")
        st.stop()
    if st.session_state.get("pe_value") not in values:
        st.session_state["pe_value"] = values[0]
    value = c2.selectbox(kind, values, key="pe_value")
scope = pareto.Scope(kind, value)

with state.session() as s:
    points = pareto.scope_points(scope, session=s)
    runs_in = [r for r in (repo.get_run(int(i), session=s) for i in points["run"].dropna().unique())
               if r is not None]
if points.empty:
    st.info("No step records in this scope yet.")
    st.stop()

# replayed, simulated and live numbers are never on one front: one kind at a time
kinds_here = pareto.sources(points)
source = kinds_here[0]
if len(kinds_here) > 1:
    if st.session_state.get("pe_source") not in kinds_here:
        st.session_state["pe_source"] = source
    steps_of = points[points["kind"] == "model"].groupby("source")["n"].sum()
    source = st.selectbox("numbers from", kinds_here, key="pe_source",
                          format_func=lambda k: f"{k} runs ({int(steps_of.get(k, 0)):,} steps)",
                          help="This scope holds runs of several kinds; their numbers are never "
                               "mixed in one point or one front.")
    points = points[points["source"] == source]
    runs_in = [r for r in runs_in if labels.kind_of(r.backend) == source]
source_runs = [int(r.id) for r in runs_in] if len(kinds_here) > 1 else None

label = pareto.points_label(runs_in)
base_weights = (runs_in[0].w_p, runs_in[0].w_c, runs_in[0].w_d) if kind == "run" and runs_in \
    else DEFAULTS.weights


@st.fragment
def weights_view() -> None:
    """Everything the weights move: a slider step reruns only this (the scope's points and
    runs above are read once per full run), so the browser redraws only this part."""
    st.markdown("**Weights** of the utility U = w_p·P̃ − w_c·C̃ − w_d·D̃ (cost and latency "
                "normalised by the largest candidate mean, as in a routing decision)")
    w = Weights(*weights_sliders("pe", base_weights))
    opt = pareto.operating_point(points, w)

    lat_label = pareto.latency_source(label)
    if opt is not None:
        best = points.loc[opt.index]
        # widths that fit the values at 1280 px (tests/e2e/test_metric_labels.py); the model's id
        # without its provider prefix, the whole id in the help
        m = st.columns([2.2, 1, 1.15, 1])
        m[0].metric("utility-optimal model", opt.name.rsplit("/", 1)[-1],
                    help=f"{opt.name}: the highest utility among the scope's points")
        m[1].metric("quality", num(best["quality"]), help="mean task success over all steps it "
                    "handled in the scope")
        m[2].metric("cost per step", usd(best["cost"], 6), help="mean USD per step, all steps")
        m[3].metric("latency per step", num(best["latency"], "{:.2f} s"),
                    help=f"mean seconds per step, all steps; latency {lat_label}")
    label_badge(f"{label}; each point is the mean over all steps (every phase) that model or "
                f"router handled in {scope.describe()}"
                + ("" if f"latency {lat_label}" in label else f"; latency {lat_label}"))
    free = points[points["cost"].astype(float) <= 0]
    if len(free):
        st.caption(f"{len(free)} point{'s' if len(free) > 1 else ''} at zero cost "
                   f"({', '.join(free['name'])}) not drawn: a log cost axis cannot show $0. "
                   + ("It is in the utility table below." if (free["kind"] == "model").all() else ""))
    st.plotly_chart(charts.pareto_scatter(points, opt.name if opt else None,
                                         f"{label} · all steps of {scope.describe()}", lat_label),
                    key="pe_chart")
    if opt is not None:
        with st.expander("utility of every model under these weights", icon=":material/table:"):
            models = points[points["kind"] == "model"].assign(utility=opt.utilities)
            st.dataframe(models[["name", "n", "quality", "cost", "latency", "utility", "pareto"]]
                         .sort_values("utility", ascending=False), hide_index=True, key="pe_utils",
                         placeholder=MISSING,
                         column_config={"cost": st.column_config.NumberColumn(format="$%.6f"),
                                        "quality": st.column_config.NumberColumn(format="%.3f"),
                                        "latency": st.column_config.NumberColumn(format="%.2f"),
                                        "utility": st.column_config.NumberColumn(format="%+.3f")})

    # ------------------------------------------------------------------------- counterfactual
    st.subheader("What these weights would change — counterfactual")
    st.caption(f"Label: **{cf.LABEL}**. A seeded sample of the recorded steps ({source}, all steps "
               "of every phase) in this scope is routed "
               "again by EvoRoute in posterior-mean mode (deterministic) against the whole stored "
               "experience; expected quality / cost / latency are the router's own estimates for "
               "the model it picks. The sampled steps are part of that experience.")
    k1, k2, k3 = st.columns(3)
    n = k1.number_input("steps to re-decide", 10, 2000, 100, 10, key="pe_cf_n")
    seed = k2.number_input("sample seed", 0, 2**31 - 1, 0, 1, key="pe_cf_seed")
    auto = k3.toggle("re-decide as the sliders move", value=True, key="pe_cf_auto")

    def _counterfactual(weights: Weights):
        """Re-decide the sample; the sample and its retrievals are cached (weights don't change
        retrieval), so a slider move only re-runs the Pareto filter and the utility."""
        names = points.loc[points["kind"] == "model", "name"].tolist()
        sample_key = (scope, source, int(n), int(seed))
        cache = st.session_state.setdefault("pe_cf_cache", {})
        with state.experience_index() as index:
            entry = cache.get(sample_key)
            if entry is None or entry["index_size"] != len(index):
                with state.session() as s:
                    steps = cf.sample_steps(scope.step_filter(session=s, run_ids=source_runs),
                                            session=s, n=int(n), seed=int(seed))
                    models = index_models(names, session=s)
                entry = cache[sample_key] = {"index_size": len(index), "steps": steps,
                                             "models": models, "memo": {}, "results": {}}
                while len(cache) > 8:
                    cache.pop(next(iter(cache)))
            if weights not in entry["results"]:
                entry["results"][weights] = cf.redecide(entry["steps"], index, entry["models"],
                                                        weights, memo=entry["memo"])
        return entry["results"][weights]

    # the first call starts loading the index in the background: here, after the scope's points
    # and the chart are built, so the first visit does not share the CPU with the load
    index_ready = state.experience_index_ready(wait_s=0.3)
    if not index_ready:
        st.info("Loading the experience base into memory for the counterfactual (a one-off after "
                "the studio starts)…", icon=":material/hourglass_top:")

        @st.fragment(run_every=1.0)
        def _wait_for_index() -> None:
            if state.experience_index_ready():
                st.rerun()
        _wait_for_index()
    elif auto or st.button("Re-decide the sample", key="pe_cf_go"):
        base = run_action(lambda: _counterfactual(Weights(*base_weights)))
        new = run_action(lambda: _counterfactual(w))
        if base is not None and new is not None and new.n_steps:
            m = st.columns(4)
            m[0].metric("steps re-decided", f"{new.n_steps}",
                        help=f"{new.changed_share:.0%} get a different model than recorded")
            def _diff(a: float | None, b: float | None) -> float | None:
                return None if a is None or b is None else a - b

            m[1].metric("expected quality", num(new.expected_quality),
                        **delta(_diff(new.expected_quality, base.expected_quality), "{:+.3f}"))
            m[2].metric("expected cost/step", usd(new.expected_cost_usd, 6),
                        help="expected USD per re-decided step",
                        **delta(_diff(new.expected_cost_usd, base.expected_cost_usd), "{:+.6f}",
                                zero="±$0", inverse=True))
            m[3].metric("expected latency", num(new.expected_latency_s, "{:.2f} s"),
                        help="expected seconds per re-decided step",
                        **delta(_diff(new.expected_latency_s, base.expected_latency_s), "{:+.2f} s",
                                zero="±0 s", inverse=True))
            st.caption(f"Deltas against the same counterfactual at weights {base_weights} "
                       f"(quality {num(base.expected_quality)}, cost {usd(base.expected_cost_usd, 6)}). "
                       f"Recorded on these steps: quality {num(new.recorded_quality)}, cost "
                       f"{usd(new.recorded_cost_usd, 6)}, latency {num(new.recorded_latency_s, '{:.2f} s')} "
                       f"({label}).")
            st.plotly_chart(charts.mix_bars(new.mix_frame(), "counterfactual vs " + label),
                            key="pe_mix_chart")
            st.session_state["pe_cf_last"] = {"weights": w.as_tuple(), "mix": new.mix,
                                              "quality": new.expected_quality,
                                              "cost": new.expected_cost_usd}
        elif new is not None:
            st.info("No recorded step in this scope to re-decide.")

    # ------------------------------------------------------------------------- real run
    st.subheader("Try these weights for real")
    if kind == "run" and runs_in:
        st.caption(f"Starts run #{runs_in[0].id}'s configuration again with weights {w.as_tuple()}.")
    else:
        st.caption(f"Starts EvoRoute replayed on RouterBench with weights {w.as_tuple()}.")

    def _start_real() -> int:
        if kind == "run" and runs_in:
            from evoroute.runs.spec import RunSpec

            spec = RunSpec.from_dict({**launch.spec_dict(runs_in[0]), "weights": w.as_tuple(),
                                      "name": f"run {runs_in[0].id} with weights {w.as_tuple()}"})
        else:
            spec = launch.replay_spec(weights=w.as_tuple(), name=f"EvoRoute with weights {w.as_tuple()}")
        return launch.launch_run(spec, engine_url=state.db_url())

    if st.button("Start a run with these weights", type="primary", key="pe_start",
                 icon=":material/play_arrow:"):
        run_id = run_action(_start_real)
        if run_id is not None:
            st.switch_page("pages/runs.py", query_params={"run": str(run_id)})


weights_view()
