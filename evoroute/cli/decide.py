"""``decide``: route one instruction with the current experience base and explain the choice."""

from __future__ import annotations

import argparse

from evoroute.cli.common import DEFAULT_WEIGHTS, engine, parse_ids, split_csv
from evoroute.core.errors import EvoRouteError
from evoroute.settings import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("decide", help="route one instruction with the current experience base")
    d.add_argument("instruction")
    d.add_argument("--role", required=True)
    d.add_argument("--weights", default=DEFAULT_WEIGHTS, help="wp,wc,wd")
    d.add_argument("--phase", default="optimize", choices=["optimize", "inference"])
    d.add_argument("--theta", type=float, default=DEFAULTS.theta)
    d.add_argument("--signal", default="task", choices=["task", "step"])
    d.add_argument("--models", help="comma-separated registered models (default: all enabled)")
    d.add_argument("--runs", help="comma-separated run ids whose records form the base (default all)")
    d.add_argument("--seed", type=int, default=DEFAULTS.seed)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_decide)


def cmd_decide(args: argparse.Namespace) -> int:
    import numpy as np

    from evoroute import registry
    from evoroute.core.types import StepContext, Weights, validate_name, validate_theta
    from evoroute.experience import SyncedIndex
    from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
    from evoroute.storage import db

    eng = engine(args)
    with db.session(eng) as s:
        models = registry.model_infos(session=s, names=split_csv(args.models))
    if not models:
        raise EvoRouteError("no enabled models: register one with `python -m evoroute models add`")
    cfg = EvoRouteConfig(weights=Weights.parse(args.weights), theta=validate_theta(args.theta),
                         perf_signal=args.signal)
    role = validate_name(args.role, "role", label="--role")
    if not args.instruction.strip():
        raise EvoRouteError("the instruction is empty")
    if args.seed < 0:
        raise EvoRouteError(f"seed must be >= 0, got {args.seed}")
    synced = SyncedIndex(eng, run_ids=parse_ids(args.runs), perf_signal=args.signal)
    router = EvoRouteRouter(models, cfg, index=synced.index)
    step = StepContext(task_key="cli", step_index=0, role=role, instruction=args.instruction,
                       phase=args.phase)
    d = router.decide(step, np.random.default_rng(args.seed))
    e = d.explanation
    if args.json:
        print(e.to_json())
        return 0
    print(f"chosen model: {d.model}   (propensity {d.propensity:.3f}, phase {e.phase}, mode {e.mode})")
    print(f"why: {e.reason}")
    if e.fallback:
        print(f"fallback used: {e.fallback}")
    print(f"experience base: {len(synced.index)} records; retrieved per channel: "
          + ", ".join(f"{k} {v}" for k, v in e.channels.items()))
    print(f"predicted tools: {', '.join(e.predicted_tools) or '-'}   weights (wp, wc, wd): {e.weights}")
    if e.c_ref is not None:
        print(f"utility scales: C_ref ${e.c_ref:.6f}, D_ref {e.d_ref:.3f} s "
              "(largest estimated means among the explored candidates)")
    print(f"{'model':38} {'n':>6} {'P^':>6} {'C^ $':>10} {'D^ s':>7} {'pareto':6} "
          f"{'θP':>6} {'U':>8} {'prop':>5}")
    for c in sorted(e.candidates, key=lambda c: -(c.utility if c.utility is not None else -9e9)):
        print(f"{c.model:38} {c.n:6d} {_cell(c.p_hat, '6.3f')} {_cell(c.c_hat, '10.6f')} "
              f"{_cell(c.d_hat, '7.3f')} "
              f"{('yes' if c.pareto else ('new' if c.unexplored else 'no')):6} "
              f"{_cell(c.theta_p, '6.3f')} {_cell(c.utility, '8.4f')} {c.propensity:5.2f}")
    return 0


def _cell(x: float | None, fmt: str) -> str:
    """``x`` formatted, or "-" padded to the column's width."""
    return format(x, fmt) if x is not None else format("-", ">" + fmt.split(".")[0])
