"""Failure predictors over a run's partial trajectory: P(the run fails | the steps so far).

Both learn from the train split: one example per (train run, step t) = the prefix of steps
1..t as :mod:`.observe` sees it, labelled 1 when the run fails under the base policy (its final
success, known only in hindsight, on train). Both are seeded; same seed, same probabilities.

- :class:`LogisticPredictor`: scikit-learn's logistic regression on the standardised prefix
  features (:func:`~.observe.prefix_features`); its explanation is each feature's contribution
  ``coef * standardised value`` to the log-odds.
- :class:`GraphPredictor`: a small graph network over the partial step graph, as Atropos uses
  (nodes = steps with :func:`~.observe.node_features`, edges = consecutive steps, undirected):
  two message-passing layers ``h' = relu(W_self h + W_nb mean(neighbours' h))``, then the mean
  over the nodes concatenated with the current (last) node, and a linear read-out. Full-batch
  Adam on the binary cross-entropy. The last-node read-out is added to the mean pool because
  the current step's signal is the one a swap reacts to; a mean alone dilutes it with the run's
  length.

A training set with one label only (every run fails, or none does) gives a constant predictor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from evoroute.rescue.observe import (
    Observed,
    node_features,
    node_names,
    prefix_features,
    prefix_names,
    prefixes,
)


class FailurePredictor(Protocol):
    """P(the run fails | its steps so far), fitted on train runs; ``features`` explains one row."""

    name: str

    def fit(self, obs: Observed, fails: np.ndarray) -> FailurePredictor: ...

    def predict(self, obs: Observed) -> np.ndarray: ...

    def features(self, obs: Observed, row: int) -> dict[str, dict[str, float]]: ...


def _vocab(obs: Observed) -> tuple[str, ...]:
    return tuple(sorted(set(obs.roles.tolist())))


def _has_verdicts(obs: Observed) -> bool:
    return bool((obs.verdicts() != 0).any())


def _single_class(fails: np.ndarray) -> float | None:
    """The one label of a training set that has only one (a constant predictor), else None."""
    y = np.asarray(fails, dtype=float)
    return float(y[0]) if y.size and (y == y[0]).all() else None


@dataclass
class LogisticPredictor:
    C: float = 1.0
    seed: int = 0
    name: str = "logistic"
    roles: tuple[str, ...] = ()
    verdicts: bool = False          # the train split has verifier verdicts: their features used
    _model: object = field(default=None, repr=False)
    _const: float | None = field(default=None, repr=False)

    def fit(self, obs: Observed, fails: np.ndarray) -> LogisticPredictor:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.roles, self.verdicts = _vocab(obs), _has_verdicts(obs)
        self._const = _single_class(fails)
        if self._const is not None:
            return self
        self._model = make_pipeline(StandardScaler(), LogisticRegression(
            C=self.C, max_iter=2000, random_state=self.seed))
        self._model.fit(prefix_features(obs, self.roles, self.verdicts), np.asarray(fails, dtype=int))
        return self

    def predict(self, obs: Observed) -> np.ndarray:
        if self._const is not None:
            return np.full(len(obs), self._const)
        return self._model.predict_proba(prefix_features(obs, self.roles, self.verdicts))[:, 1]

    def features(self, obs: Observed, row: int) -> dict[str, dict[str, float]]:
        """The prefix features at ``row`` and their contributions to the log-odds of failure."""
        x = prefix_features(obs, self.roles, self.verdicts)[row]
        if self._const is not None:
            names = prefix_names(self.roles, self.verdicts)
            return {n: {"value": float(v)} for n, v in zip(names, x) if v != 0}
        scaler, lr = self._model.steps[0][1], self._model.steps[1][1]
        z = (x - scaler.mean_) / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        contrib = lr.coef_[0] * z
        names = prefix_names(self.roles, self.verdicts)
        order = np.argsort(-np.abs(contrib), kind="stable")
        return {names[i]: {"value": float(x[i]), "log_odds": float(contrib[i])}
                for i in order if x[i] != 0 or contrib[i] != 0}


@dataclass
class GraphPredictor:
    hidden: int = 16
    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 1e-3
    seed: int = 0
    name: str = "graph"
    roles: tuple[str, ...] = ()
    verdicts: bool = False
    _net: object = field(default=None, repr=False)
    _mu: np.ndarray = field(default=None, repr=False)
    _sd: np.ndarray = field(default=None, repr=False)
    _const: float | None = field(default=None, repr=False)

    def _batch(self, obs: Observed):
        import torch

        x = (node_features(obs, self.roles, self.verdicts) - self._mu) / self._sd
        pre = prefixes(obs)
        width = max(len(p) for p in pre)
        X = np.zeros((len(pre), width, x.shape[1]))
        M = np.zeros((len(pre), width))
        for i, p in enumerate(pre):
            X[i, : len(p)] = x[p]
            M[i, : len(p)] = 1.0
        last = np.array([len(p) - 1 for p in pre])
        return (torch.tensor(X, dtype=torch.float32), torch.tensor(M, dtype=torch.float32),
                torch.tensor(last, dtype=torch.long))

    def fit(self, obs: Observed, fails: np.ndarray) -> GraphPredictor:
        with _one_thread():
            return self._fit(obs, fails)

    def _fit(self, obs: Observed, fails: np.ndarray) -> GraphPredictor:
        import torch

        torch.manual_seed(self.seed)
        self.roles, self.verdicts = _vocab(obs), _has_verdicts(obs)
        self._const = _single_class(fails)
        if self._const is not None:
            return self
        x = node_features(obs, self.roles, self.verdicts)
        self._mu, sd = x.mean(axis=0), x.std(axis=0)
        self._sd = np.where(sd > 0, sd, 1.0)
        X, M, last = self._batch(obs)
        y = torch.tensor(np.asarray(fails, dtype=float), dtype=torch.float32)
        self._net = _net(X.shape[2], self.hidden)
        opt = torch.optim.Adam(self._net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = loss_fn(self._net(X, M, last), y)
            loss.backward()
            opt.step()
        return self

    def predict(self, obs: Observed) -> np.ndarray:
        import torch

        if self._const is not None:
            return np.full(len(obs), self._const)
        with _one_thread(), torch.no_grad():      # the tensors' construction too (see below)
            X, M, last = self._batch(obs)
            return torch.sigmoid(self._net(X, M, last)).numpy().astype(float)

    def features(self, obs: Observed, row: int) -> dict[str, dict[str, float]]:
        """The current step's node features (the graph reads every step so far the same way)."""
        x = node_features(obs, self.roles, self.verdicts)[row]
        return {n: {"value": float(v)} for n, v in zip(node_names(self.roles, self.verdicts), x) if v != 0}


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the duration: the net is tiny (one thread is ~10x faster than
    contending for the cores) and a fixed thread count keeps the float sums, hence the
    decisions, the same on every machine. Every torch call of a predictor runs inside it: a
    parallel op outside starts an OpenMP team, and a bench worker forked after that hangs in
    its next parallel op (seen: a 2205-row ``torch.tensor`` in ``predict``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _net(d: int, hidden: int):
    import torch
    from torch import nn

    class StepGraphNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self1, self.nb1 = nn.Linear(d, hidden), nn.Linear(d, hidden, bias=False)
            self.self2, self.nb2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden, bias=False)
            self.out = nn.Linear(2 * hidden, 1)

        @staticmethod
        def neighbours(h, m):
            prev = torch.nn.functional.pad(h[:, :-1], (0, 0, 1, 0))
            nxt = torch.nn.functional.pad(h[:, 1:], (0, 0, 0, 1))
            mp = torch.nn.functional.pad(m[:, :-1], (1, 0))
            mn = torch.nn.functional.pad(m[:, 1:], (0, 1))
            cnt = (mp + mn).clamp(min=1.0)[..., None]
            return (prev * mp[..., None] + nxt * mn[..., None]) / cnt

        def forward(self, x, m, last):
            h = x
            for s, nb in ((self.self1, self.nb1), (self.self2, self.nb2)):
                h = torch.relu(s(h) + nb(self.neighbours(h, m))) * m[..., None]
            pooled = h.sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
            now = h[torch.arange(h.shape[0]), last]
            return self.out(torch.cat([pooled, now], dim=1))[:, 0]

    return StepGraphNet()


PREDICTORS: dict[str, Callable[[int], FailurePredictor]] = {
    "logistic": lambda seed: LogisticPredictor(seed=seed),
    "graph": lambda seed: GraphPredictor(seed=seed),
}


def cross_val_predict(kind: str, obs: Observed, fails: np.ndarray, folds: int = 5,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold P(fail) of every train row, folds by run (a run's prefixes stay together)."""
    n_tasks = int(obs.task.max()) + 1 if len(obs) else 0
    fold_of_task = np.random.default_rng(seed).permutation(n_tasks) % folds
    fold = fold_of_task[obs.task]
    out = np.zeros(len(obs))
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        p = PREDICTORS[kind](seed).fit(subset(obs, tr), fails[tr])
        out[te] = p.predict(subset(obs, te))
    return out


def subset(obs: Observed, keep: np.ndarray) -> Observed:
    """The rows ``keep`` (whole runs) of an observation, task indices renumbered from 0."""
    task = np.unique(obs.task[keep], return_inverse=True)[1]
    return Observed(task=task, position=obs.position[keep], roles=obs.roles[keep],
                    model=obs.model[keep], cost=obs.cost[keep], opinion_cost=obs.opinion_cost[keep],
                    has_opinion=obs.has_opinion[keep], agree=obs.agree[keep],
                    unparsed=obs.unparsed[keep], ref_cost=obs.ref_cost[keep],
                    verdict=None if obs.verdict is None else obs.verdict[keep])
