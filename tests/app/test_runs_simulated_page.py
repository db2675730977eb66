"""Issue 11 item 9 on the page itself: a simulated run launched from the Runs form streams step
by step into the live view (the library-level twin is test_runs_live's
test_simulated_runs_stream_step_by_step)."""

from __future__ import annotations

import time

from evoroute.storage import db
from evoroute.storage.tables import Run
from evoroute.studio.feed import TERMINAL_STATUSES

from studio_helpers import errors, metric, open_app


def _run(engine, run_id: int) -> Run:
    with db.session(engine) as s:
        return s.get(Run, run_id)


def test_a_simulated_run_from_the_form_arrives_step_by_step_on_the_page(replay_db):
    _, engine = replay_db
    at = open_app("runs")
    at.selectbox(key="rn_backend").set_value("simulated").run()
    assert errors(at) == []
    assert at.selectbox(key="rn_dataset").value is None         # the dataset followed
    at.number_input(key="rn_n_tasks").set_value(100)
    at.number_input(key="rn_n_train").set_value(200)
    at.button(key="rn_submit").click().run()
    assert errors(at) == []
    run_id = int(at.query_params["run"])
    seen: list[int] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        at.run()
        assert errors(at) == []
        seen.append(int(metric(at, "steps seen").replace(",", "")))
        if _run(engine, run_id).status in TERMINAL_STATUSES:
            break
        time.sleep(0.2)
    at.run()
    run = _run(engine, run_id)
    assert run.status == "finished", run.error
    final = int(metric(at, "steps seen").replace(",", ""))
    assert final == run.n_steps_done
    partial = sorted({n for n in seen if 0 < n < final})
    assert len(partial) >= 3, seen                 # the page saw it grow, not one batch
    assert seen == sorted(seen)                    # and never go back
