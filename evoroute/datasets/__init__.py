"""Datasets for replay: the long format (spec §5) and the bundled RouterBench subset."""

from evoroute.datasets.longformat import (
    LONG_COLUMNS, REQUIRED_COLUMNS, read_long, seeded_split, validate_long,
)
from evoroute.datasets.routerbench import (
    BUNDLED_DATASETS, load_dataset, load_routerbench, routerbench_models,
)

__all__ = [
    "LONG_COLUMNS", "REQUIRED_COLUMNS", "read_long", "validate_long", "seeded_split",
    "BUNDLED_DATASETS", "load_dataset", "load_routerbench", "routerbench_models",
]
