"""Reading the long replay format of spec §5 (one row per (query, model)) from CSV or JSONL.

Reading is all-or-nothing: every row is validated (:mod:`evoroute.datasets.long_schema`)
before anything is returned, so an import never leaves half a dataset behind.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from evoroute.core.errors import DatasetError, EmptyDatasetError, ValidationError
from evoroute.datasets.long_schema import validate_frame

_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


def dataset_name(source: str | Path) -> str:
    """Name of a dataset file without directory and format suffixes: ``a/b.csv.gz`` -> ``b``."""
    name = Path(str(source)).name
    for suffix in (".gz",) + _CSV_SUFFIXES + _JSONL_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name or str(source)


def read_long(path: str | Path) -> pd.DataFrame:
    """Read and validate a long-format CSV or JSONL file (``.gz`` allowed).

    Returns a frame with every column of
    :data:`~evoroute.datasets.long_schema.LONG_COLUMNS` (missing optional ones blank),
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
    return validate_frame(raw, file=str(path), name=dataset_name(path), line_of=line_of,
                     header_line=header_line)


def validate_long(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate an in-memory long-format frame (e.g. an upload in the studio).

    Same checks and normalisation as :func:`read_long`; line numbers are row position + 2,
    i.e. the line the row would have in a CSV with a one-line header. ``source`` names the
    data in messages and is the default role.
    """
    return validate_frame(df.reset_index(drop=True), file=source, name=dataset_name(source),
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
