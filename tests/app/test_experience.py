"""Experience page: SQL filters and paging, CSV export (escaped) and import (all or nothing),
and the retrieval inspector."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import select

from evoroute.storage import db, repo
from evoroute.storage.tables import EXPORT_COLUMNS, Run, StepRecord

from studio_helpers import FIXED_MODELS, FORMULA_INSTRUCTIONS, captions, errors, open_app


def _match_caption(at) -> str:
    return next(c for c in captions(at) if "records match" in c)


def test_filters_and_paging_run_in_sql(fixed_db):
    at = open_app("experience")
    assert errors(at) == []
    assert _match_caption(at).startswith("120 records match · page 1 of 3")
    at.multiselect(key="ex_roles").select("coder").run()
    assert _match_caption(at).startswith("60 records match")
    at.multiselect(key="ex_models").select("strong")
    at.selectbox(key="ex_success").set_value("failure (< 0.5)").run()
    assert _match_caption(at).startswith("2 records match")       # 18 of 20 succeed
    table = at.dataframe[0].value
    assert set(table["model"]) == {"strong"} and set(table["role"]) == {"coder"}
    assert set(table["success σ"]) == {0.0}

    at.multiselect(key="ex_models").set_value([])
    at.selectbox(key="ex_success").set_value("any")
    at.text_input(key="ex_text").set_value("freezing").run()
    assert _match_caption(at).startswith("2 records match")     # steps 3 and 7 (role coder)
    assert at.dataframe[0].value["instruction"].tolist() == [FORMULA_INSTRUCTIONS[2]] * 2
    assert at.dataframe[0].value["id"].tolist() == [7, 3]

    at.text_input(key="ex_text").set_value("")
    at.multiselect(key="ex_roles").set_value([])
    at.selectbox(key="ex_page_size").set_value(25).run()
    first = at.dataframe[0].value["id"].tolist()
    at.number_input(key="ex_page").set_value(2).run()
    second = at.dataframe[0].value["id"].tolist()
    assert len(first) == len(second) == 25
    assert first == list(range(120, 95, -1)) and second == list(range(95, 70, -1))


def _export(at) -> list[dict]:
    at.button(key="ex_export_prepare").click().run()
    assert errors(at) == []
    data = at.session_state["ex_export"]["data"]
    assert at.download_button(key="ex_export_download").label.startswith("Download")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_export_gives_expected_rows_with_formula_escaping(fixed_db):
    _, engine, _ = fixed_db
    with db.session(engine) as s:     # an error message echoing a key must not leave the base
        rec = s.get(StepRecord, 1)
        rec.error = "401: Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwx"
        s.add(rec)
        s.commit()
    at = open_app("experience")
    at.multiselect(key="ex_roles").select("coder").run()
    rows = _export(at)
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert "embedding" not in rows[0]
    assert len(rows) == 60
    assert [int(r["id"]) for r in rows] == list(range(1, 61))
    by_id = {int(r["id"]): r for r in rows}
    # the first 8 steps carry the formula-like instructions, in order
    for i, text in enumerate(FORMULA_INSTRUCTIONS * 2, start=1):
        assert by_id[i]["instruction"] == "'" + text
        assert by_id[i]["instruction"][1] in "=+-@"
    assert by_id[9]["instruction"].startswith("coder step")       # plain text is untouched
    r2 = by_id[2]
    assert (r2["role"], r2["model"], float(r2["cost_usd"]), float(r2["duration_s"]),
            float(r2["step_success"])) == ("coder", "mid", 0.001, 1.0, 1.0)
    assert "sk-proj" not in by_id[1]["error"] and "[redacted]" in by_id[1]["error"]
    with db.session(engine) as s:
        assert repo.count_steps(repo.StepFilter(roles=["coder"]), session=s) == len(rows)


BAD_CSV = (
    "role,model,instruction,cost_usd,duration_s,step_success\n"
    "coder,mid,write a parser,0.001,1.2,1\n"
    "coder,mid,write a lexer,abc,1.1,0\n"
    "coder,cheap,write a test,0.0001,0.4,1\n"
)


def test_import_of_bad_csv_names_line_and_column_and_stores_nothing(fixed_db):
    _, engine, _ = fixed_db
    with db.session(engine) as s:
        n_before = repo.count_steps(session=s)
        runs_before = len(repo.list_runs(session=s))
    at = open_app("experience")
    at.checkbox(key="ex_import_embed").uncheck()
    at.file_uploader(key="ex_import_file").set_value(("bad.csv", BAD_CSV.encode(), "text/csv"))
    at.run()
    at.button(key="ex_import_go").click().run()
    errs = errors(at)
    assert len(errs) == 1
    assert "line 3" in errs[0] and "column 'cost_usd'" in errs[0] and "'abc'" in errs[0]
    with db.session(engine) as s:
        assert repo.count_steps(session=s) == n_before
        assert len(repo.list_runs(session=s)) == runs_before


def test_export_then_import_round_trips(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("experience")
    at.multiselect(key="ex_models").select("cheap").run()
    at.button(key="ex_export_prepare").click().run()
    data = at.session_state["ex_export"]["data"]
    at.checkbox(key="ex_import_embed").uncheck()
    at.file_uploader(key="ex_import_file").set_value(("cheap.csv", data, "text/csv"))
    at.run()
    at.button(key="ex_import_go").click().run()
    assert errors(at) == []
    assert any("imported 40 records into run #2" in s.value for s in at.success)
    with db.session(engine) as s:
        run = s.get(Run, 2)
        assert (run.backend, run.status, run.n_steps_done) == ("import", "finished", 40)
        imported = list(s.exec(select(StepRecord).where(StepRecord.run_id == 2).order_by(StepRecord.id)))
        original = list(s.exec(select(StepRecord).where(StepRecord.run_id == 1)
                               .where(StepRecord.model == "cheap").order_by(StepRecord.id)))
    assert {r.phase for r in imported} == {"import"}
    assert [r.instruction for r in imported] == [r.instruction for r in original]   # unescaped
    assert [(r.cost_usd, r.duration_s, r.step_success, r.task_success) for r in imported] == \
        [(r.cost_usd, r.duration_s, r.step_success, r.task_success) for r in original]


def test_retrieval_inspector_is_deterministic(fixed_db):
    at = open_app("experience")
    at.text_area(key="ex_ri_text").set_value("coder step 3: solve problem number 7 with care")
    at.selectbox(key="ex_ri_role").set_value("coder")
    at.number_input(key="ex_ri_seed").set_value(7)
    at.button(key="ex_ri_go").click().run(timeout=180)
    assert errors(at) == []
    res = at.session_state["ex_ri_result"]
    ch = res.channels.set_index("model")
    # the role channel finds the 20 coder records of each model
    assert ch.loc[["cheap", "mid", "strong"], "role"].tolist() == [20, 20, 20]
    cands = res.candidates.set_index("model")
    for name, m in FIXED_MODELS.items():
        assert cands.loc[name, "n"] >= 20
        assert cands.loc[name, "Ĉ (USD)"] == pytest.approx(m["cost"])
    assert res.explanation.mode == "thompson"
    assert res.explanation.chosen in FIXED_MODELS
    first = res.explanation.to_json()
    assert {d.proto.placeholder for d in at.dataframe} == {"–"}      # never "None" in a cell
    assert any(m.value.startswith(f"**Decision: {res.explanation.chosen}**") for m in at.markdown)
    at.button(key="ex_ri_go").click().run(timeout=180)
    assert at.session_state["ex_ri_result"].explanation.to_json() == first   # same seed, same draws


# ----------------------------------------------------------------------------- issue 12
def test_a_page_past_the_end_shows_the_last_page(fixed_db):
    """'page 9999 of 324 shows an empty grid': a page past the end opens the last page and says so."""
    at = open_app("experience")
    at.number_input(key="ex_page").set_value(9999).run()
    assert errors(at) == []
    assert _match_caption(at).startswith("120 records match · page 3 of 3")
    assert at.number_input(key="ex_page").value == 3
    assert at.dataframe[0].value["id"].tolist() == list(range(20, 0, -1))
    assert any("page 9999 does not exist" in c for c in captions(at))
    # a narrower filter keeps the page inside its own range too
    at.number_input(key="ex_page").set_value(2).run()
    at.multiselect(key="ex_models").select("strong").run()      # 40 records: one page
    assert _match_caption(at).startswith("40 records match · page 1 of 1")
    assert len(at.dataframe[0].value) == 40


def test_missing_values_are_not_printed_as_none(fixed_db):
    """'"None" printed as text': empty cells show a dash (no error, no task success yet)."""
    at = open_app("experience")
    assert at.dataframe[0].value["error"].isna().all()
    assert at.dataframe[0].proto.placeholder == "–"
