"""The one step-record definition (storage/tables.StepRecord) and what is derived from it: the
insert row, the CSV export columns and the CSV import row."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import ValidationError as PydanticError
from pydantic import create_model
from sqlmodel import select

from evoroute.core.types import StepOutcome
from evoroute.csvio import rows
from evoroute.storage import db
from evoroute.storage.tables import EXPORT_COLUMNS, OUTCOME_COLUMNS, STEP_COLUMNS, StepRecord, step_row


def test_export_columns_are_the_step_columns_not_marked_out_of_csv():
    # the CSV header is a contract: this order, no embedding / task id / step number / tool error
    assert EXPORT_COLUMNS == (
        "id", "run_id", "task_key", "step_index", "phase", "role", "model", "query_id",
        "instruction", "tools", "cost_usd", "duration_s", "latency_label", "ttft_s",
        "step_success", "task_success", "input_tokens", "output_tokens", "error", "propensity",
        "router", "created_at", "explanation")
    assert set(STEP_COLUMNS) - set(EXPORT_COLUMNS) == {"embedding", "task_id", "step_no",
                                                       "tool_error"}


def test_the_import_row_covers_every_exported_column_but_the_assigned_ones():
    assert set(rows.IMPORT_COLUMNS) == set(EXPORT_COLUMNS) - set(rows.ASSIGNED_ON_IMPORT)
    assert list(rows.StepCsvRow.model_fields) == list(rows.IMPORT_COLUMNS)
    assert rows.IMPORT_COLUMNS[:5] == rows.REQUIRED_COLUMNS      # checked first, in this order


def test_step_row_takes_the_outcome_then_the_decision_fields_and_fills_defaults(engine):
    outcome = StepOutcome(model="m", step_success=1.0, cost_usd=0.002, duration_s=1.5,
                          latency_label="measured", input_tokens=10, output_tokens=20,
                          ttft_s=0.3, error=None, response="not stored", tool_error="refused")
    assert set(OUTCOME_COLUMNS) == {"model", "step_success", "cost_usd", "duration_s",
                                    "latency_label", "input_tokens", "output_tokens", "ttft_s",
                                    "error", "tool_error"}
    row = step_row(outcome, role="coder", instruction="write it", step_no=3)
    assert set(row) == set(STEP_COLUMNS) - {"id"}
    assert (row["model"], row["cost_usd"], row["tool_error"], row["role"], row["step_no"]) == \
        ("m", 0.002, "refused", "coder", 3)
    assert (row["phase"], row["router"], row["task_success"]) == ("", "", None)   # defaults
    assert row["created_at"] is not None
    with pytest.raises(KeyError, match="response"):
        step_row(response="x")
    from sqlalchemy import insert

    with engine.begin() as conn:
        conn.execute(insert(StepRecord), [row, step_row(outcome, role="planner")])
    with db.session(engine) as s:
        got = list(s.exec(select(StepRecord).order_by(StepRecord.id)))
    assert [(r.role, r.model, r.tool_error, r.latency_label) for r in got] == \
        [("coder", "m", "refused", "measured"), ("planner", "m", "refused", "measured")]


@pytest.mark.parametrize("column, good, value, bad, message", [
    ("ttft_s", "0.25", 0.25, "soon", "must be a number, got 'soon'"),
    ("input_tokens", "12", 12, "1.5", "must be a whole number >= 0, got '1.5'"),
    ("error", "  kept as it is ", "  kept as it is ", "a\x00b", "contains a NUL character"),
])
def test_a_column_without_a_rule_is_imported_by_its_type(column, good, value, bad, message):
    """What a new step column gets: the rule its type in StepRecord gives."""
    kind, check, empty = rows._by_type(column)
    model = create_model("One", **{column: (Annotated[kind, check], empty)})
    ctx = {"env": [], "line": 2}
    assert getattr(model.model_validate({column: good}, context=ctx), column) == value
    assert getattr(model.model_validate({column: ""}, context=ctx), column) is None
    with pytest.raises(PydanticError) as exc:
        model.model_validate({column: bad}, context=ctx)
    assert message in str(exc.value.errors()[0]["ctx"]["error"])
