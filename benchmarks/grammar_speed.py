"""How long a grammar-held solver call takes on each local model: no grammar, the generic
solver grammar, the task's own grammar (its numbers only), and the earlier ambiguous form of
the task grammar's python rule (names next to names: one parse stack per way to split a name).

Starts the packaged llama.cpp servers on 127.0.0.1 for its own run and sends the same solver
prompt (a python-list task and a calculator task of the tiered train split) with each
grammar, greedy decoding, 64 tokens at most::

    python benchmarks/grammar_speed.py                  # both models
    python benchmarks/grammar_speed.py --models gemma3-270m

Numbers are *live* wall times of one call each on this machine (they vary with its load);
the written line is printed so a reader sees the grammars change the time, not the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from evoroute import settings as config  # noqa: E402
from evoroute.agent import workflow as W  # noqa: E402
from evoroute.backends.local.servers import LocalModelServers  # noqa: E402

BASE_PORT = 18951


def ambiguous(task: W.AgentTask) -> str:
    """The task grammar with the python rule it had before commit b6b988a."""
    lines = W.grammar("solver", task).splitlines()
    keep = [x for x in lines if not x.startswith(("py ::=", "word ::=", "ident ::=", "ops ::="))]
    lists = sorted(set(re.findall(r"\[\d+(?:, \d+)*\]", task.question)))
    items = "ident | op | num op" + (" | lst" if lists else "")
    rules = [f"py ::= ({items}){{1,80}} num? | num", "ident ::= [a-zA-Z_]{1,12}",
             "op ::= [ ,+*/%<>=!:()\\[\\]-]"]
    if lists:
        rules.append("lst ::= " + " | ".join(json.dumps(x) for x in lists))
    return "\n".join(keep + rules) + "\n"


def call(api_base: str, model: str, messages: list, grammar: str | None) -> tuple[float, str, int]:
    body = {"model": model, "messages": messages, "max_tokens": 64, "temperature": 0}
    if grammar:
        body["grammar"] = grammar
    req = urllib.request.Request(api_base.rstrip("/") + "/chat/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:     # 127.0.0.1 only
        out = json.loads(r.read())
    dt = time.perf_counter() - t0
    return dt, out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated local models (default both)")
    a = p.parse_args(argv)
    tasks = [t for t in W.load_tasks("tiered") if t.split == "train"]
    picks = [next(t for t in tasks if t.tool == "python"),
             next(t for t in tasks if t.tool == "calculator" and t.tier == "medium")]
    home = Path(config.settings().home)
    servers = LocalModelServers(state_path=home / "grammar_speed_servers.json",
                                cache_dir=config.settings().cache_dir)
    print(f"load {os.getloadavg()[0]:.2f}")
    print(f"{'model':14s} {'task':9s} {'grammar':10s} {'wall s':>7s} {'tokens':>6s}  line")
    with servers.serving(a.models.split(",") if a.models else None, BASE_PORT) as infos:
        for info in infos:
            for t in picks:
                st = W.TaskState(task=t, demos=W.select_demos(t, tasks, 2))
                msgs = W.build_messages("solver", st)
                for label, g in (("none", None), ("generic", W.GRAMMARS["solver"]),
                                 ("task", W.grammar("solver", t)), ("ambiguous", ambiguous(t))):
                    dt, text, n = call(info.api_base, info.model, msgs, g)
                    line = text.strip().splitlines()[0][:60] if text.strip() else ""
                    print(f"{info.name:14s} {t.id:9s} {label:10s} {dt:7.1f} {n:6d}  {line}",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
