"""The bundled RouterBench 0-shot subset (ARC-Challenge, MBPP, Winogrande; 11 models),
turned from its wide upstream CSVs into the long replay format.

Decisions (see data/PROVENANCE.md and data/routerbench/README.md for the data itself):

- ``query_id`` is ``rb-<Unnamed: 0>``, the only unique column upstream.
- ``query`` is the target question only: ARC and Winogrande prompts open with the same five
  solved examples, which would make every query of a task look alike to the retriever. The
  whole decoded prompt stays in ``prompt_full``; token counts use it, since the model read it.
- A NaN correctness cell means the model was not scored on that row (28 ARC rows, see the
  README's "split rows"); the (query, model) pair is left out rather than scored 0.
- Token counts are tiktoken cl100k counts via ``litellm.token_counter(model="gpt-3.5-turbo")``
  of the full prompt (input) and of the recorded response (output). They are precomputed in
  ``data/routerbench/token_counts.csv.gz`` (``scripts/build_embeddings.py``), so loading never
  imports litellm unless the source files changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from evoroute.core.errors import DatasetError
from evoroute.datasets.long_schema import LONG_COLUMNS
from evoroute.datasets.longformat import read_long, validate_long
from evoroute.settings import DATA_DIR, DEFAULTS, offline_env, settings

log = logging.getLogger(__name__)

ROUTERBENCH_DIR = DATA_DIR / "routerbench"
TOKEN_COUNTS_FILE = ROUTERBENCH_DIR / "token_counts.csv.gz"
TOKEN_COUNTS_META = ROUTERBENCH_DIR / "token_counts.json"
TOKEN_COUNTER_MODEL = "gpt-3.5-turbo"

# task (= role) -> file stem upstream ("winograde" is the upstream spelling).
TASK_FILES: dict[str, str] = {
    "arc_challenge": "arc_challenge",
    "mbpp": "mbpp",
    "winogrande": "winograde",
}
TASKS: tuple[str, ...] = tuple(TASK_FILES)
MODELS: tuple[str, ...] = (
    "WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2",
    "gpt-3.5-turbo-1106", "gpt-4-1106-preview", "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat", "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)
BUNDLED_DATASETS: dict[str, tuple[str, ...]] = {
    "routerbench": TASKS,
    "routerbench-arc": ("arc_challenge",),
    "routerbench-mbpp": ("mbpp",),
    "routerbench-winogrande": ("winogrande",),
    "routerbench-choice": ("arc_challenge", "winogrande"),   # the multiple-choice tasks
}
# Tasks whose prompts carry a few-shot prefix of this many solved examples.
FEW_SHOT_EXAMPLES: dict[str, int] = {"arc_challenge": 5, "winogrande": 5, "mbpp": 0}
# Bump when the produced frame changes, so disk-memoised frames are rebuilt.
_LOADER_VERSION = "1"
_SOLVED_ANSWER = re.compile(r"Answer:[ \t]*\n[ \t]*[A-E][ \t]*\n\n")


def routerbench_models() -> list[str]:
    """The 11 models scored in the bundled RouterBench subset."""
    return list(MODELS)


def source_files(task: str) -> list[Path]:
    """The two upstream CSVs (train, test) of a task."""
    stem = TASK_FILES[task]
    return [ROUTERBENCH_DIR / f"{stem}_{split}.csv.gz" for split in DEFAULTS.splits]


def target_question(prompt: str, task: str) -> str:
    """The question a prompt asks, without its few-shot prefix of solved examples."""
    shots = FEW_SHOT_EXAMPLES[task]
    if shots == 0:
        return prompt
    solved = list(_SOLVED_ANSWER.finditer(prompt))
    if len(solved) != shots or "Answer:" not in prompt[solved[-1].end():]:
        raise DatasetError(f"expected {shots} solved examples before the question, "
                           f"found {len(solved)}", file=f"routerbench/{task}")
    return prompt[solved[-1].end():]


def decode_cell(cell: str) -> list[str]:
    """Upstream stores prompts and responses as Python list literals (``"['A']"``)."""
    value = ast.literal_eval(cell)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"expected a list of strings, got {cell[:40]!r}")
    return value


def load_routerbench(tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """The bundled RouterBench subset in the long replay format (both splits).

    Columns: :data:`~evoroute.datasets.long_schema.LONG_COLUMNS` plus ``prompt_full`` and
    ``sample_id``. ``role`` is the benchmark, ``split`` comes from the file name.
    """
    chosen = TASKS if tasks is None else tuple(tasks)
    if not chosen:
        raise DatasetError("no RouterBench task chosen; available: " + ", ".join(TASKS))
    unknown = [t for t in chosen if t not in TASK_FILES]
    if unknown:
        raise DatasetError(f"unknown RouterBench task(s) {', '.join(map(repr, unknown))}; "
                           f"available: {', '.join(TASKS)}")
    frames = [_task_frame(t) for t in dict.fromkeys(chosen)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()


def load_dataset(name_or_path: str | Path) -> pd.DataFrame:
    """A bundled dataset by name (see :data:`BUNDLED_DATASETS`, and ``agent_steps``:
    :mod:`evoroute.datasets.agent_steps`) or a long-format file."""
    from evoroute.datasets.agent_steps import AGENT_STEPS_NAME, load_agent_steps

    key = str(name_or_path)
    if key in BUNDLED_DATASETS:
        return load_routerbench(BUNDLED_DATASETS[key])
    if key == AGENT_STEPS_NAME:
        return load_agent_steps()
    path = Path(key)
    if path.is_file():
        return read_long(path)
    raise DatasetError(f"unknown dataset {key!r}: not a bundled dataset "
                       f"({', '.join([*BUNDLED_DATASETS, AGENT_STEPS_NAME])}) and no such file")


# ------------------------------------------------------------------------------- building

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_wide(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise DatasetError(f"cannot read bundled file: {exc}", file=str(path)) from None


@functools.lru_cache(maxsize=None)
def _task_frame(task: str) -> pd.DataFrame:
    """Long frame of one task, memoised in-process and on disk (keyed by content hashes)."""
    sources = source_files(task)
    key = hashlib.sha256(json.dumps({
        "version": _LOADER_VERSION, "task": task,
        "sources": [_sha256(p) for p in sources],
        "tokens": _sha256(TOKEN_COUNTS_FILE) if TOKEN_COUNTS_FILE.is_file() else None,
        "pandas": pd.__version__,
    }).encode()).hexdigest()[:16]
    memo = settings().cache_dir / f"routerbench_{task}_{key}.parquet"
    if memo.is_file():
        try:
            return pd.read_parquet(memo)
        except Exception:  # a corrupt memo is rebuilt, never trusted
            pass
    frame = _build_task_frame(task)
    _atomic_write(memo, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def _atomic_write(path: Path, write) -> None:
    """Write via a temp file + os.replace so concurrent readers never see half a file.
    The memo is an optimisation: an unwritable cache directory is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, ImportError, ValueError) as exc:  # e.g. read-only dir, no pyarrow
        log.info("not memoising %s: %s", path, exc)


def _wide_rows(task: str) -> list[tuple[str, pd.DataFrame]]:
    return [(split, _read_wide(path)) for split, path in zip(DEFAULTS.splits, source_files(task))]


def _build_task_frame(task: str) -> pd.DataFrame:
    tokens = _token_counts()
    parts = []
    for split, wide in _wide_rows(task):
        prompts = wide["prompt"].map(decode_cell)
        prompt_full = prompts.map("\n\n".join)
        query = prompts.map(lambda p: target_question(p[0], task))
        ids = "rb-" + wide["Unnamed: 0"].astype("int64").astype("str")
        for model in MODELS:
            scored = wide[model].notna().to_numpy()
            response = wide.loc[scored, f"{model}|model_response"].map(
                lambda c: "\n\n".join(decode_cell(c)))
            qid = ids[scored]
            parts.append(pd.DataFrame({
                "query_id": qid.to_numpy(),
                "query": query[scored].to_numpy(),
                "model": model,
                "score": wide.loc[scored, model].astype("float64").to_numpy(),
                "cost_usd": wide.loc[scored, f"{model}|total_cost"].astype("float64").to_numpy(),
                "input_tokens": tokens.loc[qid, "input_tokens"].to_numpy(),
                "output_tokens": tokens.loc[qid, f"output_tokens|{model}"].to_numpy(),
                "role": task,
                "task_id": qid.to_numpy(),
                "step": 0,
                "split": split,
                "response": response.to_numpy(),
                "prompt_full": prompt_full[scored].to_numpy(),
                "sample_id": wide.loc[scored, "sample_id"].to_numpy(),
                "_row": np.flatnonzero(scored),
            }))
    long = pd.concat(parts, ignore_index=True)
    # File order: split, then upstream row, then model (in MODELS order).
    long["_model"] = long["model"].map({m: i for i, m in enumerate(MODELS)})
    long["_split"] = long["split"].map({s: i for i, s in enumerate(DEFAULTS.splits)})
    long = long.sort_values(["_split", "_row", "_model"], kind="stable")
    long = long.drop(columns=["_row", "_model", "_split"]).reset_index(drop=True)
    frame = validate_long(long, source=f"routerbench-{task}")
    return frame[list(LONG_COLUMNS) + ["prompt_full", "sample_id"]]


# --------------------------------------------------------------------------- token counts

def count_tokens(texts: Sequence[str]) -> np.ndarray:
    """cl100k token counts as litellm computes them for gpt-3.5-turbo (offline: litellm ships
    the encoding). Unique texts are counted once."""
    offline_env()
    import litellm  # heavy: imported only when counts must be (re)computed

    unique = list(dict.fromkeys(texts))
    counts = {t: litellm.token_counter(model=TOKEN_COUNTER_MODEL, text=t) for t in unique}
    return np.array([counts[t] for t in texts], dtype="int64")


def compute_token_counts() -> pd.DataFrame:
    """Token counts of every bundled row: ``query_id``, ``input_tokens`` (full prompt) and
    ``output_tokens|<model>`` (that model's recorded response), for all 11 models."""
    rows = []
    for task in TASKS:
        for _, wide in _wide_rows(task):
            prompts = wide["prompt"].map(decode_cell).map("\n\n".join)
            table = {"query_id": ("rb-" + wide["Unnamed: 0"].astype("int64").astype("str"))
                     .to_numpy(), "input_tokens": count_tokens(prompts.tolist())}
            for model in MODELS:
                responses = wide[f"{model}|model_response"].map(
                    lambda c: "\n\n".join(decode_cell(c)))
                table[f"output_tokens|{model}"] = count_tokens(responses.tolist())
            rows.append(pd.DataFrame(table))
    return pd.concat(rows, ignore_index=True)


def _sources_digest() -> dict[str, str]:
    return {p.name: _sha256(p) for task in TASKS for p in source_files(task)}


def build_token_counts(path: Path = TOKEN_COUNTS_FILE, meta: Path = TOKEN_COUNTS_META) -> Path:
    """(Re)write the token-count sidecar and its JSON record of what it was computed from."""
    import importlib.metadata as md

    table = compute_token_counts()
    table.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    meta.write_text(json.dumps({
        "counter": f"litellm.token_counter(model={TOKEN_COUNTER_MODEL!r}, text=...)",
        "encoding": "cl100k_base (tiktoken, shipped inside litellm)",
        "litellm": md.version("litellm"),
        "input_tokens": "decoded prompt, all list elements joined with a blank line",
        "output_tokens": "decoded model response",
        "rows": len(table),
        "sources_sha256": _sources_digest(),
    }, indent=2) + "\n")
    return path


@functools.lru_cache(maxsize=1)
def _token_counts() -> pd.DataFrame:
    """Token counts indexed by query_id: the shipped sidecar when it was computed from the
    files present, else computed now and memoised under the cache folder."""
    digest = _sources_digest()
    try:
        recorded = json.loads(TOKEN_COUNTS_META.read_text())["sources_sha256"]
    except (OSError, ValueError, KeyError):
        recorded = None
    if recorded == digest and TOKEN_COUNTS_FILE.is_file():
        table = pd.read_csv(TOKEN_COUNTS_FILE, dtype={"query_id": "str"})
    else:
        key = hashlib.sha256(json.dumps(digest, sort_keys=True).encode()).hexdigest()[:16]
        memo = settings().cache_dir / f"routerbench_tokens_{key}.csv.gz"
        if memo.is_file():
            table = pd.read_csv(memo, dtype={"query_id": "str"})
        else:
            table = compute_token_counts()
            _atomic_write(memo, lambda tmp: table.to_csv(tmp, index=False, compression="gzip"))
    return table.set_index("query_id")


__all__ = [
    "BUNDLED_DATASETS", "MODELS", "TASKS", "load_routerbench", "load_dataset",
    "routerbench_models", "target_question", "count_tokens", "build_token_counts",
]
