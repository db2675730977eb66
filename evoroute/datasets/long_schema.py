"""The long replay format's columns (spec §5) and the checks a frame must pass.

:func:`validate_frame` checks every row before anything is returned; the first bad row (in
file order) raises :class:`DatasetError` naming file, line and column. Blank cells in
*optional* columns mean "unknown" (latency is then modelled, tokens are estimated, split is
assigned by :func:`evoroute.datasets.longformat.seeded_split`); a non-blank cell must be
valid. A literal ``nan`` / ``inf`` is never a valid number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from evoroute.core.errors import DatasetError, EmptyDatasetError
from evoroute.core.types import (
    CONTROL_CHARS,
    MAX_DURATION_S,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_STEP_COST_USD,
    MAX_TEXT_CHARS,
    MAX_TOKEN_COUNT,
)
from evoroute.settings import DEFAULTS

REQUIRED_COLUMNS: tuple[str, ...] = ("query_id", "query", "model", "score", "cost_usd")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "latency_s", "input_tokens", "output_tokens", "role", "task_id", "step", "tools",
    "split", "response",
)
LONG_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_INT_COLUMNS = ("input_tokens", "output_tokens", "step")
# Upper bounds per row (a token count of 1e30 overflowed the integer column).
_MAX = {"cost_usd": MAX_STEP_COST_USD, "latency_s": MAX_DURATION_S,
        "input_tokens": MAX_TOKEN_COUNT, "output_tokens": MAX_TOKEN_COUNT, "step": 1_000_000}
# Names (no control characters, no commas: the CLI takes comma-separated lists) and ids.
_NAME_COLUMNS = {"model": MAX_NAME_CHARS, "role": MAX_NAME_CHARS}
_ID_COLUMNS = {"query_id": MAX_ID_CHARS, "task_id": MAX_ID_CHARS}
# Per query_id these must not change from row to row (they describe the query, not the model).
_PER_QUERY_COLUMNS = ("query", "role", "task_id", "step", "split")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_text(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Column as stripped strings plus a mask of blank cells (None, NaN, '', spaces)."""
    na = col.isna().to_numpy()
    text = col.where(~na, "").astype("str").str.strip()
    return text, na | text.eq("").to_numpy()


def _as_number(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, blank mask, unparsable mask). NaN/inf spelled out are parsed
    (and then fail the finiteness check) rather than taken as blank."""
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.astype("float64").to_numpy()
        blank = np.isnan(values)
        return values, blank, np.zeros(len(col), dtype=bool)
    text, blank = _as_text(col)
    values = pd.to_numeric(text.where(~blank, "0"), errors="coerce").astype("float64")
    values = values.to_numpy(copy=True)
    lowered = text.str.lower()
    spelled_nan = lowered.isin(("nan", "+nan", "-nan")).to_numpy()
    bad = ~blank & np.isnan(values) & ~spelled_nan
    values[blank] = np.nan
    return values, blank, bad


class _Problems:
    """Collects (mask, column, message) checks and reports the first bad row of the file."""

    def __init__(self) -> None:
        self.first: tuple[int, int, str | None, Callable[[int], str]] | None = None
        self._order = 0

    def add(self, mask: np.ndarray, column: str | None, message: Callable[[int], str]) -> None:
        self._order += 1
        if not mask.any():
            return
        row = int(np.argmax(mask))
        if self.first is None or (row, self._order) < self.first[:2]:
            self.first = (row, self._order, column, message)

    def raise_first(self, file: str, line_of: Callable[[int], int]) -> None:
        if self.first is None:
            return
        row, _, column, message = self.first
        raise DatasetError(message(row), file=file, line=line_of(row), column=column)


def validate_frame(raw: pd.DataFrame, *, file: str, name: str, line_of: Callable[[int], int],
              header_line: int | None) -> pd.DataFrame:
    if len(raw) == 0:
        raise EmptyDatasetError("the dataset has no rows", file=file)
    raw = raw.rename(columns=lambda c: str(c).strip())
    for column in REQUIRED_COLUMNS:
        if column not in raw.columns:
            raise DatasetError(f"missing required column {column!r}", file=file,
                               line=header_line, column=column)
    n = len(raw)
    problems = _Problems()
    out: dict[str, pd.Series | np.ndarray] = {}

    for column in ("query_id", "query", "model"):
        text, blank = _as_text(raw[column])
        problems.add(blank, column, lambda i, c=column: f"empty {c}")
        # The instruction text is kept exactly as given; ids and names are stripped.
        out[column] = raw[column].astype("str") if column == "query" else text

    for column in ("score", "cost_usd", "latency_s", "input_tokens", "output_tokens", "step"):
        if column not in raw.columns:
            continue
        values, blank, bad = _as_number(raw[column])
        original = raw[column]
        if column in REQUIRED_COLUMNS:
            problems.add(blank, column, lambda i, c=column: f"missing {c}")
        problems.add(bad, column,
                     lambda i, c=column, o=original: f"{c} {_short(o.iloc[i])} is not a number")
        present = ~blank & ~bad
        with np.errstate(invalid="ignore"):
            if column == "score":
                problems.add(present & np.isnan(values), column,
                             lambda i, o=original: f"score {_short(o.iloc[i])} is not a number")
                problems.add(present & ~np.isnan(values) & ((values < 0) | (values > 1)), column,
                             lambda i, v=values: f"score {v[i]:g} is outside [0, 1]")
            else:
                problems.add(present & ~np.isfinite(values), column,
                             lambda i, c=column, o=original:
                             f"{c} {_short(o.iloc[i])} is not a finite number")
                problems.add(present & np.isfinite(values) & (values < 0), column,
                             lambda i, c=column, v=values: f"{c} {v[i]:g} is negative")
                problems.add(present & np.isfinite(values) & (values > _MAX[column]), column,
                             lambda i, c=column, v=values:
                             f"{c} {v[i]:g} is above the bound of {_MAX[c]:g}")
                if column in _INT_COLUMNS:
                    problems.add(present & np.isfinite(values) & (values != np.round(values)),
                                 column, lambda i, c=column, v=values:
                                 f"{c} {v[i]:g} is not a whole number")
        out[column] = values

    for column in ("query_id", "query", "model", "role", "task_id", "split", "response"):
        if column in raw.columns and raw[column].dtype == object:   # JSONL: a list or object
            nested = raw[column].map(lambda v: isinstance(v, (dict, list))).to_numpy(dtype=bool)
            problems.add(nested, column, lambda i, c=column: f"{c} must be text or a number, "
                                                             "not a JSON list or object")
    for column, limit in {**_NAME_COLUMNS, **_ID_COLUMNS}.items():
        if column not in raw.columns:
            continue
        text, blank = _as_text(raw[column])
        problems.add(~blank & (text.str.len() > limit).to_numpy(), column,
                     lambda i, c=column, t=text, m=limit:
                     f"{c} is {len(t.iloc[i])} characters long; at most {m} are allowed")
        problems.add(~blank & text.str.contains(CONTROL_CHARS, regex=True).to_numpy(), column,
                     lambda i, c=column, t=text: f"{c} {_short(t.iloc[i])} contains a control "
                                                 "character")
        if column in _NAME_COLUMNS:
            problems.add(~blank & text.str.contains(",", regex=False).to_numpy(), column,
                         lambda i, c=column, t=text: f"{c} {_short(t.iloc[i])} contains a comma "
                                                     "(lists of names are comma-separated)")
    for column in ("query", "response", "tools"):
        if column in raw.columns:
            lengths = raw[column].map(lambda v: len(v) if isinstance(v, str) else 0)
            problems.add((lengths > MAX_TEXT_CHARS).to_numpy(), column,
                         lambda i, c=column, ln=lengths: f"{c} is {ln.iloc[i]:,} characters long;"
                                                        f" at most {MAX_TEXT_CHARS:,} are allowed")

    if "split" in raw.columns:
        text, blank = _as_text(raw["split"])
        lowered = text.str.lower()
        problems.add(~blank & ~lowered.isin(DEFAULTS.splits).to_numpy(), "split",
                     lambda i, t=text: f"split {_short(t.iloc[i])} is not one of "
                                       f"{', '.join(DEFAULTS.splits)}")
        out["split"] = lowered.where(~blank, pd.NA).astype("str")

    ids = pd.Series(out["query_id"], index=raw.index)
    models = pd.Series(out["model"], index=raw.index)
    pairs = pd.DataFrame({"q": ids, "m": models})
    dup = pairs.duplicated(keep="first").to_numpy()

    def dup_message(i: int) -> str:
        same = (pairs["q"] == ids.iloc[i]) & (pairs["m"] == models.iloc[i])
        first = int(np.argmax(same.to_numpy()))
        return (f"duplicate row for query_id {_short(ids.iloc[i])} and model "
                f"{_short(models.iloc[i])} (first at line {line_of(first)})")

    problems.add(dup, "model", dup_message)

    # Defaults that depend on other columns.
    role_text, role_blank = (_as_text(raw["role"]) if "role" in raw.columns
                             else (pd.Series("", index=raw.index), np.ones(n, dtype=bool)))
    out["role"] = role_text.where(~role_blank, name)
    task_text, task_blank = (_as_text(raw["task_id"]) if "task_id" in raw.columns
                             else (pd.Series("", index=raw.index), np.ones(n, dtype=bool)))
    out["task_id"] = task_text.where(~task_blank, ids)
    if "step" in out:
        step = np.asarray(out["step"], dtype="float64")
    else:
        step = np.full(n, np.nan)
    if np.isnan(step).any():
        # Unnumbered steps are numbered by first appearance of their query within the task.
        order = pd.Series(pd.factorize(ids)[0], index=raw.index)
        rank = order.groupby(pd.Series(out["task_id"], index=raw.index)).rank(method="dense") - 1
        step = np.where(np.isnan(step), rank.to_numpy(dtype="float64"), step)
    out["step"] = step

    for column in _PER_QUERY_COLUMNS:
        if column not in out:
            continue
        values = pd.Series(out[column], index=raw.index)
        first = values.groupby(ids, sort=False).transform("first")
        same = (values == first).fillna(False).to_numpy(dtype=bool)
        differs = ~(same | (values.isna() & first.isna()).to_numpy(dtype=bool))
        problems.add(differs, column,
                     lambda i, c=column: f"query_id {_short(ids.iloc[i])} has a different "
                                         f"{c} than on its first row "
                                         f"(line {line_of(_first_row(ids, i))})")

    problems.raise_first(file, line_of)
    return _assemble(raw, out, n)


def _first_row(ids: pd.Series, i: int) -> int:
    """Position of the first row with the query_id of row ``i``."""
    return int(np.argmax((ids == ids.iloc[i]).to_numpy()))


def _normalise_tools(col: pd.Series) -> pd.Series:
    text, blank = _as_text(col)
    if blank.all():
        return pd.Series("", index=col.index, dtype="str")

    def clean(value: str) -> str:
        seen: dict[str, None] = {}
        for tool in value.split(";"):
            tool = tool.strip()
            if tool:
                seen.setdefault(tool, None)
        return ";".join(seen)

    return text.map(clean).where(~blank, "").astype("str")


def _assemble(raw: pd.DataFrame, out: dict, n: int) -> pd.DataFrame:
    index = pd.RangeIndex(n)

    def ints(column: str) -> pd.Series:
        values = out.get(column)
        if values is None:
            return pd.Series(pd.NA, index=index, dtype="Int64")
        return pd.Series(np.asarray(values, dtype="float64"), index=index).astype("Int64")

    def floats(column: str) -> pd.Series:
        values = out.get(column)
        if values is None:
            return pd.Series(np.nan, index=index, dtype="float64")
        return pd.Series(np.asarray(values, dtype="float64"), index=index)

    def text(column: str) -> pd.Series:
        return pd.Series(np.asarray(out[column], dtype=object), index=index, dtype="str")

    if "response" in raw.columns:  # kept verbatim; only blank cells become NA
        _, blank = _as_text(raw["response"])
        response = pd.Series(raw["response"].where(~blank, pd.NA).to_numpy(dtype=object),
                             index=index, dtype="str")
    else:
        response = pd.Series(pd.NA, index=index, dtype="str")
    frame = pd.DataFrame({
        "query_id": text("query_id"),
        "query": text("query"),
        "model": text("model"),
        "score": floats("score"),
        "cost_usd": floats("cost_usd"),
        "latency_s": floats("latency_s"),
        "input_tokens": ints("input_tokens"),
        "output_tokens": ints("output_tokens"),
        "role": text("role"),
        "task_id": text("task_id"),
        "step": ints("step"),
        "tools": (_normalise_tools(raw["tools"]).reset_index(drop=True)
                  if "tools" in raw.columns else pd.Series("", index=index, dtype="str")),
        "split": (pd.Series(np.asarray(out["split"], dtype=object), index=index, dtype="str")
                  if "split" in out else pd.Series(pd.NA, index=index, dtype="str")),
        "response": response,
    })
    extras = [c for c in raw.columns if c not in LONG_COLUMNS]
    for column in extras:
        frame[column] = raw[column].reset_index(drop=True)
    return frame
