"""Every router the registry offers (:mod:`evoroute.policy.registry`): each module here
declares its routers as ``ROUTERS = {name: factory}``."""
