"""The Models page's background start / stop of the local servers (evoroute.studio.models):
one job at a time per state file, a failure reaches the page as text, never a dead thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# imported before any patch: register.py binds default_servers by name at its import
from evoroute.backends.local import register as register_mod
from evoroute.backends.local import servers as servers_mod
from evoroute.core.errors import BackendError, EvoRouteError, ValidationError
from evoroute.studio import models as studio_models


@dataclass
class FakeServers:
    state_path: Path
    gate: threading.Event = field(default_factory=threading.Event)
    fail: bool = False
    calls: list = field(default_factory=list)

    def start(self, names):
        self.calls.append(("start", names))
        self.gate.wait(10)
        if self.fail:
            raise BackendError("local model server(s) failed to start: port busy")
        return []

    def stop(self, names=None):
        self.calls.append(("stop", names))
        return ["smollm2-135m"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = FakeServers(state_path=tmp_path / "local_models.json")
    monkeypatch.setattr(servers_mod, "default_servers", lambda: f)
    monkeypatch.setattr(register_mod, "register_local_models", lambda *, session, servers: [])
    yield f
    f.gate.set()


def _wait(job) -> None:
    for _ in range(200):
        if job.done:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the job did not finish")


def test_one_job_at_a_time_and_the_result_is_kept(fake, tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    job = studio_models.start_local_servers(["smollm2-135m"], engine_url=url)
    assert not job.done and studio_models.server_job() is job       # returned at once
    with pytest.raises(EvoRouteError, match="already being started"):
        studio_models.stop_local_servers()
    fake.gate.set()
    _wait(job)
    assert (job.error, fake.calls) == (None, [("start", ["smollm2-135m"])])
    stop = studio_models.stop_local_servers()
    _wait(stop)
    assert (stop.result, fake.calls[-1]) == (["smollm2-135m"], ("stop", None))


def test_a_failed_start_is_reported_not_lost(fake, tmp_path):
    fake.fail = True
    fake.gate.set()
    job = studio_models.start_local_servers(["smollm2-135m"], engine_url="sqlite://")
    _wait(job)
    assert job.error == "local model server(s) failed to start: port busy"


def test_start_needs_a_model(fake):
    with pytest.raises(ValidationError) as e:
        studio_models.start_local_servers([], engine_url="sqlite://")
    assert e.value.field == "local_models"
