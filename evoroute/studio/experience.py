"""The Experience page's log: filter options and one page of step records (both in SQL)."""

from __future__ import annotations

import pandas as pd
from sqlmodel import Session

from evoroute.settings import DEFAULTS
from evoroute.storage import repo, views

#: Display name of each column of :data:`evoroute.storage.views.STEP_PAGE_COLUMNS`.
EXPERIENCE_TABLE_COLUMNS = {"id": "id", "run_id": "run", "task_key": "task", "step_index": "step",
                            "phase": "phase", "role": "role", "model": "model",
                            "instruction": "instruction", "tools": "tools",
                            "step_success": "success σ", "task_success": "task success P(τ)",
                            "cost_usd": "cost (USD)", "duration_s": "latency (s)",
                            "latency_label": "latency label", "error": "error"}


def experience_page(flt: repo.StepFilter, *, session: Session, page: int = 1,
                    page_size: int = DEFAULTS.page_size) -> tuple[pd.DataFrame, int]:
    """One page of the filtered step records and the filtered total (both in SQL)."""
    rows, total = views.step_page(flt, session=session, page=max(1, int(page)),
                                  page_size=page_size)
    return rows.rename(columns=EXPERIENCE_TABLE_COLUMNS)[list(EXPERIENCE_TABLE_COLUMNS.values())], total


def page_count(total: int, page_size: int) -> int:
    """How many pages ``total`` records fill (at least one, so page 1 always exists)."""
    return max(1, -(-int(total) // int(page_size)))


def filter_options(*, session: Session) -> dict[str, list]:
    return {"runs": [r.id for r in repo.list_runs(session=session, limit=500)],
            "roles": views.distinct_step_values("role", session=session),
            "models": views.distinct_step_values("model", session=session)}
