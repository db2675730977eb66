"""Pareto explorer: the weight sliders move the utility-optimal point; the counterfactual follows."""

from __future__ import annotations

import pytest

from studio_helpers import FIXED_MODELS, captions, errors, metric, open_app


def test_cost_slider_moves_the_chosen_point_to_a_cheaper_model(fixed_db):
    at = open_app("pareto")
    assert errors(at) == []
    assert metric(at, "utility-optimal model") == "strong"
    # the counterfactual (labelled so) re-decides the sample: every step goes to "strong"
    cf0 = at.session_state["pe_cf_last"]
    assert cf0["weights"] == (1.0, 0.1, 0.05)
    assert cf0["mix"] == {"strong": 1.0}
    assert cf0["quality"] == pytest.approx(0.9)
    assert cf0["cost"] == pytest.approx(0.01)
    assert any("counterfactual (offline re-decision" in c for c in captions(at))

    at.slider(key="pe_wc").set_value(0.5).run()
    assert errors(at) == []
    chosen = metric(at, "utility-optimal model")
    assert chosen == "mid"
    assert FIXED_MODELS[chosen]["cost"] < FIXED_MODELS["strong"]["cost"]
    cf1 = at.session_state["pe_cf_last"]
    assert cf1["weights"] == (1.0, 0.5, 0.05)
    assert cf1["mix"] == {"mid": 1.0}
    assert cf1["quality"] == pytest.approx(0.75)
    assert cf1["cost"] == pytest.approx(0.001)

    # and back up the quality axis when performance dominates again
    at.slider(key="pe_wc").set_value(0.0).run()
    assert metric(at, "utility-optimal model") == "strong"


def test_latency_weight_and_utilities_table(fixed_db):
    at = open_app("pareto")
    at.slider(key="pe_wp").set_value(0.2)
    at.slider(key="pe_wc").set_value(0.0)
    at.slider(key="pe_wd").set_value(1.0).run()
    # U = 0.2·P − 1.0·D/2: cheap 0.1−0.25, mid 0.15−0.5, strong 0.18−1 → cheap
    assert metric(at, "utility-optimal model") == "cheap"
    table = at.dataframe[0].value
    assert table["name"].tolist()[0] == "cheap"
    assert table.set_index("name")["utility"].to_dict() == pytest.approx(
        {"cheap": 0.2 * 0.5 - 0.25, "mid": 0.2 * 0.75 - 0.5, "strong": 0.2 * 0.9 - 1.0})


def test_scope_by_role_and_run(fixed_db):
    _, _, run_id = fixed_db
    at = open_app("pareto")
    at.selectbox(key="pe_kind").set_value("role").run()
    at.selectbox(key="pe_value").set_value("coder").run()
    assert errors(at) == []
    assert at.session_state["pe_cf_last"]["mix"] == {"strong": 1.0}
    assert any("role coder" in c for c in captions(at))

    at2 = open_app("pareto", query={"run": run_id})
    assert at2.selectbox(key="pe_kind").value == "run"
    assert at2.selectbox(key="pe_value").value == run_id
    assert any("simulated" in c for c in captions(at2))


def test_start_a_real_run_with_the_chosen_weights(replay_db):
    from evoroute.storage import db
    from evoroute.storage.tables import Run
    from evoroute.studio.feed import TERMINAL_STATUSES

    from studio_helpers import wait_until

    _, engine = replay_db
    at = open_app("pareto", query={"run": 1})
    at.slider(key="pe_wc").set_value(0.7).run()
    assert errors(at) == []
    at.button(key="pe_start").click().run()
    assert errors(at) == []
    assert at.query_params["run"] == "5" and at.title[0].value == "Runs"

    def run5() -> Run:
        with db.session(engine) as s:
            return s.get(Run, 5)

    assert wait_until(lambda: run5().status in TERMINAL_STATUSES, timeout=120)
    new, old = run5(), None
    with db.session(engine) as s:
        old = s.get(Run, 1)
    assert new.status == "finished", new.error
    assert (new.w_p, new.w_c, new.w_d) == (1.0, 0.7, 0.05)
    # the same configuration as run 1 otherwise: router, dataset, seed, number of steps
    assert (new.router, new.dataset, new.seed, new.n_steps_done) == (old.router, old.dataset,
                                                                    old.seed, old.n_steps_done)
