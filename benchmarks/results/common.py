"""The inputs of docs/results.md (the bench reports, what each router declares) and the
formatting shared by its tables."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from evoroute.core.types import ModelInfo
from evoroute.evaluation.bench.run import default_routers
from evoroute.policy.base import Capabilities
from evoroute.policy.registry import make_router
from evoroute.settings import DEFAULTS, PROJECT_ROOT

RESULTS = PROJECT_ROOT / "docs" / "results"
DOC = PROJECT_ROOT / "docs" / "results.md"
FILES = {
    "bandit": "bench_bandit.json",
    "full": "bench_full.json",
    "bandit_costlean": "bench_bandit_costlean.json",
    "full_costlean": "bench_full_costlean.json",
    "agent_steps_bandit": "bench_agent_steps_bandit.json",
    "agent_steps_full": "bench_agent_steps_full.json",
    "choice_full": "bench_choice_full.json",
}
#: the replayed studies beside the bench (docs/collaboration.md, docs/rescue.md)
SIDE_FILES = {"collab": "collab.json", "atropos": "atropos.json",
              "steps3": "bench_routerbench_3steps_full.json"}   # the rescue as a router
BEST = "single:gpt-4-1106-preview"
#: the query-aware default and the paper's literal union
EVOROUTE, PAPER = "evoroute", "evoroute-paper"
# The paper's ablation on GAIA (arXiv 2601.02695, ablation table): points of accuracy lost;
# each is registered for both designs as ``<design>-<suffix>``.
PAPER_ABLATIONS = [
    ("no-cold-start", "no cold start", -13.21),
    ("no-role-tool", "semantic-only retrieval (no role / tool channels)", -11.22),
    ("no-ts", "no Thompson sampling (posterior mean)", -6.52),
    ("no-pareto", "no Pareto filter", -1.52),
]
#: the families (``Capabilities.family``) of EvoRoute and its variants and ablations
EVOROUTE_FAMILIES = ("evoroute", "evoroute-paper")


@functools.lru_cache(maxsize=None)
def _capabilities(router: str, models: tuple[str, ...]) -> Capabilities:
    return make_router(router, [ModelInfo(m) for m in models]).capabilities()


def capabilities(rep: dict[str, Any], router: str) -> Capabilities:
    """What a router of this report declares, read from the router itself (built on the
    report's models), for what the report's own rows do not record."""
    rows = rep["routers"]
    models = {r.split(":", 1)[1] for r in rows if r.startswith("single:")}
    models |= {m for o in rows.values() for m in o.get("model_share") or {}}
    return _capabilities(router, tuple(sorted(models)))


def family(rep: dict[str, Any], r: str) -> str:
    o = rep["routers"].get(r, {})
    return str(o["family"]) if "family" in o else capabilities(rep, r).family


def ablation_of(rep: dict[str, Any], r: str) -> str | None:
    o = rep["routers"].get(r, {})
    return o["ablation_of"] if "ablation_of" in o else capabilities(rep, r).ablation_of


def listing_order(rep: dict[str, Any], r: str) -> int:
    o = rep["routers"].get(r, {})
    return int(o["order"]) if "order" in o else capabilities(rep, r).order


def is_oracle(rep: dict[str, Any], r: str) -> bool:
    """An oracle router of this report (the report says so; older reports: its declaration)."""
    o = rep["routers"].get(r, {})
    return bool(o["is_oracle"]) if "is_oracle" in o else capabilities(rep, r).is_oracle


def upgrade_legacy(rep: dict[str, Any]) -> dict[str, Any]:
    """A report written before the bench recorded what each router declares (no ``is_oracle``
    in its rows) and before the confidence cascade and the learned baselines existed named the
    oracle cascade ``cascade``: mark that row an oracle, as the bench now records it."""
    rows = rep["routers"]
    if (not any("is_oracle" in o for o in rows.values()) and "cascade" in rows
            and "oracle-cascade" not in rows and "per-role" not in rows):
        rows["cascade"]["is_oracle"] = True
    return rep



# ------------------------------------------------------------------------------ inputs
def load_reports(results: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, name in FILES.items():
        p = results / name
        if p.is_file():
            out[key] = upgrade_legacy(json.loads(p.read_text()))
    missing = [FILES[k] for k in ("bandit", "full") if k not in out]
    if missing:
        sys.exit(f"missing benchmark file(s) in {results}: {', '.join(missing)}; run "
                 f"python -m evoroute bench ... --json (see this script's docstring)")
    return out


def load_side(results: Path) -> dict[str, dict[str, Any]]:
    """The replayed studies' JSON files that exist (collaboration modes, mid-run rescue, the
    bench on composed 3-step tasks)."""
    return {k: json.loads((results / n).read_text()) for k, n in SIDE_FILES.items()
            if (results / n).is_file()}


def runs_of(checks: dict[str, Any] | None, router: str, key: str) -> list[dict[str, Any]]:
    """The replay-check runs of ``router`` for the report ``key`` (none when not run)."""
    return ((checks or {}).get("runs") or {}).get(router, {}).get(key) or []


def best_single(rep: dict[str, Any]) -> str:
    """The row of the report's best single model (``single:<model>``)."""
    return "single:" + rep["reference"]["best_single"]


@functools.lru_cache(maxsize=None)
def _unsupported(dataset: str, names: tuple[str, ...]) -> frozenset[str]:
    """The routers among ``names`` that the bench would leave out of its defaults on
    ``dataset`` (``Router.unsupported_data`` of its train split)."""
    from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data

    try:
        data = load_replay_data(dataset)
        infos = dataset_models(data)
        train = ReplayBackend(data, infos, seed=0).outcome_table("train")
    except Exception:             # noqa: BLE001 — a dataset that no longer loads: keep the list
        return frozenset()
    out = set()
    for r in names:
        try:
            router = make_router(r, infos)
            if "dataset" in router.run_params:        # it reads the run's dataset name
                router = make_router(r, infos, dataset=dataset)
            if router.unsupported_data(train):
                out.add(r)
        except Exception:         # noqa: BLE001 — a router that cannot even be built here
            out.add(r)
    return frozenset(out)


def command(rep: dict[str, Any], key: str) -> str:
    """The `bench` command line that wrote this report (rebuilt from the report itself)."""
    parts = ["python -m evoroute bench", f"--data {rep['dataset']}",
             f"--protocol {rep['protocol']}"]
    routers = list(rep["routers"])
    models = [r.split(":", 1)[1] for r in routers if r.startswith("single:")]
    # default routers the data cannot run were left out by the bench, which says so in a note
    left_out = {n.split(" left out of the default routers")[0] for n in rep.get("notes", [])
                if " left out of the default routers" in n}
    merged = {r for n in rep.get("notes", []) if n.startswith("merged: ")
              for r in n[len("merged: "):].split(" rerun and merged")[0].split(", ")}
    defaults = [r for r in default_routers(models) if r not in left_out]
    absent = tuple(sorted(set(defaults) - set(routers)))
    if absent:        # registered after this report was made: left out if the data rules them out
        gone = _unsupported(str(rep["dataset"]), absent)
        defaults = [r for r in defaults if r not in gone]
    if sorted(set(routers) - merged) != sorted(set(defaults) - merged) or len(models) < 2:
        parts.append("--routers " + ",".join(routers))
    w = tuple(float(x) for x in rep["weights"])
    if not np.allclose(w, DEFAULTS.weights):
        parts.append("--weights " + ",".join(f"{x:g}" for x in w))
    parts.append(f"--seeds {len(rep['seeds'])}")
    if int(rep.get("steps_per_task", 1)) != 1:
        parts.append(f"--steps-per-task {rep['steps_per_task']}")
    parts.append(f"--json docs/results/{FILES[key]} --quiet")
    return " ".join(parts)


# ------------------------------------------------------------------------------ formatting
def f3(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def pm(v: float, sd: float, nd: int = 3) -> str:
    return f"{v:.{nd}f} ± {sd:.{nd}f}"


def pct(v: float | None, nd: int = 1) -> str:
    return "not reached" if v is None else f"{100 * v:.{nd}f} %"


def money(v: float | None, nd: int = 3) -> str:
    return "not reached" if v is None else f"${v:.{nd}f}"


def short(model: str) -> str:
    """Plot label of a model or router name."""
    m = model.removeprefix("single:")
    m = m.split("/")[-1]
    return {"gpt-4-1106-preview": "gpt-4-1106", "gpt-3.5-turbo-1106": "gpt-3.5-turbo",
            "code-llama-instruct-34b-chat": "code-llama-34b", "WizardLM-13B-V1.2": "WizardLM-13B"
            }.get(m, m)


def router_order(rep: dict[str, Any]) -> list[str]:
    """The table rows: every router in the order it declares (then by name), the single models
    last, best first."""
    rows = rep["routers"]
    single = sorted((r for r in rows if family(rep, r) == "single"), key=lambda r: -rows[r]["quality"])
    others = sorted((r for r in rows if r not in single), key=lambda r: (listing_order(rep, r), r))
    return others + single


