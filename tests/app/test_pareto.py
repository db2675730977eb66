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


# ----------------------------------------------------------------------------- issue 11
def _figure(at, key: str) -> dict:
    """The plotly figure of chart ``key`` as JSON, its typed arrays (x, y) decoded to lists."""
    import base64
    import json

    import numpy as np

    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-" + key))
    fig = json.loads(chart.proto.spec)
    for t in fig["data"]:
        for axis in ("x", "y"):
            v = t.get(axis)
            if isinstance(v, dict) and "bdata" in v:
                t[axis] = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return fig


def _relabel(engine, run_id: int, backend: str, label: str) -> None:
    from evoroute.storage import db
    from evoroute.storage.tables import Run

    with db.session(engine) as s:
        run = s.get(Run, run_id)
        run.backend, run.label = backend, label
        s.add(run)
        s.commit()


def test_kinds_never_share_a_front(replay_db):
    """Item 5: replayed and simulated points of the whole base get a front each, and the page
    shows one kind at a time, its colour bar naming that kind's latency source."""
    import numpy as np

    from evoroute.storage import db
    from evoroute.studio import pareto

    _, engine = replay_db
    _relabel(engine, 4, "simulated", "simulated")
    with db.session(engine) as s:
        points = pareto.scope_points(pareto.Scope(), session=s)
    assert set(points["source"]) == {"replayed", "simulated"}
    assert points.loc[points["run"] == 4, "source"].tolist() == ["simulated"]
    for _, g in points.groupby("source"):
        assert g["pareto"].tolist() == pareto.pareto_front_2d(
            g["quality"].to_numpy(float), g["cost"].to_numpy(float)).tolist()
    # the simulated run's model is its own point, not merged with the replayed steps of it
    sim = points[(points["source"] == "simulated") & (points["kind"] == "model")]
    assert sim["name"].tolist() == ["mistralai/mistral-7b-chat"]

    at = open_app("pareto")
    assert errors(at) == []
    assert at.selectbox(key="pe_source").value == "replayed"
    fig = _figure(at, "pe_chart")
    assert "modelled" in fig["data"][0]["marker"]["colorbar"]["title"]["text"]
    assert not any("(run 4)" in (n or "") for t in fig["data"] for n in t.get("hovertext", []))
    at.selectbox(key="pe_source").set_value("simulated").run()
    assert errors(at) == []
    fig = _figure(at, "pe_chart")
    assert "simulated" in fig["data"][0]["marker"]["colorbar"]["title"]["text"]
    names = [n for t in fig["data"] for n in t.get("hovertext", [])]
    assert "single:mistralai/mistral-7b-chat (run 4)" in names and len(names) == 3  # model, run, star
    assert np.isfinite([x for t in fig["data"] for x in t["x"]]).all()


def test_zero_cost_points_are_not_joined_on_a_log_axis(fixed_db):
    """Item 5: a free model (cost 0) is on the front but cannot be drawn on the log cost axis:
    no marker and no front segment go to it, and the page says so."""
    from sqlalchemy import update

    from evoroute.storage import db
    from evoroute.storage.tables import StepRecord

    _, engine, _ = fixed_db
    with db.session(engine) as s:
        s.exec(update(StepRecord).where(StepRecord.model == "cheap").values(cost_usd=0.0))
        s.commit()
    at = open_app("pareto")
    assert errors(at) == []
    fig = _figure(at, "pe_chart")
    xs = [x for t in fig["data"] for x in t["x"]]
    assert xs and min(xs) > 0
    front = next(t for t in fig["data"] if t["name"].startswith("Pareto front"))
    assert front["x"] == pytest.approx([0.001, 0.01])   # mid and strong; cheap (free) is not drawn
    assert any("1 point at zero cost" in c and "log" in c for c in captions(at))


def test_only_front_points_are_labelled_and_labels_alternate(fixed_db):
    """Issue 12 'overlapping point labels': text only on the front, alternately above and below."""
    at = open_app("pareto")
    fig = _figure(at, "pe_chart")
    texts = {h: (t["text"][i], t["textposition"][i]) for t in fig["data"] if "text" in t
             for i, h in enumerate(t["hovertext"])}
    assert texts["evoroute (run 1)"][0] == ""       # a dominated point: hover only
    assert [texts[m][0] for m in ("cheap", "mid", "strong")] == ["cheap", "mid", "strong"]
    positions = [texts[m][1] for m in ("cheap", "mid", "strong")]
    assert positions[0] != positions[1] and positions[1] != positions[2]


def test_metric_labels_fit_and_say_their_scope(fixed_db):
    """Issue 12 'truncated metric labels' and item 11: short metric labels; the scope of every
    quality and cost (all steps of the scope) and the latency source said beside them."""
    at = open_app("pareto")
    assert errors(at) == []
    assert all(len(m.label) <= 21 for m in at.metric), [m.label for m in at.metric]
    caps = captions(at)
    assert any("all steps" in c and "the whole base" in c and "latency simulated" in c for c in caps)
    assert any("all steps" in c for c in caps if "counterfactual" in c)
    assert "all steps of the whole base" in _figure(at, "pe_chart")["layout"]["title"]["text"]


def test_zero_deltas_have_no_arrow_and_no_colour(fixed_db):
    """Issue 12: the counterfactual at the run's own weights changes nothing: no arrow, grey."""
    from streamlit.proto.Metric_pb2 import Metric

    none, gray = Metric.MetricDirection.NONE, Metric.MetricColor.GRAY
    at = open_app("pareto")
    deltas = {m.label: m.proto for m in at.metric if m.delta}
    assert len(deltas) == 3, "the counterfactual shows its three deltas"
    for label, proto in deltas.items():
        assert proto.direction == none and proto.color == gray, label
        assert proto.delta in ("±0", "±$0", "±0 s"), proto.delta
    at.slider(key="pe_wc").set_value(0.5).run()      # strong -> mid: quality and cost fall
    moved = {m.label: m.proto for m in at.metric if m.delta}
    assert moved["expected quality"].direction == Metric.MetricDirection.DOWN
    assert moved["expected quality"].color == Metric.MetricColor.RED
    assert moved["expected cost/step"].direction == Metric.MetricDirection.DOWN
    assert moved["expected cost/step"].color == Metric.MetricColor.GREEN     # cheaper is good


def test_latency_source_names_every_source_of_a_caption():
    """Item 5: the colour bar never calls measured or simulated latencies "modelled"."""
    from evoroute.studio.pareto import latency_source

    assert latency_source("replayed · latency modelled + live · latency measured") == \
        "modelled + measured"
    assert latency_source("live · latency measured") == "measured"
    assert latency_source("simulated") == "simulated"
    assert latency_source("imported") == "as imported"


# ----------------------------------------------------------------------------- issue 11 item 15
def test_the_weights_and_what_they_move_are_one_fragment(fixed_db, monkeypatch):
    """A slider step reruns only the fragment (the browser redraws only it; the scope's SQL
    does not run again): every weight-dependent element is drawn inside ``weights_view``,
    and the scope pickers and the SQL-backed points outside it."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    drawn: dict[str, list[str]] = {"inside": [], "outside": []}
    inside = []
    real_fragment = st.fragment

    def fragment(fn=None, **kw):
        def wrap(f):
            def run(*a, **k):
                inside.append(f.__name__)
                try:
                    return f(*a, **k)
                finally:
                    inside.pop()
            run.__name__ = f.__name__
            return real_fragment(run, **kw)
        return wrap(fn) if fn is not None else wrap

    def recording(real):
        def widget(self, label, *a, **k):
            drawn["inside" if "weights_view" in inside else "outside"].append(k.get("key"))
            return real(self, label, *a, **k)
        return widget

    monkeypatch.setattr(st, "fragment", fragment)
    for name in ("slider", "selectbox"):       # the pages draw them in columns
        monkeypatch.setattr(DeltaGenerator, name, recording(getattr(DeltaGenerator, name)))
    at = open_app("pareto")
    assert errors(at) == []
    assert {"pe_wp", "pe_wc", "pe_wd"} <= set(drawn["inside"])
    assert "pe_kind" in drawn["outside"] and "pe_kind" not in drawn["inside"]
    assert metric(at, "utility-optimal model") == "strong"
