"""The bundled agent-step dataset: 121 routed steps of real agent trajectories (SWE-bench
Verified, mtRAG, QMSum, PinchBench) from UncommonRoute's calibration split, each labelled with
the cheapest model tier with which the task still passes, turned into the long replay format
(spec §5) with TwinRouterBench's tier -> model map and list prices.

The conversion (``convert``; rerun with ``python scripts/convert_agent_steps.py``) is pure and
deterministic; ``data/agent_steps/PROVENANCE.md`` states every assumption. In short:

- one row per (step, tier model): 121 x 4 = 484 rows. ``score`` = 1 if the model's tier is at
  or above the step's ``target_tier``, else 0. **Monotonicity assumption**: the label only
  says the target tier passes and the tiers below it do not; that every higher tier passes
  too is assumed, not measured.
- ``input_tokens`` = ``litellm.token_counter(model="gpt-3.5-turbo", messages=<prefix>)``:
  tiktoken cl100k, shipped inside litellm (no download), one tokenizer for all four models.
- ``output_tokens``: the data has no output of the routed call. Assumed = the median token
  count of the distinct assistant messages already in the prefixes of that scenario (the
  dataset's median for a scenario without any, i.e. QMSum), the same for every model.
- ``cost_usd`` = input_tokens x input price + output_tokens x output price (USD per 1M tokens,
  list prices of ``twinrouterbench_model_pricing.json``; no prompt caching assumed).
- ``query`` = the text of the last message of the prefix (the user or tool message the
  routed call answers), verbatim; ``role`` = the scenario, split into ``<scenario>:first`` /
  ``<scenario>:later`` for the multi-step scenarios (the first call of a trajectory reads the
  task; later calls continue it; whether a step is the *last* is hindsight and is not used);
  ``tools`` = the tools called so far in the prefix; ``task_id`` = ``<benchmark>/<instance_id>``,
  ``step`` = ``step_index``.
- ``split``: 30 % test per benchmark, by the sha256 of ``<seed>:<benchmark>:<group>`` with
  seed :data:`SPLIT_SEED`, where the group is the task (SWE-bench, PinchBench), the mtRAG
  conversation or the QMSum meeting, so a task's steps, and turns or queries that share one
  conversation or transcript, stay on one side.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evoroute.core.errors import DatasetError
from evoroute.datasets.long_schema import LONG_COLUMNS
from evoroute.datasets.longformat import read_long, validate_long
from evoroute.settings import DATA_DIR, DEFAULTS, offline_env

AGENT_STEPS_NAME = "agent_steps"
AGENT_STEPS_DIR = DATA_DIR / "agent_steps"
SOURCE_DIR = AGENT_STEPS_DIR / "source"
LONG_FILE = AGENT_STEPS_DIR / "agent_steps_long.csv.gz"
META_FILE = AGENT_STEPS_DIR / "agent_steps_long.json"

CALIBRATION_FILE = "calibration.jsonl.gz"
TIER_FILE = "twinrouterbench_tier_to_model.json"
PRICING_FILE = "twinrouterbench_model_pricing.json"
# sha256 of the upstream bytes (calibration: of the decompressed JSONL), as recorded in
# data/agent_steps/PROVENANCE.md; the converter refuses other inputs unless told otherwise.
SOURCE_SHA256: dict[str, str] = {
    CALIBRATION_FILE: "dea61ea8d8789abfe57f21f523d06e77ecc64dd4ef66eb4cc6d9fa15500b061e",
    TIER_FILE: "10c14b0c2d2a8fd096280504c7aae9acf948abf74f590bd6ea8ac6689d138c4f",
    PRICING_FILE: "1638ca92ea47ee4c70db09e078c58a71fa85bde623d76123d421b1c11749832a",
}

TIERS: tuple[str, ...] = ("low", "mid", "mid_high", "high")
MULTI_STEP_SCENARIOS: tuple[str, ...] = ("code_swe", "general_agent")
SPLIT_SEED = 42
TEST_FRACTION = 0.3
TOKEN_COUNTER_MODEL = "gpt-3.5-turbo"
EXTRA_COLUMNS: tuple[str, ...] = (
    "benchmark", "scenario", "instance_id", "total_steps", "target_tier", "model_tier",
    "pipeline_stage", "n_messages", "split_group",
)


# ------------------------------------------------------------------------------ loading

def load_agent_steps() -> pd.DataFrame:
    """The bundled agent-step dataset in the long replay format (both splits), validated by
    :func:`~evoroute.datasets.longformat.read_long`."""
    return _load(LONG_FILE).copy()


@functools.lru_cache(maxsize=2)
def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError("bundled agent-step file missing; rebuild it with "
                           "python scripts/convert_agent_steps.py", file=str(path))
    return read_long(path)


# ------------------------------------------------------------------------------ reading

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sources(source_dir: Path = SOURCE_DIR, *, check: bool = True
                 ) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, Any]],
                            dict[str, str]]:
    """(steps, tier -> model, model -> prices, sha256 per source file) from ``source_dir``.

    ``calibration.jsonl`` may be given plain or gzipped. With ``check`` the files must be the
    upstream bytes recorded in :data:`SOURCE_SHA256`.
    """
    source_dir = Path(source_dir)
    gz, plain = source_dir / CALIBRATION_FILE, source_dir / CALIBRATION_FILE[:-3]
    if gz.is_file():
        raw = gzip.decompress(gz.read_bytes())
    elif plain.is_file():
        raw = plain.read_bytes()
    else:
        raise DatasetError("source calibration.jsonl(.gz) not found", file=str(gz))
    blobs = {CALIBRATION_FILE: raw}
    for name in (TIER_FILE, PRICING_FILE):
        path = source_dir / name
        if not path.is_file():
            raise DatasetError("source file not found", file=str(path))
        blobs[name] = path.read_bytes()
    digests = {name: _sha256(data) for name, data in blobs.items()}
    if check:
        for name, digest in digests.items():
            if digest != SOURCE_SHA256[name]:
                raise DatasetError(f"sha256 {digest[:12]}... is not the upstream file's "
                                   f"{SOURCE_SHA256[name][:12]}...", file=str(source_dir / name))
    steps = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                steps.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"invalid JSON: {exc.msg}", file=CALIBRATION_FILE,
                                   line=lineno) from None
    tier_map = json.loads(blobs[TIER_FILE])["map"]
    pricing = json.loads(blobs[PRICING_FILE])
    if pricing.get("unit") != "per_1M_tokens" or pricing.get("currency") != "USD":
        raise DatasetError("prices must be USD per_1M_tokens", file=PRICING_FILE)
    missing = [t for t in TIERS if t not in tier_map]
    if missing:
        raise DatasetError(f"tier(s) {missing} have no model", file=TIER_FILE)
    unpriced = [tier_map[t] for t in TIERS if tier_map[t] not in pricing["pricing"]]
    if unpriced:
        raise DatasetError(f"model(s) {unpriced} have no price", file=PRICING_FILE)
    return steps, {t: tier_map[t] for t in TIERS}, pricing["pricing"], digests


# ------------------------------------------------------------------------- per step

def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, None, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content
                 if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")]
        return "\n".join(parts)
    raise DatasetError(f"unsupported message content of type {type(content).__name__}")


def step_query(messages: Sequence[Mapping[str, Any]]) -> str:
    """The instruction of a routed step: the text of the last message of its prefix."""
    return message_text(messages[-1].get("content"))


def step_tools(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the tools called in the prefix, in order of first call."""
    seen: dict[str, None] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            name = (call.get("function") or {}).get("name")
            if name:
                seen.setdefault(str(name), None)
    return list(seen)


def step_role(step: Mapping[str, Any]) -> str:
    scenario = str(step["scenario"])
    if scenario not in MULTI_STEP_SCENARIOS:
        return scenario
    return f"{scenario}:{'first' if int(step['step_index']) == 1 else 'later'}"


def split_group(step: Mapping[str, Any]) -> str:
    """The unit the split keeps together: the task, the mtRAG conversation (instance ids are
    ``<conversation>_turn_<n>``) or the QMSum meeting (``<meeting>_<query kind>_<n>``)."""
    bench, inst = str(step["benchmark"]), str(step["instance_id"])
    if bench == "mtrag":
        return inst.split("_turn_")[0]
    if bench == "qmsum":
        return inst.split("_")[0]
    return inst


def assign_splits(steps: Sequence[Mapping[str, Any]], seed: int = SPLIT_SEED,
                  test_fraction: float = TEST_FRACTION) -> list[str]:
    """``train`` / ``test`` per step: per benchmark, its groups ordered by
    sha256("<seed>:<benchmark>:<group>"); the first round-half-up(test_fraction x groups)
    are test."""
    groups: dict[str, set[str]] = {}
    for s in steps:
        groups.setdefault(str(s["benchmark"]), set()).add(split_group(s))
    test: set[tuple[str, str]] = set()
    for bench, gs in groups.items():
        ordered = sorted(gs, key=lambda g: _sha256(f"{seed}:{bench}:{g}".encode()))
        n_test = int(math.floor(test_fraction * len(ordered) + 0.5))
        test.update((bench, g) for g in ordered[:n_test])
    return ["test" if (str(s["benchmark"]), split_group(s)) in test else "train" for s in steps]


# ---------------------------------------------------------------------------- tokens

def _counters() -> tuple[Any, Any]:
    offline_env()
    import litellm  # heavy: only when converting

    def count_messages(messages: list[dict[str, Any]]) -> int:
        return int(litellm.token_counter(model=TOKEN_COUNTER_MODEL, messages=messages))

    def count_text(text: str) -> int:
        return int(litellm.token_counter(model=TOKEN_COUNTER_MODEL, text=text)) if text else 0

    return count_messages, count_text


def assistant_tokens(message: Mapping[str, Any], count_text: Any) -> int:
    """Tokens an assistant message generated: its text, its reasoning and its tool-call
    arguments (what litellm counts of a tool call)."""
    n = count_text(message_text(message.get("content")))
    reasoning = message.get("reasoning")
    if isinstance(reasoning, str):
        n += count_text(reasoning)
    for call in message.get("tool_calls") or []:
        n += count_text(str((call.get("function") or {}).get("arguments", "")))
    return n


def output_token_assumption(steps: Sequence[Mapping[str, Any]], count_text: Any
                            ) -> dict[str, Any]:
    """Assumed output tokens per scenario: the median (rounded up) of the distinct assistant
    messages in that scenario's prefixes (a message shared by several steps of one trajectory,
    or by several turns of one conversation, counts once); the dataset's median for a
    scenario with none."""
    seen: dict[tuple[str, str, int], tuple[str, int]] = {}
    for s in steps:
        for i, m in enumerate(s["messages"]):
            if m.get("role") == "assistant":
                key = (str(s["benchmark"]), split_group(s), i)
                if key not in seen:
                    seen[key] = (str(s["scenario"]), assistant_tokens(m, count_text))
    by: dict[str, list[int]] = {}
    for scenario, n in seen.values():
        by.setdefault(scenario, []).append(n)
    overall = int(math.ceil(float(np.median([n for _, n in seen.values()])))) if seen else 0
    out: dict[str, Any] = {"per_scenario": {}, "overall_median": overall,
                           "assistant_messages": {k: len(v) for k, v in sorted(by.items())}}
    for scenario in sorted({str(s["scenario"]) for s in steps}):
        counts = by.get(scenario)
        out["per_scenario"][scenario] = (int(math.ceil(float(np.median(counts)))) if counts
                                         else overall)
    out["fallback_scenarios"] = sorted(set(out["per_scenario"]) - set(by))
    return out


# --------------------------------------------------------------------------- convert

def convert(source_dir: Path = SOURCE_DIR, *, check: bool = True
            ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The long-format frame (validated) and a record of how it was made."""
    import importlib.metadata as md

    steps, tier_map, pricing, digests = read_sources(source_dir, check=check)
    count_messages, count_text = _counters()
    out_tokens = output_token_assumption(steps, count_text)
    splits = assign_splits(steps)
    rows: list[dict[str, Any]] = []
    for step, split in zip(steps, splits):
        target = str(step["target_tier"])
        if target not in TIERS or TIERS.index(target) != int(step["target_tier_id"]):
            raise DatasetError(f"target_tier {target!r} / target_tier_id "
                               f"{step['target_tier_id']!r} disagree", file=CALIBRATION_FILE,
                               column="target_tier")
        messages = step["messages"]
        query = step_query(messages)
        if not query.strip():
            raise DatasetError(f"step {step['id']!r}: the last message has no text",
                               file=CALIBRATION_FILE, column="messages")
        n_in = count_messages(messages)
        n_out = int(out_tokens["per_scenario"][str(step["scenario"])])
        for tier in TIERS:
            model = tier_map[tier]
            price = pricing[model]
            rows.append({
                "query_id": str(step["id"]),
                "query": query,
                "model": model,
                "score": 1.0 if TIERS.index(tier) >= TIERS.index(target) else 0.0,
                "cost_usd": (n_in * float(price["input_per_m"])
                             + n_out * float(price["output_per_m"])) / 1e6,
                "input_tokens": n_in,
                "output_tokens": n_out,
                "role": step_role(step),
                "task_id": f"{step['benchmark']}/{step['instance_id']}",
                "step": int(step["step_index"]),
                "tools": ";".join(step_tools(messages)),
                "split": split,
                "benchmark": str(step["benchmark"]),
                "scenario": str(step["scenario"]),
                "instance_id": str(step["instance_id"]),
                "total_steps": int(step["total_steps"]),
                "target_tier": target,
                "model_tier": tier,
                "pipeline_stage": str(step["pipeline_stage"]),
                "n_messages": len(messages),
                "split_group": split_group(step),
            })
    frame = pd.DataFrame(rows)
    validate_long(frame, source=AGENT_STEPS_NAME)   # raises on a bad row
    meta = {
        "built_by": "scripts/convert_agent_steps.py",
        "sources_sha256": digests,
        "steps": len(steps), "tiers": list(TIERS), "tier_to_model": tier_map,
        "rows": len(frame),
        "token_counter": f"litellm.token_counter(model={TOKEN_COUNTER_MODEL!r}, messages=...)",
        "encoding": "cl100k_base (tiktoken, shipped inside litellm)",
        "litellm": md.version("litellm"), "tiktoken": md.version("tiktoken"),
        "output_tokens_assumed": out_tokens,
        "split": {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                  "rule": "per benchmark, groups ordered by sha256('<seed>:<benchmark>:<group>'),"
                          " first round-half-up(fraction x groups) are test",
                  "steps": {s: int((frame.drop_duplicates("query_id")["split"] == s).sum())
                            for s in DEFAULTS.splits},
                  "tasks": {s: int(frame.loc[frame["split"] == s, "task_id"].nunique())
                            for s in DEFAULTS.splits}},
    }
    return frame[list(c for c in LONG_COLUMNS if c in frame.columns) + list(EXTRA_COLUMNS)], meta


def to_csv_gz(frame: pd.DataFrame) -> bytes:
    """The frame as gzip-compressed CSV bytes, identical for identical frames (no time or
    file name in the gzip header)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def write(frame: pd.DataFrame, meta: Mapping[str, Any], path: Path = LONG_FILE,
          meta_path: Path = META_FILE) -> Path:
    """Write the long file and its JSON record (the record carries the CSV's sha256)."""
    data = to_csv_gz(frame)
    record = {**meta, "file": Path(path).name,
              "csv_sha256": _sha256(gzip.decompress(data))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    meta_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    _load.cache_clear()
    return path


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: tier, steps, success rate (per step), total and mean cost per step."""
    g = frame.groupby("model", sort=False)
    out = pd.DataFrame({
        "tier": g["model_tier"].first(),
        "steps": g.size(),
        "success": g["score"].mean(),
        "cost_usd": g["cost_usd"].sum(),
        "cost_per_step_usd": g["cost_usd"].mean(),
    })
    return out.sort_values("cost_usd")


__all__ = [
    "AGENT_STEPS_NAME", "LONG_FILE", "META_FILE", "SOURCE_DIR", "TIERS", "SPLIT_SEED",
    "load_agent_steps", "read_sources", "convert", "write", "summary", "assign_splits",
    "step_query", "step_tools", "step_role", "split_group", "message_text",
]
