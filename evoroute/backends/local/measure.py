"""Timed calls to the running local servers, made by the live backend's streaming client (the
same request, measurement and retry budget as a live run's step), plus the server's own token
counts and CPU time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from evoroute.backends.live.client import StreamingClient
from evoroute.backends.live.sdk import load_litellm
from evoroute.backends.local.servers import DEFAULT_BASE_PORT, LocalModelServers, ServerInfo, default_servers
from evoroute.core.errors import BackendError, ValidationError

BENCH_PROMPTS = (
    "What is the capital of France?",
    "Name three primary colours.",
    "What is 12 times 7?",
    "Who wrote the play Hamlet?",
    "Give one word that rhymes with cat.",
)
COLD_PROMPT = "Hello!"


@dataclass(frozen=True)
class CallMeasurement:
    """One timed call. Token counts are the server's own (see :func:`measure_call`)."""

    name: str
    text: str
    ttft_s: float             # request sent -> first non-empty content delta
    total_s: float            # request sent -> end of stream
    stream_chunks: int        # non-empty content deltas: one per generated token, except that
                              # the bytes of a split multi-byte character come as one delta
    prompt_tokens: int        # the server's count
    completion_tokens: int    # the server's count of the non-streamed replay
    usage_source: str         # where the counts come from
    server_cpu_s: float | None = None   # CPU seconds the server process spent on the stream

    @property
    def decode_tokens_per_s(self) -> float:
        """Streamed deltas after the first, per second after the first: the timed decode rate."""
        span = self.total_s - self.ttft_s
        return (self.stream_chunks - 1) / span if self.stream_chunks > 1 and span > 0 else 0.0


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (all its threads)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def measure_call(info: ServerInfo, prompt: str, max_tokens: int = 32,
                 timeout: float = 60.0) -> CallMeasurement:
    """One streamed, greedy chat completion, with the server's token counts.

    The stream (the live backend's client, one request: no retry) gives text, TTFT, total
    latency and the decode rate. llama-cpp-python sends no usage in a stream, so the same
    request is replayed without streaming (cheap: the server reuses the cached prompt) and its
    ``usage`` is taken. Its prompt count is exact for the streamed call; its completion count
    is the replay's: greedy decoding in llama.cpp is not bit-reproducible across calls (the
    cached prefix changes the batch shapes, so near-tied logits can flip), so the replay may
    stop at a different token when the model ends before ``max_tokens``.
    """
    client = StreamingClient(timeout_s=timeout, max_retries=0, temperature=0.0)
    model = info.to_model_info()
    messages = [{"role": "user", "content": prompt}]
    cpu0 = _cpu_seconds(info.pid)
    res = client.call(model, messages, max_tokens)
    cpu1 = _cpu_seconds(info.pid)
    if res.error is not None:
        raise BackendError(f"local model {info.name!r} at {info.api_base} failed: {res.error}")
    try:
        usage = load_litellm().completion(
            **client.request_kwargs(model, messages, max_tokens, stream=False)).usage
    except Exception as exc:   # noqa: BLE001 - litellm raises many types; the caller wants one
        raise BackendError(f"local model {info.name!r} at {info.api_base} failed: {exc}") from exc
    return CallMeasurement(name=info.name, text=res.text, ttft_s=res.ttft_s or res.latency_s,
                           total_s=res.latency_s, stream_chunks=res.deltas,
                           prompt_tokens=int(usage.prompt_tokens),
                           completion_tokens=int(usage.completion_tokens),
                           usage_source="server, non-streamed replay",
                           server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0)


@dataclass(frozen=True)
class ServerBench:
    """The calls :func:`bench` timed on one server: the first after its start, then one per
    prompt."""

    info: ServerInfo
    cold: CallMeasurement
    calls: list[CallMeasurement]


def bench(names: Sequence[str] | None = None, prompts: Sequence[str] = BENCH_PROMPTS,
          max_tokens: int = 32, base_port: int = DEFAULT_BASE_PORT, n_threads: int | None = None,
          servers: LocalModelServers | None = None) -> list[ServerBench]:
    """Serve the models (if not yet served) and time one streamed call per prompt on each.

    Every prompt is new to the server, so each TTFT includes its prompt evaluation (a repeated
    prompt would be answered from llama.cpp's prefix cache). The first call after a start is
    kept apart as the cold one. Servers this call started are stopped at the end.
    """
    if not prompts:
        raise ValidationError("at least one prompt is needed", "prompts")
    with (servers or default_servers()).serving(names or None, base_port,
                                                n_threads=n_threads) as infos:
        return [ServerBench(info, measure_call(info, COLD_PROMPT, max_tokens),
                            [measure_call(info, p, max_tokens) for p in prompts])
                for info in infos]
