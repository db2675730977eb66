"""Compare page: metrics table from evoroute.evaluation.metrics, hull plot, curves, CSV download."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlmodel import select

from evoroute.datasets import load_dataset
from evoroute.evaluation import metrics
from evoroute.storage import db
from evoroute.storage.tables import Run, StepRecord, Task
from evoroute.studio.compare import compare_runs, comparison_csv

from studio_helpers import captions, errors, open_app


def _test_tasks(engine, run_id: int) -> np.ndarray:
    with db.session(engine) as s:
        rows = s.exec(select(Task.success, Task.cost_usd, Task.duration_s)
                      .where(Task.run_id == run_id).where(Task.split == "test")).all()
    return np.array(rows, dtype=float)


def test_metrics_table_hull_and_download(replay_db):
    _, engine = replay_db
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([1, 2, 3, 4]).run()
    assert errors(at) == []
    table = at.dataframe[0].value.set_index("run")
    assert sorted(table.index) == [1, 2, 3, 4]
    for run_id in (1, 2, 3, 4):
        t = _test_tasks(engine, run_id)
        assert len(t) == 40 == table.loc[run_id, "tasks"]
        assert table.loc[run_id, "quality"] == pytest.approx(t[:, 0].mean())
        assert table.loc[run_id, "cost (USD)"] == pytest.approx(t[:, 1].sum())
        assert table.loc[run_id, "latency p50 (s)"] == pytest.approx(np.percentile(t[:, 2], 50))
        assert table.loc[run_id, "latency p95 (s)"] == pytest.approx(np.percentile(t[:, 2], 95))
        assert table.loc[run_id, "cost per success (USD)"] == pytest.approx(t[:, 1].sum() / t[:, 0].sum())
    # RouteLLM's APGR: the weak single model recovers 0 of the gap, the strong one all of it
    assert table.loc[4, "APGR"] == pytest.approx(0.0)
    assert table.loc[3, "APGR"] == pytest.approx(1.0)
    # AIQ on one axis over every router's runs (EvoRoute's two weightings are its sweep)
    pts = {r: [(table.loc[i, "cost per task (USD)"], table.loc[i, "quality"])
               for i in table.index if table.loc[i, "router"] == r] for r in set(table["router"])}
    expected = metrics.aiq_table(pts)
    for i in table.index:
        assert table.loc[i, "AIQ"] == pytest.approx(expected[table.loc[i, "router"]])
    assert at.download_button(key="cmp_download").label == "Download the table (CSV)"
    assert any("weak = single:mistralai/mistral-7b-chat" in c.value for c in at.caption)

    with db.session(engine) as s:
        comp = compare_runs([1, 2, 3, 4], session=s)
    rows = list(csv.DictReader(io.StringIO(comparison_csv(comp.table).decode())))
    assert [int(r["run"]) for r in rows] == comp.table["run"].tolist()
    assert [float(r["quality"]) for r in rows] == pytest.approx(comp.table["quality"].tolist())


def test_cumulative_regret_against_the_recorded_oracle(replay_db):
    _, engine = replay_db
    with db.session(engine) as s:
        comp = compare_runs([3], session=s)
        steps = s.exec(select(StepRecord.query_id, StepRecord.step_success, StepRecord.cost_usd)
                       .where(StepRecord.run_id == 3).order_by(StepRecord.id)).all()
    best = load_dataset("routerbench").groupby("query_id")["score"].max()
    regret = np.cumsum([best[q] - sc for q, sc, _ in steps])
    curve = comp.curves[comp.curves["run"] == 3]
    assert curve["regret"].to_numpy() == pytest.approx(regret)
    assert curve["cum_cost"].to_numpy() == pytest.approx(np.cumsum([c for _, _, c in steps]))
    assert (np.diff(curve["regret"].to_numpy()) >= 0).all()   # the oracle is never beaten


def test_only_unfinished_runs(empty_db):
    at = open_app("compare")
    assert any("No runs with steps yet" in i.value for i in at.info)


def test_headline_metrics_equal_the_metrics_module(replay_db):
    """AIQ, gain over the single-model hull (per run and best over the sweep) and cost share at
    parity, shown on the page, equal evoroute.evaluation.metrics on the same seeded points."""
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([1, 2, 3, 4]).run()
    assert errors(at) == []
    table = at.dataframe[0].value.set_index("run")
    assert set(table["scope"]) == {"test split"} and set(table["kind"]) == {"replayed"}
    pt = {i: (table.loc[i, "cost per task (USD)"], table.loc[i, "quality"]) for i in table.index}
    ref = np.array([pt[3], pt[4]])                       # the two single-model runs
    best_q, best_c = max((pt[3], pt[4]), key=lambda p: (p[1], -p[0]))[::-1]
    evo = np.array([pt[1], pt[2]])                       # EvoRoute's two weightings = its sweep
    for i in table.index:
        assert np.isfinite(table.loc[i, "gain over single hull"])
        assert table.loc[i, "gain over single hull"] == pytest.approx(
            metrics.gain_over_hull(ref, *pt[i]))
    # a single model on the hull gains exactly 0 over it
    assert table.loc[3, "gain over single hull"] == pytest.approx(0.0)
    assert table.loc[4, "gain over single hull"] == pytest.approx(0.0)
    for i in (1, 2):
        assert table.loc[i, "best gain over single hull (sweep)"] == pytest.approx(
            metrics.best_gain_over_hull(ref, evo))
        assert table.loc[i, "AIQ"] == pytest.approx(metrics.aiq_table(
            {"evoroute": evo, "a": ref[:1], "b": ref[1:]})["evoroute"])
    share = metrics.cost_share_at_parity(evo, best_q, best_c)
    got = table.loc[1, "cost share at parity"]
    assert (np.isnan(got) if share is None else got == pytest.approx(share))
    best_single = 3 if pt[3][1] >= pt[4][1] else 4
    assert table.loc[best_single, "cost share at parity"] == pytest.approx(1.0)
    caps = captions(at)
    assert any("single-model hull from 2 single-model run(s)" in c for c in caps)
    assert any("Headline metrics" in c and "test split" in c for c in caps)


def test_headline_metrics_never_mix_run_kinds(replay_db):
    """With one single-model run relabelled as simulated, the replayed runs' hull and parity use
    only the replayed single model, the simulated run is its own kind, and the page says so."""
    _, engine = replay_db
    with db.session(engine) as s:
        run4 = s.get(Run, 4)
        run4.backend = "simulated"
        run4.label = "simulated"
        s.add(run4)
        s.commit()
        comp = compare_runs([1, 2, 3, 4], session=s)
    t = comp.table.set_index("run")
    assert t.loc[4, "kind"] == "simulated" and set(t.loc[[1, 2, 3], "kind"]) == {"replayed"}
    pt = {i: (t.loc[i, "cost per task (USD)"], t.loc[i, "quality"]) for i in t.index}
    ref = np.array([pt[3]])                              # the replayed single model only
    evo = np.array([pt[1], pt[2]])
    for i in (1, 2):
        assert t.loc[i, "gain over single hull"] == pytest.approx(metrics.gain_over_hull(ref, *pt[i]))
        assert t.loc[i, "best gain over single hull (sweep)"] == pytest.approx(
            metrics.best_gain_over_hull(ref, evo))
        assert t.loc[i, "AIQ"] == pytest.approx(
            metrics.aiq_table({"evoroute": evo, "single": ref})["evoroute"])
    share = metrics.cost_share_at_parity(evo, pt[3][1], pt[3][0])
    assert (np.isnan(t.loc[1, "cost share at parity"]) if share is None
            else t.loc[1, "cost share at parity"] == pytest.approx(share))
    # the simulated single model is its own reference: gain 0, parity at its own cost
    assert t.loc[4, "gain over single hull"] == pytest.approx(0.0)
    assert t.loc[4, "cost share at parity"] == pytest.approx(1.0)
    # one hull per (router, kind): the simulated run is never on a replayed hull
    assert set(comp.hulls) == {("evoroute", "replayed"), ("single:gpt-4-1106-preview", "replayed"),
                               ("single:mistralai/mistral-7b-chat", "simulated")}
    assert comp.hulls[("single:mistralai/mistral-7b-chat", "simulated")].tolist() == [list(pt[4])]
    assert any("mix kinds (replayed, simulated)" in n for n in comp.notes)


# ----------------------------------------------------------------------------- issue 11, item 6
def _relabel(engine, run_id: int, backend: str, label: str) -> None:
    with db.session(engine) as s:
        run = s.get(Run, run_id)
        run.backend, run.label = backend, label
        s.add(run)
        s.commit()


def _figure(at, key: str) -> dict:
    import json

    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return json.loads(chart.proto.spec)


def test_curves_cover_the_same_steps_as_the_table(replay_db):
    """Cumulative cost ends at the table's cost (the test split) for every router: EvoRoute's
    cold start and training steps are not plotted against baselines' test steps."""
    _, engine = replay_db
    with db.session(engine) as s:
        comp = compare_runs([1, 2, 3, 4], session=s)
        test_steps = {r: s.exec(select(StepRecord.cost_usd).join(Task, Task.id == StepRecord.task_id)
                                .where(StepRecord.run_id == r).where(Task.split == "test")
                                .order_by(StepRecord.id)).all() for r in (1, 2, 3, 4)}
    table = comp.table.set_index("run")
    for r in (1, 2, 3, 4):
        curve = comp.curves[comp.curves["run"] == r]
        assert len(curve) == len(test_steps[r])
        assert curve["cum_cost"].to_numpy() == pytest.approx(np.cumsum(test_steps[r]))
        assert curve["cum_cost"].iloc[-1] == pytest.approx(table.loc[r, "cost (USD)"])
    assert comp.curve_scope == "test split"


def test_runs_of_one_router_and_two_kinds_get_two_hulls(replay_db):
    _, engine = replay_db
    _relabel(engine, 2, "simulated", "simulated")
    with db.session(engine) as s:
        comp = compare_runs([1, 2, 3, 4], session=s)
    assert set(comp.hulls) == {("evoroute", "replayed"), ("evoroute", "simulated"),
                               ("single:gpt-4-1106-preview", "replayed"),
                               ("single:mistralai/mistral-7b-chat", "replayed")}
    pts = comp.points.set_index("run")
    assert comp.hulls[("evoroute", "simulated")].tolist() == [
        [pts.loc[2, "cost per task"], pts.loc[2, "quality"]]]
    # APGR needs a weak and a strong single model of the run's own kind
    assert comp.table.loc[comp.table["run"] == 2, "APGR"].isna().all()


def test_legend_names_router_and_label_and_colours_follow_the_run(replay_db):
    from ui import charts

    _, engine = replay_db
    _relabel(engine, 4, "live", "live · latency measured")
    with db.session(engine) as s:
        comp = compare_runs([1, 3, 4], session=s)
    colours = charts.run_colours(comp.run_names)
    hull = charts.quality_cost_hull(comp.points, comp.hulls, comp.label, comp.run_names, colours)
    cost = charts.cumulative_curves(comp.curves, "cum_cost", "Cumulative cost", "USD", comp.label,
                                    comp.run_names, colours)
    for fig in (hull, cost):
        named = {t.name: t for t in fig.data if t.showlegend is not False}
        assert "single:mistralai/mistral-7b-chat · run 4 · live · latency measured" in named
        assert "evoroute · run 1 · replayed · latency modelled" in named
    by_name = lambda fig: {t.name: (t.marker.color if t.mode == "markers" else t.line.color)  # noqa: E731
                           for t in fig.data if t.showlegend is not False}
    assert by_name(hull) == by_name(cost)
    assert len(set(by_name(hull).values())) == 3


def test_one_run_picked_has_sane_axes(replay_db):
    from ui import charts

    _, engine = replay_db
    with db.session(engine) as s:
        comp = compare_runs([3], session=s)
    fig = charts.quality_cost_hull(comp.points, comp.hulls, comp.label, comp.run_names,
                                   charts.run_colours(comp.run_names))
    c = comp.points["cost per task"].iloc[0]
    x0, x1 = fig.layout.xaxis.range
    y0, y1 = fig.layout.yaxis.range
    assert x0 == 0 and c < x1 <= 2 * c
    assert y0 == 0 and 1 <= y1 <= 1.1


def test_caption_names_each_runs_latency_source(replay_db):
    _, engine = replay_db
    _relabel(engine, 4, "live", "live · latency measured")
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([1, 3, 4]).run()
    assert errors(at) == []
    lat = next(c for c in captions(at) if c.startswith("Latency per task"))
    assert "modelled from token counts: runs 1, 3" in lat and "measured: run 4" in lat
    caps = " ".join(captions(at))
    assert "Quality and cost" in caps and "scope" in caps
    import json

    for key in ("cmp_hull", "cmp_cum_cost", "cmp_regret"):     # every chart says its scope
        chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-" + key))
        assert "test split" in json.loads(chart.proto.spec)["layout"]["title"]["text"], key


def test_metrics_without_a_value_show_a_dash_not_none(replay_db):
    """From issue 12: with no single-model run picked, the headline cells are empty and the
    table shows a dash there, never the word None."""
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([1, 2]).run()
    assert errors(at) == []
    assert at.dataframe[0].value["cost share at parity"].isna().all()
    assert at.dataframe[0].proto.placeholder == "–"


def test_the_oracle_is_read_once_in_the_background_and_waited_for(monkeypatch):
    """Item 15: Compare starts reading the per-step oracle before its SQL reads; the curve code
    then waits for that read instead of starting its own (one read per dataset)."""
    import threading
    import time

    import pandas as pd

    from evoroute.storage.tables import Run
    from evoroute.studio import compare

    calls = []

    def slow_load(name):
        calls.append((name, threading.current_thread().name))
        time.sleep(0.2)
        return pd.DataFrame({"query_id": ["q1", "q1", "q2"], "score": [0.0, 1.0, 0.5]})

    monkeypatch.setattr("evoroute.datasets.load_dataset", slow_load)
    monkeypatch.setattr(compare, "_ORACLES", {})
    monkeypatch.setattr(compare, "_ORACLE_LOADS", {})
    run = Run(id=1, backend="replay", dataset="fake-set", router="evoroute")
    t = time.perf_counter()
    compare.prefetch_oracles([run, run])
    assert time.perf_counter() - t < 0.1                 # it does not wait for the read
    assert compare.replay_oracle(run) == {"q1": 1.0, "q2": 0.5}
    assert calls == [("fake-set", "oracle-fake-set")]    # read once, in the background
    assert compare.replay_oracle(run) == {"q1": 1.0, "q2": 0.5} and len(calls) == 1
    assert compare.replay_oracle(Run(id=2, backend="simulated", dataset="x", router="r")) is None
