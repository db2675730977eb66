"""For the revisions that bring bases made before migrations up to date: such a base may
already have some of the columns (the code of 2026-12-01 added them on open), so these
revisions add only the columns it lacks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def add_missing(table: str, *columns: sa.Column) -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for column in columns:
        if column.name not in have:
            op.add_column(table, column)


def drop(table: str, *names: str) -> None:
    with op.batch_alter_table(table) as batch:
        for name in names:
            batch.drop_column(name)
