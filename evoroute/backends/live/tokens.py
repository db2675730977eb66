"""Token counts and what they cost: the model's tokenizer (through litellm) in bounded time,
the running count of a streamed reply, the tokens a call is billed, and the cost at the
registered prices."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from evoroute.backends.live.sdk import load_litellm
from evoroute.core.types import ModelInfo

COUNT_SLICE_CHARS = 1024           # tokenizers are quadratic in an unbroken run: count in slices
COUNT_MAX_CHARS = 256 * 1024       # beyond this, count evenly spaced slices and scale up
OUTPUT_TOKEN_TOLERANCE = 1.10      # the local tokenizer may differ from the provider's
OUTPUT_TOKEN_SLACK = 16
LOCAL_DELTA_TOKENS = 2.0           # see local_output_tokens

_TOKENIZERS: dict[str, Callable[[str], int]] = {}

PROMPT_TOKEN_MARGIN = 1.25     # chat templates and tokenizer differences: estimate generously
PROMPT_TOKEN_SLACK = 32


def tokenizer(model_id: str) -> Callable[[str], int]:
    """A fast ``text -> token count`` with the tokenizer litellm picks for the id (its
    ``token_counter`` costs ~2.5 ms a call for some ids, too slow per streamed chunk)."""
    fn = _TOKENIZERS.get(model_id)
    if fn is None:
        lt = load_litellm()
        try:
            from litellm.utils import _select_tokenizer  # litellm's own choice per model id
            tok = _select_tokenizer(model=model_id)["tokenizer"]
            if hasattr(tok, "encode_ordinary"):          # tiktoken
                fn = lambda t, _e=tok: len(_e.encode(t, disallowed_special=()))  # noqa: E731
            else:                                          # huggingface tokenizers
                fn = lambda t, _e=tok: len(_e.encode(t).ids)  # noqa: E731
            fn("probe")
        except Exception:   # noqa: BLE001 - any tokenizer trouble: litellm's counter itself
            fn = lambda t, _lt=lt, _m=model_id: int(_lt.token_counter(model=_m, text=t))  # noqa: E731
        _TOKENIZERS[model_id] = fn
    return fn


def _slices(text: str, size: int = COUNT_SLICE_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``size`` characters, at a space where there is one
    in the second half of a piece (so words stay whole)."""
    out, i, n = [], 0, len(text)
    while i < n:
        j = min(n, i + size)
        if j < n:
            k = text.rfind(" ", i + size // 2, j)
            if k > i:
                j = k
        out.append(text[i:j])
        i = j
    return out


def count_text_tokens(model_id: str, text: str) -> int:
    """Tokens of ``text`` with the model's tokenizer, in bounded time.

    Counted in slices of at most 1024 characters (a BPE tokenizer is quadratic in an unbroken
    run: tiktoken needs 13 s for 100k ``x``, a 1 MB one would hang); the few tokens a cut
    adds make the count a little high, never low. Above 256k characters, 256 evenly spaced
    slices are counted and the count scaled to the whole length (an estimate)."""
    if not text:
        return 0
    count = tokenizer(model_id)
    if len(text) <= COUNT_MAX_CHARS:
        return sum(count(p) for p in _slices(text))
    n_samples = COUNT_MAX_CHARS // COUNT_SLICE_CHARS
    step = len(text) / n_samples
    sampled = [text[int(i * step):int(i * step) + COUNT_SLICE_CHARS] for i in range(n_samples)]
    got = sum(count(p) for p in sampled)
    return math.ceil(got * len(text) / sum(len(p) for p in sampled))


def count_prompt_tokens(model_id: str, messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: its texts plus OpenAI's per-message overhead (3 per
    message and 3 to prime the reply, as litellm's ``token_counter`` counts them)."""
    n = 3
    for m in messages:
        n += 3 + count_text_tokens(model_id, str(m.get("content") or "")) \
            + count_text_tokens(model_id, str(m.get("role") or ""))
        if m.get("name"):
            n += 1 + count_text_tokens(model_id, str(m["name"]))
    return n


class TokenTally:
    """Running token count of a streamed text: whole slices are counted once; the tail (at
    most ~1024 characters) is counted only when its upper bound (1 token per UTF-8 byte: every
    token of a byte-level BPE covers at least one byte) could pass a limit, so a chunk costs
    little until the stream nears its limit."""

    def __init__(self, model_id: str) -> None:
        self.count = tokenizer(model_id)
        self.done = 0
        self.tail = ""
        self.tail_bytes = 0

    def add(self, piece: str) -> None:
        self.tail += piece
        self.tail_bytes += len(piece.encode("utf-8", "replace"))
        if len(self.tail) >= COUNT_SLICE_CHARS:
            parts = _slices(self.tail)
            keep = parts.pop()
            self.done += sum(self.count(p) for p in parts)
            self.tail, self.tail_bytes = keep, len(keep.encode("utf-8", "replace"))

    @property
    def upper(self) -> int:
        return self.done + self.tail_bytes

    @property
    def total(self) -> int:
        return self.done + (self.count(self.tail) if self.tail else 0)


def registered_cost(model: ModelInfo, input_tokens: float, output_tokens: float) -> float:
    """USD at the model's registered prices, through litellm's cost function.

    The registered prices go in as ``custom_cost_per_token``, which litellm uses instead of
    its cost map; if litellm cannot price the id at all, the same arithmetic is done here.
    """
    custom = {"input_cost_per_token": model.input_price_per_m / 1e6,
              "output_cost_per_token": model.output_price_per_m / 1e6}
    try:
        p, c = load_litellm().cost_per_token(model=model.litellm_id or model.name,
                                         prompt_tokens=int(input_tokens),
                                         completion_tokens=int(output_tokens),
                                         custom_cost_per_token=custom)
        return float(p) + float(c)
    except Exception:   # noqa: BLE001 - an id litellm does not know: the same formula here
        return model.cost(input_tokens, output_tokens)


def billed_tokens(counted_in: int, counted_out: int, reported: tuple[int, int] | None, *,
                  local: bool) -> tuple[int, int, bool]:
    """(input, output, counted) tokens a call is billed: the larger of the provider's reported
    usage and the local count, input and output separately, so a provider that under-reports
    cannot make a call look cheaper than what it streamed. ``counted`` is True when the figure
    is not the provider's own. A local (loopback) server's usage is not used: llama.cpp sends
    none and litellm fills in its own estimate, which is not the server's count."""
    if reported is None or local:
        return int(counted_in), int(counted_out), True
    r_in, r_out = int(reported[0]), int(reported[1])
    n_in, n_out = max(int(counted_in), r_in), max(int(counted_out), r_out)
    return n_in, n_out, (n_in, n_out) != (r_in, r_out)


def output_limit(max_tokens: int) -> int:
    """Output tokens after which a stream is closed: ``max_tokens`` plus the tolerance for a
    local tokenizer that differs from the provider's."""
    return math.ceil(int(max_tokens) * OUTPUT_TOKEN_TOLERANCE) + OUTPUT_TOKEN_SLACK


def local_output_tokens(local: bool, n_deltas: int, counted: int) -> int:
    """Output tokens counted locally. A llama.cpp server streams one token per delta and sends
    no usage; the delta count is then its real count (its tokenizer is not litellm's, which
    counts ~20 % more). A server whose deltas carry more than 2 tokenizer tokens each is not
    streaming one token per delta, and the tokenizer count is used."""
    if local and counted <= LOCAL_DELTA_TOKENS * n_deltas:
        return n_deltas
    return counted
