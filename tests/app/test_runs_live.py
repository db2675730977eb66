"""Runs page, the live view during a run (issue 11 items 2, 3, 9; issue 12's "a missing run id
in the URL silently swaps to another run"): the ticked feed row and the explanation stay the
same step while steps arrive, the share chart reaches the last step, preparation says what it
does, simulated runs stream step by step."""

from __future__ import annotations

import json

from sqlmodel import select

from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord
from evoroute.studio.feed import TERMINAL_STATUSES, LiveFeed, seconds
from evoroute.studio.launch import build_spec, launch_run

import db_helpers
from studio_helpers import errors, metric, open_app, wait_until

COPIED = [c for c in StepRecord.model_fields if c not in ("id", "run_id", "task_id")]


def _running_run(engine, *, status: str = "running", n_tasks_total: int = 100) -> int:
    """A run owned by this (living) test process, so the page treats it as active."""
    with db.session(engine) as s:
        run = repo.create_run(session=s, config={"backend": "replay", "dataset": "routerbench",
                                                 "router": "evoroute"},
                              name="watched", status=status, backend="replay",
                              dataset="routerbench", router="evoroute",
                              label="replayed · latency modelled", n_tasks_total=n_tasks_total,
                              started_at=repo.now() if status == "running" else None)
        return int(run.id)


def _add_steps(engine, run_id: int, n: int, *, finish: bool = False) -> None:
    """Append the next ``n`` steps of run 1 to ``run_id`` (what a worker commits)."""
    with db.session(engine) as s:
        have = len(s.exec(select(StepRecord.id).where(StepRecord.run_id == run_id)).all())
        src = s.exec(select(StepRecord).where(StepRecord.run_id == 1).order_by(StepRecord.id)
                     .offset(have).limit(n)).all()
        db_helpers.add_steps([StepRecord(run_id=run_id, **{c: getattr(r, c) for c in COPIED})
                              for r in src], session=s)
        repo.update_run(run_id, session=s, n_steps_done=have + n,
                        **({"status": "finished"} if finish else {}))


def _feed(at):
    return next(d.value for d in at.dataframe if "chosen" in d.value.columns)


def _share_chart_last_step(at) -> float:
    import base64
    import json

    import numpy as np

    def values(x) -> np.ndarray:       # plotly sends numeric arrays as base64 typed arrays
        if isinstance(x, dict):
            return np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        return np.asarray(x, dtype=float)

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return float(max(values(t["x"]).max() for t in spec["data"]))


def test_ticked_row_and_explanation_stay_the_same_step_while_steps_arrive(replay_db):
    _, engine = replay_db
    run_id = _running_run(engine)
    _add_steps(engine, run_id, 60)
    at = open_app("runs", query={"run": run_id})
    assert errors(at) == []
    table = f"rn_feed_table_{run_id}_0"
    at.session_state[table] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    at.run()
    picked = int(_feed(at)["step"].iloc[3])
    assert at.session_state[f"rn_explain_{run_id}"] == picked
    for _ in range(3):                       # a fast run: new steps at every refresh
        _add_steps(engine, run_id, 10)
        at.run()
        feed = _feed(at)
        # the browser keeps the tick on row 3: that row is still the explained step
        assert int(feed["step"].iloc[3]) == picked
        detail = next(m.value for m in at.markdown if m.value.startswith("**Step #"))
        assert detail.startswith(f"**Step #{picked}**")
    assert metric(at, "steps seen") == "90"               # the counts still move
    assert any(f"rows held on step #{picked}" in c.value for c in at.caption)
    # following the latest closes the decision and shows the newest rows, unticked
    at.button(key=f"rn_follow_{run_id}").click().run()
    feed = _feed(at)
    with db.session(engine) as s:
        last = max(s.exec(select(StepRecord.id).where(StepRecord.run_id == run_id)).all())
    assert int(feed["step"].iloc[0]) == last
    assert not [m for m in at.markdown if m.value.startswith("**Step #")]
    assert at.session_state[f"rn_feed_gen_{run_id}"] == 1


def test_share_chart_reaches_the_last_step_when_watched_to_the_end(replay_db, monkeypatch):
    _, engine = replay_db
    run_id = _running_run(engine)
    _add_steps(engine, run_id, 20)
    at = open_app("runs", query={"run": run_id})
    assert _share_chart_last_step(at) == 20
    _add_steps(engine, run_id, 30)
    at.run()
    assert _share_chart_last_step(at) == 50
    # the worker writes its last steps and ends the run after the page has read it as running
    # and before the live view polls: that poll reads the last steps and ends the timer
    poll = LiveFeed.poll
    finished = []

    def finish_then_poll(self, *, session):
        if not finished:
            finished.append(True)
            _add_steps(engine, run_id, 40, finish=True)
        return poll(self, session=session)

    monkeypatch.setattr(LiveFeed, "poll", finish_then_poll)
    at.run()
    assert metric(at, "steps seen") == "90"
    assert _share_chart_last_step(at) == 90


def test_a_missing_run_id_in_the_url_says_so(replay_db):
    at = open_app("runs", query={"run": 999})
    assert errors(at) == []
    warn = [w.value for w in at.warning]
    assert any("no run #999" in w for w in warn), warn
    shown = at.selectbox(key="rn_run").value
    assert shown != 999 and at.query_params["run"] == str(shown)


def test_simulated_runs_stream_step_by_step(replay_db):
    """The worker commits every step: polls during a simulated run see it grow."""
    _, engine = replay_db
    run_id = launch_run(build_spec(backend="simulated", dataset=None, router="evoroute",
                                   n_tasks=100, n_train=200), engine_url=str(engine.url))
    feed, counts = LiveFeed(run_id), []

    def poll() -> bool:
        with db.session(engine) as s:
            snap = feed.poll(session=s)
        counts.append(snap.n_steps)
        return snap.status in TERMINAL_STATUSES

    assert wait_until(poll, timeout=120, every=0.1)
    with db.session(engine) as s:
        run = s.get(Run, run_id)
    assert run.status == "finished", run.error
    partial = sorted({c for c in counts if 0 < c < run.n_steps_done})
    assert len(partial) >= 3, counts                      # not one batch at the end
    assert counts[-1] == run.n_steps_done == 50 + 200 + 100


def test_preparation_says_what_it_does_with_a_progress_bar(replay_db):
    _, engine = replay_db
    with db.session(engine) as s:       # the fixture's runs recorded how long they prepared
        prepared = json.loads(s.get(Run, 4).config_json)["resolved"]["prepare_s"]
    pending = _running_run(engine, status="pending", n_tasks_total=0)
    at = open_app("runs", query={"run": pending})
    assert errors(at) == []
    bar = at.progress[0]
    assert "starting the background worker" in bar.text and "0 of 0 tasks" not in bar.text
    preparing = _running_run(engine, n_tasks_total=0)
    at = open_app("runs", query={"run": preparing})
    bar = at.progress[0]
    assert "preparing the run" in bar.text and "0 of 0 tasks" not in bar.text
    assert f"of about {seconds(prepared)}" in bar.text
    assert 0 <= bar.value < 100
    assert not at.get("plotly_chart")                 # no empty chart before the first step
    _add_steps(engine, preparing, 5)           # the tasks are known once it is prepared
    with db.session(engine) as s:
        repo.update_run(preparing, session=s, n_tasks_total=40)
    at.run()
    assert "tasks · 5 steps" in at.progress[0].text


def test_preparation_shows_the_stored_stage_and_its_progress(replay_db):
    """A worker that stores its stage: the bar is the stage's progress and says the stage, not
    "0 of 0 tasks" nor an estimate; in the task phases the bar says which phase."""
    _, engine = replay_db
    run_id = _running_run(engine, n_tasks_total=0)
    with db.session(engine) as s:
        repo.update_run(run_id, session=s, stage="embedding", stage_progress=0.4,
                        stage_detail="1,200 of 3,000 instructions")
    at = open_app("runs", query={"run": run_id})
    assert errors(at) == []
    bar = at.progress[0]
    assert bar.value == 40
    assert "embedding · 1,200 of 3,000 instructions" in bar.text
    assert "0 of 0 tasks" not in bar.text and "of about" not in bar.text
    assert not at.get("plotly_chart")
    with db.session(engine) as s:          # the next stage: its progress cannot be measured
        repo.update_run(run_id, session=s, stage="indexing", stage_progress=None,
                        stage_detail="every model's outcome on the train split (900 steps)")
    at.run()
    bar = at.progress[0]
    assert "building the experience index" in bar.text and "(900 steps)" in bar.text
    assert bar.value == 0
    _add_steps(engine, run_id, 5)          # the first steps: the phase goes with the tasks bar
    with db.session(engine) as s:
        repo.update_run(run_id, session=s, n_tasks_total=40, stage="optimize",
                        stage_progress=5 / 20, stage_detail="5 of 20 steps")
    at.run()
    text = at.progress[0].text
    assert "online training (train split) · 5 of 20 steps · " in text and "tasks · 5 steps" in text
    with db.session(engine) as s:
        repo.update_run(run_id, session=s, status="finished", stage="finished", stage_progress=1.0,
                        stage_detail=None)
    at.run()
    assert at.progress[0].value == 100 and "online training" not in at.progress[0].text


def test_a_live_run_says_live_once_in_each_label(replay_db):
    from evoroute.core import labels

    _, engine = replay_db
    with db.session(engine) as s:
        run = repo.create_run(session=s, config={"backend": "live", "dataset": "default",
                                                 "router": "evoroute"},
                              name="", status="finished", backend="live", dataset="default",
                              router="evoroute", label=labels.run_label("live", "measured"))
        run_id = int(run.id)
    _add_steps(engine, run_id, 3)
    with db.session(engine) as s:
        for rec in s.exec(select(StepRecord).where(StepRecord.run_id == run_id)).all():
            rec.latency_label = "measured"
            s.add(rec)
        s.commit()
    at = open_app("runs", query={"run": run_id})
    assert errors(at) == []
    texts = ([at.selectbox(key="rn_run").format_func(run_id)] + [c.value for c in at.caption]
             + [m.label for m in at.metric] + [p.text for p in at.progress])
    assert any("live · latency measured" in t for t in texts)
    assert not [t for t in texts if t.lower().count("live") > 1 and "live view" not in t], texts
