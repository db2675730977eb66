"""Baseline: the schema ``create_all`` made before migrations (the foundation, 2026-11-23).

A base of that time has these tables and no ``alembic_version``; upgrading it starts here, so
this revision changes nothing. Fresh bases are made by ``create_all`` and stamped at the head.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
