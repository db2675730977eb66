"""The long replay format of spec §5: one row per (query, model).

Reading is all-or-nothing: every row is validated before anything is returned, and the
first bad row (in file order) raises :class:`DatasetError` naming file, line and column,
so an import never leaves half a dataset behind.

Blank cells in *optional* columns mean "unknown" (latency is then modelled, tokens are
estimated, split is assigned by :func:`seeded_split`); a non-blank cell must be valid.
A literal ``nan`` / ``inf`` is never a valid number.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from evoroute.core.types import (CONTROL_CHARS, MAX_DURATION_S, MAX_ID_CHARS, MAX_NAME_CHARS,
                                 MAX_STEP_COST_USD, MAX_TEXT_CHARS, MAX_TOKEN_COUNT)
from evoroute.errors import DatasetError, EmptyDatasetError, ValidationError

REQUIRED_COLUMNS: tuple[str, ...] = ("query_id", "query", "model", "score", "cost_usd")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "latency_s", "input_tokens", "output_tokens", "role", "task_id", "step", "tools",
    "split", "response",
)
LONG_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SPLITS: tuple[str, ...] = ("train", "test")

_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_INT_COLUMNS = ("input_tokens", "output_tokens", "step")
# Upper bounds per row (a token count of 1e30 overflowed the integer column).
_MAX = {"cost_usd": MAX_STEP_COST_USD, "latency_s": MAX_DURATION_S,
        "input_tokens": MAX_TOKEN_COUNT, "output_tokens": MAX_TOKEN_COUNT, "step": 1_000_000}
# Names (no control characters, no commas: the CLI takes comma-separated lists) and ids.
_NAME_COLUMNS = {"model": MAX_NAME_CHARS, "role": MAX_NAME_CHARS}
_ID_COLUMNS = {"query_id": MAX_ID_CHARS, "task_id": MAX_ID_CHARS}
# Per query_id these must not change from row to row (they describe the query, not the model).
_PER_QUERY_COLUMNS = ("query", "role", "task_id", "step", "split")


def dataset_name(source: str | Path) -> str:
    """Name of a dataset file without directory and format suffixes: ``a/b.csv.gz`` -> ``b``."""
    name = Path(str(source)).name
    for suffix in (".gz",) + _CSV_SUFFIXES + _JSONL_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name or str(source)


def read_long(path: str | Path) -> pd.DataFrame:
    """Read and validate a long-format CSV or JSONL file (``.gz`` allowed).

    Returns a frame with every column of :data:`LONG_COLUMNS` (missing optional ones blank),
    followed by any extra columns of the file. Raises :class:`DatasetError` on the first bad
    row and :class:`EmptyDatasetError` when the file has no rows.
    """
    path = Path(path)
    lower = path.name.lower()
    base = lower[:-3] if lower.endswith(".gz") else lower
    if not path.is_file():
        raise DatasetError("file not found", file=str(path))
    if base.endswith(_CSV_SUFFIXES):
        raw, line_of, header_line = _read_csv(path)
    elif base.endswith(_JSONL_SUFFIXES):
        raw, line_of, header_line = _read_jsonl(path)
    else:
        raise DatasetError("unsupported file type: use .csv or .jsonl (optionally .gz)",
                           file=str(path))
    return _validate(raw, file=str(path), name=dataset_name(path), line_of=line_of,
                     header_line=header_line)


def validate_long(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate an in-memory long-format frame (e.g. an upload in the studio).

    Same checks and normalisation as :func:`read_long`; line numbers are row position + 2,
    i.e. the line the row would have in a CSV with a one-line header. ``source`` names the
    data in messages and is the default role.
    """
    return _validate(df.reset_index(drop=True), file=source, name=dataset_name(source),
                     line_of=lambda i: i + 2, header_line=1)


def seeded_split(df: pd.DataFrame, seed: int | np.random.Generator,
                 test_fraction: float = 0.3) -> pd.DataFrame:
    """Assign ``split`` to rows that have none, reproducibly from ``seed``.

    The unit of assignment is the task (``task_id``, which defaults to ``query_id``), so the
    steps of one task, and the rows of one query for all models, land on the same side.
    Rows that already carry a split keep it.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValidationError(f"test_fraction must be in (0, 1), got {test_fraction}",
                              field="test_fraction")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = df.copy()
    if "split" not in out.columns:
        out["split"] = pd.Series(pd.NA, index=out.index, dtype="str")
    missing = out["split"].isna().to_numpy()
    if not missing.any():
        return out
    key = out["task_id"] if "task_id" in out.columns else out["query_id"]
    key = key.where(key.notna(), out["query_id"]).astype("str")
    units = np.sort(key[missing].unique().astype(object))
    n_test = int(round(len(units) * test_fraction))
    test_units = set(rng.permutation(units)[:n_test].tolist())
    assigned = np.where(key.isin(test_units), "test", "train")
    out["split"] = out["split"].where(~missing, pd.Series(assigned, index=out.index))
    out["split"] = out["split"].astype("str")
    return out


# --------------------------------------------------------------------------------- readers

def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _read_csv(path: Path) -> tuple[pd.DataFrame, Callable[[int], int], int]:
    import warnings

    try:
        # index_col=False: a first row with more cells than the header must not silently turn
        # the first column into the index (it shifted every column: model '0.1', score '5');
        # pandas then warns and drops cells, which is refused here
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                              compression="infer", skipinitialspace=False, index_col=False)
    except pd.errors.ParserWarning:
        line, width, cells = _ragged_line(path)
        raise DatasetError(f"malformed CSV: the row has {cells} cells, the header has {width}",
                           file=str(path), line=line) from None
    except pd.errors.EmptyDataError:
        raise EmptyDatasetError("the file is empty", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    except pd.errors.ParserError as exc:
        line = _parser_error_line(str(exc))
        raise DatasetError(f"malformed CSV: {str(exc).strip()}", file=str(path),
                           line=line) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read file: {exc}", file=str(path)) from None
    raw.columns = [str(c).strip() for c in raw.columns]

    starts: list[int] = []

    def line_of(i: int) -> int:
        # Quoted fields may span lines, so the physical line of a record is only known by
        # scanning the file; that only happens when a row is reported.
        if not starts:
            starts.extend(_csv_record_lines(path))
        return starts[i] if i < len(starts) else i + 2

    return raw, line_of, 1


def _ragged_line(path: Path) -> tuple[int | None, int, int]:
    """(line, header width, cells) of the first record whose width differs from the header's."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        width, prev = None, 0
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if not record or (len(record) == 1 and record[0] == ""):
                continue
            if width is None:
                width = len(record)
            elif len(record) != width:
                return start, width, len(record)
    return None, width or 0, 0


def _parser_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def _csv_record_lines(path: Path) -> list[int]:
    """1-based physical start line of every data record (header excluded, blank lines
    skipped as pandas does)."""
    starts: list[int] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        prev = 0
        first = True
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if not record or (len(record) == 1 and record[0] == ""):
                continue
            if first:  # header
                first = False
                continue
            starts.append(start)
    return starts


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, Callable[[int], int], int | None]:
    records: list[dict] = []
    lines: list[int] = []
    # NaN / Infinity stay strings so they fail number checks instead of passing as "blank".
    decoder = json.JSONDecoder(parse_constant=str)
    try:
        with _open_text(path) as fh:
            for lineno, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = decoder.decode(text)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"invalid JSON: {exc.msg}", file=str(path),
                                       line=lineno) from None
                if not isinstance(obj, dict):
                    raise DatasetError("each line must be a JSON object", file=str(path),
                                       line=lineno)
                records.append(obj)
                lines.append(lineno)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read file: {exc}", file=str(path)) from None
    if not records:
        raise EmptyDatasetError("the file has no rows", file=str(path))
    raw = pd.DataFrame.from_records(records).astype(object)
    raw.columns = [str(c).strip() for c in raw.columns]
    if "tools" in raw.columns:  # a JSON list of tools is as good as a ';'-string
        raw["tools"] = raw["tools"].map(
            lambda v: ";".join(map(str, v)) if isinstance(v, list) else v)
    return raw, lines.__getitem__, lines[0]


# ------------------------------------------------------------------------------ validation

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


def _validate(raw: pd.DataFrame, *, file: str, name: str, line_of: Callable[[int], int],
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
        problems.add(~blank & ~lowered.isin(SPLITS).to_numpy(), "split",
                     lambda i, t=text: f"split {_short(t.iloc[i])} is not one of "
                                       f"{', '.join(SPLITS)}")
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
                                         f"(line {line_of(int(np.argmax((ids == ids.iloc[i]).to_numpy())))})")

    problems.raise_first(file, line_of)
    return _assemble(raw, out, n)


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


__all__: Sequence[str] = (
    "LONG_COLUMNS", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "SPLITS", "dataset_name",
    "read_long", "validate_long", "seeded_split",
)
