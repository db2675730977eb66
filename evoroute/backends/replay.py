"""Replay backend: real recorded outcomes of real models on real queries (spec §4, §5).

Choosing a model for a step returns that model's recorded score and cost for the step's query.

- **Cost**: the recorded cost, unless the registered model's price is an ``override`` or
  ``notional`` price: then cost = input_tokens·p_in + output_tokens·p_out at the registered
  prices, so a user's price change is what every figure uses. Missing token counts are
  estimated at 4 characters per token (prompt for input, recorded response for output).
- **Latency**: the recorded ``latency_s`` where the data has one (labelled *measured*), else
  MODELLED = ttft_s + output_tokens / tokens_per_s from the registered latency profile, and
  labelled *modelled* everywhere.
- **Tasks**: the data's own tasks (``task_id`` + ``step``; one query per task when absent).
  ``steps_per_task`` > 1 composes that many real tasks of one split into one task, in a
  seeded order; its success is "all steps correct" (the minimum of the step scores).
- **Split**: the data's ``split`` column; a dataset without one gets a seeded split
  (:func:`evoroute.datasets.longformat.seeded_split`, 30 % test, seed = the run's seed),
  recorded in the run config.
- **Models**: only registered models are routable. Models present in the data but not
  registered are ignored; a registered model missing from the data is an error naming it.
  Queries on which some routable model has no record (e.g. RouterBench's split ARC rows) are
  dropped by default so that every router is scored on the same queries
  (``incomplete="restrict"`` keeps them and restricts each step's candidates instead).
- **Collaboration modes** (multiple-choice data with recorded responses, e.g.
  ``routerbench-choice``): a vote or an escalation is routable as one composite arm named like
  the mode (``vote:a+b+c``), replayed from the members' recorded answers, cost the calls made
  (:mod:`evoroute.collab.replay`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evoroute.backends.base import StepSpec, TableBackend, _Rows, compose_tasks, split_rng
from evoroute.core import labels
from evoroute.core.errors import BackendError, DatasetError, EmptyDatasetError, ValidationError
from evoroute.core.types import ModelInfo, StepContext, StepOutcome
from evoroute.settings import DATA_DIR, DEFAULTS

CHARS_PER_TOKEN = 4.0
RECOMPUTE_SOURCES = ("override", "notional")
INCOMPLETE_POLICIES = ("drop", "restrict")
DEFAULT_TEST_FRACTION = 0.3
PROFILES_FILE = DATA_DIR / "model_profiles.json"


@lru_cache(maxsize=4)
def _load_bundled(name: str) -> pd.DataFrame:
    from evoroute.datasets.routerbench import load_dataset
    return load_dataset(name)


def load_replay_data(dataset: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The long-format frame of a bundled dataset name, a file path, or a frame as given."""
    if isinstance(dataset, pd.DataFrame):
        return dataset
    key = str(dataset)
    if Path(key).is_file():
        from evoroute.datasets.routerbench import load_dataset
        return load_dataset(key)
    return _load_bundled(key)


def dataset_label(dataset: str | Path | pd.DataFrame) -> str:
    return "<frame>" if isinstance(dataset, pd.DataFrame) else str(dataset)


def fit_prices(df: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """(input, output) USD per 1M tokens per model, by non-negative least squares of the
    recorded cost on the token counts (0, 0 when the data has no token counts)."""
    from scipy.optimize import nnls

    out: dict[str, tuple[float, float]] = {}
    for model, g in df.groupby("model", sort=True):
        tok = g[["input_tokens", "output_tokens"]].astype("float64").to_numpy()
        ok = ~np.isnan(tok).any(axis=1)
        if ok.sum() < 2:
            out[str(model)] = (0.0, 0.0)
            continue
        x, _ = nnls(tok[ok], g["cost_usd"].to_numpy(float)[ok])
        out[str(model)] = (float(x[0]) * 1e6, float(x[1]) * 1e6)
    return out


def latency_profiles() -> dict[str, dict[str, Any]]:
    """The bundled models' litellm ids and assumed latency profiles (``data/model_profiles.json``)."""
    return json.loads(PROFILES_FILE.read_text())["profiles"]


def dataset_models(dataset: str | Path | pd.DataFrame) -> list[ModelInfo]:
    """Candidate models for replaying a dataset without a registry (e.g. ``bench`` on a
    throw-away base): every model in the data, its recorded costs (``price_source="recorded"``,
    prices fitted for display and for the cheapest baseline) and the latency profile of
    ``data/model_profiles.json`` where it has one (assumed figures, hence *modelled*)."""
    df = load_replay_data(dataset)
    prices = fit_prices(df)
    try:
        profiles = latency_profiles()
    except (OSError, ValueError, KeyError):
        profiles = {}
    out = []
    for name in sorted(prices):
        prof = profiles.get(name, {})
        out.append(ModelInfo(name=name, input_price_per_m=prices[name][0],
                             output_price_per_m=prices[name][1],
                             ttft_s=float(prof.get("ttft_s", DEFAULTS.ttft_s)),
                             tokens_per_s=float(prof.get("tokens_per_s", DEFAULTS.tokens_per_s)),
                             litellm_id=str(prof.get("litellm_id", "")),
                             price_source="recorded"))
    return out


@dataclass
class _Queries:
    """One row per query: its per-query columns and its (query, model) outcome arrays."""

    ids: np.ndarray          # (Q,) query_id
    text: list[str]
    role: list[str]
    split: np.ndarray        # (Q,) str
    task: np.ndarray         # (Q,) task_id
    step: np.ndarray         # (Q,) int
    tools: list[frozenset[str]]
    rows: _Rows


class ReplayBackend(TableBackend):
    """Replays a long-format dataset for a set of registered models."""

    label = labels.kind_of("replay")
    latency_label = labels.DEFAULT_LATENCY["replay"]

    def __init__(self, dataset: str | Path | pd.DataFrame, models: list[ModelInfo], *, seed: int = 0,
                 steps_per_task: int = 1, incomplete: str = "drop",
                 test_fraction: float = DEFAULT_TEST_FRACTION) -> None:
        super().__init__(models)
        if incomplete not in INCOMPLETE_POLICIES:
            raise ValidationError(f"incomplete must be one of {', '.join(INCOMPLETE_POLICIES)}",
                                  "incomplete")
        self.dataset = dataset_label(dataset)
        self.seed, self.steps_per_task, self.incomplete = int(seed), int(steps_per_task), incomplete
        df = load_replay_data(dataset)
        self._info: dict[str, Any] = {"dataset": self.dataset}
        self._collab: Any = None           # the collaboration replay, built on first use
        df = self._with_split(df, test_fraction)
        q = self._queries(df)
        self._build_tasks(q)

    # ------------------------------------------------------------ building
    def _with_split(self, df: pd.DataFrame, test_fraction: float) -> pd.DataFrame:
        missing = df["split"].isna() if "split" in df.columns else pd.Series(True, index=df.index)
        if not missing.any():
            self._info["split"] = "from the data's split column"
            return df
        from evoroute.datasets.longformat import seeded_split
        self._info["split"] = (f"seeded split of {'all' if missing.all() else 'unsplit'} tasks: "
                               f"{test_fraction:.0%} test, seed {self.seed}")
        return seeded_split(df, self.seed, test_fraction=test_fraction)

    def _queries(self, df: pd.DataFrame) -> _Queries:
        names = [m.name for m in self.models]
        present = set(df["model"].unique())
        missing = [n for n in names if n not in present]
        if missing:
            raise DatasetError(
                f"registered model(s) {', '.join(map(repr, missing))} have no recorded outcomes in "
                f"dataset {self.dataset!r}; disable them or pick models with --models (models in "
                f"the data: {', '.join(sorted(present))})")
        self._info["unrouted_models"] = sorted(present - set(names))
        sub = df[df["model"].isin(names)]
        qids, qpos = np.unique(sub["query_id"].to_numpy(dtype=object).astype(str), return_inverse=True)
        mpos = pd.Index(names).get_indexer(sub["model"])
        Q, M = len(qids), len(names)

        def dense(col: str, fill: float = np.nan) -> np.ndarray:
            a = np.full((Q, M), fill)
            if col in sub.columns:
                a[qpos, mpos] = sub[col].astype("float64").to_numpy()
            return a

        score, cost, lat = dense("score"), dense("cost_usd"), dense("latency_s")
        tin, tout = dense("input_tokens"), dense("output_tokens")
        if np.isnan(tin).any():
            src = sub["prompt_full"] if "prompt_full" in sub.columns else sub["query"]
            est = np.ceil(src.fillna("").astype(str).str.len().to_numpy() / CHARS_PER_TOKEN)
            e = np.full((Q, M), np.nan)
            e[qpos, mpos] = est
            tin = np.where(np.isnan(tin), e, tin)
        if np.isnan(tout).any():
            resp = sub["response"] if "response" in sub.columns else pd.Series("", index=sub.index)
            est = np.ceil(resp.fillna("").astype(str).str.len().to_numpy() / CHARS_PER_TOKEN)
            e = np.full((Q, M), np.nan)
            e[qpos, mpos] = est
            tout = np.where(np.isnan(tout), e, tout)
        tin, tout = np.nan_to_num(tin), np.nan_to_num(tout)
        p_in = np.array([m.input_price_per_m for m in self.models])
        p_out = np.array([m.output_price_per_m for m in self.models])
        recompute = np.array([m.price_source in RECOMPUTE_SOURCES for m in self.models])
        cost = np.where(recompute[None, :], (tin * p_in + tout * p_out) / 1e6, cost)
        ttft = np.array([m.ttft_s for m in self.models])
        tps = np.array([max(m.tokens_per_s, 1e-9) for m in self.models])
        measured = ~np.isnan(lat)
        lat = np.where(measured, lat, ttft[None, :] + tout / tps[None, :])
        self._info["cost"] = {m.name: ("recomputed at the registered prices" if r else "recorded")
                              for m, r in zip(self.models, recompute)}
        self._info["latency"] = "measured (recorded)" if measured.all() else (
            "modelled: ttft_s + output_tokens / tokens_per_s" if not measured.any()
            else "measured where recorded, else modelled")
        if measured.all():
            self.latency_label = "measured"

        first = sub.drop_duplicates("query_id").set_index("query_id").loc[qids]
        tools_col = first["tools"] if "tools" in first.columns else pd.Series("", index=first.index)
        tools = [frozenset(t for t in str(v).split(";") if t) if isinstance(v, str) else frozenset()
                 for v in tools_col.tolist()]
        task = first["task_id"] if "task_id" in first.columns else pd.Series(qids, index=first.index)
        task = task.where(task.notna(), pd.Series(qids, index=first.index)).astype(str).to_numpy()
        step = first["step"] if "step" in first.columns else pd.Series(0, index=first.index)
        step = pd.to_numeric(step, errors="coerce").fillna(0).astype("int64").to_numpy()
        response = None
        if "response" in sub.columns:     # what each call returned (the rescue parses answers)
            response = np.full((Q, M), None, dtype=object)
            text = sub["response"].to_numpy(dtype=object)
            response[qpos, mpos] = np.where(pd.isna(text), None, text)
        rows = _Rows(score=score, cost=cost, latency=lat, input_tokens=tin.astype(np.int64),
                     output_tokens=tout.astype(np.int64), measured=measured, response=response)
        return _Queries(ids=qids, text=first["query"].astype(str).tolist(),
                        role=first["role"].astype(str).tolist(),
                        split=first["split"].astype(str).to_numpy(), task=task, step=step,
                        tools=tools, rows=rows)

    def _build_tasks(self, q: _Queries) -> None:
        complete_q = ~np.isnan(q.rows.score).any(axis=1)
        any_q = ~np.isnan(q.rows.score).all(axis=1)
        frame = pd.DataFrame({"task": q.task, "step": q.step, "split": q.split,
                              "complete": complete_q, "any": any_q})
        frame["row"] = np.arange(len(frame))
        ok_task = frame.groupby("task")["complete" if self.incomplete == "drop" else "any"].transform("all")
        self._info["dropped_incomplete_queries"] = int((~ok_task).sum())
        frame = frame[ok_task.to_numpy()]
        self._rows = q.rows
        counts = {}
        for split in DEFAULTS.splits:
            part = frame[frame["split"] == split].sort_values(["task", "step", "row"], kind="stable")
            task_ids = part["task"].to_numpy(dtype=object)
            rws = part["row"].to_numpy()
            starts = np.flatnonzero(np.r_[True, task_ids[1:] != task_ids[:-1]]) if len(rws) else []
            bounds = np.r_[starts, len(rws)].astype(int) if len(rws) else []
            unit_keys = [str(task_ids[a]) for a in starts]
            unit_rows = [rws[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]
            units = [[StepSpec(role=q.role[r], instruction=q.text[r], query_id=str(q.ids[r]),
                               tools=q.tools[r]) for r in ur] for ur in unit_rows]
            tasks, sources = compose_tasks(units, unit_keys, split, self.steps_per_task,
                                           split_rng(self.seed, split))
            rows_of_unit = dict(zip(unit_keys, unit_rows))
            for t, src in zip(tasks, sources):
                for i, (uk, j) in enumerate(src):
                    self._row_of[(t.key, i)] = rows_of_unit[uk][j]
            self._tasks[split] = tasks
            counts[split] = len(tasks)
        if not any(counts.values()):
            raise EmptyDatasetError(f"dataset {self.dataset!r} has no query that every routable "
                                    f"model answered (use incomplete='restrict' to keep them)")
        self._info["tasks"] = counts
        self._info["steps_per_task"] = self.steps_per_task
        if self.steps_per_task > 1:
            self._info["composition"] = (f"{self.steps_per_task} real queries of one split per "
                                         f"task, seeded order; task success = all steps correct")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._info, "latency_label": self.latency_label}

    # ------------------------------------------------------------ collaboration modes
    def collaboration(self) -> Any:
        """The collaboration modes of multiple-choice data as composite arms, built on first
        use (:mod:`evoroute.collab.replay`); DatasetError naming the dataset where the data
        defines none."""
        if self._collab is None:
            from evoroute.collab.replay import choice_replay
            self._collab = choice_replay(self, self.dataset)
        return self._collab

    def _composite(self, name: str) -> Any:
        """The mode a composite arm's name (``vote:a+b+c``) stands for, or None."""
        if name in self.by_name or ":" not in name:
            return None
        try:
            return self.collaboration().mode(name)
        except DatasetError:
            return None

    def model(self, name: str) -> ModelInfo:
        mode = self._composite(name)
        return self.collaboration().arm(mode) if mode is not None else super().model(name)

    def execute(self, step: StepContext, model: ModelInfo) -> StepOutcome:
        mode = self._composite(model.name)
        if mode is None:
            return super().execute(step, model)
        r, collab = self.row(step), self.collaboration()
        if not collab.covers(r):
            raise BackendError(f"no collaboration replay of step {step.step_index} of task "
                               f"{step.task_key!r}: some model has no recorded answer to it")
        return collab.execute(r, mode)
