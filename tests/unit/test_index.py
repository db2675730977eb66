"""ExperienceIndex: the three channels, their union, group aggregates, task success, caps.

The hand-built base (4-d embeddings so cosines are easy):

    e1 = (1, 0, 0, 0)   e2 = (0, 1, 0, 0)   e3 = (0.9, √0.19, 0, 0)   e4 = (0.8, 0.6, 0, 0)
    cos(e1, e1) = 1   cos(e1, e3) = 0.9   cos(e1, e4) = 0.8   cos(e1, e2) = 0

    rec role      model text emb  tools           cost dur perf   task
    0   planner   A     t1   e1   {search}        1    10  1      T0
    1   planner   B     t2   e2   {}              2    20  0      T1
    2   coder     A     t3   e3   {python}        3    30  1      T2
    3   coder     B     t4   e4   {search,python} 4    40  None   T3
    4   verifier  C     t1   —    {}              5    50  0.5    T4   (reuses t1's embedding)
    5   verifier  A     t5   —    {file}          6    60  0      T5   (no embedding at all)

Query: role planner, e1, tools {python}, θ = 0.85:
    R_role = {0, 1}; R_sem = texts t1, t3 -> {0, 2, 4}; R_tool = {2, 3}; union = {0..4}.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evoroute.retrieval.index import NP, NSTAT, SC, SC2, SD, SD2, SP, SP2, ExperienceIndex, N

E1 = np.array([1, 0, 0, 0], np.float32)
E2 = np.array([0, 1, 0, 0], np.float32)
E3 = np.array([0.9, math.sqrt(0.19), 0, 0], np.float32)
E4 = np.array([0.8, 0.6, 0, 0], np.float32)

ROLES = ["planner", "planner", "coder", "coder", "verifier", "verifier"]
MODELS = ["A", "B", "A", "B", "C", "A"]
TEXTS = ["t1", "t2", "t3", "t4", "t1", "t5"]
EMBS = [E1, E2, E3, E4, None, None]
TOOLS = [{"search"}, set(), {"python"}, {"search", "python"}, set(), {"file"}]
COSTS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
DURS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
PERF = [1.0, 0.0, 1.0, None, 0.5, 0.0]
TASKS = ["T0", "T1", "T2", "T3", "T4", "T5"]


def build(**kw) -> ExperienceIndex:
    idx = ExperienceIndex(dim=4, **kw)
    idx.add_batch(roles=ROLES, models=MODELS, texts=TEXTS, embeddings=EMBS, tools=TOOLS,
                  costs=COSTS, durations=DURS, perf=PERF, task_refs=TASKS, db_ids=[11, 12, 13, 14, 15, 16])
    return idx


def counts(ret, channel):
    return dict(zip(ret.models, np.asarray(ret.channel_counts[channel]).astype(int).tolist()))


def n_per_model(ret):
    return dict(zip(ret.models, ret.stats[:, N].astype(int).tolist()))


def test_sizes_and_text_dedup():
    idx = build()
    assert len(idx) == 6
    assert idx.models == ["A", "B", "C"]
    assert idx.n_texts == 4            # t1 stored once; t5 has no embedding
    assert idx.last_db_id == 16


def test_union_of_three_channels_by_hand():
    ret = build().retrieve("planner", E1, {"python"}, theta=0.85)
    assert counts(ret, "role") == {"A": 1, "B": 1, "C": 0}          # {0, 1}
    assert counts(ret, "semantic") == {"A": 2, "B": 0, "C": 1}      # {0, 2, 4}
    assert counts(ret, "tool") == {"A": 1, "B": 1, "C": 0}          # {2, 3}
    assert n_per_model(ret) == {"A": 2, "B": 2, "C": 1}             # union {0, 1, 2, 3, 4}
    assert ret.channel_totals(["A", "B", "C"]) == {"role": 2, "semantic": 3, "tool": 2, "union": 5}
    assert ret.channel_totals(["A"]) == {"role": 1, "semantic": 2, "tool": 1, "union": 2}

    est = ret.for_models(["A", "B", "C"])
    # A: records 0, 2 -> C (1, 3): mean 2, s² 2; D (10, 30): mean 20, s² 200; P (1, 1): mean 1, s² 0
    # B: records 1, 3 -> C (2, 4): mean 3, s² 2; P known only for record 1: n = 1, mean 0
    # C: record 4 -> C 5, P 0.5, n = 1
    assert est.n_records.tolist() == [2, 2, 1]
    assert est.n.tolist() == [2, 1, 1]
    np.testing.assert_allclose(est.c_mean, [2, 3, 5])
    np.testing.assert_allclose(est.c_var, [2, 2, 0])
    np.testing.assert_allclose(est.d_mean, [20, 30, 50])
    np.testing.assert_allclose(est.d_var, [200, 200, 0])
    np.testing.assert_allclose(est.p_mean, [1, 0, 0.5])
    np.testing.assert_allclose(est.p_var, [0, 0, 0])


@pytest.mark.parametrize("channel, expected_n", [
    ("role", {"A": 1, "B": 1, "C": 0}),          # {0, 1}
    ("semantic", {"A": 2, "B": 0, "C": 1}),      # {0, 2, 4}
    ("tool", {"A": 1, "B": 1, "C": 0}),          # {2, 3}
])
def test_each_channel_alone(channel, expected_n):
    ret = build().retrieve("planner", E1, {"python"}, theta=0.85, channels=(channel,))
    assert n_per_model(ret) == expected_n
    assert counts(ret, channel) == expected_n
    for other in {"role", "semantic", "tool"} - {channel}:
        assert sum(counts(ret, other).values()) == 0


def test_semantic_threshold_is_inclusive_and_respected():
    idx = build()
    # θ = 0.8 also takes t4 (cos 0.8) -> records {0, 2, 3, 4}
    assert n_per_model(idx.retrieve("x", E1, set(), theta=0.8, channels=("semantic",))) == \
        {"A": 2, "B": 1, "C": 1}
    # θ = 0.95 keeps only t1 -> {0, 4}
    assert n_per_model(idx.retrieve("x", E1, set(), theta=0.95, channels=("semantic",))) == \
        {"A": 1, "B": 0, "C": 1}


def test_unknown_role_tool_and_no_embedding_retrieve_nothing():
    ret = build().retrieve("nobody", None, {"calculator"})
    assert ret.stats[:, N].sum() == 0
    assert ret.channel_totals(["A", "B", "C"])["union"] == 0


def test_multi_tool_query_matches_any_overlap():
    # tools {search, file}: records 0 (search), 3 (search, python), 5 (file)
    ret = build().retrieve("nobody", None, {"search", "file"}, channels=("tool",))
    assert n_per_model(ret) == {"A": 2, "B": 1, "C": 0}


def brute_force(idx_inputs, rows):
    """(n_models, NSTAT) statistics over the given record rows, recomputed in plain Python."""
    models = sorted(set(MODELS), key=MODELS.index)
    out = np.zeros((len(models), NSTAT))
    for r in rows:
        m = models.index(idx_inputs["models"][r])
        c, d, p = idx_inputs["costs"][r], idx_inputs["durs"][r], idx_inputs["perf"][r]
        out[m, [N, SC, SC2, SD, SD2]] += [1, c, c * c, d, d * d]
        if p is not None:
            out[m, [NP, SP, SP2]] += [1, p, p * p]
    return out


def test_group_aggregates_equal_brute_force():
    idx = build()
    inputs = {"models": MODELS, "costs": COSTS, "durs": DURS, "perf": PERF}
    np.testing.assert_allclose(idx.group_stats(None), brute_force(inputs, range(6)))
    for role in ("planner", "coder", "verifier"):
        rows = [i for i, r in enumerate(ROLES) if r == role]
        np.testing.assert_allclose(idx.group_stats(role), brute_force(inputs, rows))
    assert idx.group_stats("nobody").sum() == 0


def test_set_task_perf_fills_only_unknown_records():
    idx = build()
    assert idx.set_task_perf("T3", 1.0) == 1          # record 3 was unknown
    assert idx.set_task_perf("T3", 0.0) == 0          # already consumed
    assert idx.set_task_perf("T0", 0.0) == 0          # record 0 already had P = 1
    assert idx.set_task_perf("missing", 1.0) == 0
    est = idx.retrieve("planner", E1, {"python"}).for_models(["B"])
    # B now has P for records 1 (0) and 3 (1): n 2, mean 0.5, s² 0.5
    assert est.n.tolist() == [2]
    np.testing.assert_allclose(est.p_mean, [0.5])
    np.testing.assert_allclose(est.p_var, [0.5])
    perf = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0]
    inputs = {"models": MODELS, "costs": COSTS, "durs": DURS, "perf": perf}
    np.testing.assert_allclose(idx.group_stats(None), brute_force(inputs, range(6)))


def test_task_success_reaches_every_step_of_the_task():
    idx = ExperienceIndex(dim=4)
    for step in range(3):
        idx.add(role="r", model="A", text=f"s{step}", embedding=None, tools=(), cost=1.0,
                duration=1.0, perf=None, task_ref="task-1")
    idx.add(role="r", model="A", text="other", embedding=None, tools=(), cost=1.0, duration=1.0,
            perf=None, task_ref="task-2")
    assert idx.group_stats("r")[0, NP] == 0
    assert idx.set_task_perf("task-1", 0.75) == 3
    g = idx.group_stats("r")[0]
    assert (g[NP], g[SP], g[SP2]) == (3, 2.25, pytest.approx(3 * 0.5625))


def test_cap_per_channel_by_hand():
    idx = build()
    # role alone, cap 1: the most recent planner record, 1 (B)
    assert n_per_model(idx.retrieve("planner", E1, (), channels=("role",), max_per_channel=1)) == \
        {"A": 0, "B": 1, "C": 0}
    # tool alone, cap 1: the most recent python record, 3 (B)
    assert n_per_model(idx.retrieve("x", None, {"python"}, channels=("tool",), max_per_channel=1)) == \
        {"A": 0, "B": 1, "C": 0}
    # semantic alone, cap 2: the two most similar, records 0 and 4 (cos 1) before 2 (cos 0.9)
    ret = idx.retrieve("x", E1, (), channels=("semantic",), max_per_channel=2)
    assert n_per_model(ret) == {"A": 1, "B": 0, "C": 1}
    np.testing.assert_allclose(ret.stats[:, SC], [1.0, 0.0, 5.0])
    # all channels, cap 1: role {1}, tool {3}, semantic one of {0, 4}
    ret = idx.retrieve("planner", E1, {"python"}, max_per_channel=1)
    assert ret.stats[:, N].sum() == 3
    assert n_per_model(ret)["B"] == 2


def test_cap_large_enough_equals_full_union():
    idx = build()
    full = idx.retrieve("planner", E1, {"python"})
    capped = idx.retrieve("planner", E1, {"python"}, max_per_channel=1000)
    np.testing.assert_allclose(capped.stats, full.stats)
    for ch in ("role", "semantic", "tool"):
        assert counts(capped, ch) == counts(full, ch)


def test_sem_scan_limit_scans_only_recent_texts():
    idx = build()
    # texts in insertion order t1, t2, t3, t4; limit 2 scans t3, t4 -> only t3 (cos 0.9) hits
    ret = idx.retrieve("x", E1, (), channels=("semantic",), sem_scan_limit=2)
    assert n_per_model(ret) == {"A": 1, "B": 0, "C": 0}
    sims, lo = idx.similarities(E1, sem_scan_limit=2)
    assert lo == 2
    np.testing.assert_allclose(sims, [0.9, 0.8], atol=1e-6)


def test_incremental_appends_match_one_batch():
    one = build()
    inc = ExperienceIndex(dim=4)
    for i in range(6):
        inc.add(role=ROLES[i], model=MODELS[i], text=TEXTS[i], embedding=EMBS[i], tools=TOOLS[i],
                cost=COSTS[i], duration=DURS[i], perf=PERF[i], task_ref=TASKS[i], db_id=11 + i)
    a = one.retrieve("planner", E1, {"python"})
    b = inc.retrieve("planner", E1, {"python"})
    np.testing.assert_allclose(a.stats, b.stats)
    assert inc.last_db_id == 16 and inc.n_texts == 4


def test_growth_beyond_initial_capacity(make_unit_vectors):
    rng = np.random.default_rng(0)
    n = 3000                              # > the initial capacity of 1024 rows
    idx = ExperienceIndex(dim=8)
    vecs = make_unit_vectors(rng, n, 8)
    roles = [f"r{i % 5}" for i in range(n)]
    models = [f"m{i % 20}" for i in range(n)]   # > 16 models: the group table must grow too
    idx.add_batch(roles=roles, models=models, texts=[str(i) for i in range(n)], embeddings=vecs,
                  tools=[{f"t{i % 3}"} for i in range(n)], costs=np.ones(n), durations=np.ones(n),
                  perf=[1.0] * n)
    assert len(idx) == n and idx.n_texts == n
    assert idx.group_stats(None)[:, N].tolist() == [150.0] * 20
    ret = idx.retrieve("r0", vecs[0], set(), theta=0.999)
    # role r0: 600 records; the query's own text (record 0, role r0) adds nothing new
    assert ret.stats[:, N].sum() == 600


def test_perf_signal_is_validated():
    with pytest.raises(ValueError):
        ExperienceIndex(perf_signal="reward")
