"""``models list|add|update|remove``: the registry of candidate models."""

from __future__ import annotations

import argparse
import json
from typing import Any

from evoroute.cli.common import engine
from evoroute.core.errors import EvoRouteError
from evoroute.settings import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="register and manage candidate models")
    msub = m.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list", help="list registered models")
    ml.add_argument("--all", action="store_true", help="include disabled models")
    ml.add_argument("--json", action="store_true")
    for name in ("add", "update"):
        a = msub.add_parser(name, help=f"{name} a model")
        a.add_argument("name")
        a.add_argument("--litellm-id", help="litellm model id (prices default from its cost map)")
        a.add_argument("--input-price", type=str, help="USD per 1M input tokens")
        a.add_argument("--output-price", type=str, help="USD per 1M output tokens")
        a.add_argument("--ttft", type=str, default=f"{DEFAULTS.ttft_s:g}" if name == "add" else None,
                       help="time to first token, seconds")
        a.add_argument("--tps", type=str,
                       default=f"{DEFAULTS.tokens_per_s:g}" if name == "add" else None,
                       help="output tokens per second")
        a.add_argument("--api-base", help="OpenAI-compatible base URL (keys come from the environment)")
        if name == "add":
            a.add_argument("--notional", action="store_true",
                           help="prices are notional (e.g. a free local model)")
            a.add_argument("--disabled", action="store_true")
        else:
            a.add_argument("--enable", action="store_true")
            a.add_argument("--disable", action="store_true")
    rm = msub.add_parser("remove", help="unregister a model")
    rm.add_argument("name")
    m.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from evoroute import registry
    from evoroute.storage import db, repo

    with db.session(engine(args)) as s:
        if args.action == "list":
            rows = repo.list_models(session=s, enabled_only=not args.all)
            if args.json:
                print(json.dumps([r.model_dump(mode="json", exclude={"created_at", "updated_at"})
                                  for r in rows], indent=1))
                return 0
            if not rows:
                print("no models registered (python -m evoroute models add NAME ...)")
                return 0
            print(f"{'name':38} {'in $/1M':>9} {'out $/1M':>9} {'price':9} {'ttft s':>6} "
                  f"{'tok/s':>6} {'on':3} litellm id")
            for r in rows:
                print(f"{r.name:38} {r.input_price_per_m:9.3f} {r.output_price_per_m:9.3f} "
                      f"{r.price_source:9} {r.ttft_s:6.2f} {r.tokens_per_s:6.1f} "
                      f"{'yes' if r.enabled else 'no':3} {r.litellm_id}")
            return 0
        if args.action == "add":
            e = registry.add_model(session=s, name=args.name, litellm_id=args.litellm_id or "",
                                   input_price_per_m=args.input_price,
                                   output_price_per_m=args.output_price, ttft_s=args.ttft,
                                   tokens_per_s=args.tps, api_base=args.api_base,
                                   enabled=not args.disabled, notional=args.notional)
            print(f"registered {e.name}: ${e.input_price_per_m:g} in / ${e.output_price_per_m:g} "
                  f"out per 1M tokens ({e.price_source}), ttft {e.ttft_s:g} s, "
                  f"{e.tokens_per_s:g} tok/s")
            return 0
        if args.action == "update":
            changes: dict[str, Any] = {}
            for arg, fld in (("litellm_id", "litellm_id"), ("input_price", "input_price_per_m"),
                             ("output_price", "output_price_per_m"), ("ttft", "ttft_s"),
                             ("tps", "tokens_per_s"), ("api_base", "api_base")):
                if getattr(args, arg) is not None:
                    changes[fld] = getattr(args, arg)
            if args.enable:
                changes["enabled"] = True
            if args.disable:
                changes["enabled"] = False
            if not changes:
                raise EvoRouteError("nothing to update: give at least one option")
            e = registry.update_model(args.name, session=s, **changes)
            print(f"updated {e.name}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
            return 0
        if args.action == "remove":
            registry.remove_model(args.name, session=s)
            print(f"removed {args.name} (its past step records stay in the experience base)")
            return 0
    return 1
