"""The CSV import row: a pydantic model of one validated, redacted step record.

Every importable column (the export's, without the bookkeeping the import assigns) has a rule;
a column added to :class:`~evoroute.storage.tables.StepRecord` without one is imported by its
type (an optional number, whole number or free text), so it needs no change here. A bad cell
raises :class:`~evoroute.core.errors.DatasetError` naming its line and column; the task success of
the rows of one task must agree.
"""

from __future__ import annotations

import csv
import io
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import IO, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationInfo, create_model
from pydantic import ValidationError as PydanticError

from evoroute import secrets
from evoroute.core import labels
from evoroute.core.errors import DatasetError, EmptyDatasetError, EvoRouteError
from evoroute.core.types import (
    MAX_DURATION_S,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_STEP_COST_USD,
    MAX_TEXT_CHARS,
    MAX_TOKEN_COUNT,
    validate_explanation,
    validate_name,
)
from evoroute.csvio.cells import raise_csv_limit, redact_explanation, redact_secrets, unescape_cell
from evoroute.storage.tables import EXPORT_COLUMNS, StepRecord

REQUIRED_COLUMNS = ("role", "model", "instruction", "cost_usd", "duration_s")
LATENCY_LABELS = labels.LATENCY_SOURCES
#: exported, but the import gives its own (a new run of phase ``import``)
ASSIGNED_ON_IMPORT = ("id", "run_id", "phase", "created_at")


# ----------------------------------------------------------------------------- cell parsers
def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _float(raw: str, *, lo: float | None = None, hi: float | None = None,
           required: bool = False) -> float | None:
    if raw == "":
        if required:
            raise ValueError("is empty")
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {_short(raw)}") from None
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {_short(raw)}")
    if lo is not None and v < lo:
        raise ValueError(f"must be >= {lo:g}, got {raw}")
    if hi is not None and v > hi:
        raise ValueError(f"must be <= {hi:g}, got {_short(raw)}")
    return v


def _int(raw: str, hi: float = MAX_TOKEN_COUNT) -> int | None:
    if raw == "":
        return None
    v = _float(raw, lo=0, hi=hi)
    if v is None or v != int(v):
        raise ValueError(f"must be a whole number >= 0, got {_short(raw)}")
    return int(v)


def _env(info: ValidationInfo) -> list[tuple[str, str]]:
    return (info.context or {})["env"]


def _cell(parse: Callable[[str, ValidationInfo], Any], *, verbatim: bool = False) -> Any:
    """A validator of one raw cell: no NUL, at most MAX_TEXT_CHARS, stripped unless free text,
    the export's formula quote removed, then ``parse``."""
    def check(raw: Any, info: ValidationInfo) -> Any:
        raw = "" if raw is None else str(raw)
        if "\x00" in raw:
            raise ValueError("contains a NUL character (binary data?)")
        if len(raw) > MAX_TEXT_CHARS:
            raise ValueError(f"is {len(raw):,} characters long; at most {MAX_TEXT_CHARS:,} are "
                             "allowed")
        return parse(unescape_cell(raw if verbatim else raw.strip()), info)
    return BeforeValidator(check)


def _name(field: str, **kw: Any) -> Callable[[str, ValidationInfo], str]:
    return lambda v, info: validate_name(redact_secrets(v, _env(info)), field, **kw)


def _instruction(v: str, info: ValidationInfo) -> str:
    if not v.strip():
        raise ValueError("is empty")
    return redact_secrets(v, _env(info))


def _latency_label(v: str, _info: ValidationInfo) -> str:
    lab = v or "unknown"
    if lab not in LATENCY_LABELS:
        raise ValueError(f"must be one of {', '.join(LATENCY_LABELS)}, got {_short(lab)}")
    return lab


def _tools(v: str, _info: ValidationInfo) -> str:
    tools = sorted({t.strip() for t in v.split(";") if t.strip()})
    for t in tools:
        validate_name(t, "tools", label="a tool name")
    return ";".join(tools)


def _explanation(v: str, info: ValidationInfo) -> str | None:
    return redact_explanation(validate_explanation(v), _env(info)) if v.strip() else None


def _optional_text(v: str, info: ValidationInfo) -> str | None:
    return redact_secrets(v, _env(info)) or None


def _optional_id(field: str) -> Callable[[str, ValidationInfo], str | None]:
    name = _name(field, max_chars=MAX_ID_CHARS, commas=True)
    return lambda v, info: name(v, info) if v else None


def _task_key(v: str, info: ValidationInfo) -> str:
    return (_name("task_key", max_chars=MAX_ID_CHARS, commas=True)(v, info) if v
            else f"import-line-{(info.context or {})['line']}")


def _number(**kw: Any) -> Callable[[str, ValidationInfo], float | None]:
    return lambda v, _info: _float(v, **kw)


# the rules, in the order a row is checked (the first bad cell is the one reported), as
# (type, validator, the value of an empty cell); ... marks a cell that is checked even when
# empty. An empty cell is not passed to its validator: the model's default is its value.
_RULES: dict[str, tuple[Any, Any, Any]] = {
    "role": (str, _cell(_name("role", max_chars=MAX_NAME_CHARS)), ...),
    "model": (str, _cell(_name("model", max_chars=MAX_NAME_CHARS)), ...),
    "instruction": (str, _cell(_instruction, verbatim=True), ...),
    "cost_usd": (float, _cell(_number(lo=0, hi=MAX_STEP_COST_USD, required=True)), ...),
    "duration_s": (float, _cell(_number(lo=0, hi=MAX_DURATION_S, required=True)), ...),
    "step_success": (float | None, _cell(_number(lo=0, hi=1)), None),
    "task_success": (float | None, _cell(_number(lo=0, hi=1)), None),
    "propensity": (float | None, _cell(_number(lo=0, hi=1)), None),
    "ttft_s": (float | None, _cell(_number(lo=0, hi=MAX_DURATION_S)), None),
    "input_tokens": (int | None, _cell(lambda v, _i: _int(v)), None),
    "output_tokens": (int | None, _cell(lambda v, _i: _int(v)), None),
    "step_index": (int, _cell(lambda v, _i: _int(v, hi=1_000_000) or 0), 0),
    "latency_label": (str, _cell(_latency_label), "unknown"),
    "tools": (str, _cell(_tools), ""),
    "explanation": (str | None, _cell(_explanation, verbatim=True), None),
    "error": (str | None, _cell(_optional_text, verbatim=True), None),
    "router": (str, _cell(lambda v, _i: validate_name(v, "router") if v else ""), ""),
    "query_id": (str | None, _cell(_optional_id("query_id")), None),
    "task_key": (str, _cell(_task_key), ...),
}


def _by_type(column: str) -> tuple[Any, Any, Any]:
    """The rule of a column without one in _RULES: from its type in StepRecord."""
    annotation = StepRecord.model_fields[column].annotation
    args = set(typing.get_args(annotation)) if isinstance(annotation, types.UnionType) \
        else {annotation}
    if float in args:
        return float | None, _cell(_number()), None
    if int in args:
        return int | None, _cell(lambda v, _i: _int(v)), None
    return str | None, _cell(_optional_text, verbatim=True), None


IMPORT_COLUMNS: tuple[str, ...] = tuple(
    [c for c in _RULES if c in EXPORT_COLUMNS]
    + [c for c in EXPORT_COLUMNS if c not in _RULES and c not in ASSIGNED_ON_IMPORT])
_RULE = {c: _RULES.get(c) or _by_type(c) for c in IMPORT_COLUMNS}
_CHECKED_WHEN_EMPTY = frozenset(c for c, rule in _RULE.items() if rule[2] is ...)

StepCsvRow: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "StepCsvRow", __doc__="One validated, redacted step record of a CSV import.",
    **{c: (Annotated[rule[0], rule[1]], rule[2]) for c, rule in _RULE.items()})


# ----------------------------------------------------------------------------- reading
def _header(reader: Any, name: str) -> tuple[dict[str, int], int]:
    try:
        header = next(reader)
    except StopIteration:
        raise EmptyDatasetError("the file is empty", file=name, line=1) from None
    except csv.Error as exc:
        raise DatasetError(f"not valid CSV ({exc})", file=name, line=1) from None
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = ("; this looks like a long-format replay dataset (query, model, score): replay it with "
                "`python -m evoroute run --backend replay --data <file>` or `bench --data <file>`, "
                "or give its path as the dataset of a replay run on the Runs page"
                if {"query", "model", "score"} <= set(header) else "")
        raise DatasetError(f"required column missing (required: {', '.join(REQUIRED_COLUMNS)}){hint}",
                           file=name, line=1, column=missing[0])
    dup = [h for h in header if header.count(h) > 1 and h]
    if dup:
        raise DatasetError("column appears twice", file=name, line=1, column=dup[0])
    return {h: i for i, h in enumerate(header)}, len(header)


def iter_rows(stream: IO[str], name: str = "upload",
              env: list[tuple[str, str]] | None = None) -> Iterator[Any]:
    """Validated, redacted rows (:data:`StepCsvRow`) of a CSV stream; the first problem raises
    DatasetError with its line and column. Task success must agree between the rows of one
    task."""
    for _, row in iter_sourced_rows(stream, name, env):
        yield row


def iter_sourced_rows(stream: IO[str], name: str = "upload",
                      env: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, Any]]:
    """``(source run, row)`` of :func:`iter_rows`: the source run is the file's ``run_id`` cell
    (an export names the run each row came from; "" without the column). A task is its source
    run and task key: two runs of one export may hold the same task with other outcomes."""
    raise_csv_limit()
    env = secrets.env_secrets() if env is None else env
    reader = csv.reader(stream)
    try:
        pos, width = _header(reader, name)
    except UnicodeDecodeError:
        raise DatasetError("the file is not UTF-8 text", file=name, line=1) from None
    task_success: dict[tuple[str, str], tuple[float | None, int]] = {}
    run_col = pos.get("run_id")
    line = reader.line_num + 1
    n = 0
    while True:
        start = line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"not valid CSV ({exc})", file=name, line=start) from None
        except UnicodeDecodeError:
            raise DatasetError("the file is not UTF-8 text", file=name, line=start) from None
        line = reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != width:
            raise DatasetError(f"has {len(cells)} cells, the header has {width}",
                               file=name, line=start)
        row = _row(cells, pos, start, name, env)
        source = "" if run_col is None else _source_run(cells[run_col])
        _check_task_success((source, row.task_key), row, start, name, task_success)
        n += 1
        yield source, row
    if not n:
        raise EmptyDatasetError("the file has a header but no rows", file=name, line=2)


def _row(cells: list[str], pos: dict[str, int], start: int, name: str,
         env: list[tuple[str, str]]) -> Any:
    raw = {}
    for c in IMPORT_COLUMNS:
        cell = cells[pos[c]] if c in pos else ""
        if cell or c in _CHECKED_WHEN_EMPTY:
            raw[c] = cell
    try:
        return StepCsvRow.model_validate(raw, context={"env": env, "line": start})
    except PydanticError as exc:
        first = exc.errors()[0]
        column = str(first["loc"][0])
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, EvoRouteError):    # ValidationError: its message names the field
            message = str(cause)
        else:
            message = f"{column} {cause if cause is not None else first['msg']}"
        raise DatasetError(message, file=name, line=start, column=column) from None


def _source_run(cell: str) -> str:
    """The run a row came from, as an export writes it (a run id); anything else is no run."""
    text = cell.strip()
    return text if text.isascii() and text.isdigit() and len(text) <= 12 else ""


def _check_task_success(key: tuple[str, str], row: Any, start: int, name: str,
                        seen: dict[tuple[str, str], tuple[float | None, int]]) -> None:
    prev = seen.get(key)
    if prev is not None and prev[0] is not None and row.task_success is not None \
            and prev[0] != row.task_success:
        raise DatasetError(f"task_success differs from line {prev[1]} of the same task "
                           f"({prev[0]:g} vs {row.task_success:g})", file=name, line=start,
                           column="task_success")
    if prev is None or prev[0] is None:
        seen[key] = (row.task_success, start)


def parse_rows(text: str, name: str = "upload") -> list[Any]:
    """Validate every row of a CSV text; the first problem raises DatasetError with its line
    and column (small files; the importer streams)."""
    return list(iter_rows(io.StringIO(text, newline=""), name))
