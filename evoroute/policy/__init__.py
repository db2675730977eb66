"""Routers: EvoRoute and its ablations, the baselines and the learned baselines, all on one
small interface (:mod:`evoroute.policy.base`); build one by name with
:func:`evoroute.policy.registry.make_router`."""
