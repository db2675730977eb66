"""Simulated backend: seeded parametric models with known ground truth (spec §4).

Every outcome is labelled *simulated*. A scenario fixes, per model, an accuracy per role and a
token / price / latency profile; per (step, model) the backend draws once, from the run's seed:

- step success ~ Bernoulli(accuracy[model, role]);
- output tokens ~ LogNormal(log median, sigma) per model, input tokens ~ LogNormal per step,
  so cost = in·p_in + out·p_out is lognormal-like per model;
- latency = (ttft + out / tokens_per_s) · LogNormal(0, 0.15).

All draws are made up front as dense arrays, so a step's outcome does not depend on the order
routers ask for it: the oracle, the ``full`` protocol and every router of a comparison see the
same counterfactual world. :meth:`SimulatedBackend.best_model` gives the ground truth — the
model with the highest expected utility per role under given weights, computed the way
EvoRoute scores candidates (Pareto filter on the expected P, C, D, then the normalised utility)
— so tests can assert that a learning router converges to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.backends.base import StepSpec, TableBackend, _Rows, compose_tasks, split_rng
from evoroute.core import labels
from evoroute.core.errors import ValidationError
from evoroute.core.pareto import pareto_mask
from evoroute.core.types import ModelInfo, Weights
from evoroute.core.utility import reference_scale, utility
from evoroute.settings import DEFAULTS

LATENCY_NOISE_SIGMA = 0.15


@dataclass(frozen=True)
class SimModel:
    name: str
    accuracy: Mapping[str, float]          # role -> P(step success)
    input_price_per_m: float
    output_price_per_m: float
    ttft_s: float
    tokens_per_s: float
    out_tokens_median: float = 200.0
    out_tokens_sigma: float = 0.4

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, input_price_per_m=self.input_price_per_m,
                         output_price_per_m=self.output_price_per_m, ttft_s=self.ttft_s,
                         tokens_per_s=self.tokens_per_s, price_source="notional")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    roles: tuple[str, ...]
    models: tuple[SimModel, ...]
    n_train: int = 400
    n_test: int = 200
    workflow: tuple[str, ...] | None = None    # None: one-step tasks with a random role
    in_tokens_median: float = 400.0
    in_tokens_sigma: float = 0.3
    role_tools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# Instruction templates per role: three slots filled from small vocabularies, so instructions
# of one role resemble each other (semantic retrieval has something to find) and differ
# across roles.
_TEMPLATES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "planner": ("Plan the steps needed to {} the {} for the {} team.",
                ("migrate", "organise", "launch", "audit", "schedule", "redesign"),
                ("quarterly report", "release", "data pipeline", "onboarding", "office move"),
                ("finance", "platform", "research", "sales", "support")),
    "coder": ("Write a Python function that {} a {} of {}.",
              ("sorts", "deduplicates", "reverses", "filters", "groups", "merges"),
              ("list", "dictionary", "tuple", "stream", "matrix"),
              ("integers", "strings", "dates", "records", "file names")),
    "searcher": ("Search the web for the {} of {} in {}.",
                 ("population", "founding year", "capital", "largest company", "highest peak"),
                 ("the region", "the country", "the province", "the island", "the state"),
                 ("Europe", "Asia", "Africa", "South America", "Oceania")),
    "verifier": ("Check whether the {} reported for the {} is consistent with the {}.",
                 ("total", "average", "growth rate", "margin", "count"),
                 ("experiment", "survey", "budget", "inventory", "forecast"),
                 ("source table", "earlier summary", "raw log", "audit trail", "spreadsheet")),
}
_ROLE_TOOLS = {"planner": ("file",), "coder": ("python",), "searcher": ("search",),
               "verifier": ("calculator",)}

# Each role has one clearly best model under the default weights (1, 0.1, 0.05): the medium
# model plans, the specialist codes, the small model searches, the large model verifies.
_DEFAULT_MODELS = (
    SimModel("sim-small", {"planner": 0.50, "coder": 0.35, "searcher": 0.88, "verifier": 0.55},
             0.1, 0.2, ttft_s=0.2, tokens_per_s=120, out_tokens_median=150),
    SimModel("sim-medium", {"planner": 0.85, "coder": 0.55, "searcher": 0.75, "verifier": 0.65},
             1.0, 2.0, ttft_s=0.4, tokens_per_s=60, out_tokens_median=200),
    SimModel("sim-large", {"planner": 0.88, "coder": 0.75, "searcher": 0.80, "verifier": 0.97},
             10.0, 30.0, ttft_s=0.8, tokens_per_s=25, out_tokens_median=250),
    SimModel("sim-coder", {"planner": 0.45, "coder": 0.92, "searcher": 0.40, "verifier": 0.50},
             2.0, 6.0, ttft_s=0.5, tokens_per_s=50, out_tokens_median=300),
)

SCENARIOS: dict[str, Scenario] = {
    "default": Scenario(
        "default", "four models (small, medium, large, a coding specialist) on one-step tasks of "
        "four roles; each role has a different best model", roles=tuple(_TEMPLATES),
        models=_DEFAULT_MODELS, role_tools=_ROLE_TOOLS),
    "agent": Scenario(
        "agent", "the default models on three-step agent tasks (planner -> coder -> verifier); "
        "task success = all steps succeed", roles=("planner", "coder", "verifier"),
        models=_DEFAULT_MODELS, n_train=200, n_test=100,
        workflow=("planner", "coder", "verifier"), role_tools=_ROLE_TOOLS),
    "two-models": Scenario(
        "two-models", "a cheap and a strong model on one-step tasks of two roles (strong/weak "
        "routing)", roles=("coder", "searcher"),
        models=(SimModel("sim-weak", {"coder": 0.55, "searcher": 0.75}, 0.2, 0.4, 0.2, 100, 200),
                SimModel("sim-strong", {"coder": 0.90, "searcher": 0.85}, 10.0, 30.0, 0.8, 25, 200)),
        role_tools=_ROLE_TOOLS),
}


class SimulatedBackend(TableBackend):
    """Seeded parametric outcomes of a named scenario (``dataset`` of a simulated run)."""

    label = labels.kind_of("simulated")
    latency_label = labels.DEFAULT_LATENCY["simulated"]

    def __init__(self, scenario: str | Scenario = "default", *, seed: int = 0,
                 steps_per_task: int = 1, model_names: list[str] | None = None,
                 n_train: int | None = None, n_test: int | None = None) -> None:
        if isinstance(scenario, str):
            if scenario not in SCENARIOS:
                raise ValidationError(f"unknown simulated scenario {scenario!r}; known: "
                                      f"{', '.join(SCENARIOS)}", "dataset")
            scenario = SCENARIOS[scenario]
        self.scenario = scenario
        sims = list(scenario.models)
        if model_names:
            known = {m.name: m for m in sims}
            bad = [n for n in model_names if n not in known]
            if bad:
                raise ValidationError(f"model(s) {', '.join(map(repr, bad))} are not in simulated "
                                      f"scenario {scenario.name!r} (its models: "
                                      f"{', '.join(known)})", "models")
            sims = [known[n] for n in model_names]
        self.sim_models = sims
        super().__init__([m.info() for m in sims])
        self.seed, self.steps_per_task = int(seed), int(steps_per_task)
        self.n_units = {"train": scenario.n_train if n_train is None else int(n_train),
                        "test": scenario.n_test if n_test is None else int(n_test)}
        self._build()

    # ------------------------------------------------------------ building
    def _build(self) -> None:
        sc, rng = self.scenario, np.random.default_rng([self.seed, 4242])
        roles_of_rows, texts, unit_rows, unit_keys_by_split = [], [], {}, {}
        for split in DEFAULTS.splits:
            keys = []
            for u in range(self.n_units[split]):
                roles = sc.workflow or (sc.roles[int(rng.integers(len(sc.roles)))],)
                rows = []
                for role in roles:
                    rows.append(len(roles_of_rows))
                    roles_of_rows.append(role)
                    texts.append(_instruction(role, rng))
                key = f"{split[:2]}{u}"
                unit_rows[key] = rows
                keys.append(key)
            unit_keys_by_split[split] = keys
        n, m = len(roles_of_rows), len(self.sim_models)
        acc = np.array([[sm.accuracy.get(r, 0.0) for sm in self.sim_models] for r in roles_of_rows])
        score = (rng.random((n, m)) < acc).astype(float)
        med = np.array([sm.out_tokens_median for sm in self.sim_models])
        sig = np.array([sm.out_tokens_sigma for sm in self.sim_models])
        tout = np.maximum(1, np.round(med * np.exp(sig * rng.standard_normal((n, m)))))
        tin = np.maximum(1, np.round(sc.in_tokens_median * np.exp(
            sc.in_tokens_sigma * rng.standard_normal(n))))[:, None] * np.ones((1, m))
        p_in = np.array([x.input_price_per_m for x in self.sim_models])
        p_out = np.array([x.output_price_per_m for x in self.sim_models])
        cost = (tin * p_in + tout * p_out) / 1e6
        ttft = np.array([x.ttft_s for x in self.sim_models])
        tps = np.array([x.tokens_per_s for x in self.sim_models])
        lat = (ttft + tout / tps) * np.exp(LATENCY_NOISE_SIGMA * rng.standard_normal((n, m)))
        self._rows = _Rows(score=score, cost=cost, latency=lat, input_tokens=tin.astype(np.int64),
                           output_tokens=tout.astype(np.int64))
        for split in DEFAULTS.splits:
            keys = unit_keys_by_split[split]
            units = [[StepSpec(role=roles_of_rows[r], instruction=texts[r],
                               tools=frozenset(sc.role_tools.get(roles_of_rows[r], ())))
                      for r in unit_rows[k]] for k in keys]
            tasks, sources = compose_tasks(units, keys, split, self.steps_per_task,
                                           split_rng(self.seed, split))
            for t, src in zip(tasks, sources):
                for i, (uk, j) in enumerate(src):
                    self._row_of[(t.key, i)] = unit_rows[uk][j]
            self._tasks[split] = tasks

    # ------------------------------------------------------------ ground truth
    def expected(self) -> dict[str, dict[str, tuple[float, float, float]]]:
        """role -> model -> expected (P, cost USD, latency s) of one step."""
        sc = self.scenario
        e_in = sc.in_tokens_median * np.exp(sc.in_tokens_sigma ** 2 / 2)
        lat_f = np.exp(LATENCY_NOISE_SIGMA ** 2 / 2)
        out: dict[str, dict[str, tuple[float, float, float]]] = {}
        for role in sc.roles:
            out[role] = {}
            for sm in self.sim_models:
                e_out = sm.out_tokens_median * np.exp(sm.out_tokens_sigma ** 2 / 2)
                c = (e_in * sm.input_price_per_m + e_out * sm.output_price_per_m) / 1e6
                d = (sm.ttft_s + e_out / sm.tokens_per_s) * lat_f
                out[role][sm.name] = (float(sm.accuracy.get(role, 0.0)), float(c), float(d))
        return out

    def best_model(self, weights: Weights | tuple[float, float, float], role: str) -> str:
        """The model with the highest expected utility for ``role`` (EvoRoute's scoring:
        Pareto filter on expected P, C, D; costs and latencies normalised by the largest
        among all the models, as the router normalises by its explored candidates)."""
        w = weights if isinstance(weights, Weights) else Weights(*weights)
        exp = self.expected()[role]
        names = list(exp)
        p, c, d = (np.array([exp[k][i] for k in names]) for i in range(3))
        keep = np.flatnonzero(pareto_mask(p, c, d))
        u = utility(p[keep], c[keep], d[keep], w, reference_scale(c), reference_scale(d))
        return names[int(keep[int(np.argmax(u))])]

    def ground_truth(self, weights: Weights | tuple[float, float, float]) -> dict[str, str]:
        return {role: self.best_model(weights, role) for role in self.scenario.roles}

    def describe(self) -> dict[str, Any]:
        sc = self.scenario
        return {**super().describe(), "scenario": sc.name, "description": sc.description,
                "tasks": {s: len(self._tasks[s]) for s in DEFAULTS.splits},
                "steps_per_task": self.steps_per_task,
                "note": "simulated outcomes from seeded parametric models, not real calls"}


def _instruction(role: str, rng: np.random.Generator) -> str:
    tpl = _TEMPLATES.get(role)
    if tpl is None:
        return f"Do the {role} step of task #{int(rng.integers(10_000))}."
    fmt, *slots = tpl
    return fmt.format(*(s[int(rng.integers(len(s)))] for s in slots))
