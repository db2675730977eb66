"""Overview: the experience base at a glance, the latest runs, and a first replay run."""

import streamlit as st

from evoroute.core import labels
from evoroute.core.labels import ALL_STEPS
from evoroute.studio import launch, overview
from ui import state
from ui.widgets import MISSING, label_badge, run_action

st.title("EvoRoute Studio")
st.caption("Per-step LLM routing from an experience base: retrieve similar past steps → keep "
           "Pareto-optimal models → Thompson-sample a utility of performance, cost and latency "
           "(arXiv 2601.02695).")

with state.session() as s:
    counts = overview.base_counts(session=s)
    runs = overview.runs_frame(session=s, limit=10)
    plan = overview.replay_plan(session=s)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Experience records", f"{counts.n_records:,}")
c2.metric("Models (enabled)", f"{counts.n_models} ({counts.n_models_enabled})")
c3.metric("Runs (active)", f"{counts.n_runs} ({counts.n_runs_active})")
c4.metric("Roles", f"{len(counts.tasks_by_role)}")

left, right = st.columns([2, 1])
with right:
    st.subheader("Tasks by role")
    if counts.tasks_by_role:
        st.dataframe({"role": list(counts.tasks_by_role),
                      "tasks": list(counts.tasks_by_role.values()),
                      "records": [counts.records_by_role[r] for r in counts.tasks_by_role]},
                     hide_index=True, key="ov_roles", placeholder=MISSING)
    else:
        st.info("No records yet.")

    st.subheader("Run a replay")
    over = f" over {len(plan.models)} of your enabled models" if plan.runnable else ""
    st.write("EvoRoute on the bundled RouterBench data (real recorded outcomes; latency "
             f"modelled){over}, in a background worker.")
    if plan.left_out:
        st.caption(f"Left out: {', '.join(plan.left_out)} (no recorded outcomes in the "
                   f"bundled {plan.dataset} data, so a replay cannot route to "
                   f"{'it' if len(plan.left_out) == 1 else 'them'}).")
    n_tasks = st.number_input("test tasks", min_value=10, value=launch.REPLAY_TEST_TASKS,
                              step=10, key="ov_replay_tasks",
                              help="a cap: more than the test split holds runs all of it")
    if st.button("Run a replay", type="primary", key="ov_replay", icon=":material/play_arrow:",
                 disabled=not plan.runnable):
        run_id = run_action(lambda: launch.launch_run(
            overview.replay_spec(plan, n_tasks=int(n_tasks)), engine_url=state.db_url()))
        if run_id is not None:
            st.switch_page("pages/runs.py", query_params={"run": str(run_id)})
    if not plan.runnable:
        why = ("Register models first: " if not plan.left_out else
               f"Your enabled models ({', '.join(plan.left_out)}) have no recorded outcomes in "
               f"the bundled {plan.dataset} data, and a replay only routes to models it has "
               "outcomes for: ")
        st.warning(why + f"register the {len(plan.dataset_models)} models it has (prices fitted "
               "to their recorded costs), or enable them on the Models page.",
               icon=":material/info:")

        def _register() -> None:
            added = run_action(lambda: overview.register_dataset_models(state.engine()))
            if added is not None:
                st.session_state["ov_flash"] = f"registered {len(added)} RouterBench models"

        st.button(f"Register the {len(plan.dataset_models)} RouterBench models", key="ov_register",
                  on_click=_register, icon=":material/add:")
    if msg := st.session_state.pop("ov_flash", None):
        st.success(msg, icon=":material/check_circle:")

with left:
    st.subheader("Latest runs")
    if runs.empty:
        st.info("No runs yet: press **Run a replay** to start one." if plan.runnable else
                "No runs yet: a replay needs models with recorded outcomes first (see **Run a "
                "replay**).")
    else:
        label_badge(labels.caption(sorted(runs["label"])))
        st.caption(f"Quality and cost per run: {ALL_STEPS}.")
        st.dataframe(runs.drop(columns=["created"]), hide_index=True, key="ov_runs",
                     placeholder=MISSING,
                     column_config={"quality": st.column_config.NumberColumn(format="%.3f"),
                                    "cost (USD)": st.column_config.NumberColumn(format="$%.4f"),
                                    "latency per task (s)": st.column_config.NumberColumn(format="%.2f")})
