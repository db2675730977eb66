"""How well each local model does the agent's tasks, per tier, under prompt settings: the probe
behind the live agent's defaults (``few_shot``, ``grammar``). Train split by default: settings
are chosen there, never on test.

Starts the local llama.cpp servers (packaged GGUF weights, 127.0.0.1) for its own run, runs
every step of each task on one model (no routing), and prints task and step success::

    python benchmarks/live_prompts.py --tier easy --few-shot 1,2,3 --models smollm2-135m
    python benchmarks/live_prompts.py --tier medium --few-shot 1,2
    python benchmarks/live_prompts.py --tier easy --few-shot 2 --no-grammar

Live calls on CPU: minutes per setting; the numbers are *live* (measured now) and vary with
the machine's load only in their latency, not their success (greedy decoding).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from evoroute import settings as config  # noqa: E402
from evoroute.backends.live.backend import LiveBackend  # noqa: E402
from evoroute.backends.local.servers import LocalModelServers  # noqa: E402
from evoroute.core.types import ModelInfo, StepContext  # noqa: E402

BASE_PORT = 18931


def probe(backend: LiveBackend, model: ModelInfo, split: str, tier: str | None,
          n: int | None) -> dict[str, float]:
    tasks = [t for t in backend.tasks(split)
             if tier in (None, "all") or backend._by_id[t.key.split(":", 1)[1]].tier == tier]
    tasks = tasks[:n] if n else tasks
    solved, steps, t0 = 0.0, {}, time.perf_counter()
    for spec in tasks:
        for i, s in enumerate(spec.steps):
            step = StepContext(task_key=spec.key, step_index=i, role=s.role,
                               instruction=s.instruction)
            o = backend.execute(step, model)
            steps.setdefault(s.role, []).append(o.step_success)
        solved += backend.check_task(spec, [])
    out = {"tasks": len(tasks), "solved": solved, "wall_s": time.perf_counter() - t0}
    out.update({r: sum(v) / len(v) for r, v in steps.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="tiered")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--tier", default="all", help="easy, medium, hard or all")
    p.add_argument("--few-shot", default="2", help="comma-separated settings to compare")
    p.add_argument("--no-grammar", action="store_true")
    p.add_argument("--models", default=None, help="comma-separated local models (default both)")
    p.add_argument("--n", type=int, default=None, help="at most this many tasks")
    a = p.parse_args(argv)
    home = Path(config.settings().home)
    servers = LocalModelServers(state_path=home / "probe_servers.json",
                                cache_dir=config.settings().cache_dir)
    names = a.models.split(",") if a.models else None
    print(f"{a.data} {a.split} tier={a.tier} grammar={'off' if a.no_grammar else 'on'} "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'model':14s} {'few_shot':>8s} {'solved':>9s} {'planner':>8s} {'solver':>7s} "
          f"{'verifier':>8s} {'answerer':>8s} {'wall s':>7s}")
    with servers.serving(names, BASE_PORT) as infos:
        for info in infos:
            m = ModelInfo(info.name, 0.0, 0.0, litellm_id=info.model, api_base=info.api_base)
            for k in (int(x) for x in a.few_shot.split(",")):
                b = LiveBackend(a.data, [m], check_models=False, few_shot=k,
                                grammar=not a.no_grammar, timeout_s=120.0)
                r = probe(b, m, a.split, a.tier, a.n)
                print(f"{m.name:14s} {k:8d} {int(r['solved']):4d} / {r['tasks']:<2d} "
                      f"{r.get('planner', 0):8.2f} {r.get('solver', 0):7.2f} "
                      f"{r.get('verifier', 0):8.2f} {r.get('answerer', 0):8.2f} "
                      f"{r['wall_s']:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
