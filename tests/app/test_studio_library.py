"""The library behind the pages: CSV export/import rules, the counterfactual, the live feed
and the launch-form helpers (no streamlit here)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlmodel import select

from evoroute.core import labels
from evoroute.core.errors import DatasetError, EmptyDatasetError, ValidationError
from evoroute.core.types import ModelInfo, Weights
from evoroute.csvio import cells, export, importer
from evoroute.csvio import rows as csv_rows
from evoroute.evaluation import counterfactual as cf
from evoroute.experience import SyncedIndex
from evoroute.policy.evoroute import EvoRouteConfig
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task
from evoroute.studio.explain import explain_step
from evoroute.studio.feed import LiveFeed
from evoroute.studio.launch import build_spec, router_with_ablations

import db_helpers

HEADER = "role,model,instruction,cost_usd,duration_s,step_success,task_success,task_key,tools\n"


@pytest.mark.parametrize("text,escaped", [("=1+1", "'=1+1"), ("+x", "'+x"), ("-3 apples", "'-3 apples"),
                                          ("@cmd", "'@cmd"), ("\tTAB", "'\tTAB"), ("plain", "plain"),
                                          ("", ""), ("a=b", "a=b")])
def test_formula_cells_are_escaped_and_restored(text, escaped):
    assert cells.escape_cell(text) == escaped
    assert cells.unescape_cell(escaped) == text


def test_credentials_are_redacted(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "zz-very-secret-value-123")
    out = cells.redact_secrets("failed with zz-very-secret-value-123 and sk-ant-abcdefghijklmnop1234; "
                             "Authorization: Bearer abcdefghijklmnopqrstuvwxyz; api_key=hunter2hunter2")
    for secret in ("zz-very-secret", "sk-ant-abc", "abcdefghijklmnopqrstuvwxyz", "hunter2"):
        assert secret not in out
    assert out.count("[redacted]") == 4


def _line_error(text: str) -> DatasetError:
    with pytest.raises(DatasetError) as exc:
        csv_rows.parse_rows(text, "f.csv")
    return exc.value


def test_bad_rows_name_their_line_and_column():
    e = _line_error(HEADER + "coder,m,hi,0.1,1,1,1,t1,\ncoder,m,hi,0.1,-2,1,1,t2,\n")
    assert (e.line, e.column) == (3, "duration_s") and "must be >= 0, got -2" in str(e)
    e = _line_error(HEADER + "coder,m,hi,0.1,1,1.5,,t1,\n")
    assert (e.line, e.column) == (2, "step_success") and "must be <= 1" in str(e)
    e = _line_error(HEADER + "coder,,hi,0.1,1,1,1,t1,\n")
    assert (e.line, e.column) == (2, "model")
    e = _line_error(HEADER + "coder,m,hi,0.1,1,1,1,t1,\ncoder,m,bye,0.1,1,1,0,t1,\n")
    assert (e.line, e.column) == (3, "task_success") and "differs from line 2" in str(e)
    # a quoted cell spanning lines: the next record's line number is still right
    e = _line_error(HEADER + 'coder,m,"two\nlines",0.1,1,1,1,t1,\ncoder,m,x,nan,1,1,1,t2,\n')
    assert (e.line, e.column) == (4, "cost_usd")
    e = _line_error("role,model,instruction,cost_usd\ncoder,m,x,1\n")
    assert (e.line, e.column) == (1, "duration_s")
    e = _line_error(HEADER + "coder,m,x,1,1\n")
    assert e.line == 2 and "has 5 cells, the header has 9" in str(e)
    # a replay dataset is not an experience log: the message says where it belongs
    e = _line_error("query_id,query,model,score,cost_usd\nq1,hello,a,1,0.01\n")
    assert (e.line, e.column) == (1, "role") and "--backend replay --data" in str(e)
    with pytest.raises(EmptyDatasetError):
        csv_rows.parse_rows(HEADER, "f.csv")
    with pytest.raises(DatasetError) as exc:
        importer.import_csv(b"\xff\xfe\x00bad", engine=None, name="bin.csv")
    assert "not UTF-8" in str(exc.value)


def test_import_is_all_or_nothing_and_groups_tasks(engine):
    bad = HEADER + "coder,m,ok,0.1,1,1,1,t1,python\n" * 3 + "coder,m,bad,x,1,1,1,t2,\n"
    with pytest.raises(DatasetError):
        importer.import_csv(bad.encode(), engine=engine, name="bad.csv")
    with db.session(engine) as s:
        assert repo.count_steps(session=s) == 0 and repo.list_runs(session=s) == []
    good = HEADER + ("coder,m,\"'=SUM(A1)\",0.1,1.0,1,1,t1,python;search\n"
                     "coder,n,second step,0.2,2.0,0,,t1,\n"
                     "answerer,m,alone,0.3,0.5,1,,,\n")
    run_id, n = importer.import_csv(good.encode("utf-8-sig"), engine=engine, name="good.csv")
    assert n == 3
    with db.session(engine) as s:
        run = s.get(Run, run_id)
        steps = list(s.exec(select(StepRecord).order_by(StepRecord.id)))
        tasks = list(s.exec(select(Task).order_by(Task.id)))
    assert (run.backend, run.status, run.label, run.n_steps_done) == ("import", "finished",
                                                                       "imported", 3)
    assert [st.instruction for st in steps] == ["=SUM(A1)", "second step", "alone"]
    assert [st.tools for st in steps] == ["python;search", "", ""]
    assert [st.task_success for st in steps] == [1.0, 1.0, None]       # P(τ) shared by the task
    assert {st.phase for st in steps} == {"import"}
    assert [(t.task_key, t.n_steps, t.success) for t in tasks] == [("t1", 2, 1.0),
                                                                   ("import-line-4", 1, None)]
    assert tasks[0].cost_usd == pytest.approx(0.3)


def test_export_round_trip_through_a_file(engine, tmp_path):
    run_id, _ = importer.import_csv((HEADER + "coder,m,@home,0.1,1,1,1,t1,\n").encode(), engine=engine)
    path = tmp_path / "out.csv"
    n = export.export_csv(path, repo.StepFilter(run_ids=[run_id]), engine=engine)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert n == 1 and rows[0]["instruction"] == "'@home" and rows[0]["phase"] == "import"
    run2, n2 = importer.import_csv(path, engine=engine)
    with db.session(engine) as s:
        again = s.exec(select(StepRecord).where(StepRecord.run_id == run2)).one()
    assert n2 == 1 and again.instruction == "@home"


def _seed(engine, per_model: dict[str, tuple[float, float, float]], n: int = 10) -> None:
    """Records of one role with fixed success rate, cost and latency per model."""
    rng = np.random.default_rng(0)
    with db.session(engine) as s:
        run = repo.create_run(session=s, config={}, backend="simulated", label="simulated")
        for name, (q, c, d) in per_model.items():
            for i in range(n):
                emb = rng.standard_normal(384).astype(np.float32)
                db_helpers.add_steps([StepRecord(run_id=run.id, task_key=f"{name}{i}", role="coder",
                                           model=name, instruction=f"task {name} {i}",
                                           embedding=repo.embedding_to_bytes(emb / np.linalg.norm(emb)),
                                           cost_usd=c, duration_s=d,
                                           step_success=float(i < q * n),
                                           task_success=float(i < q * n))], session=s)


def test_counterfactual_is_deterministic_and_follows_the_weights(engine):
    _seed(engine, {"cheap": (0.5, 0.001, 1.0), "strong": (0.9, 0.01, 1.0)})
    idx = SyncedIndex(engine).index
    models = [ModelInfo("cheap"), ModelInfo("strong")]
    memo: dict = {}
    with db.session(engine) as s:
        steps = cf.sample_steps(None, session=s, n=8, seed=3)
        again = cf.sample_steps(None, session=s, n=8, seed=3)
    assert [x.id for x in steps] == [x.id for x in again] and len(steps) == 8
    quality = cf.redecide(steps, idx, models, Weights(1.0, 0.1, 0.0), memo=memo)
    assert quality.mix == {"strong": 1.0}
    # the default (query-aware) estimate of a step is its neighbours' rate shrunk toward the
    # role's 0.9; the expected quality is the mean of the chosen models' estimates
    assert quality.expected_quality == pytest.approx(
        np.mean(quality.per_step["expected quality"])) and abs(quality.expected_quality - 0.9) < 0.05
    assert len(memo) == 8                                  # one estimate per step, remembered
    thrifty = cf.redecide(steps, idx, models, Weights(1.0, 1.0, 0.0), memo=memo)
    assert thrifty.mix == {"cheap": 1.0} and len(memo) == 8
    assert thrifty.expected_cost_usd == pytest.approx(0.001)
    assert thrifty.changed_share == pytest.approx(np.mean([x.model == "strong" for x in steps]))
    mix = thrifty.mix_frame().set_index("model")
    assert mix.loc["cheap", "counterfactual"] == 1.0
    assert mix["recorded"].sum() == pytest.approx(1.0)
    with pytest.raises(ValidationError):
        with db.session(engine) as s:
            cf.sample_steps(None, session=s, n=0)
    # the paper's estimator: every step of the role gets the role's means exactly
    paper = cf.redecide(steps, idx, models, Weights(1.0, 0.1, 0.0),
                        config=EvoRouteConfig(estimator="paper"), memo={})
    assert paper.mix == {"strong": 1.0} and paper.expected_quality == pytest.approx(0.9)


def test_live_feed_tracks_task_success_incrementally(engine):
    with db.session(engine) as s:
        # the label the runner stores for a replay run (core.labels); the feed only reads it
        run = repo.create_run(session=s, config={}, backend="replay",
                              label=labels.run_label("replay"), status="running", n_tasks_total=3)
        feed = LiveFeed(run.id)
        t1 = db_helpers.create_task(session=s, run_id=run.id, task_key="a")
        t2 = db_helpers.create_task(session=s, run_id=run.id, task_key="b")
        db_helpers.add_steps([StepRecord(run_id=run.id, task_id=t, task_key=k, role="r", model=m,
                                   instruction="x", cost_usd=0.1, duration_s=1.0)
                        for t, k, m in ((t1.id, "a", "m1"), (t2.id, "b", "m2"))], session=s)
        repo.finish_task(t2.id, 1.0, session=s)            # b finishes before a
        snap = feed.poll(session=s)
        assert (snap.n_tasks_finished, snap.quality) == (0, None)   # waits for a, in order
        repo.finish_task(t1.id, 0.0, session=s)
        snap = feed.poll(session=s)
        assert (snap.n_tasks_finished, snap.quality) == (2, 0.5)
        assert snap.progress == pytest.approx(2 / 3) and snap.active
        assert snap.label == "replayed · latency modelled"
        share = feed.model_share()
        # two one-step windows: m1 then m2, each window's shares sum to 1
        assert share.pivot(index="step", columns="model", values="share").to_dict("list") == \
            {"m1": [1.0, 0.0], "m2": [0.0, 1.0]}


def test_router_with_ablations():
    assert router_with_ablations("evoroute", []) == ("evoroute", {})
    assert router_with_ablations("evoroute", ["no-ts"]) == ("evoroute-no-ts", {})
    name, params = router_with_ablations("evoroute", ["no-ts", "no-role-tool"])
    assert name == "evoroute" and params == {"thompson": False, "channels": ["semantic"]}
    with pytest.raises(ValidationError) as exc:
        router_with_ablations("random", ["no-ts"])
    assert exc.value.field == "ablations"
    with pytest.raises(ValidationError) as exc:
        build_spec(backend="replay", dataset="routerbench", router="evoroute", seed=-1)
    assert exc.value.field == "seed"


def test_an_unreadable_stored_explanation_is_reported_not_raised(engine):
    """A base written by older code (or edited by hand) may hold explanation JSON the current
    Explanation type cannot read; the step detail says so instead of crashing the page."""
    with db.session(engine) as s:
        run = repo.create_run(session=s, config={}, backend="replay", label="replayed")
        good, bad = db_helpers.add_steps([
            StepRecord(run_id=run.id, task_key="t1", role="coder", model="m", instruction="x",
                       cost_usd=0.1, duration_s=1.0),
            StepRecord(run_id=run.id, task_key="t2", role="coder", model="m", instruction="y",
                       cost_usd=0.1, duration_s=1.0, explanation='{"router": 1, "candidates": "no"}'),
        ], session=s)
        ex = explain_step(bad.id, session=s)
        assert ex.explanation is None and ex.candidates.empty
        assert "cannot be read" in ex.record["explanation_error"]
        assert "explanation_error" not in explain_step(good.id, session=s).record


def test_the_launcher_hands_streamlit_run_app_py_on_loopback(monkeypatch):
    """`python -m ui.serve` (make run): the pages' libraries are imported, then Streamlit's own
    `run` gets app.py, 127.0.0.1 and the caller's options (after it, so they can override)."""
    import sys

    from streamlit.web import cli as stcli

    from ui import serve

    seen = {}
    monkeypatch.setattr(stcli, "main", lambda: seen.setdefault("argv", list(sys.argv)) and 0)
    monkeypatch.setattr(sys, "argv", ["serve"])
    assert serve.main(["--server.port", "8765"]) == 0
    assert seen["argv"] == ["streamlit", "run", str(serve.ROOT / "app.py"),
                            "--server.address", "127.0.0.1", "--server.port", "8765"]
    assert all(m in sys.modules for m in serve.PRELOAD)
