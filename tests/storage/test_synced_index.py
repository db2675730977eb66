"""SyncedIndex on a real SQLite file: reading only the embeddings the index keeps (one per
distinct text) gives the same index as reading every record's blob, across incremental syncs."""

from __future__ import annotations

import numpy as np

from evoroute.experience import SyncedIndex
from evoroute.retrieval.index import ExperienceIndex
from evoroute.retrieval.tools import parse_tools
from evoroute.storage import repo
from evoroute.storage.tables import StepRecord

import db_helpers


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def _steps(run_id: int, task_id: int, spec: list[tuple[str, int | None]], start: int) -> list:
    """``spec``: (text, embedding seed or None = stored without an embedding)."""
    return [StepRecord(run_id=run_id, task_id=task_id, task_key=f"t{task_id}", step_index=start + i,
                       phase="optimize", role="coder" if i % 2 else "planner",
                       model=("a", "b", "c")[i % 3], instruction=text,
                       tools="python;search" if i % 4 == 0 else None,
                       embedding=repo.embedding_to_bytes(None if e is None else _vec(e)),
                       cost_usd=0.001 * (i + 1), duration_s=0.5 + i, step_success=float(i % 2))
            for i, (text, e) in enumerate(spec)]


def _reference(db_session) -> ExperienceIndex:
    """Every record with its own blob decoded, in id order: what the index was built from
    before it read only the embeddings it keeps."""
    ref = ExperienceIndex(perf_signal="task")
    rows = [r for b in repo.load_experience(session=db_session) for r in b]
    ref.add_batch(roles=[r.role for r in rows], models=[r.model for r in rows],
                  texts=[r.instruction for r in rows],
                  embeddings=[repo.embedding_from_bytes(r.embedding) for r in rows],
                  tools=[parse_tools(r.tools) for r in rows],
                  costs=[r.cost_usd for r in rows], durations=[r.duration_s for r in rows],
                  perf=[r.task_success for r in rows],
                  task_refs=[("task", r.task_id) if r.task_success is None else None for r in rows],
                  db_ids=[r.id for r in rows])
    return ref


def _same(a: ExperienceIndex, b: ExperienceIndex) -> None:
    assert len(a) == len(b)
    assert a._texts == b._texts
    for t in a._texts:
        assert a.has_text(t) and b.has_text(t)
    for probe in range(12):                         # the kept vectors, seen through searches
        np.testing.assert_array_equal(a._emb.scan(_vec(probe)), b._emb.scan(_vec(probe)))
    for name in ("_r_model", "_r_role", "_r_mask", "_r_group", "_r_text", "_r_cost", "_r_dur",
                 "_r_dbid"):
        np.testing.assert_array_equal(getattr(a, name).view, getattr(b, name).view, err_msg=name)
    np.testing.assert_array_equal(np.isnan(a._r_perf.view), np.isnan(b._r_perf.view))
    assert a.last_db_id == b.last_db_id


def test_index_reads_one_embedding_per_text_and_equals_reading_every_blob(engine, db_session):
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="t")
    # a text first stored without an embedding, then with one; repeats with other vectors
    # (the index keeps the first); a text never embedded
    db_helpers.add_steps(_steps(run.id, task.id, [
        ("alpha", None), ("alpha", 1), ("beta", 2), ("alpha", 3), ("beta", None),
        ("gamma", None), ("delta", 4), ("delta", 5)], 0), session=db_session)
    synced = SyncedIndex(engine)
    _same(synced.index, _reference(db_session))
    assert synced.index.has_text("alpha") and not synced.index.has_text("gamma")
    assert len(synced.index._texts) == 3

    # an incremental sync: texts seen before (their new blobs are not the ones kept), a text
    # seen only without an embedding until now, and a new one
    db_helpers.add_steps(_steps(run.id, task.id, [
        ("beta", 9), ("gamma", 6), ("gamma", 7), ("epsilon", 8), ("alpha", None)], 8),
        session=db_session)
    assert synced.sync() == 5
    _same(synced.index, _reference(db_session))
    assert synced.index.has_text("gamma") and len(synced.index._texts) == 5


def test_only_the_kept_embeddings_are_read(engine, db_session, monkeypatch):
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="t")
    db_helpers.add_steps(_steps(run.id, task.id, [(f"text {i % 4}", i) for i in range(40)], 0),
                         session=db_session)
    asked: list[int] = []
    real = repo.embeddings_by_id

    def spy(ids, *, session, chunk=500):
        asked.extend(ids)
        return real(ids, session=session, chunk=chunk)

    monkeypatch.setattr(repo, "embeddings_by_id", spy)
    synced = SyncedIndex(engine)
    first_ids = [r.id for r in sorted(
        (r for b in repo.load_experience(session=db_session) for r in b), key=lambda r: r.id)][:4]
    assert sorted(asked) == first_ids            # the first record of each of the 4 texts
    assert len(synced.index) == 40 and len(synced.index._texts) == 4
    asked.clear()
    db_helpers.add_steps(_steps(run.id, task.id, [("text 1", 99), ("text 9", 98)], 40),
                         session=db_session)
    synced.sync()
    assert len(asked) == 1                       # only the new text's blob


def test_a_record_deleted_between_the_two_reads_does_not_cost_its_text_the_vector(
        engine, db_session, monkeypatch):
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="t")
    db_helpers.add_steps(_steps(run.id, task.id, [("alpha", 1), ("alpha", 2), ("beta", 3)], 0),
                         session=db_session)
    real = repo.embeddings_by_id
    gone = min(r.id for b in repo.load_experience(session=db_session) for r in b)

    def deleted_meanwhile(ids, *, session, chunk=500):   # the first alpha row's run was deleted
        return {k: v for k, v in real(ids, session=session, chunk=chunk).items() if k != gone}

    monkeypatch.setattr(repo, "embeddings_by_id", deleted_meanwhile)
    idx = SyncedIndex(engine).index
    assert idx.has_text("alpha") and idx.has_text("beta")
    assert list(idx._r_text.view) == [-1, 0, 1]          # the next alpha row gave the vector


def test_repeats_across_batch_boundaries_in_one_sync(engine, db_session):
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="t")
    db_helpers.add_steps(_steps(run.id, task.id, [
        ("alpha", None), ("beta", 2), ("alpha", 1), ("beta", 5), ("alpha", 3), ("gamma", None),
        ("gamma", 4)], 0), session=db_session)
    _same(SyncedIndex(engine, batch=2).index, _reference(db_session))
