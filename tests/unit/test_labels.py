"""The one label vocabulary: stored once by the runner, read everywhere."""

from types import SimpleNamespace

from evoroute.core import labels


def test_run_label_names_kind_and_latency_source_once():
    assert labels.run_label("replay") == "replayed · latency modelled"
    assert labels.run_label("replay", "measured") == "replayed · latency measured"
    assert labels.run_label("live") == "live · latency measured"
    assert labels.run_label("simulated") == "simulated"
    assert labels.run_label("simulated", "simulated") == "simulated"


def test_stored_label_is_read_as_is():
    # a replay with recorded latencies: the stored label, never a second latency word
    run = SimpleNamespace(label="replayed · latency measured", backend="replay")
    assert labels.label_of(run) == "replayed · latency measured"
    assert labels.label_of(SimpleNamespace(label="", backend="live")) == "live · latency measured"
    assert labels.label_of(SimpleNamespace(label=None, backend="mystery")) == "mystery"


def test_kinds_and_caption():
    assert [labels.kind_of(b) for b in ("replay", "simulated", "live", "import")] == [
        "replayed", "simulated", "live", "imported"]
    assert labels.caption(["live", "replayed", "live", ""]) == "live + replayed"
    assert labels.caption([]) == "no runs"
