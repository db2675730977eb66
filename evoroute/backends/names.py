"""What a run spec, the CLI and the studio need to know about the backends before one is built.

No imports, so ``python -m evoroute --help`` and spec validation stay light. A new backend adds
its name here (and its default dataset, and whether it brings its own models), its module, and
its branch in :func:`evoroute.backends.registry.backend_class`.
"""

BACKEND_NAMES: tuple[str, ...] = ("replay", "simulated", "live")
#: the dataset / scenario / task set a run uses when it names none
DEFAULT_DATASET: dict[str, str] = {"replay": "routerbench", "simulated": "default", "live": "default"}
#: backends that bring their own candidate models (a run does not use the registered ones)
OWN_MODELS: frozenset[str] = frozenset({"simulated"})
