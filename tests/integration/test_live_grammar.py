"""The role grammars on the real llama.cpp servers: every local model's solver, verifier and
answerer output is the one line its role must write (the parser reads it), with solved train
examples in the prompt. Nothing is mocked; skipped only without llama-cpp-python."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from evoroute import settings as config
from evoroute.agent import workflow as W
from evoroute.backends.live.backend import LiveBackend
from evoroute.backends.local.catalogue import LOCAL_MODELS
from evoroute.backends.local.servers import LocalModelServers
from evoroute.core.types import ModelInfo, StepContext

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed; run scripts/install_local_models.sh")

BASE_PORT = 18831      # away from the other local-server tests (18531, 18731) and the default
LINES = {"solver": r"(CALC|PYTHON): [^\n]+\n?",
         "verifier": r"VERDICT: (CORRECT\n?|WRONG\n(CALC|PYTHON): [^\n]+\n?)",
         "answerer": r"ANSWER: -?\d+(\.\d+)?\n?"}


@needs_llama
def test_every_local_model_writes_its_roles_line_under_the_grammar(tmp_path: Path):
    servers = LocalModelServers(state_path=tmp_path / "local_models.json",
                                cache_dir=config.settings().cache_dir)
    with servers.serving(None, BASE_PORT) as infos:
        models = [ModelInfo(i.name, 0.0, 0.0, litellm_id=i.model, api_base=i.api_base)
                  for i in infos]
        assert {m.name for m in models} == set(LOCAL_MODELS)
        b = LiveBackend("tiered", models, check_models=False, timeout_s=300.0)
        tasks = [t for t in b.tasks("train") if b._by_id[t.key.split(":", 1)[1]].tier == "easy"]
        solved = {}
        for m in models:
            spec = tasks[0]
            outs = {}
            for i, s in enumerate(spec.steps):
                step = StepContext(task_key=f"{spec.key}", step_index=i, role=s.role,
                                   instruction=s.instruction)
                o = b.execute(step, m)
                assert o.error is None, o.error
                outs[s.role] = o.response
            for role, pattern in LINES.items():
                assert re.fullmatch(pattern, outs[role]), (m.name, role, outs[role])
            # the server enforced the task's own grammar: every number the solver wrote is
            # one the question writes (or a grammar constant), which free decoding would not
            task = b._by_id[spec.key.split(":", 1)[1]]
            num_rule = next(x for x in W.grammar("solver", task).splitlines()
                            if x.startswith("num ::= "))
            allowed = set(re.findall(r'"([0-9.]+)"', num_rule))
            expr = outs["solver"].split(":", 1)[1]      # (a list may be rebuilt from them)
            assert set(re.findall(r"\d+(?:\.\d+)?", expr)) <= allowed, (m.name, outs["solver"])
            solved[m.name] = b.check_task(spec, [])
            assert b.transcripts[spec.key]["final_answer"] is not None   # the parser read it
    print(f"\ngrammar-held outputs on {tasks[0].key}: solved {solved}")
