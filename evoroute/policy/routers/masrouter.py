"""``masrouter`` (MasRouter-style, arXiv 2502.11133) and ``best-vote``: routers over
collaboration modes — one model, a vote of k models, escalation on disagreement — replayed from
the recorded answers (:mod:`evoroute.collab`, docs/collaboration.md).

The runner routes one call per step: a mode with several calls is routed as one *composite
arm* named like the mode (``vote:a+b+c``, ``escalate:a+b+s``), which the replay backend executes
from the members' recorded answers (:mod:`evoroute.collab.replay`: the mode's correctness, the
cost of the calls made); a single-model mode is an ordinary call to that model. Both routers
learn from every model's train outcome and recorded response (``OutcomeTable.responses``).
Modes of several calls are defined only on multiple-choice roles with recorded responses
(``routerbench-choice``, the ARC/Winogrande roles of ``routerbench``); on every other role
``masrouter`` keeps the single-model modes, i.e. MasRouter's role allocation (a model per role
and query), which is how it runs on the live agent and on ``agent_steps``. ``best-vote`` needs
votes everywhere: elsewhere :meth:`unsupported_data` names the dataset and why, the benchmark
leaves it out of its default list and a run stops before its first step.

- ``masrouter``: per query the (mode, models) candidate of the step's role with the best
  P − λ·C/C_ref (:class:`~evoroute.collab.masrouter.MasRouter`: P from the query's nearest
  train queries, shrunk toward the mode's train rate); λ (``cost_weight``) is the cost knob.
  The explanation names the mode, its members, the estimate behind it, the best candidate of
  every other kind and the nearest train queries.
- ``best-vote``: one fixed vote for every query, the vote (3 or 5 models) with the best train
  accuracy, cheaper on ties: issue 13's "best fixed vote".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoroute.collab.answers import ChoiceTable, choice_rows
from evoroute.collab.masrouter import MasRouter
from evoroute.collab.modes import Mode, candidate_modes, order_by_strength, replay
from evoroute.collab.replay import fingerprint, modes_undefined
from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.policy.baseline import Baseline
from evoroute.policy.routers.learned import DEFAULT_COST_WEIGHT, LAMBDA_KNOB
from evoroute.policy.training import cached_fit

VOTE_SIZES = (3, 5)
SHOWN_NEIGHBOURS = 3


def describe_mode(mode: Mode) -> str:
    """What a mode does, in words (the explanation's first sentence)."""
    if mode.kind == "single":
        return f"one call to {mode.models[0]}"
    if mode.kind == "vote":
        return (f"a vote of {len(mode.models)} models ({' + '.join(mode.models)}): each answers "
                f"once, the most frequent parsed answer wins, a tie goes to the first listed "
                f"(strongest on train); {len(mode.models)} calls")
    a, b, s = mode.models
    return (f"{a} and {b} answer; {s} is called only when their parsed answers differ, and then "
            f"its answer counts (2 or 3 calls)")


def arm_name(mode: Mode) -> str:
    """The name the runner routes to: the model itself for a single call, else the mode's."""
    return mode.models[0] if mode.kind == "single" else mode.name


class _ModeRouter(Baseline):
    """Shared by the mode routers: the train split as a choice table, the dataset check, the
    availability of a mode on a step."""

    needs_training = True
    seed_invariant = True
    run_params = ("dataset",)
    every_role = False          # train on every role (single modes where votes are undefined)

    def __init__(self, models: list[ModelInfo], dataset: str | None = None) -> None:
        super().__init__(models)
        self.dataset = dataset

    def unsupported_data(self, table: Any) -> str | None:
        why = modes_undefined(table.responses, table.roles, self.dataset)
        return f"{self.name} chooses collaboration modes, but {why}" if why else None

    def _train_table(self, table: Any) -> ChoiceTable:
        why = self.unsupported_data(table)
        if why:
            raise EvoRouteError(why)
        n = len(table)
        return choice_rows(np.arange(n), list(table.instructions), np.asarray(table.roles),
                           np.full(n, "train", dtype=object), tuple(table.models),
                           table.responses, table.scores, table.costs,
                           every_role=self.every_role)

    def _allowed(self, mode: Mode, names: set[str]) -> bool:
        return set(mode.models) <= names

    def _fallback(self, step: StepContext, why: str) -> Decision:
        pick = self._cheapest(self.candidates(step))
        return self._decision(step, pick, f"{self.name}: {why}; the cheapest available {pick}")


class MasRouterRouter(_ModeRouter):
    """Per query, the collaboration mode and its models with the best P − λ·C/C_ref."""

    name = "masrouter"
    needs_embedding = True
    cost_knob = LAMBDA_KNOB
    family = "learned"
    order = 35
    every_role = True

    def unsupported_data(self, table: Any) -> str | None:
        return None          # single-model modes are defined on every role (checked in fit)

    def __init__(self, models: list[ModelInfo], cost_weight: float = DEFAULT_COST_WEIGHT,
                 k: int = MasRouter.k, kappa: float = MasRouter.kappa, tau: float = MasRouter.tau,
                 dataset: str | None = None) -> None:
        super().__init__(models, dataset)
        lam = float(cost_weight)
        if not np.isfinite(lam) or lam < 0:
            raise ValidationError("cost_weight must be a finite number >= 0", "cost_weight")
        if int(k) < 1 or not float(kappa) > 0 or not float(tau) > 0:
            raise ValidationError("k must be >= 1, kappa and tau > 0", "k")
        self.cost_weight, self.k, self.kappa, self.tau = lam, int(k), float(kappa), float(tau)
        self.fitted: MasRouter | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kappa": self.kappa, "tau": self.tau}

    def fit(self, table: Any) -> None:
        train = self._train_table(table)
        if len(train.query_ids) == 0:
            where = f"dataset {self.dataset!r}" if self.dataset else "this dataset"
            raise EvoRouteError(f"{self.name} compares every model on each train query, and no "
                                f"train query of {where} has an outcome for every chosen "
                                f"model; pick models the dataset records together")
        if table.embeddings is None:
            raise EvoRouteError("the masrouter router needs the train split's embeddings")
        emb = np.asarray(table.embeddings)[train.query_ids.astype(np.int64)]
        self._texts = [table.instructions[int(i)] for i in train.query_ids]
        key = (self.k, self.kappa, self.tau, fingerprint(train))
        self.fitted = cached_fit("masrouter", key, table, lambda: MasRouter(
            k=self.k, kappa=self.kappa, tau=self.tau, vote_sizes=VOTE_SIZES).fit(train, emb))

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        m = self.fitted
        if m is None:
            raise EvoRouteError("the masrouter router must be trained first (fit on the train "
                                "split); the runner does this for replay runs")
        modes = m.modes_by_role.get(step.role)
        if not modes:
            return self._fallback(step, f"role {step.role!r} has no train query every model "
                                        f"answered")
        names = set(self.candidates(step))
        allowed = np.array([self._allowed(md, names) for md in modes])
        if not allowed.any():
            return self._fallback(step, "no candidate mode's models can all run this step")
        e = None if step.embedding is None else np.asarray(step.embedding, dtype=np.float64)
        ch = m.choose(e, step.role, self.cost_weight, allowed)
        chosen = arm_name(ch.mode)
        prior, cost, cref = m.prior(step.role), m.mean_cost(step.role), m.c_ref(step.role)
        near = [] if e is None else m.nearest(e, step.role, SHOWN_NEIGHBOURS)
        top = [[self._texts[i][:80], round(c, 3)] for i, c in near]
        evidence = ("no embedding for this step: the modes' train rates of the role alone"
                    if e is None else "nearest train queries: " + "; ".join(
                        f"{t!r} (cos {c:.2f})" for t, c in top))
        scope = ("" if m.collaborates.get(step.role) else
                 f" Role {step.role!r} is not multiple choice (or its responses do not parse), so "
                 f"only single-model modes are defined: the mode layer allocates a model to the "
                 f"role for this query.")
        reason = (f"masrouter: {describe_mode(ch.mode)}.{scope} Why: {ch.reason()}. "
                  f"Utility P − λ·C/C_ref "
                  f"with λ = {self.cost_weight:g}, C_ref = ${cref:.6f} (mean train cost of the "
                  f"role's most accurate single model): {ch.utility[modes.index(ch.mode)]:.3f}; "
                  f"{len(modes)} candidate modes (the role's train Pareto front); {evidence}")
        k_used = m.k_used(step.role)
        cands = [CandidateStat(arm_name(md), n=k_used,
                               p_hat=ch.p_all[i], c_hat=float(cost[i]),
                               utility=ch.utility[i] if allowed[i] else None, unexplored=False,
                               pareto=True, propensity=1.0 if md == ch.mode else 0.0,
                               n_eff=ch.n_eff, prior_weight=ch.prior_weight,
                               p_prior=float(prior[i]), top_neighbours=top or None)
                 for i, md in enumerate(modes)]
        expl = Explanation(router=self.name, phase=step.phase, mode=f"collaboration: {ch.mode.kind}",
                           chosen=chosen, reason=reason, candidates=cands, estimator="knn")
        return Decision(chosen, 1.0, expl)


class BestVoteRouter(_ModeRouter):
    """Every query to one fixed vote: the vote with the best train accuracy (cheaper on ties)."""

    name = "best-vote"
    family = "baseline"
    order = 37

    def __init__(self, models: list[ModelInfo], dataset: str | None = None) -> None:
        super().__init__(models, dataset)
        self.vote: Mode | None = None

    def fit(self, table: Any) -> None:
        train = self._train_table(table)

        def best() -> tuple[Mode, float, float, int]:
            votes = [md for md in candidate_modes(order_by_strength(train), VOTE_SIZES)
                     if md.kind == "vote"]
            if not votes:
                raise EvoRouteError(f"best-vote needs at least {min(VOTE_SIZES)} models to vote")
            outs = {md: replay(md, train) for md in votes}
            pick = max(votes, key=lambda md: (outs[md].quality, -outs[md].total_cost))
            return pick, outs[pick].quality, float(outs[pick].cost.mean()), len(votes)

        self.vote, self.train_quality, self.train_cost, self.n_votes = cached_fit(
            "best-vote", (fingerprint(train),), table, best)

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self.vote is None:
            raise EvoRouteError("the best-vote router must be trained first (fit on the train "
                                "split); the runner does this for replay runs")
        names = set(self.candidates(step))
        if not self._allowed(self.vote, names):
            return self._fallback(step, f"the vote {self.vote.name} cannot run on this step")
        chosen = self.vote.name
        reason = (f"best-vote: {describe_mode(self.vote)}. Why: the fixed vote with the best train "
                  f"accuracy ({self.train_quality:.3f}, ${self.train_cost:.6f} per query) among "
                  f"{self.n_votes} votes of {' or '.join(map(str, VOTE_SIZES))} models; the same "
                  f"for every query")
        cands = [CandidateStat(chosen, p_hat=self.train_quality, c_hat=self.train_cost,
                               unexplored=False, propensity=1.0)]
        return Decision(chosen, 1.0, Explanation(router=self.name, phase=step.phase,
                                                 mode="collaboration: vote", chosen=chosen,
                                                 reason=reason, candidates=cands))


ROUTERS = {"masrouter": MasRouterRouter, "best-vote": BestVoteRouter}
