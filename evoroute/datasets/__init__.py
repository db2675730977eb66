"""Datasets for replay: the long format (spec §5), the bundled RouterBench subset and the
bundled agent steps (``agent_steps``)."""

from evoroute.datasets.agent_steps import AGENT_STEPS_NAME, load_agent_steps
from evoroute.datasets.long_schema import LONG_COLUMNS, REQUIRED_COLUMNS
from evoroute.datasets.longformat import read_long, seeded_split, validate_long
from evoroute.datasets.routerbench import (
    BUNDLED_DATASETS,
    load_dataset,
    load_routerbench,
    routerbench_models,
)

__all__ = [
    "LONG_COLUMNS", "REQUIRED_COLUMNS", "read_long", "validate_long", "seeded_split",
    "BUNDLED_DATASETS", "load_dataset", "load_routerbench", "routerbench_models",
    "AGENT_STEPS_NAME", "load_agent_steps",
]
