"""Plain value types shared by policy, backends, runner, storage and UI.

They are immutable dataclasses (mabwiser's habit) except the explanation, which a router fills
while it decides, and which serialises to JSON for the experience record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from evoroute.core.errors import ValidationError

PHASES = ("cold_start", "optimize", "inference")

# Upper bounds on what a user may register or import; every message states the bound.
MAX_PRICE_PER_M = 10_000.0       # USD per 1M tokens (the dearest catalogue model is ~$600)
MAX_TTFT_S = 600.0               # time to first token, seconds
MIN_TOKENS_PER_S = 0.01          # output tokens per second (lower: a step takes days)
MAX_TOKENS_PER_S = 1_000_000.0
MAX_NAME_CHARS = 128             # model, role and router names
MAX_ID_CHARS = 256               # task keys, query ids
MAX_TOKEN_COUNT = 10_000_000     # input / output tokens of one call
MAX_STEP_COST_USD = 100_000.0    # one step's cost (10M tokens at the price bound)
MAX_DURATION_S = 86_400.0        # one step's duration or latency (a day)
MAX_TEXT_CHARS = 8 * 1024 * 1024  # free text: an instruction, error or explanation cell
#: characters no name may hold (C0/C1 controls, line/paragraph separators)
CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"
_CONTROL = re.compile(CONTROL_CHARS)


def validate_name(value: Any, field: str, *, max_chars: int = MAX_NAME_CHARS,
                  commas: bool = False, label: str | None = None) -> str:
    """A stripped, non-empty name without control characters (and, unless ``commas``, without
    commas: the CLI takes comma-separated lists of names), at most ``max_chars`` long."""
    label = label or field
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValidationError(f"{label} is empty", field)
    if len(text) > max_chars:
        raise ValidationError(f"{label} is {len(text)} characters long; at most {max_chars} "
                              "are allowed", field)
    bad = _CONTROL.search(text)
    if bad:
        raise ValidationError(f"{label} contains a control character ({bad.group()!r} at "
                              f"position {bad.start()})", field)
    if not commas and "," in text:
        raise ValidationError(f"{label} must not contain a comma (lists of names are "
                              f"comma-separated), got {_short(text)}", field)
    return text


def validate_number(value: Any, field: str, *, lo: float = 0.0, hi: float | None = None,
                    lo_open: bool = False, label: str | None = None) -> float:
    """A finite float in [lo, hi] ((lo, hi] with ``lo_open``); NaN, inf and text are refused."""
    label = label or field
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(f"{label} is missing" if value is None or isinstance(value, str)
                              else f"{label} must be a number, got {value!r}", field)
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(f"{label} must be a number, got {_short(value)}", field) from None
    if not math.isfinite(v):
        raise ValidationError(f"{label} must be a finite number, got {_short(value)}", field)
    if v < lo or (lo_open and v == lo):
        raise ValidationError(f"{label} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}", field)
    if hi is not None and v > hi:
        raise ValidationError(f"{label} must be <= {hi:g}, got {v:g}", field)
    return v


def validate_theta(value: Any) -> float:
    """The semantic channel's cosine threshold θ, in (0, 1]."""
    return validate_number(value, "theta", lo=0.0, hi=1.0, lo_open=True,
                           label="theta (cosine threshold, in (0, 1])")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Weights:
    """Performance / cost / latency weights of the utility U = w_p·P − w_c·C − w_d·D."""

    w_p: float = 1.0
    w_c: float = 0.1
    w_d: float = 0.05

    def __post_init__(self) -> None:
        for name in ("w_p", "w_c", "w_d"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValidationError(f"weight {name} must be a finite number >= 0, got {v!r}", name)
        if self.w_p == 0 and self.w_c == 0 and self.w_d == 0:
            raise ValidationError("weights must not all be zero (the utility would rank every "
                                  "model the same)", "weights")

    @classmethod
    def parse(cls, text: str) -> "Weights":
        """Parse ``"wp,wc,wd"`` as the CLI takes it."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValidationError(f"weights must be three numbers wp,wc,wd; got {text!r}", "weights")
        try:
            values = [float(p) for p in parts]
        except (TypeError, ValueError):
            raise ValidationError(f"weights must be numbers; got {text!r}", "weights") from None
        return cls(*values)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.w_p, self.w_c, self.w_d)


@dataclass(frozen=True)
class ModelInfo:
    """A snapshot of a registered model as routers and backends see it."""

    name: str
    input_price_per_m: float = 0.0
    output_price_per_m: float = 0.0
    ttft_s: float = 0.5
    tokens_per_s: float = 50.0
    litellm_id: str = ""
    api_base: str | None = None
    price_source: str = "override"

    def __post_init__(self) -> None:
        # the registry enforces the upper bounds; a snapshot only has to be computable
        for f in ("input_price_per_m", "output_price_per_m", "ttft_s"):
            validate_number(getattr(self, f), f, label=f"{f} of model {self.name!r}")
        validate_number(self.tokens_per_s, "tokens_per_s", lo_open=True,
                        label=f"tokens_per_s of model {self.name!r}")

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD at the registered prices (which win over any recorded or catalogue price)."""
        return (input_tokens * self.input_price_per_m + output_tokens * self.output_price_per_m) / 1e6

    def modelled_latency(self, output_tokens: float) -> float:
        """Seconds modelled from output tokens and the latency profile (labelled *modelled*)."""
        return self.ttft_s + output_tokens / max(self.tokens_per_s, 1e-9)


@dataclass(frozen=True)
class StepContext:
    """What a router is told about the step it must route."""

    task_key: str
    step_index: int
    role: str
    instruction: str
    phase: str = "optimize"
    tools: frozenset[str] = frozenset()
    embedding: Any = None            # np.ndarray (384,) float32, L2-normalised, or None
    query_id: str | None = None
    candidates: tuple[str, ...] | None = None   # restrict to these models (None = all enabled)


@dataclass(frozen=True)
class StepOutcome:
    """What executing a step on a model gave."""

    model: str
    step_success: float | None
    cost_usd: float
    duration_s: float
    latency_label: str = "modelled"  # modelled | measured | simulated
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_s: float | None = None
    error: str | None = None
    response: str | None = None
    tool_error: str | None = None      # a refused or failed tool call of the step (live agent)


@dataclass
class CandidateStat:
    """Per-model numbers behind one decision (spec §3 step 10)."""

    model: str
    n: int = 0
    p_hat: float | None = None
    c_hat: float | None = None
    d_hat: float | None = None
    unexplored: bool = True
    pareto: bool = False
    theta_p: float | None = None
    theta_c: float | None = None
    theta_d: float | None = None
    utility: float | None = None
    propensity: float = 0.0
    # query-aware evidence (evoroute/policy/estimators/); None in the paper's union and in
    # explanations stored before it existed
    neighbours: int | None = None          # records of this model among the step's k neighbours
    n_eff: float | None = None             # effective sample size of that local evidence
    prior_weight: float | None = None      # κ / (κ + n_eff): the shrinkage toward the role prior
    p_prior: float | None = None           # the role (empirical-Bayes) prior of P
    top_neighbours: list | None = None     # [[text (first 80 chars), cosine], ...] heaviest first


@dataclass
class Explanation:
    """Why a model was chosen. Stored as JSON with every step record."""

    router: str
    phase: str
    mode: str                        # cold_start | explore_unexplored | thompson | posterior_mean |
    #                                  fallback_role | fallback_global | default_model | baseline
    chosen: str = ""
    reason: str = ""
    weights: tuple[float, float, float] | None = None
    predicted_tools: list[str] = field(default_factory=list)
    channels: dict[str, int] = field(default_factory=dict)   # role / semantic / tool / union
    fallback: str | None = None
    candidates: list[CandidateStat] = field(default_factory=list)
    c_ref: float | None = None       # the utility's cost and duration scales (spec §3 step 7)
    d_ref: float | None = None
    estimator: str | None = None     # knn | linear (query-aware); None: the paper's union
    rescue: dict[str, Any] | None = None   # atropos: P(fail) after the step, threshold, swap

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=json_default, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        d = json.loads(text)
        known = set(CandidateStat.__dataclass_fields__)
        d["candidates"] = [CandidateStat(**{k: v for k, v in c.items() if k in known})
                           for c in d.get("candidates", [])]
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if d.get("weights") is not None:
            d["weights"] = tuple(d["weights"])
        return cls(**d)


MAX_EXPLANATION_CANDIDATES = 10_000


def validate_explanation(text: str) -> str:
    """The explanation JSON of an imported record, checked against :class:`Explanation`.

    Returns it re-serialised by :meth:`Explanation.to_json` (so reading it back later cannot
    fail); raises :class:`ValidationError` (field ``explanation``) naming the offending key.
    """
    from pydantic import TypeAdapter
    from pydantic import ValidationError as PydanticError

    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise ValidationError("explanation is not valid JSON", "explanation") from None
    if not isinstance(d, dict):
        raise ValidationError(f"explanation must be a JSON object, got {type(d).__name__}",
                              "explanation")
    if len(d.get("candidates") or ()) > MAX_EXPLANATION_CANDIDATES:
        raise ValidationError(f"explanation has more than {MAX_EXPLANATION_CANDIDATES} "
                              "candidates", "explanation")
    try:
        e = TypeAdapter(Explanation).validate_python(d)
    except PydanticError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        raise ValidationError(f"explanation key {where}: {err.get('msg')}", "explanation") from None
    try:
        return e.to_json()
    except (ValueError, TypeError) as exc:   # NaN / Infinity, or a value JSON cannot hold
        raise ValidationError(f"explanation holds a value that is not finite JSON ({exc})",
                              "explanation") from None


def json_default(o: Any) -> Any:
    """JSON for numpy scalars and sets (explanations, run configurations)."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(type(o).__name__)


@dataclass(frozen=True)
class Decision:
    model: str
    propensity: float
    explanation: Explanation
