"""Run stages (issue 11 item 9): the worker commits each stage of a run as it happens — loading,
embedding (with its progress), training or the experience index, the task phases, finished —
on a real SQLite file, where another connection (the studio's) reads it while the run works.

A trigger on the run table logs every committed write of the stage columns, so the order is
read exactly, not sampled by polling.
"""

from __future__ import annotations

import sqlite3
import time
from itertools import groupby
from pathlib import Path

import pytest

from evoroute import demo
from evoroute.retrieval.embedder import get_embedder
from evoroute.runs import execute, stages
from evoroute.runs.spec import RunSpec
from evoroute.runs.worker import start_background
from evoroute.storage import db, repo
from evoroute.studio.feed import TERMINAL_STATUSES, LiveFeed

# 20 cold-start + 60 online train + 40 test one-step tasks of RouterBench, replayed
SPEC = dict(backend="replay", dataset="routerbench", router="evoroute", seed=3,
            cold_start_tasks=20, n_train=60, n_tasks=40)
STAGE_LOG = """
CREATE TABLE stage_log (id INTEGER PRIMARY KEY, stage TEXT, progress REAL, detail TEXT);
CREATE TRIGGER log_stage AFTER UPDATE OF stage, stage_progress, stage_detail ON run
BEGIN
  INSERT INTO stage_log (stage, progress, detail)
  VALUES (NEW.stage, NEW.stage_progress, NEW.stage_detail);
END;
"""


@pytest.fixture
def base(tmp_path) -> tuple[str, Path]:
    path = tmp_path / "stages.db"
    url = f"sqlite:///{path}"
    engine = db.make_engine(url)
    demo.register_routerbench_models(engine)
    engine.dispose()
    con = sqlite3.connect(path)
    con.executescript(STAGE_LOG)
    con.close()
    return url, path


def _log(path: Path) -> list[tuple[str, float | None, str | None]]:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT stage, progress, detail FROM stage_log ORDER BY id").fetchall()
    con.close()
    return rows


def _order(log) -> list[str]:
    return [stage for stage, _ in groupby(s for s, _, _ in log)]


def _progress(log, stage: str) -> list[float | None]:
    return [p for s, p, _ in log if s == stage]


def test_a_background_worker_commits_its_stages_in_order(base):
    url, path = base
    run_id = start_background(RunSpec(**SPEC), engine_url=url)
    engine = db.get_engine(url)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s)
        if run.status in TERMINAL_STATUSES:
            break
        time.sleep(0.2)
    assert run.status == "finished", run.error
    log = _log(path)
    assert _order(log) == ["loading", "embedding", "cold_start", "optimize", "inference",
                           "finished"], log
    emb = _progress(log, "embedding")
    assert emb[0] == 0.0 and emb[-1] == 1.0 and emb == sorted(emb)
    for phase, n in (("cold_start", 20), ("optimize", 60), ("inference", 40)):
        got = _progress(log, phase)             # one commit per step, each with its phase
        assert got == [k / n for k in range(1, n + 1)], phase
    assert [d for s, _, d in log if s == "inference"][-1] == "40 of 40 steps"
    assert (run.stage, run.stage_progress, run.stage_detail) == ("finished", 1.0, None)


@pytest.mark.parametrize("extra, order", [
    (dict(protocol="full"), ["loading", "embedding", "indexing", "inference", "finished"]),
    (dict(router="threshold"), ["loading", "embedding", "training", "inference", "finished"]),
    (dict(router="single:gpt-4-1106-preview"), ["loading", "inference", "finished"]),
])
def test_each_router_and_protocol_goes_through_the_stages_it_needs(base, extra, order):
    url, path = base
    engine = db.make_engine(url)
    for _ in execute.run_spec(RunSpec(**{**SPEC, **extra}), engine=engine):
        pass
    log = _log(path)
    assert _order(log) == order, log
    assert all(s in stages.ORDER for s, _, _ in log)
    # the order of the stages in the log is the order stages.ORDER gives
    assert _order(log) == sorted(_order(log), key=stages.ORDER.index)
    engine.dispose()


class SlowEmbedder:
    """The real embedder, 0.3 s slower per call (what computing new texts costs), that reads
    the run through the studio's live view (another engine) before each call."""

    def __init__(self, url: str, run_id: int) -> None:
        self.inner, self.seen = get_embedder(), []
        self.studio, self.feed = db.make_engine(url), LiveFeed(run_id)

    def encode(self, texts):
        with db.session(self.studio) as s:
            self.seen.append(self.feed.poll(session=s).preparation)
        time.sleep(0.3)
        return self.inner.encode(texts)


def test_the_studio_sees_the_embedding_progress_while_it_happens(base):
    url, path = base
    engine = db.make_engine(url)
    # 20 + 300 + 40 instructions: the embedding batch goes in parts of 64
    run_id = execute.create_run(RunSpec(**{**SPEC, "n_train": 300}), engine=engine)
    emb = SlowEmbedder(url, run_id)
    steps = list(execute.execute_run(run_id, engine=engine, embedder=emb))
    assert len(steps) == 360
    assert len(emb.seen) >= 3
    assert all(p is not None and p.stored for p in emb.seen)
    shown = [p.progress for p in emb.seen]
    assert shown[0] == 0.0 and all(0.0 < x < 1.0 for x in shown[1:]), shown
    assert shown == sorted(shown) and len(set(shown)) == len(shown)
    n = int(emb.seen[0].detail.split(" of ")[1].split()[0].replace(",", ""))
    assert emb.seen[0].text.startswith(f"embedding · 0 of {n:,} instructions · ")
    assert emb.seen[1].detail == f"{64:,} of {n:,} instructions"
    emb.studio.dispose()
    engine.dispose()


def test_a_resumed_run_says_it_replays_its_stored_steps_and_a_stopped_one_keeps_its_stage(base):
    url, path = base
    engine = db.make_engine(url)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    gen = execute.execute_run(run_id, engine=engine)
    for _ in range(30):                         # 20 cold-start steps, 10 of online training
        next(gen)
    gen.close()
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
    assert run.status == "stopped"
    assert (run.stage, run.stage_detail) == ("optimize", "10 of 60 steps")   # where it stopped
    first = len(_log(path))
    list(execute.execute_run(run_id, engine=engine, resume=True))
    log = _log(path)[first:]
    assert _order(log) == ["loading", "embedding", "replaying", "optimize", "inference",
                           "finished"], log
    assert [d for s, _, d in log if s == "replaying"] == [
        "30 stored steps, to restore the router's state (nothing is written)"]
    assert _progress(log, "optimize")[0] == 11 / 60     # the first new step
    engine.dispose()
