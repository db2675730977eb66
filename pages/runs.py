"""Runs: launch a run in a background worker and watch its decisions arrive live."""

import json
import time

import streamlit as st

from evoroute.backends.names import BACKEND_NAMES
from evoroute.core.errors import ValidationError
from evoroute.core.labels import ALL_STEPS
from evoroute.settings import DEFAULTS
from evoroute.storage import repo
from evoroute.studio import explain, launch
from evoroute.studio import models as studio_models
from evoroute.studio.feed import TERMINAL_STATUSES, LiveFeed
from evoroute.studio.overview import run_title
from ui import charts, state
from ui.widgets import MISSING, field_error, label_badge, num, query_int, run_action, usd

FORM_ERRORS = "rn_form_errors"
# about once a second: every 0.75 s, so a step written just after a refresh (and committed by
# the worker within 0.25 s) is on screen within ~1.5 s even on a busy machine
LIVE_REFRESH_S = 0.75
st.session_state.setdefault(FORM_ERRORS, {})

st.title("Runs")

with state.session() as s:
    enabled = [m.name for m in repo.list_models(session=s, enabled_only=True)]
    recent = repo.list_runs(session=s, limit=100)


# ----------------------------------------------------------------------------- launch form
FORM_OPEN = "rn_form_open"
#: the fields the form shows an error beside
SHOWN_FIELDS = {"backend", "dataset", "router", "ablations", "router_params", "protocol", "w_p",
                "w_c", "w_d", "weights", "seed", "n_tasks", "n_train", "cold_start_tasks",
                "steps_per_task", "budget_usd", "models", "name"}
ss = st.session_state
ss.setdefault("rn_backend", BACKEND_NAMES[0])
ss.setdefault("rn_dataset", None)
ss.setdefault("rn_dataset_for", ss["rn_backend"])
if ss["rn_backend"] not in BACKEND_NAMES:
    ss["rn_backend"] = BACKEND_NAMES[0]
choice = launch.model_choice(ss["rn_backend"], ss["rn_dataset"], enabled)
ss.setdefault("rn_models", choice.default)
ss["rn_models"] = [m for m in ss["rn_models"] if m in choice.options]
router_opts = launch.router_choices(choice.options)


def _follow_source() -> None:
    """Backend or dataset changed: the model field pre-selects what the new source has."""
    if ss["rn_dataset_for"] != ss["rn_backend"]:      # another backend: its own default
        ss["rn_dataset"] = None
    ss["rn_dataset_for"] = ss["rn_backend"]
    new = launch.model_choice(ss["rn_backend"], ss["rn_dataset"], enabled)
    ss["rn_models"] = new.default
    if ss.get("rn_router") not in launch.router_choices(new.options):
        ss.pop("rn_router", None)                     # a single-model router of the old source
    ss[FORM_ERRORS] = {}


def _disable(names: list[str]) -> None:
    with state.session() as s:
        done = run_action(lambda: launch.disable_models(names, session=s))
    if done:
        ss["rn_disabled"] = done
        ss[FORM_ERRORS].pop("models", None)


def _launch() -> None:
    def go():
        spec = launch.build_spec(
            backend=ss["rn_backend"], dataset=ss.get("rn_dataset"), router=ss["rn_router"],
            ablations=ss.get("rn_ablations", []),
            weights=(ss["rn_wp"], ss["rn_wc"], ss["rn_wd"]), seed=int(ss["rn_seed"]),
            n_tasks=None if ss.get("rn_n_tasks") is None else int(ss["rn_n_tasks"]),
            n_train=None if ss.get("rn_n_train") is None else int(ss["rn_n_train"]),
            budget_usd=ss.get("rn_budget"), cold_start_tasks=int(ss["rn_cold"]),
            steps_per_task=int(ss["rn_steps_per_task"]), models=ss.get("rn_models") or None,
            protocol=ss["rn_protocol"], name=ss.get("rn_name", ""))
        try:
            return launch.launch_run(spec, engine_url=state.db_url())     # checked, then started
        except ValidationError as exc:          # local servers down: the page offers to start them
            ss["rn_servers_down"] = list(getattr(exc, "names", ()))
            raise

    ss["rn_servers_down"], ss["rn_server_job"] = [], None
    run_id = run_action(go, field_errors_key=FORM_ERRORS)
    if run_id is not None:
        st.query_params["run"] = str(run_id)
        ss["rn_run"] = run_id
        ss[FORM_OPEN] = False         # the form folds away: the new run's progress is in view


def _start_local(names: list[str]) -> None:
    job = run_action(lambda: studio_models.start_local_servers(names, engine_url=state.db_url()))
    if job is not None:                # this form's own job (not a later start or stop elsewhere)
        ss["rn_servers_down"], ss["rn_server_job"] = [], job
        ss[FORM_ERRORS].pop("models", None)


@st.fragment(run_every=1.0)
def _local_servers_status() -> None:
    """The start of the local servers this form asked for, until it ends (then once more)."""
    job = ss.get("rn_server_job")
    if job is None or job.done:
        st.rerun()
    st.info(f"starting the local servers ({', '.join(job.names)}) in the background … "
            f"{job.elapsed_s:.0f} s; start the run again when they are up",
            icon=":material/hourglass_top:")


ss.setdefault(FORM_OPEN, not recent)
with st.expander("Launch a run", key=FORM_OPEN, on_change="rerun",
                 icon=":material/rocket_launch:"):
    errs = ss[FORM_ERRORS]
    if ss.get("rn_disabled"):
        st.success("Disabled " + ", ".join(ss.pop("rn_disabled")) + " (enable them again on "
                   "the Models page).")
    s1, s2 = st.columns(2)
    s1.selectbox("backend", BACKEND_NAMES, key="rn_backend", on_change=_follow_source,
                 help="replay: recorded outcomes of real models (latency modelled); "
                      "simulated: seeded parametric models (labelled simulated); "
                      "live: real calls through litellm")
    with s1:
        field_error(errs, "backend")
    datasets = launch.dataset_choices(ss["rn_backend"])
    what = {"simulated": "scenario", "live": "task set"}.get(ss["rn_backend"], "dataset")
    s2.selectbox(what, datasets, index=None, key="rn_dataset", accept_new_options=True,
                 on_change=_follow_source, placeholder=f"{datasets[0]} (the default)",
                 help={"simulated": "a simulated scenario (empty = default)",
                       "live": "the bundled agent task set, or the path of a JSONL task file "
                               "(empty = default)"}.get(
                     ss["rn_backend"], "a bundled dataset, or the path of a long-format CSV / "
                                       "JSONL file (empty = routerbench)"))
    with s2:
        field_error(errs, "dataset")
    with st.form("rn_form", border=False):
        c1, c2, c3 = st.columns(3)
        with c1:
            st.selectbox("router", router_opts, key="rn_router")
            field_error(errs, "router")
            st.multiselect("EvoRoute ablations", launch.ablation_names(), key="rn_ablations",
                           help="switch parts of EvoRoute off (evoroute router only)")
            field_error(errs, "ablations")
            field_error(errs, "router_params")
            st.selectbox("protocol", DEFAULTS.protocols, key="rn_protocol",
                         help="bandit: only the chosen model's outcome is observed (paper); full: "
                              "the base starts with every model's train outcome")
            field_error(errs, "protocol")
        with c2:
            w_p, w_c, w_d = DEFAULTS.weights
            st.number_input("w_p (performance)", 0.0, 10.0, w_p, 0.05, key="rn_wp")
            st.number_input("w_c (cost)", 0.0, 10.0, w_c, 0.01, key="rn_wc")
            st.number_input("w_d (latency)", 0.0, 10.0, w_d, 0.01, key="rn_wd")
            for f in ("w_p", "w_c", "w_d", "weights"):
                field_error(errs, f)
            st.number_input("seed", 0, 2**31 - 1, DEFAULTS.seed, 1, key="rn_seed")
            field_error(errs, "seed")
        with c3:
            st.number_input("test tasks (empty = all)", min_value=1, value=None, step=10,
                            key="rn_n_tasks", placeholder="all")
            field_error(errs, "n_tasks")
            st.number_input("online train tasks (empty = all)", min_value=0, value=None, step=50,
                            key="rn_n_train", placeholder="all")
            field_error(errs, "n_train")
            st.number_input("cold-start tasks", min_value=0, value=DEFAULTS.cold_start_tasks, step=10,
                            key="rn_cold")
            field_error(errs, "cold_start_tasks")
            st.number_input("steps per task", min_value=1, value=1, step=1, key="rn_steps_per_task",
                            help="> 1 composes multi-step tasks from several real queries "
                                 "(task success = all steps correct)")
            field_error(errs, "steps_per_task")
            st.number_input("budget cap (USD, empty = none)", min_value=0.0, value=None,
                            step=0.5, key="rn_budget")
            field_error(errs, "budget_usd")
        st.multiselect("models (empty = all of the scenario's)" if ss["rn_backend"] == "simulated"
                       else "models (empty = all enabled)", choice.options, key="rn_models")
        field_error(errs, "models")
        st.text_input("run name (optional)", key="rn_name")
        field_error(errs, "name")
        for f in set(errs) - SHOWN_FIELDS:           # a field without a widget of its own
            field_error(errs, f)
        st.form_submit_button("Start run", type="primary", on_click=_launch, key="rn_submit",
                              icon=":material/play_arrow:")
    down = [m for m in ss.get("rn_servers_down") or [] if m in studio_models.installed_local_models()]
    if down:                  # the launch was refused because these servers do not answer
        st.button(f"Start the local servers of {', '.join(down)}", key="rn_start_local",
                  on_click=_start_local, args=(down,), type="primary",
                  icon=":material/play_arrow:",
                  help="the same start as on the Models page: in the background, the page stays usable")
    if (job := ss.get("rn_server_job")) is not None and not job.done:
        _local_servers_status()
    elif job is not None:
        if job.error:
            st.error(f"the local servers could not be started: {job.error}", icon=":material/error:")
        else:
            st.success(f"local servers up: {', '.join(job.result) or 'none'} — start the run again",
                       icon=":material/check_circle:")
    if choice.without_outcomes:
        has = launch.dataset_models(ss["rn_backend"], ss["rn_dataset"]) or []
        st.caption(f"Not pre-selected: {', '.join(choice.without_outcomes)} — no recorded "
                   f"outcomes in {ss['rn_dataset'] or datasets[0]}, so a replay cannot route to "
                   f"them (the dataset has {', '.join(has)}; register them on the Models page).")
        st.button(f"Disable {len(choice.without_outcomes)} model(s) without outcomes",
                  key="rn_disable_missing", on_click=_disable, args=(choice.without_outcomes,),
                  icon=":material/block:")


# ----------------------------------------------------------------------------- pick a run
if st.session_state.get("rn_deleted") is not None:
    st.success(f"Deleted run #{st.session_state.pop('rn_deleted')} and all its records.")
if not recent:
    st.info("No runs yet. Launch one above, or from the Overview page.")
    st.stop()

by_id = {r.id: r for r in recent}
running = [r.id for r in recent if r.status not in TERMINAL_STATUSES]
if running:
    st.caption(f"{len(running)} run(s) in progress: " + ", ".join(f"#{i}" for i in running)
               + " — each in its own background worker; closing the browser does not stop them")
wanted = query_int("run")
if wanted is not None and wanted not in by_id:
    with state.session() as s:
        extra = repo.get_run(wanted, session=s)
    if extra is not None:
        by_id[extra.id] = extra
    else:
        st.warning(f"There is no run #{wanted} in this base (deleted, or from another base); "
                   f"showing run #{next(iter(by_id))}, the latest.", icon=":material/help:")
        wanted = None
picked_run = st.session_state.get("rn_run")
if picked_run not in by_id or (wanted is not None and wanted != picked_run and wanted in by_id):
    st.session_state["rn_run"] = wanted if wanted in by_id else next(iter(by_id))


def _pick() -> None:
    st.query_params["run"] = str(st.session_state["rn_run"])


st.selectbox("run", list(by_id), key="rn_run", on_change=_pick,
             format_func=lambda i: run_title(by_id[i], with_name=True),
             help="the run's status is shown below (the label stays fixed while it runs)")
run_id = int(st.session_state["rn_run"])
st.query_params["run"] = str(run_id)
run = by_id[run_id]
with st.expander("configuration", icon=":material/settings:"):
    st.json(json.loads(run.config_json or "{}"), expanded=False)

feeds = st.session_state.setdefault("rn_feeds", {})


def _stop(rid: int) -> None:
    run_action(lambda: launch.stop_run(rid, engine=state.engine()))
    st.session_state["rn_stop_sent"] = rid


def _resume(rid: int) -> None:
    if run_action(lambda: launch.resume_run(rid, engine_url=state.db_url())) is not None:
        st.session_state.pop("rn_stop_sent", None)
        feeds.pop(rid, None)          # the resumed run's feed restarts from its stored steps


def _delete(rid: int) -> None:
    if run_action(lambda: launch.delete_run(rid, engine=state.engine())) is not None:
        feeds.pop(rid, None)
        st.session_state.pop("rn_run", None)
        st.query_params.pop("run", None)
        st.session_state["rn_deleted"] = rid


def live_view(run_id: int, was_active: bool) -> None:
    """The live part of the page: only this reruns (about once a second) while a run is active."""
    started = time.perf_counter()
    feed = feeds.get(run_id)
    if feed is None:
        feed = feeds[run_id] = LiveFeed(run_id)
    with state.session() as s:
        snap = feed.poll(session=s)
    if was_active and not snap.active:
        st.rerun()     # stop the timer: the whole page redraws once with the final state

    top = st.columns([3, 1])
    with top[0]:
        label_badge(snap.label)
        prep = snap.preparation
        if prep is not None:       # preparing: the stage the worker stored, and its progress
            st.progress(prep.progress, text=f"run #{run_id} **{snap.status}** · {prep.text}")
        else:
            st.progress(snap.progress, text=f"run #{run_id} **{snap.status}** · "
                                            f"{snap.stage_text}{snap.n_tasks_finished:,} of "
                                            f"{snap.n_tasks_total:,} tasks · {snap.n_steps:,} steps")
    with top[1]:
        can = launch.run_actions(snap.status)
        if can.stop:
            st.button("Stop run", key="rn_stop", on_click=_stop, args=(run_id,),
                      icon=":material/stop_circle:",
                      disabled=st.session_state.get("rn_stop_sent") == run_id)
        if can.resume:
            st.button("Resume run", key="rn_resume", on_click=_resume, args=(run_id,),
                      icon=":material/resume:", type="primary",
                      help="continue from the last stored step in a background worker, with the "
                           "same random streams: the result equals an uninterrupted run")
        if can.delete:
            ok = st.checkbox("confirm delete", key=f"rn_delete_ok_{run_id}",
                             help="deletes the run, its tasks and all its step records")
            st.button("Delete run", key="rn_delete", on_click=_delete, args=(run_id,),
                      icon=":material/delete:", disabled=not ok)
    if snap.error:
        {"failed": st.error, "interrupted": st.warning}.get(snap.status, st.info)(snap.error)
    m = st.columns(5)
    # labels short enough for a fifth of the page at 1280 px (tests/e2e/test_metric_labels.py); what
    # they leave out is in the help and the scope caption below
    m[0].metric("quality", num(snap.quality),
                help=f"mean success of the finished tasks; {ALL_STEPS}")
    m[1].metric("cost", usd(snap.cost_usd), help=ALL_STEPS)
    m[2].metric("latency/step",
                "–" if snap.mean_latency_s is None else f"{snap.mean_latency_s:.2f} s",
                help=f"mean seconds per step, latency {snap.latency_label}; {ALL_STEPS}")
    m[3].metric("steps seen", f"{snap.n_steps:,}",
                delta=f"+{snap.new_steps:,} new" if 0 < snap.new_steps < snap.n_steps else None)
    m[4].metric("last step id", f"{snap.last_step_id}")
    st.caption(f"Scope: {ALL_STEPS}. Latency {snap.latency_label}.")
    if snap.budget_usd:
        st.progress(min(1.0, snap.cost_usd / snap.budget_usd),
                    text=f"cost vs budget: {usd(snap.cost_usd)} of {usd(snap.budget_usd)}")
    else:
        st.caption("no budget cap on this run")

    # the chart follows every step the feed has read (the poll that reads a run's last steps
    # is also the one that ends its timer, so "new steps in this poll" would miss them)
    figs = st.session_state.setdefault("rn_share_figs", {})
    drawn, fig = figs.get(run_id, (-1, None))
    if not feed.n_steps:
        st.caption("The share of steps per model is drawn from the first step on.")
    else:
        if drawn != feed.n_steps:
            fig = charts.update_model_share(fig, feed.model_share(), snap.label)
            figs[run_id] = (feed.n_steps, fig)
        st.plotly_chart(fig, key="rn_share_chart")

    # the feed, newest first. The browser keeps a ticked row by its position, so while a
    # decision is open the table holds its rows (new steps still count above): the ticked row
    # and the explanation stay the same step; "follow the latest" lets the rows move again.
    st.subheader("Decisions (newest first)")
    hold_key, explain_key, gen_key = (f"rn_feed_hold_{run_id}", f"rn_explain_{run_id}",
                                      f"rn_feed_gen_{run_id}")
    table_key = f"rn_feed_table_{run_id}_{ss.get(gen_key, 0)}"
    rendered = ss.get(f"rn_feed_rendered_{run_id}")     # the rows as the browser shows them
    sel = ss.get(table_key)
    rows = list(sel["selection"]["rows"]) if sel and "selection" in sel else []
    if rows and rendered is not None and rows[0] < len(rendered):
        ss[explain_key] = int(rendered["id"].iloc[rows[0]])
        ss.setdefault(hold_key, rendered)
    elif not rows:
        ss.pop(hold_key, None)
        ss.pop(explain_key, None)
    picked = ss.get(explain_key)
    shown = ss.get(hold_key, snap.feed)
    ss[f"rn_feed_rendered_{run_id}"] = shown
    held_new = snap.last_step_id - int(shown["id"].max()) if hold_key in ss and len(shown) else 0
    if held_new > 0:
        c_hold, c_follow = st.columns([3, 1])
        c_hold.caption(f"rows held on step #{picked} while its explanation is open · "
                       f"{held_new:,} newer step ids since (latest #{snap.last_step_id})")
        c_follow.button("Follow the latest", key=f"rn_follow_{run_id}", on_click=_follow,
                        args=(run_id,), icon=":material/vertical_align_top:")
    else:
        latest = snap.feed
        st.caption(f"latest: step #{snap.last_step_id}"
                   + (f" · {latest.iloc[0]['chosen']} for {latest.iloc[0]['role']}"
                      if len(latest) else ""))
    st.dataframe(shown.drop(columns=["id"]), key=table_key, on_select="rerun",
                 selection_mode="single-row", hide_index=True, height=360, placeholder=MISSING,
                 column_config={"cost (USD)": st.column_config.NumberColumn(format="$%.6f"),
                                "latency (s)": st.column_config.NumberColumn(format="%.2f")})
    if picked is not None:
        with state.session() as s:
            ex = run_action(lambda: explain.explain_step(picked, session=s))
        if ex is not None:
            show_explanation(ex)
    else:
        st.caption("Select a row to see the full explanation of that decision.")
    st.caption(f"live view refreshed in {(time.perf_counter() - started) * 1000:.0f} ms of server "
               f"time (database poll {snap.poll_ms:.0f} ms)"
               + (f" · every {LIVE_REFRESH_S:g} s while the run is active" if snap.active else ""))


def _follow(run_id: int) -> None:
    """Close the open decision: the feed's rows follow the run again (a new table, unticked)."""
    ss = st.session_state
    ss.pop(f"rn_feed_hold_{run_id}", None)
    ss.pop(f"rn_explain_{run_id}", None)
    ss[f"rn_feed_gen_{run_id}"] = ss.get(f"rn_feed_gen_{run_id}", 0) + 1


def show_explanation(ex: explain.StepExplanation) -> None:
    r = ex.record
    with st.container(border=True, key="rn_explanation"):
        st.markdown(f"**Step #{r['id']}** · task `{r['task_key']}` · role **{r['role']}** · "
                    f"phase {r['phase']} → **{r['model']}** (propensity "
                    f"{num(r['propensity'])}); outcome σ={num(r['step_success'], '{:g}')}, "
                    f"P(τ)={num(r['task_success'], '{:g}')}, cost {usd(r['cost_usd'], 6)}, "
                    f"latency {r['duration_s']:.2f} s ({r['latency_label']})")
        st.text(r["instruction"][:2000])
        if r.get("tool_error"):
            st.warning(f"tool call refused or failed: {r['tool_error']}", icon=":material/block:")
        e = ex.explanation
        if e is None:
            st.caption(r.get("explanation_error") or "No explanation stored with this step.")
            return
        st.markdown(f"**{e.mode}** — {e.reason}")
        rescue = explain.rescue_summary(e.rescue)
        if rescue:
            st.caption(rescue)
        if e.channels:
            st.caption("retrieved records per channel: " + ", ".join(
                f"{k} {v:,}" for k, v in e.channels.items())
                + (f" · fallback: {e.fallback}" if e.fallback else "")
                + (f" · predicted tools: {', '.join(e.predicted_tools)}" if e.predicted_tools else ""))
        if e.c_ref is not None and e.d_ref is not None:
            st.caption(f"utility U = w_p·P̃ − w_c·θ_C/C_ref − w_d·θ_D/D_ref (θ: the sampled or mean "
                       f"values in the table) with C_ref {usd(e.c_ref, 6)}, D_ref {e.d_ref:.2f} s: "
                       "the largest estimated means Ĉ, D̂ among the explored candidates, "
                       "Pareto-pruned ones included")
        elif e.c_ref is not None:       # the learned baselines: q̂ − λ·ĉ/C_ref, no latency term
            st.caption(f"utility q̂ − λ·ĉ/C_ref with C_ref {usd(e.c_ref, 6)}: the largest mean "
                       "cost per query of any model (train split; for lints, observed so far)")
        st.dataframe(ex.candidates, hide_index=True, key="rn_expl_candidates",
                     placeholder=MISSING)


active = run.status not in TERMINAL_STATUSES
st.fragment(live_view, run_every=LIVE_REFRESH_S if active else None)(run_id, active)
