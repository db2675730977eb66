"""Runs page: launch a background run, watch it live (fragment), open an explanation, stop,
resume and delete it."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from evoroute.core.errors import EvoRouteError
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task
from evoroute.studio.explain import explain_step
from evoroute.studio.feed import TERMINAL_STATUSES, LiveFeed
from evoroute.studio.launch import build_spec, delete_run, launch_run

import db_helpers
from studio_helpers import errors, metric, open_app, wait_until


def _run(engine, run_id: int) -> Run:
    with db.session(engine) as s:
        return s.get(Run, run_id)


def test_live_view_of_a_finished_run_and_its_explanations(replay_db):
    _, engine = replay_db
    at = open_app("runs", query={"run": 1})
    assert errors(at) == []
    assert at.selectbox(key="rn_run").value == 1
    assert at.query_params["run"] == "1"
    with db.session(engine) as s:
        n_steps = repo.count_steps(repo.StepFilter(run_ids=[1]), session=s)
        q = s.exec(select(func.avg(Task.success)).where(Task.run_id == 1)).one()
        last_id = s.exec(select(func.max(StepRecord.id)).where(StepRecord.run_id == 1)).one()
    assert metric(at, "steps seen") == f"{n_steps:,}"
    assert metric(at, "quality") == f"{q:.3f}"
    assert metric(at, "last step id") == str(last_id)
    assert at.progress[0].value == 100
    assert any("replayed · latency modelled" in c.value for c in at.caption)
    feed = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    assert len(feed) == 50 and feed["step"].tolist() == list(range(last_id, last_id - 50, -1))
    # EvoRoute's own decisions list the Pareto-kept models and their sampled utilities
    routed = feed[feed["mode"].isin(["thompson", "posterior_mean"])]
    assert len(routed) and routed["pareto kept"].str.len().min() > 0
    assert routed["sampled utilities"].str.contains(r"[+-]\d\.\d{3}").all()

    # selecting a row opens that step's full explanation
    at.session_state["rn_feed_table_1_0"] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    at.run()
    picked = int(feed["step"].iloc[3])
    assert at.session_state["rn_explain_1"] == picked
    detail = next(m.value for m in at.markdown if m.value.startswith("**Step #"))
    assert detail.startswith(f"**Step #{picked}**")
    with db.session(engine) as s:
        ex = explain_step(picked, session=s)
    cand = next(d.value for d in at.dataframe if "θ_P" in d.value.columns)
    assert cand["model"].tolist() == [c.model for c in ex.explanation.candidates]
    assert cand["chosen"].sum() == 1
    # a missing value (θ of an unexplored candidate, cost of a failed step) shows a dash, not
    # Streamlit's "None"
    assert [d.proto.placeholder for d in at.dataframe] == ["–"] * len(at.dataframe) == ["–", "–"]
    # the utility's scales are shown for routed steps (None for cold start and baselines)
    shows_scales = any("C_ref" in c.value and "Pareto-pruned ones included" in c.value for c in at.caption)
    assert shows_scales == (ex.explanation.c_ref is not None)


def test_url_keeps_the_run(replay_db):
    at = open_app("runs", query={"run": 2})
    assert at.selectbox(key="rn_run").value == 2
    at.selectbox(key="rn_run").set_value(3).run()
    assert at.query_params["run"] == "3"
    assert at.selectbox(key="rn_run").value == 3


def test_launch_runs_in_background_and_feed_follows(replay_db):
    _, engine = replay_db
    at = open_app("runs")
    at.number_input(key="rn_n_tasks").set_value(30)
    at.number_input(key="rn_n_train").set_value(30)
    at.number_input(key="rn_cold").set_value(10)
    at.number_input(key="rn_wc").set_value(0.5)
    at.number_input(key="rn_seed").set_value(3)
    at.text_input(key="rn_name").set_value("from the test")
    at.button(key="rn_submit").click().run()
    assert errors(at) == []
    run_id = int(at.query_params["run"])
    assert run_id == 5 and at.selectbox(key="rn_run").value == run_id
    run = _run(engine, run_id)
    assert (run.name, run.router, run.seed, run.w_c) == ("from the test", "evoroute", 3, 0.5)
    seen = []
    assert wait_until(lambda: _run(engine, run_id).status in TERMINAL_STATUSES, timeout=120)
    for _ in range(3):            # the fragment catches up with every step written
        at.run()
        seen.append(int(metric(at, "steps seen").replace(",", "")))
    run = _run(engine, run_id)
    assert run.status == "finished", run.error
    assert seen[-1] == run.n_steps_done == 10 + 30 + 30
    assert at.progress[0].value == 100


def test_form_error_is_shown_next_to_its_field(replay_db):
    _, engine = replay_db
    at = open_app("runs")
    at.selectbox(key="rn_router").set_value("random")
    at.multiselect(key="rn_ablations").select("no-ts")
    at.button(key="rn_submit").click().run()
    assert errors(at) == ["ablations apply to the evoroute router only"]
    with db.session(engine) as s:
        assert len(repo.list_runs(session=s)) == 4          # nothing launched


def test_stop_button_stops_the_worker_cleanly(replay_db):
    _, engine = replay_db
    run_id = launch_run(build_spec(backend="replay", dataset="routerbench",
                                           router="evoroute", seed=1), engine_url=str(engine.url))
    assert wait_until(lambda: _run(engine, run_id).n_steps_done > 0, timeout=60)
    at = open_app("runs", query={"run": run_id})
    assert at.button(key="rn_stop")
    at.button(key="rn_stop").click().run()
    assert wait_until(lambda: _run(engine, run_id).status in TERMINAL_STATUSES, timeout=60)
    run = _run(engine, run_id)
    assert run.status == "stopped" and run.error.startswith("stopped on request after")
    with db.session(engine) as s:
        written = repo.count_steps(repo.StepFilter(run_ids=[run_id]), session=s)
    assert 0 < written == run.n_steps_done < 3178
    at.run()
    assert metric(at, "steps seen") == f"{written:,}"
    assert not [b for b in at.button if b.key == "rn_stop"]


def test_live_feed_reads_only_new_steps(replay_db):
    _, engine = replay_db
    feed = LiveFeed(1)
    with db.session(engine) as s:
        first = feed.poll(session=s)
        again = feed.poll(session=s)
        assert first.new_steps == first.n_steps > 0 and again.new_steps == 0
        src = s.get(StepRecord, first.last_step_id)
        db_helpers.add_steps([StepRecord(run_id=1, task_key="extra", role=src.role, model=src.model,
                                   instruction="one more step", cost_usd=0.5, duration_s=1.0,
                                   step_success=1.0)], session=s)
        after = feed.poll(session=s)
    assert after.new_steps == 1 and after.n_steps == first.n_steps + 1
    assert after.feed.iloc[0]["instruction"] == "one more step"
    assert after.cost_usd == pytest.approx(first.cost_usd + 0.5)
    share = feed.model_share()
    assert share.groupby("step")["share"].sum().round(9).eq(1.0).all()


# ----------------------------------------------------------------------------- lifecycle
def _kill(engine, run_id: int) -> int:
    """SIGKILL the run's worker process (its pid as the run records it)."""
    import os
    import signal

    pid = _run(engine, run_id).pid
    os.kill(pid, signal.SIGKILL)
    return pid


def test_killed_worker_shows_interrupted_and_resume_button_finishes_it(replay_db):
    _, engine = replay_db
    spec = build_spec(backend="replay", dataset="routerbench", router="evoroute", seed=2,
                          n_tasks=60, n_train=120, cold_start_tasks=20)
    run_id = launch_run(spec, engine_url=str(engine.url))
    assert wait_until(lambda: _run(engine, run_id).n_steps_done >= 10, timeout=120)
    pid = _kill(engine, run_id)
    at = open_app("runs", query={"run": run_id})
    assert errors(at) == []
    assert f"run #{run_id} **interrupted**" in at.progress[0].text
    warn = [w.value for w in at.warning]
    assert any(f"(pid {pid} on" in w and "is gone" in w for w in warn), warn
    assert not [b for b in at.button if b.key == "rn_stop"]
    kept = _run(engine, run_id).n_steps_done
    with db.session(engine) as s:
        assert repo.count_steps(repo.StepFilter(run_ids=[run_id]), session=s) == kept
    at.button(key="rn_resume").click().run()
    assert errors(at) == []
    assert _run(engine, run_id).status in ("pending", "running", "finished")
    assert wait_until(lambda: _run(engine, run_id).status in TERMINAL_STATUSES, timeout=180)
    run = _run(engine, run_id)
    assert run.status == "finished", run.error
    assert run.n_steps_done == 20 + 120 + 60 and run.pid != pid
    with db.session(engine) as s:
        nos = s.exec(select(StepRecord.step_no).where(StepRecord.run_id == run_id)
                     .order_by(StepRecord.id)).all()
    assert nos == list(range(1, 201))                     # nothing lost, nothing twice
    for _ in range(3):
        at.run()
    assert metric(at, "steps seen") == "200" and at.progress[0].value == 100
    assert not [b for b in at.button if b.key == "rn_resume"]


def test_delete_button_removes_the_run_and_its_records(replay_db):
    _, engine = replay_db
    at = open_app("runs", query={"run": 2})
    assert at.button(key="rn_delete").disabled          # needs the confirmation first
    at.checkbox(key="rn_delete_ok_2").check().run()
    at.button(key="rn_delete").click().run()
    assert errors(at) == []
    assert any("Deleted run #2" in m.value for m in at.success)
    with db.session(engine) as s:
        assert repo.get_run(2, session=s) is None
        assert repo.count_steps(repo.StepFilter(run_ids=[2]), session=s) == 0
        assert s.exec(select(func.count()).select_from(Task).where(Task.run_id == 2)).one() == 0
        assert repo.count_steps(repo.StepFilter(run_ids=[1]), session=s) > 0   # others kept
    assert at.selectbox(key="rn_run").value != 2 and 2 not in at.selectbox(key="rn_run").options


def test_delete_is_refused_while_the_worker_lives(replay_db):
    _, engine = replay_db
    spec = build_spec(backend="replay", dataset="routerbench", router="evoroute", seed=4)
    run_id = launch_run(spec, engine_url=str(engine.url))
    assert wait_until(lambda: _run(engine, run_id).n_steps_done > 0, timeout=120)
    with pytest.raises(EvoRouteError, match="stop it first"):
        delete_run(run_id, engine=engine)
    at = open_app("runs", query={"run": run_id})
    assert not [b for b in at.button if b.key in ("rn_delete", "rn_resume")]
    at.button(key="rn_stop").click().run()
    assert wait_until(lambda: _run(engine, run_id).status == "stopped", timeout=60)
    at.run()
    assert at.button(key="rn_resume") and at.button(key="rn_delete")
    delete_run(run_id, engine=engine)
    with db.session(engine) as s:
        assert repo.get_run(run_id, session=s) is None


def test_run_totals_say_their_scope(replay_db):
    """Issue 11 item 11: the Runs page's quality and cost are over every step of the run (cold
    start, train and test), unlike Compare's test split, and the page says so."""
    from evoroute.core.labels import ALL_STEPS

    at = open_app("runs", query={"run": 1})
    assert errors(at) == []
    assert any(ALL_STEPS in c.value for c in at.caption)
