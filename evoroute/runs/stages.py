"""The stages of a run, in the order a run goes through them, as ``Run.stage`` stores them.

The worker commits each stage as it happens (:class:`evoroute.runs.lifecycle.StageReporter`
during the preparation, the per-step commit during the task phases), with how far into it the
run is (``Run.stage_progress``, 0..1, None when it cannot be measured) and a line saying so
(``Run.stage_detail``); the studio's live view draws them instead of guessing.
"""

from __future__ import annotations

from evoroute.core.types import PHASES

LOADING = "loading"          # the dataset, the backend, the router and its task phases
COLLECTING = "collecting"    # a live pass: every model on every train task (live.collect)
EMBEDDING = "embedding"      # one embedding batch for every instruction of the run
TRAINING = "training"        # a router that learns from every model's train outcome
INDEXING = "indexing"        # the full protocol's experience base, loaded in one batch
REPLAYING = "replaying"      # a resumed run re-deciding its stored steps (nothing written)
COLD_START, OPTIMIZE, INFERENCE = PHASES
FINISHED = "finished"

#: the stages before the run's first new step: the studio shows them in place of task counts
PREPARING = (LOADING, COLLECTING, EMBEDDING, TRAINING, INDEXING, REPLAYING)
#: every stage, in the order a run goes through them (a run skips the ones it does not need)
ORDER = (LOADING, COLLECTING, EMBEDDING, TRAINING, INDEXING, REPLAYING, COLD_START, OPTIMIZE, INFERENCE,
         FINISHED)

TITLES = {
    LOADING: "loading the data and building the router",
    COLLECTING: "every model on every train task (live collection pass)",
    EMBEDDING: "embedding",
    TRAINING: "training the router on the train split",
    INDEXING: "building the experience index",
    REPLAYING: "replaying the stored steps",
    COLD_START: "cold start (random models)",
    OPTIMIZE: "online training (train split)",
    INFERENCE: "test split",
    FINISHED: "finished",
}


def title(stage: str | None) -> str:
    """What a person reads for a stored stage (an unknown one as itself)."""
    return TITLES.get(stage or "", stage or "")
