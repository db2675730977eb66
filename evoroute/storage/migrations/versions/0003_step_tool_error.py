"""A refused or failed tool call stored with its step (step.tool_error).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from evoroute.storage.migrations.columns import add_missing, drop

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_missing("step", sa.Column("tool_error", sa.Text(), nullable=True))


def downgrade() -> None:
    drop("step", "tool_error")
