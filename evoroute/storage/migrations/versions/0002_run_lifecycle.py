"""Run lifecycle: the owning process and heartbeat of a run, the run's step number of a step.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from evoroute.storage.migrations.columns import add_missing, drop

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_missing("run", sa.Column("pid", sa.Integer(), nullable=True),
                sa.Column("proc_started", sa.Float(), nullable=True),
                sa.Column("host", sa.String(), nullable=True),
                sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    add_missing("step", sa.Column("step_no", sa.Integer(), nullable=True))


def downgrade() -> None:
    drop("step", "step_no")
    drop("run", "heartbeat_at", "host", "proc_started", "pid")
