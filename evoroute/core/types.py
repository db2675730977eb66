"""Plain value types shared by policy, backends, runner, storage and UI.

They are immutable dataclasses (mabwiser's habit) except the explanation, which a router fills
while it decides, and which serialises to JSON for the experience record.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evoroute.errors import ValidationError

PHASES = ("cold_start", "optimize", "inference")


@dataclass(frozen=True)
class Weights:
    """Performance / cost / latency weights of the utility U = w_p·P − w_c·C − w_d·D."""

    w_p: float = 1.0
    w_c: float = 0.1
    w_d: float = 0.05

    def __post_init__(self) -> None:
        for name in ("w_p", "w_c", "w_d"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValidationError(f"weight {name} must be a finite number >= 0, got {v!r}", name)

    @classmethod
    def parse(cls, text: str) -> "Weights":
        """Parse ``"wp,wc,wd"`` as the CLI takes it."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValidationError(f"weights must be three numbers wp,wc,wd; got {text!r}", "weights")
        try:
            values = [float(p) for p in parts]
        except ValueError:
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=json_default, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        d = json.loads(text)
        d["candidates"] = [CandidateStat(**c) for c in d.get("candidates", [])]
        if d.get("weights") is not None:
            d["weights"] = tuple(d["weights"])
        return cls(**d)


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
