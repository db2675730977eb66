"""Real local LLMs served by llama.cpp on 127.0.0.1 and called through litellm, as the live
backend calls them. Starts real servers with the packaged GGUF weights; nothing is mocked.

Skipped only when llama-cpp-python is not importable (scripts/install_local_models.sh installs
it). A missing model package is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from evoroute import settings as config
from evoroute.backends.local import catalogue, processes
from evoroute.backends.local.catalogue import LOCAL_MODELS
from evoroute.backends.local.measure import measure_call
from evoroute.backends.local.servers import LocalModelServers
from evoroute.core.errors import UnknownModelError

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed; run scripts/install_local_models.sh")

BASE_PORT = 18531          # away from the default 18431, so a user's own servers are not touched
PROMPT = "Name three primary colours."


def _gone(pid: int) -> bool:
    """True if ``pid`` no longer exists (a zombie still counts as a left-over)."""
    return not psutil.pid_exists(pid)


def _servers_on(port_range: range) -> list[int]:
    """Pids of llama_cpp.server processes bound by --port to a port in ``port_range``."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if "llama_cpp.server" in args and "--port" in args:
            try:
                if int(args[args.index("--port") + 1]) in port_range:
                    pids.append(proc.pid)
            except (ValueError, IndexError):
                pass
    return pids


@pytest.fixture
def manager(tmp_path: Path) -> LocalModelServers:
    m = LocalModelServers(state_path=tmp_path / "local_models.json", cache_dir=config.settings().cache_dir)
    yield m
    m.stop()     # whatever a failing test left behind


@needs_llama
def test_serve_both_models_stream_through_litellm_and_stop_clean(manager):
    import litellm

    t0 = time.perf_counter()
    with manager.serving(None, BASE_PORT, n_ctx=2048) as infos:
        start_s = time.perf_counter() - t0
        assert [i.name for i in infos] == list(LOCAL_MODELS)
        assert len({i.port for i in infos}) == len(infos)
        pids = [i.pid for i in infos]
        assert all(psutil.pid_exists(p) for p in pids)
        assert 0 < start_s < 45, start_s
        for info in infos:
            assert info.status == "running"
            assert info.model == f"openai/{info.name}"
            assert info.api_base == f"http://127.0.0.1:{info.port}/v1"
            assert 0 < info.startup_s <= start_s + 0.5
            assert os.getpgid(info.pid) == info.pid        # own process group
        # the state file is what another CLI call will read
        state = json.loads(manager.state_path.read_text())["servers"]
        assert {n: e["pid"] for n, e in state.items()} == {i.name: i.pid for i in infos}
        # starting again is a no-op that returns the same servers
        assert [i.pid for i in manager.start(None, BASE_PORT)] == pids
        assert [s.status for s in manager.status()] == ["running"] * len(infos)

        for info in infos:
            t_call = time.perf_counter()
            ttft, text = None, []
            stream = litellm.completion(
                messages=[{"role": "user", "content": PROMPT}], stream=True, max_tokens=16,
                temperature=0.0, timeout=30, **info.litellm_kwargs())
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if ttft is None:
                        ttft = time.perf_counter() - t_call
                    text.append(chunk.choices[0].delta.content)
            total = time.perf_counter() - t_call
            answer = "".join(text)
            assert answer.strip(), f"{info.name} streamed no text"
            assert len(text) >= 2, "expected several streamed deltas, got one block"
            assert ttft is not None and 0 < ttft < total < 20, (ttft, total)

            # The server sends no usage in a stream (litellm would substitute an estimate), so the
            # server's counts come from the same request without streaming.
            again = litellm.completion(messages=[{"role": "user", "content": PROMPT}],
                                       max_tokens=16, temperature=0.0, timeout=30,
                                       **info.litellm_kwargs())
            usage = again.usage
            print(f"\n{info.name}: start {info.startup_s:.2f} s, TTFT {ttft:.3f} s, "
                  f"total {total:.3f} s, {len(text)} deltas, "
                  f"usage {usage.prompt_tokens}+{usage.completion_tokens} tok: {answer!r}")
            assert again.choices[0].message.content.strip()
            assert usage.prompt_tokens > 5          # the chat template wraps the 4-word prompt
            assert 0 < usage.completion_tokens <= 16
            assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
            # llama.cpp streams one delta per generated token (merging only split characters)
            assert len(text) <= 16

        # measure_call (what `local bench` times) reports the server's counts
        m = measure_call(infos[0], PROMPT, max_tokens=8)
        assert m.usage_source == "server, non-streamed replay"
        assert 0 < m.completion_tokens <= 8 and m.prompt_tokens > 5
        assert 0 < m.ttft_s <= m.total_s and m.text.strip()

    # after the block: processes gone (reaped, not zombies), state empty, ports free again
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
    assert _servers_on(range(BASE_PORT, BASE_PORT + 50)) == []
    assert json.loads(manager.state_path.read_text())["servers"] == {}
    assert manager.status() == []
    assert all(processes.port_free(i.port) for i in infos)


@needs_llama
def test_detached_start_survives_its_caller_then_crash_is_detected(manager):
    port = BASE_PORT + 10
    with socket.socket() as blocker:       # the base port is taken: the next one must be used
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        # start from another Python process that exits, as `python -m evoroute local start` does
        code = ("from pathlib import Path; from evoroute.backends.local.servers import LocalModelServers;"
                f"i = LocalModelServers(state_path=Path({str(manager.state_path)!r})).start("
                f"['smollm2-135m'], {port})[0]; print(i.pid, i.port)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, cwd=config.PROJECT_ROOT, check=True).stdout.split()
    pid, used_port = int(out[0]), int(out[1])
    assert used_port == port + 1
    [info] = manager.status()
    assert (info.name, info.pid, info.port, info.status) == ("smollm2-135m", pid, port + 1, "running")

    os.killpg(pid, signal.SIGKILL)         # a crash: the state file still names the server
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)                      # reparented, so init reaped it: no zombie left
    assert manager.status() == []          # stale entry detected ...
    assert manager.last_stale == ["smollm2-135m"]
    assert json.loads(manager.state_path.read_text())["servers"] == {}   # ... and cleaned


def test_stale_state_with_dead_or_reused_pid_is_cleaned(tmp_path):
    m = LocalModelServers(state_path=tmp_path / "local_models.json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    entries = {
        "smollm2-135m": {"name": "smollm2-135m", "pid": dead.pid, "port": 18999, "gguf": "x"},
        # a live pid that is not a llama.cpp server (ours): must not be trusted, nor killed
        "gemma3-270m": {"name": "gemma3-270m", "pid": os.getpid(), "port": 18998, "gguf": "x"},
    }
    m.state_path.write_text(json.dumps({"servers": entries}))
    assert m.status() == []
    assert sorted(m.last_stale) == ["gemma3-270m", "smollm2-135m"]
    assert json.loads(m.state_path.read_text())["servers"] == {}
    assert m.stop() == []


@needs_llama
def test_registry_paths_and_errors(tmp_path):
    m = LocalModelServers(state_path=tmp_path / "s.json")
    with pytest.raises(UnknownModelError, match="registered: gemma3-270m, smollm2-135m"):
        m.start(["gpt-5"])
    with pytest.raises(UnknownModelError):
        m.stop(["nope"])
    for model in LOCAL_MODELS.values():
        assert model.installed(), (f"{model.package}=={model.version} missing: "
                                   "run scripts/install_local_models.sh")
        path = model.ensure_gguf(config.settings().cache_dir)
        assert path.name == model.filename and path.stat().st_size == model.size_bytes
        with path.open("rb") as f:
            assert f.read(4) == b"GGUF"
        assert model.litellm_id == f"openai/{model.name}"
        assert model.input_price_per_m == model.output_price_per_m == 0.0


@needs_llama
def test_server_that_cannot_load_its_model_fails_cleanly(manager, tmp_path, monkeypatch):
    """A GGUF that llama.cpp rejects: start() raises BackendError with the log, leaves nothing."""
    from evoroute.core.errors import BackendError

    pkg = tmp_path / "site" / "broken_gguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    bad = b"GGUF" + bytes(range(256)) * 4          # right magic, garbage header
    (pkg / "broken.gguf").write_bytes(bad)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    broken = catalogue.LocalModel(name="broken", title="corrupt file", package="broken-gguf-pkg",
                           version="0", parts=(catalogue.GGUFPart("broken_gguf_pkg", "broken.gguf"),),
                           filename="broken.gguf", sha256="0" * 64, size_bytes=len(bad),
                           licence="none")
    monkeypatch.setitem(LOCAL_MODELS, "broken", broken)

    port = BASE_PORT + 20
    with pytest.raises(BackendError, match="broken: process exited"):
        manager.start(["broken"], port, timeout=60)
    assert manager.status() == []
    assert json.loads(manager.state_path.read_text())["servers"] == {}
    assert _servers_on(range(port, port + 5)) == []
