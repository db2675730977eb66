"""What a run is doing now: run.stage, run.stage_progress and run.stage_detail (issue 11 item 9).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from evoroute.storage.migrations.columns import add_missing, drop

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_missing("run", sa.Column("stage", sa.String(), nullable=True),
                sa.Column("stage_progress", sa.Float(), nullable=True),
                sa.Column("stage_detail", sa.String(), nullable=True))


def downgrade() -> None:
    drop("run", "stage_detail", "stage_progress", "stage")
