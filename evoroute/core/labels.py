"""One label vocabulary: what produced a number, as every figure, table and export must say.

A run stores its label once (the runner writes ``Run.label`` from its backend with
:func:`run_label`); every page, the CLI and the bench only read it through :func:`label_of`.
Kinds never share a curve, a hull or a front: :func:`kind_of` is the key to group by.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The backend that produced a run -> the kind of its numbers.
KINDS = {"replay": "replayed", "simulated": "simulated", "live": "live", "import": "imported"}
#: Where a step's latency came from (``unknown``: an imported row that did not say).
LATENCY_SOURCES = ("modelled", "measured", "simulated", "unknown")
#: The latency source a backend reports unless a step says otherwise (an import's rows each
#: carry their own, so its run label is its kind alone).
DEFAULT_LATENCY = {"replay": "modelled", "simulated": "simulated", "live": "measured"}
#: The scope of a run's totals on Overview and Runs (Compare reads the test split only).
ALL_STEPS = ("every step of the run: cold start, train and test phases "
             "(Compare shows the test split only)")


def kind_of(backend: str | None) -> str:
    """``replayed`` / ``simulated`` / ``live`` / ``imported`` (an unknown backend as itself)."""
    return KINDS.get(backend or "", backend or "unknown")


def run_label(backend: str | None, latency: str | None = None) -> str:
    """The label a run stores: its kind, and the latency source when it is another word
    (``replayed · latency modelled``, ``live · latency measured``, ``simulated``)."""
    kind = kind_of(backend)
    latency = latency or DEFAULT_LATENCY.get(backend or "")
    if not latency or latency == kind:
        return kind
    return f"{kind} · latency {latency}"


def label_of(run: Any) -> str:
    """The stored label of a run (anything with ``label`` and ``backend``); a run stored
    before labels were written gets the one its backend implies."""
    label = (getattr(run, "label", None) or "").strip()
    return label or run_label(getattr(run, "backend", None))


def caption(labels: Iterable[str]) -> str:
    """One honest caption for a figure that mixes runs: every distinct label, once."""
    seen = list(dict.fromkeys(x for x in labels if x))
    return " + ".join(seen) if seen else "no runs"
