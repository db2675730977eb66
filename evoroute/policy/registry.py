"""The routers by registry name, found in :mod:`evoroute.policy.routers`.

Each module of that package declares the routers it adds as a module-level
``ROUTERS = {name: factory}`` (a factory is called as ``factory(models, **params)``); the
registry imports every module of the package once, at its first lookup. Adding a router is one
new module there (or one more entry in a module's ``ROUTERS``). No router module imports this
one, so the registry and the routers form no import cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import ModelInfo
from evoroute.policy.base import Router

RouterFactory = Callable[..., Router]


class RouterRegistry(MutableMapping[str, RouterFactory]):
    """Name -> factory of every router module's ``ROUTERS``, loaded at the first access."""

    def __init__(self) -> None:
        self._factories: dict[str, RouterFactory] = {}
        self._loaded = False

    def _load(self) -> dict[str, RouterFactory]:
        if self._loaded:
            return self._factories
        package = importlib.import_module("evoroute.policy.routers")
        found: dict[str, tuple[str, RouterFactory]] = {}
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, factory in module.ROUTERS.items():
                if name in found:
                    raise EvoRouteError(f"router {name!r} is registered by both "
                                        f"{found[name][0]} and {module.__name__}")
                found[name] = (module.__name__, factory)
        # entries set before the first load (a test's router) stay
        self._factories = {**{n: f for n, (_, f) in found.items()}, **self._factories}
        self._loaded = True
        return self._factories

    def __getitem__(self, name: str) -> RouterFactory:
        return self._load()[name]

    def __setitem__(self, name: str, factory: RouterFactory) -> None:
        self._load()[name] = factory

    def __delitem__(self, name: str) -> None:
        del self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


ROUTERS = RouterRegistry()


def make_router(name: str, models: list[ModelInfo], **params: Any) -> Router:
    """Build a router by registry name; ``single:<model>`` routes everything to one model."""
    if name.startswith("single:"):
        factory, params = ROUTERS["single"], {**params, "model": name.split(":", 1)[1]}
    elif name in ROUTERS:
        factory = ROUTERS[name]
    else:
        raise ValidationError(f"unknown router {name!r}; known: {', '.join(router_names())}", "router")
    return factory(models, **params)


def router_names() -> list[str]:
    return sorted(n for n in ROUTERS if n != "single") + ["single:<model>"]
