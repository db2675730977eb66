"""A live run end to end: real llama.cpp servers with the packaged GGUF weights on 127.0.0.1,
the real agent (planner -> solver with tools -> verifier -> answerer), EvoRoute routing every
step through the runner, real streamed calls through litellm, records in a real SQLite base.

Nothing is mocked. Skipped only when llama-cpp-python is not importable
(scripts/install_local_models.sh installs it); a missing model package is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import time
from pathlib import Path

import psutil
import pytest

from evoroute import registry
from evoroute import settings as config
from evoroute.agent import workflow as W
from evoroute.backends.local.catalogue import LOCAL_MODELS
from evoroute.backends.local.register import register_local_models
from evoroute.backends.local.servers import LocalModelServers
from evoroute.storage import db, repo

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed; run scripts/install_local_models.sh")

BASE_PORT = 18731      # away from the default 18431 and the local-models test's 18531
OFFLINE = "offline-model"


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_llama
def test_three_task_live_run_routed_by_evoroute_on_local_models(tmp_path: Path, engine):
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.spec import RunSpec

    servers = LocalModelServers(state_path=tmp_path / "local_models.json",
                                   cache_dir=config.settings().cache_dir)
    t0 = time.perf_counter()
    try:
        with servers.serving(None, BASE_PORT) as infos:
            pids = [i.pid for i in infos]
            with db.session(engine) as s:
                entries = register_local_models(session=s, servers=infos)
                # a third candidate whose server is down: real connection errors, real fallback
                registry.add_model(session=s, name=OFFLINE, litellm_id=f"openai/{OFFLINE}",
                                   api_base=f"http://127.0.0.1:{_closed_port()}/v1",
                                   input_price_per_m=0.0, output_price_per_m=0.0, notional=True)
            names = tuple(e.name for e in entries)
            assert set(names) == set(LOCAL_MODELS)
            # 1 cold-start task (random models) + 2 test tasks routed by EvoRoute = 3 tasks.
            # With seed 3 the cold-start draws (uniform over the 3 candidates) pick gemma for the
            # planner, the offline model for the solver and the verifier (both calls fail and
            # fall back to the next candidate, smollm2), and smollm2 for the answerer.
            spec = RunSpec(backend="live", router="evoroute", seed=3,
                           models=(OFFLINE, *names), cold_start_tasks=1, n_train=0,
                           n_tasks=2,
                           backend_params={"timeout_s": 300.0, "max_retries": 1,
                                           "backoff_s": 0.2, "check_models": False})
            run_id = create_run(spec, engine=engine)
            steps = list(execute_run(run_id, engine=engine))
    finally:
        servers.stop()
    took = time.perf_counter() - t0
    assert not any(psutil.pid_exists(p) for p in pids), "a server outlived the run"

    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
        recs = repo.query_steps(repo.StepFilter(run_ids=[run_id]), session=s, limit=1000,
                                newest_first=False)
    assert run.status == "finished", run.error
    assert run.label == "live · latency measured"
    assert len(steps) == 3 * len(W.ROLES)
    assert [st["phase"] for st in steps] == ["cold_start"] * 4 + ["inference"] * 8
    assert [st["role"] for st in steps] == list(W.ROLES) * 3

    ok = [st for st in steps if st["error"] is None]
    assert len(ok) == len(steps), [st["error"] for st in steps if st["error"]]
    for st in ok:
        assert st["model"] in names and st["latency_label"] == "measured"
        assert st["latency_s"] > 0 and 0 < st["ttft_s"] <= st["latency_s"]
        assert st["input_tokens"] > 20 and st["output_tokens"] > 0
        assert st["cost_usd"] == 0.0                         # local models: notional price 0
        assert st["score"] in (0.0, 1.0)
    finals = [st["task_success"] for st in steps if st["task_success"] is not None]
    assert len(finals) == 3 and all(v in (0.0, 1.0) for v in finals)
    # EvoRoute's own explanation for the routed steps: retrieval over the cold-start records
    routed = [st["explanation"] for st in steps if st["phase"] == "inference"]
    assert all(e["router"] == "evoroute" and e["candidates"] for e in routed)
    assert sum(e["channels"].get("role", 0) for e in routed) > 0

    # the offline model's calls failed for real (connection refused), after one retry, were
    # stored with their error, and the step went to the next candidate of the same decision
    failed = [f for st in steps for f in st["failed_calls"]]
    assert len(failed) == 2 and all(f["model"] == OFFLINE for f in failed)
    assert all("Connection" in f["error"] and "after 2 attempts" in f["error"] for f in failed)
    assert all(st["model"] != OFFLINE for st in steps)
    bad = [r for r in recs if r.error]
    assert [r.model for r in bad] == [OFFLINE, OFFLINE]
    assert [(r.role, r.phase) for r in bad] == [("solver", "cold_start"), ("verifier", "cold_start")]
    assert [st["model"] for st in steps[:4]] == ["gemma3-270m", "smollm2-135m", "smollm2-135m",
                                                 "smollm2-135m"]

    # every call is a stored experience record with measured latency and its task's success
    assert len(recs) == len(steps) + len(failed)
    for r in recs:
        assert r.latency_label == "measured" and r.duration_s > 0
        assert r.task_success in (0.0, 1.0)
        assert r.explanation and json.loads(r.explanation)["router"] == "evoroute"
        if r.error is None:
            assert 0 < r.ttft_s <= r.duration_s and r.input_tokens > 0 and r.output_tokens > 0
    cfg = json.loads(run.config_json)["resolved"]["backend"]
    assert cfg["label"] == "live" and set(cfg["model_endpoints"]) == {OFFLINE, *names}
    assert all(v["api_base"].startswith("http://127.0.0.1:") for v in cfg["model_endpoints"].values())
    print(f"\nlive run: {len(steps)} steps in {took:.1f} s (servers up, run, servers down); "
          f"task success {finals}; mean latency "
          f"{sum(st['latency_s'] for st in ok) / len(ok):.2f} s, mean TTFT "
          f"{sum(st['ttft_s'] for st in ok) / len(ok):.2f} s")
