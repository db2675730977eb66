"""Schema migrations: a base made by the code before migrations upgrades itself on open.

The fixtures (tests/storage/fixtures/make_bases.py) were made by the code of 2026-12-02, before
migrations existed, and by dropping the columns added on 2026-12-01 from it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel, create_engine, select

from evoroute.storage import db, migrations, repo
from evoroute.storage.tables import ModelEntry, Run, StepRecord, Task

import db_helpers

FIXTURES = Path(__file__).parent / "fixtures"
TODAY, BEFORE_LIFECYCLE = "base_2026-12-02.db", "base_2026-11-30.db"
TABLES = ("model", "run", "task", "step")


def _copy(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    return path


def _rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, as plain sqlite3 reads it (columns of the file as it is)."""
    con = sqlite3.connect(path)
    out = {}
    for table in TABLES:
        cur = con.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [d[0] for d in cur.description]
        out[table] = [dict(zip(names, r)) for r in cur]
    con.close()
    return out


def _columns(engine) -> dict[str, set[str]]:
    insp = inspect(engine)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in TABLES}


def _declared() -> dict[str, set[str]]:
    return {t: set(SQLModel.metadata.tables[t].columns.keys()) for t in TABLES}


@pytest.mark.parametrize("name", [TODAY, BEFORE_LIFECYCLE])
def test_a_base_made_before_migrations_upgrades_itself_and_keeps_every_row(name, tmp_path):
    path = _copy(name, tmp_path)
    before = _rows(path)
    assert not sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE name='alembic_version'").fetchall()
    eng = db.make_engine(f"sqlite:///{path}")
    with eng.connect() as c:
        assert migrations.current_revision(c) == migrations.head()
    assert _columns(eng) == _declared()          # the migrations reach what tables.py declares
    after = _rows(path)
    for table in TABLES:                          # every row, every old value, new columns NULL
        assert len(after[table]) == len(before[table]) > 0
        for old, new in zip(before[table], after[table]):
            assert {k: new[k] for k in old} == old
            assert all(new[k] is None for k in set(new) - set(old))
    assert migrations.upgrade(eng) == []          # idempotent
    eng.dispose()


def test_the_upgraded_base_reads_and_writes_through_todays_code(tmp_path):
    path = _copy(BEFORE_LIFECYCLE, tmp_path)
    eng = db.make_engine(f"sqlite:///{path}")
    with db.session(eng) as s:
        assert [m.name for m in repo.list_models(session=s)] == \
            ["gpt-fixture", "local-fixture", "off-fixture"]
        assert [m.name for m in repo.list_models(session=s, enabled_only=True)] == \
            ["gpt-fixture", "local-fixture"]
        runs = {r.name: r for r in repo.list_runs(session=s)}
        assert {n: r.status for n, r in runs.items()} == {
            "finished fixture": "finished", "interrupted fixture": "interrupted",
            "import: fixture.csv": "finished", "import: stuck.csv": "importing"}
        assert runs["finished fixture"].pid is None and runs["finished fixture"].n_steps_done == 9
        # the new columns work: a run records its process, a step its number and tool error
        run = repo.create_run(session=s, config={}, name="after upgrade", status="running")
        assert run.pid is not None and run.heartbeat_at is not None
        task = db_helpers.create_task(session=s, run_id=run.id, task_key="t")
        db_helpers.add_steps([StepRecord(run_id=run.id, task_id=task.id, role="planner", model="m",
                                   instruction="new", step_no=1, tool_error="refused")],
                       session=s)
        got = s.exec(select(StepRecord).where(StepRecord.run_id == run.id)).one()
        assert (got.step_no, got.tool_error) == (1, "refused")
        assert len(list(s.exec(select(Task)))) == 9
        assert s.get(ModelEntry, 2).api_base == "http://127.0.0.1:8080/v1"
    eng.dispose()


def test_todays_fixture_keeps_its_lifecycle_columns(tmp_path):
    eng = db.make_engine(f"sqlite:///{_copy(TODAY, tmp_path)}")
    with db.session(eng) as s:
        run = s.exec(select(Run).where(Run.name == "finished fixture")).one()
        assert run.pid is not None and run.heartbeat_at is not None
        errs = [r.tool_error for r in s.exec(select(StepRecord)) if r.tool_error]
        assert errs == ["tool 'shell' refused: not in the allow-list"]
    eng.dispose()


def test_a_stamped_base_gets_only_the_revisions_it_lacks(tmp_path):
    path = _copy(BEFORE_LIFECYCLE, tmp_path)
    con = sqlite3.connect(path)                   # as if stamped at the baseline
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('0001')")
    con.commit()
    con.close()
    eng = db.make_engine(f"sqlite:///{path}")
    with eng.connect() as c:
        assert migrations.current_revision(c) == migrations.head()
    assert _columns(eng) == _declared()
    eng.dispose()
    # a base one revision behind: only that revision runs
    path = _copy(TODAY, tmp_path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE step DROP COLUMN tool_error")
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('0002')")
    con.commit()
    con.close()
    eng = create_engine(f"sqlite:///{path}")      # a plain engine: upgrade called here
    assert migrations.upgrade(eng) == ["0003", "0004"]
    assert "tool_error" in _columns(eng)["step"]
    eng.dispose()


def test_a_base_at_0003_gets_the_run_stage_and_keeps_its_rows(tmp_path):
    """Today's fixture has the schema of revision 0003: stamped there, only 0004 runs; every
    row keeps its values, the stage columns start empty and today's code writes them."""
    from evoroute.runs import stages

    path = _copy(TODAY, tmp_path)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('0003')")
    con.commit()
    con.close()
    before = _rows(path)
    assert not {"stage", "stage_progress", "stage_detail"} & set(before["run"][0])
    eng = create_engine(f"sqlite:///{path}")
    assert migrations.upgrade(eng) == ["0004"]
    assert _columns(eng) == _declared()
    eng.dispose()
    after = _rows(path)
    for table in TABLES:
        assert len(after[table]) == len(before[table]) > 0
        for old, new in zip(before[table], after[table]):
            assert {k: new[k] for k in old} == old
    assert [(r["stage"], r["stage_progress"], r["stage_detail"]) for r in after["run"]] == \
        [(None, None, None)] * len(after["run"])
    eng = db.make_engine(f"sqlite:///{path}")
    with db.session(eng) as s:
        run = s.exec(select(Run).where(Run.name == "finished fixture")).one()
        repo.update_run(run.id, session=s, stage=stages.EMBEDDING, stage_progress=0.4,
                        stage_detail="1,200 of 3,000 instructions")
        got = repo.get_run(run.id, session=s)
        assert (got.stage, got.stage_progress, got.stage_detail) == (
            "embedding", 0.4, "1,200 of 3,000 instructions")
    eng.dispose()


def test_a_fresh_base_is_created_from_the_tables_and_stamped_at_the_head(tmp_path):
    eng = db.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    with eng.connect() as c:
        assert migrations.current_revision(c) == migrations.head()
    assert _columns(eng) == _declared()
    assert migrations.upgrade(eng) == []
    eng.dispose()


def test_the_revision_files_are_one_line_of_history_named_by_their_ids():
    """migrations.head() reads the newest file name instead of importing alembic."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(migrations.HERE))
    revs = list(reversed(list(scripts.walk_revisions())))          # oldest first
    assert [r.revision for r in revs] == [f"{i:04d}" for i in range(1, len(revs) + 1)]
    assert [r.down_revision for r in revs] == [None] + [r.revision for r in revs[:-1]]
    assert all(Path(r.path).name.startswith(r.revision + "_") for r in revs)
    assert scripts.get_current_head() == migrations.head()


UPGRADER = r"""
import sys
from evoroute.storage import db
eng = db.make_engine(f"sqlite:///{sys.argv[1]}")
with eng.connect() as c:
    print(sorted(r[1] for r in c.exec_driver_sql("PRAGMA table_info(step)")))
"""


def test_processes_opening_an_old_base_at_once_upgrade_it_once(tmp_path):
    import subprocess
    import sys

    from evoroute.settings import PROJECT_ROOT

    path = _copy(BEFORE_LIFECYCLE, tmp_path)
    before = _rows(path)
    procs = [subprocess.Popen([sys.executable, "-c", UPGRADER, str(path)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1 and "tool_error" in outs[0][0]
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == \
        [(migrations.head(),)]
    con.close()
    after = _rows(path)
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}


def test_new_revision_starts_the_next_one_after_the_head(tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(migrations.HERE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    path = migrations.new_revision("step foo", directory=directory)
    nxt = f"{int(migrations.head()) + 1:04d}"
    assert path.name == f"{nxt}_step_foo.py" and migrations.head(directory) == nxt
    text = path.read_text()
    assert f"revision = '{nxt}'" in text and f"down_revision = '{migrations.head()}'" in text


def test_a_base_from_newer_code_is_refused_with_a_clear_message(tmp_path):
    from evoroute.core.errors import EvoRouteError

    path = tmp_path / "newer.db"
    db.make_engine(f"sqlite:///{path}").dispose()
    newer = f"{int(migrations.head()) + 1:04d}"
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = ?", (newer,))
    con.commit()
    con.close()
    with pytest.raises(EvoRouteError, match=f"schema revision {newer}, newer than"):
        db.make_engine(f"sqlite:///{path}")
    con = sqlite3.connect(path)                    # left as it was
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(newer,)]
    con.close()
