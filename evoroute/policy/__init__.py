"""Routers: EvoRoute and its ablations, and the baselines, all on one small interface."""

from evoroute.policy import evoroute  # noqa: F401  (registers routers)
from evoroute.policy.base import ROUTERS, Router, make_router, router_names  # noqa: F401

try:  # baselines live in their own module (registered on import)
    from evoroute.policy import baselines  # noqa: F401
except ImportError:  # pragma: no cover - while baselines are being written
    pass
