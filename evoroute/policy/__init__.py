"""Routers: EvoRoute and its ablations, the baselines and the learned baselines, all on one
small interface."""

from evoroute.policy import evoroute  # noqa: F401  (registers routers)
from evoroute.policy.base import ROUTERS, Router, make_router, router_names  # noqa: F401

from evoroute.policy import baselines  # noqa: F401,E402  (registers the baselines)
from evoroute.policy import learned  # noqa: F401,E402  (registers the learned baselines)
