"""Schema migrations of the experience base (alembic, run programmatically: no alembic.ini).

:func:`upgrade` runs when an engine is made (:func:`evoroute.storage.db.make_engine`):

- a fresh base (no ``run`` table) gets every table from the SQLModel definitions
  (``create_all``) and is stamped at the head revision;
- an existing base, with or without an ``alembic_version`` table, is upgraded to the head
  (a base made before migrations existed has none and starts from the baseline ``0001``).

On SQLite both happen inside one ``BEGIN IMMEDIATE`` transaction, so two processes opening the
same file at once do not race: the second waits for the write lock, then finds the base at the
head.

A new column: its field in ``tables.py``, one revision in ``versions/`` and its test. Start the
revision with ``python -c "from evoroute.storage import migrations;
migrations.new_revision('step foo')"`` (the next four-digit id, after the head) and write its
``op.add_column`` (nullable, or with a ``server_default`` for the rows already stored).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from evoroute.core.errors import EvoRouteError
from evoroute.storage import tables  # noqa: F401  (registers the tables on the metadata)

HERE = Path(__file__).resolve().parent


def _config(connection: Connection | None = None, directory: Path = HERE):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(directory))
    cfg.attributes["connection"] = connection
    return cfg


def new_revision(message: str, *, directory: Path = HERE) -> Path:
    """Write an empty revision after the head (id: the next four digits); returns its file."""
    from alembic import command

    rev_id = f"{int(head(directory)) + 1:04d}"
    command.revision(_config(directory=directory), message=message, rev_id=rev_id)
    return next((directory / "versions").glob(f"{rev_id}_*.py"))


@lru_cache(maxsize=1)
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head(directory: Path = HERE) -> str:
    """The newest revision. Revision ids are the four digits that start the names of the files
    in ``versions/``, in one line of history, so this reads no script (alembic's import costs
    more than opening the base); tests/storage/test_migrations.py checks it against alembic."""
    return max(p.name[:4] for p in (directory / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(conn: Connection) -> str | None:
    """The revision a base is stamped at (None: not stamped, e.g. made before migrations)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _is_current(conn: Connection) -> bool:
    return inspect(conn).has_table("run") and current_revision(conn) == head()


def upgrade(engine: Engine) -> list[str]:
    """Bring the base behind ``engine`` to the head revision; returns the revisions applied
    (``[]`` when it was there already; ``["create_all"]`` for a fresh base)."""
    with engine.connect() as conn:
        if _is_current(conn):
            return []
    from alembic import command

    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")   # the write lock first: one migrator
        if _is_current(conn):                        # another process did it meanwhile
            conn.rollback()
            return []
        if not inspect(conn).has_table("run"):
            SQLModel.metadata.create_all(conn)
            from alembic.runtime.migration import MigrationContext

            MigrationContext.configure(conn).stamp(_scripts(), "head")
            applied = ["create_all"]
        else:
            before = current_revision(conn)
            if before is not None and before > head():
                raise EvoRouteError(f"the experience base has schema revision {before}, newer "
                                    f"than this EvoRoute's ({head()}): update EvoRoute to open it")
            command.upgrade(_config(conn), "head")
            applied = [s.revision for s in
                       reversed(list(_scripts().iterate_revisions("head", before)))]
        conn.commit()
    return applied
