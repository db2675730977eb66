"""The benchmark reads each router's capabilities (no name lists), sweeps every cost knob, and
reports the headline metrics: gain over the single-model hull, cost share at parity, and the
ranking of the non-oracle routers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from evoroute.core.types import ModelInfo, StepContext
from evoroute.evaluation import metrics
from evoroute.evaluation.bench.report import format_table
from evoroute.evaluation.bench.run import default_routers, run_bench
from evoroute.policy.base import COST_WEIGHT_GRID, CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.registry import ROUTERS, make_router

GPT4 = "gpt-4-1106-preview"
YI = "zero-one-ai/Yi-34B-Chat"


TOY_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ToyKnobRouter(Baseline):
    """Sends a fixed hash-chosen ``share`` of the steps to gpt-4, the rest to Yi: a router the
    bench has never heard of, with its own cost knob."""

    name = "toy-knob"
    seed_invariant = True
    cost_knob = CostKnob("share", TOY_GRID, 0.5, "share")

    def __init__(self, models, share: float = 0.5) -> None:
        super().__init__(models)
        self.share = float(share)

    def decide(self, step: StepContext, rng: np.random.Generator):
        strong = zlib.crc32(step.instruction.encode()) % 1000 < 1000 * self.share
        return self._decision(step, GPT4 if strong else YI, "toy")


@pytest.fixture(scope="module")
def report():
    ROUTERS["toy-knob"] = ToyKnobRouter
    try:
        yield run_bench("routerbench-mbpp", protocol="full", seeds=2, progress=False, workers=1,
                        routers=["per-role", "cascade", "oracle-cascade", "oracle", "cheapest",
                                 "toy-knob", f"single:{GPT4}", f"single:{YI}",
                                 "single:gpt-3.5-turbo-1106"])
    finally:
        ROUTERS.pop("toy-knob", None)


def test_sweeps_come_from_the_routers_capabilities(report):
    r, sw = report["routers"], report["sweeps"]
    assert r["per-role"]["sweep_points"] == len(COST_WEIGHT_GRID) >= 12
    assert r["per-role"]["cost_knob"] == "cost_weight"
    assert r["per-role"]["default_knob"] == 0.1 and r["cascade"]["sweep_points"] == 14
    assert r["toy-knob"]["sweep_points"] == 12 and r["toy-knob"]["cost_knob"] == "share"
    assert sorted(p["knob"] for p in sw["toy-knob"]) == pytest.approx(TOY_GRID)
    # the toy router's cost grows with its knob: the knob really reached the router
    by_knob = sorted(sw["toy-knob"], key=lambda p: p["knob"])
    assert by_knob[0]["cost_usd"] < by_knob[6]["cost_usd"] < by_knob[-1]["cost_usd"]
    assert r["oracle-cascade"]["sweep_points"] == r["oracle-cascade"]["default_knob"] >= 2   # rungs
    assert r["oracle"]["sweep_points"] == 1
    # deterministic, non-learning routers ran once and count for both seeds
    invariant = set(report["timing"]["seed_invariant_routers"])
    assert {"per-role", "cascade", "toy-knob", "oracle-cascade"} <= invariant
    assert r["per-role"]["n_seeds"] == 2 and r["per-role"]["quality_sd"] == 0.0


def test_headline_metrics_match_the_metric_functions(report):
    r, ref = report["routers"], report["reference"]
    singles = np.array([[v["cost_usd"], v["quality"]] for v in ref["singles"].values()])
    assert len(ref["singles"]) == 11
    best_q, best_c = ref["best_single_quality"], ref["best_single_cost"]
    for name, o in r.items():
        pts = np.array([[p["cost_usd"], p["quality"]] for p in report["sweeps"][name]])
        assert o["gain_over_hull"] == pytest.approx(
            metrics.gain_over_hull(singles, o["cost_usd"], o["quality"]))
        assert o["gain_over_hull_best"] == pytest.approx(metrics.best_gain_over_hull(singles, pts))
        assert o["parity_cost_share"] == metrics.cost_share_at_parity(pts, best_q, best_c, 0.005)
        if name.startswith("single:"):
            assert o["gain_over_hull"] <= 1e-12
    best = f"single:{ref['best_single']}"
    assert r[best]["parity_cost_share"] == pytest.approx(1.0)
    assert r[best]["gain_over_hull"] == pytest.approx(0)
    # the oracle is one point above every single model: parity at its own cost
    assert r["oracle"]["gain_over_hull"] > 0.1
    assert r["oracle"]["parity_cost_share"] == pytest.approx(r["oracle"]["cost_usd"] / best_c)


def test_oracles_are_kept_out_of_the_non_oracle_ranking(report):
    ranking = [x["router"] for x in report["ranking_non_oracle"]]
    assert set(report["oracles"]) == {"oracle", "oracle-cascade"}
    assert not set(report["oracles"]) & set(ranking)
    assert set(ranking) == set(report["routers"]) - {"oracle", "oracle-cascade"}
    aiqs = [x["aiq"] for x in report["ranking_non_oracle"]]
    assert aiqs == sorted(aiqs, reverse=True)
    assert report["best_non_oracle"] == ranking[0]
    assert report["routers"]["oracle-cascade"]["aiq"] > aiqs[0]    # it would have won
    table = format_table(report)
    assert "oracle-cascade *" in table and f"best non-oracle by AIQ: 1. {ranking[0]}" in table


def test_default_routers_take_every_registered_evoroute_variant():
    names = default_routers(["a", "b"])
    evo = [n for n in ROUTERS if n.startswith("evoroute")]
    assert names[0] == "evoroute" and set(evo) <= set(names)
    assert {"per-role", "knn", "logistic", "lints", "cascade", "oracle-cascade"} <= set(names)
    assert names[-2:] == ["single:a", "single:b"]

    def is_ablation(name: str) -> bool:       # what the bench reads to skip an ablation's sweep
        return make_router(name, [ModelInfo("a"), ModelInfo("b")]).capabilities().ablation_of is not None

    assert is_ablation("evoroute-no-ts") and is_ablation("evoroute-paper-no-pareto")
    assert not is_ablation("evoroute-paper") and not is_ablation("evoroute") and not is_ablation("knn")


def test_a_new_router_reaches_the_default_list_at_its_declared_order():
    """Adding a baseline needs no edit in the bench: it is listed where it says it belongs."""
    ROUTERS["toy-knob"] = type("LateToy", (ToyKnobRouter,), {"order": 41})
    try:
        names = default_routers(["a", "b"])
    finally:
        ROUTERS.pop("toy-knob", None)
    assert names.index("round_robin") < names.index("toy-knob") < names.index("cheapest")


def test_a_router_rerun_and_merged_equals_the_same_router_benched_with_all(report, tmp_path):
    """``bench --routers R --merge-into FILE`` reruns R with the file's single models and
    oracles and merges it: R's numbers are those of one bench holding every router, the other
    routers are untouched, the ranking is recomputed; a report of another benchmark is refused."""
    import json

    from evoroute.cli.main import main as cli_main
    from evoroute.core.errors import ValidationError
    from evoroute.evaluation.bench.report import merge_reports

    base = json.loads(json.dumps(report))            # what the file held, without per-role
    dropped = base["routers"].pop("per-role")
    base["sweeps"].pop("per-role")
    base["ranking_non_oracle"] = [x for x in base["ranking_non_oracle"] if x["router"] != "per-role"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(base))
    assert cli_main(["bench", "--data", "routerbench-mbpp", "--protocol", "full", "--seeds", "2",
                     "--routers", "per-role", "--merge-into", str(path), "--quiet"]) == 0
    merged = json.loads(path.read_text())
    assert merged["routers"]["per-role"]["aiq"] == pytest.approx(dropped["aiq"])
    assert merged["routers"]["per-role"]["quality"] == pytest.approx(dropped["quality"])
    assert merged["routers"]["cheapest"] == base["routers"]["cheapest"]
    assert [x["router"] for x in merged["ranking_non_oracle"]] == \
        [x["router"] for x in report["ranking_non_oracle"]]
    assert "merged: per-role" in merged["notes"][-1]
    assert merged["aiq_max_cost_usd"] == pytest.approx(report["aiq_max_cost_usd"])
    for r, o in report["routers"].items():                   # one axis: every AIQ as before
        assert merged["routers"][r]["aiq"] == pytest.approx(o["aiq"]), r
    other = dict(report, protocol="bandit")
    with pytest.raises(ValidationError, match="protocol differs"):
        merge_reports(report, other)


def test_a_merge_sweeps_on_as_many_seeds_as_the_file_did(tmp_path):
    """A file whose sweeps ran on its first seed only (``sweep_seeds=1``) takes a merged router
    swept the same way (the merge once refused it: "sweep_seeds differs")."""
    import json

    from evoroute.cli.main import main as cli_main

    singles = [f"single:{GPT4}", f"single:{YI}"]
    base = run_bench("routerbench-mbpp", protocol="full", seeds=2, sweep_seeds=1, progress=False,
                     workers=1, routers=["cheapest", *singles])
    assert base["sweep_seeds"] == [0]
    path = tmp_path / "one_sweep_seed.json"
    path.write_text(json.dumps(base))
    assert cli_main(["bench", "--data", "routerbench-mbpp", "--protocol", "full", "--seeds", "2",
                     "--routers", "per-role", "--merge-into", str(path), "--quiet"]) == 0
    merged = json.loads(path.read_text())
    assert merged["sweep_seeds"] == [0] and "per-role" in merged["routers"]
    assert merged["routers"]["per-role"]["sweep_points"] > 1


def test_bench_composes_multi_step_tasks_from_the_command_line(report, tmp_path):
    """``--steps-per-task N`` composes tasks of N queries (what atropos rescues); the report
    records it, the results' command names it, and a one-step file refuses to merge it."""
    import json

    from evoroute.cli.main import main as cli_main
    from evoroute.core.errors import ValidationError
    from evoroute.evaluation.bench.report import merge_reports

    out = tmp_path / "two.json"
    assert cli_main(["bench", "--data", "routerbench-mbpp", "--protocol", "full", "--routers",
                     f"cheapest,single:{GPT4}", "--steps-per-task", "2", "--json", str(out),
                     "--quiet"]) == 0
    two = json.loads(out.read_text())
    assert two["steps_per_task"] == 2 and report["steps_per_task"] == 1
    assert two["n_test"] == (report["n_test"] + 1) // 2
    with pytest.raises(ValidationError, match="steps_per_task differs"):
        merge_reports(report, dict(report, steps_per_task=2))
    legacy = {k: v for k, v in report.items() if k != "steps_per_task"}   # written before the key
    merge_reports(legacy, report)
