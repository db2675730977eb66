"""Exports and imports: CSV-injection escaping (OWASP, incl. leading whitespace and NFKC forms),
credential redaction on export and import, cells of any size, explanation validation, and a
chunked import that lets a concurrent writer in (real SQLite file, real threads)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest
from bounded import ends_within
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from evoroute import secrets
from evoroute.core.errors import DatasetError, EvoRouteError
from evoroute.core.types import CandidateStat, Explanation
from evoroute.csvio import cells, export, importer
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task

HEADER = "role,model,instruction,cost_usd,duration_s,step_success,task_success,task_key,error\n"

# 15 formula-leading shapes: OWASP's = + - @ tab CR, newline, leading whitespace before them,
# fullwidth forms and other characters that NFKC-normalise to them
FORMULA_VARIANTS = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", " =1", "  +cmd|' /C calc'!A0",
                    "\u3000=1", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)", "\ufe66HYPERLINK()"]
SAFE = ["plain", "a=b", "", "1-2", "'quoted", "  spaced text", "e-mail@example.com"]

# 26 secret shapes; each entry: (text containing it, the part that must not survive)
SECRET_SHAPES = {
    "openai": ("key sk-proj-AbCdEf0123456789AbCdEf0123456789", "AbCdEf0123456789"),
    "anthropic": ("sk-ant-api03-AbCdEf0123456789AbCdEf0123456789", "api03-AbCdEf"),
    "aws_access_key_id": ("AKIAIOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    "google_api_key": ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "SyA1234567890abc"),
    "google_oauth": ("ya29.a0AfH6SMBabcdefghijklmnopqrstu", "a0AfH6SMBabc"),
    "github_ghp": ("ghp_AbCdEf0123456789AbCdEf0123456789abcd", "AbCdEf0123456789"),
    "github_gho": ("gho_AbCdEf0123456789AbCdEf0123456789abcd", "AbCdEf0123456789"),
    "github_pat": ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0123"),
    "gitlab": ("glpat-AbCdEfGhIjKlMnOpQrSt", "AbCdEfGhIjKl"),
    "huggingface": ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "AbCdEfGhIjKl"),
    "slack_bot": ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "1234567890123"),
    "slack_user": ("xoxp-123456789012-1234567890123-AbCdEfGhIjKl", "1234567890123"),
    "slack_webhook": ("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX", "XXXXXXXXXXXX"),
    "stripe": ("sk_live_AbCdEfGhIjKlMnOpQrStUv", "AbCdEfGhIjKl"),
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "dozjgNryP4J3"),
    "pem_rsa": ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nQWERTY\n"
                "-----END RSA PRIVATE KEY-----", "QWERTY"),
    "pem_openssh": ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n"
                    "-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXk"),
    "password_assignment": ("password=Hunter2Secret!", "Hunter2Secret"),
    "passwd_colon": ("passwd: correcthorsebattery", "correcthorsebattery"),
    "secret_assignment": ("client_secret=s3cr3tvalue99", "s3cr3tvalue99"),
    "api_key_assignment": ("api_key=abcdef123456", "abcdef123456"),
    "token_assignment": ("token=tok_9f8e7d6c5b4a", "tok_9f8e7d6c5b4a"),
    "json_password": ('{"password": "Hunter2Secret"}', "Hunter2Secret"),
    "bearer": ("Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
    "basic_auth": ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    "url_credentials": ("https://alice:s3cretpw@example.com/v1", "s3cretpw"),
}


@pytest.fixture
def file_engine(tmp_path):
    return db.make_engine(f"sqlite:///{tmp_path / 'base.db'}")


def _run(engine, **fields) -> Run:
    """A run owned by this (live) process, as the runner records it."""
    from datetime import datetime, timezone

    owner = repo.process_identity().fields() if hasattr(repo, "process_identity") else {}
    if owner:
        owner["heartbeat_at"] = datetime.now(timezone.utc)
    with db.session(engine) as s:
        run = Run(**owner, **fields)
        s.add(run)
        s.commit()
        return run


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as c:
        return tuple(int(c.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (Run, Task, StepRecord))


# ----------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("text", FORMULA_VARIANTS)
def test_every_formula_variant_is_escaped_and_restored(text):
    out = cells.escape_cell(text)
    assert out == "'" + text
    assert cells.unescape_cell(out) == text


@pytest.mark.parametrize("text", SAFE)
def test_plain_text_is_left_alone(text):
    assert cells.escape_cell(text) == text and cells.unescape_cell(text) == text


def test_a_quote_before_formula_text_round_trips():
    # a user's own "'=x" gets one more quote, so import removes exactly the one export added
    for text in ("'=x", "''+1", "' =1"):
        assert cells.unescape_cell(cells.escape_cell(text)) == text
        assert cells.escape_cell(text) == "'" + text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("'=+-@ \t\r\nax\u3000\uff1d\uff0b\ufe62\u2212")),
               max_size=8) | st.text(max_size=12))
def test_escape_round_trips_every_text(text):
    assert cells.unescape_cell(cells.escape_cell(text)) == text
    # and what export writes never starts a formula
    assert not cells.formula_like(cells.escape_cell(text))


def test_formula_variants_survive_a_file_round_trip(file_engine, tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER.strip().split(","))
    for i, v in enumerate(FORMULA_VARIANTS):
        w.writerow(["coder", "m", v, 0.1, 1, 1, 1, f"t{i}", v])
    run_id, n = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="f.csv")
    assert n == len(FORMULA_VARIANTS)
    out = tmp_path / "out.csv"
    export.export_csv(out, repo.StepFilter(run_ids=[run_id]), engine=file_engine)
    with out.open(newline="", encoding="utf-8") as fh:    # newline="": keep a lone \r
        rows = list(csv.DictReader(fh))
    escaped = sum(r["instruction"] == "'" + v and r["error"] == "'" + v
                  for r, v in zip(rows, FORMULA_VARIANTS))
    assert escaped == len(FORMULA_VARIANTS) == 15
    run2, _ = importer.import_csv(out, engine=file_engine)
    with db.session(file_engine) as s:
        back = [r.instruction for r in s.scalars(select(StepRecord).where(StepRecord.run_id == run2)
                                                 .order_by(StepRecord.id))]
    assert back == FORMULA_VARIANTS


# ----------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("shape", sorted(SECRET_SHAPES))
def test_every_secret_shape_is_redacted_idempotently(shape):
    text, core = SECRET_SHAPES[shape]
    out = secrets.redact(f"call failed: {text} (retry)")
    assert core not in out and "redacted" in out
    assert secrets.redact(out) == out                     # idempotent: no drift on re-export


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab =:/@'\"\n-_.,;&xyzKEYtokenpass12")), max_size=30),
       st.sampled_from(sorted(SECRET_SHAPES)),
       st.text(alphabet=st.sampled_from(list("ab =:/@'\"\n-_.,;&xyzKEYtokenpass12")), max_size=30))
def test_redaction_holds_and_is_idempotent_in_any_context(pre, shape, post):
    text, core = SECRET_SHAPES[shape]
    out = secrets.redact(f"{pre} {text} {post}")
    assert secrets.redact(out) == out
    assert core not in out or core in pre + post


_PREFILTER_ALPHABET = list("ab =:/@'\"\n\t-_.,;&xyz12pswordkeyigtn") + [
    "key", "KEY", "token", "pass", "PASSWORD", "pwd", "secret", "credentials", "sig", "Signature",
    "Authorization", "bearer ", "Basic ", "sk-", "sk_live_", "AKIA", "AIza", "ya29.", "eyJ",
    "ghp_", "hf_", "glpat-", "xoxb-", "://", "PRIVATE KEY", "\u0130", "\u0131", "\u017f", "\u212a"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PREFILTER_ALPHABET), max_size=25).map("".join))
@example("pa\u017f\u017fword=Hunter2Secret")
@example("s\u0131g=abcdef123")
@example("\u0130\u0130 pwd=\u212aabcdef")
@example("to\u212aen: abcdef123")
def test_the_prefilter_lets_through_every_text_a_pattern_changes(text):
    """The fast lower-case prefilter (and its word check) may pass texts with no secret, but
    never skips one that a (case-insensitive) pattern would change: İ ı ſ and the Kelvin sign
    fold onto ASCII letters under IGNORECASE."""
    changed = any(p.search(text) for p, _ in secrets._PATTERNS)
    assert not changed or secrets.may_hold_secret(text), text


def test_the_prefilter_skips_prose():
    for text in ("a simple, basic life", "his signature dish", "the passing of genes",
                 "a student name as a key and a tuple", "count the tokens"):
        assert not secrets.may_hold_secret(text)


@pytest.mark.parametrize("secret_json,core", [
    ('{"t": ["Authorization: Bearer\\nabcdefghijklmnop1234"]}', "abcdefghijklmnop1234"),
    ('{"t": "https:\\/\\/alice:s3cretpw@example.com"}', "s3cretpw"),
    ('{"t": "\\u0073k-proj-AbCdEf0123456789AbCdEf"}', "AbCdEf0123456789"),
    ('{"t": "password\\": Hunter2Secret"}', "Hunter2Secret"),
    ('{"t": "pass\\u0077ord=Hunter2Secret"}', "Hunter2Secret"),
])
def test_explanation_secrets_behind_json_escapes_are_redacted(secret_json, core):
    """The whole-document check decodes escapes first (and walks on \\u), so a secret split
    by an escape is still found and removed; the cell stays valid JSON."""
    out = cells.redact_explanation(secret_json, [])
    assert core not in json.dumps(json.loads(out), ensure_ascii=False), out


def test_a_clean_explanation_is_returned_as_it_is():
    """A long explanation with no secret is not walked string by string (export speed) and
    comes back unchanged; the same document with one secret added is redacted."""
    texts = [f"neighbour {i}: a basic life, his signature dish\nnext line" for i in range(260)]
    doc = json.dumps({"router": "evoroute", "neighbours": texts})
    assert cells.redact_explanation(doc, [("OPENAI_API_KEY", "sk-envvalue123456")]) is doc
    leaked = json.dumps({"router": "evoroute", "neighbours": texts + ["sk-envvalue123456"]})
    out = cells.redact_explanation(leaked, [("OPENAI_API_KEY", "sk-envvalue123456")])
    assert "sk-envvalue123456" not in out and json.loads(out)["neighbours"][:260] == texts


@pytest.mark.parametrize("text", [
    '"pass=" + "a-" * 1_000_000',                 # a name, then a value of a million word starts
    '"x " + "a." * 1_000_000 + " pass=abc"',      # a million word starts before the name
    '"token: abc" + " a_" * 700_000',
    '"https://" + "u:" * 1_000_000 + " token=abc"',  # userinfo that never reaches its @
])
def test_a_hostile_cell_is_redacted_in_linear_time(text):
    """A cell is untrusted (imports redact every cell; cells may hold 8 MiB): the name-prefix and
    URL-scheme patterns once rescanned from every word start (40 KB took 1.5 s, 2 MB would take
    an hour); now each of these 2 MB texts is redacted in about a second."""
    ends_within(f"""
from evoroute import secrets
text = {text}
out = secrets.redact(text, env=[])
assert out != text and "[redacted]" in out
""")


def test_the_linear_patterns_redact_what_the_old_ones_did():
    """Prefixed names and URL credentials as before; a name after ``__`` does not start a match
    that would swallow the next name and leave its value visible (a review found
    ``db__pass=foo_secret: hunter22`` leaking ``hunter22`` with a looser look-behind)."""
    assert secrets.redact("db_password=hunter22 ok", env=[]) == "db_password=[redacted] ok"
    assert secrets.redact("see x-api-key: abcdefgh123", env=[]) == "see x-api-key: [redacted]"
    assert secrets.redact("postgres://alice:s3cretpw@db/x", env=[]) == "postgres://[redacted]@db/x"
    for text in ("db__pass=foo_secret: hunter22", "__token=a_password: hunter22",
                 "\u00e9_pass=id_token: hunter22"):
        assert "hunter22" not in secrets.redact(text, env=[]), text


def test_ordinary_text_is_not_redacted():
    for text in ("max_tokens=64 input_tokens: 5", "the token count was 12", "skip-list sk-ip",
                 "Authorization header missing", "password reset link sent"):
        assert secrets.redact(text) == text


def test_secrets_are_redacted_on_export_and_on_import(file_engine, tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER.strip().split(","))
    for i, (text, _) in enumerate(SECRET_SHAPES.values()):
        w.writerow(["coder", "m", f"do it with {text}", 0.1, 1, 1, 1, f"t{i}", f"error {text}"])
    run_id, _ = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="s.csv")
    with db.session(file_engine) as s:
        stored = list(s.scalars(select(StepRecord).where(StepRecord.run_id == run_id)
                                .order_by(StepRecord.id)))
    stored_text = "\n".join(r.instruction + (r.error or "") for r in stored)
    leaked_import = [k for k, (_, core) in SECRET_SHAPES.items() if core in stored_text]
    assert leaked_import == []
    # export redacts what other code paths stored unredacted
    with db.session(file_engine) as s:
        s.execute(insert(StepRecord), [{"run_id": run_id, "role": "coder", "model": "m",
                                        "instruction": text, "error": text}
                                       for text, _ in SECRET_SHAPES.values()])
        s.commit()
    data, _ = export.export_csv_bytes(repo.StepFilter(run_ids=[run_id]), engine=file_engine)
    leaked_export = [k for k, (_, core) in SECRET_SHAPES.items() if core in data.decode()]
    assert leaked_export == [] and len(SECRET_SHAPES) == 26


# ----------------------------------------------------------------------------- cell size
def test_a_1_mib_cell_round_trips(file_engine, tmp_path):
    big = ("x" * 1023 + "\n") * 1024           # 1 MiB with newlines (quoted over many lines)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER.strip().split(","))
    w.writerow(["coder", "m", big, 0.1, 1, 1, 1, "t1", big])
    run_id, n = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="big.csv")
    out = tmp_path / "big_out.csv"
    export.export_csv(out, repo.StepFilter(run_ids=[run_id]), engine=file_engine)
    assert out.stat().st_size > 2 * 1024 * 1024
    run2, n2 = importer.import_csv(out, engine=file_engine)
    with db.session(file_engine) as s:
        again = s.scalars(select(StepRecord).where(StepRecord.run_id == run2)).one()
    assert (n, n2) == (1, 1) and again.instruction == big and again.error == big


def test_an_oversized_cell_is_a_clear_error(file_engine):
    from evoroute.core.types import MAX_TEXT_CHARS

    text = HEADER + "coder,m," + "y" * (MAX_TEXT_CHARS + 1) + ",0.1,1,1,1,t1,\n"
    before = _counts(file_engine)
    with pytest.raises(DatasetError) as exc:
        importer.import_csv(text.encode(), engine=file_engine, name="huge.csv")
    assert exc.value.line == 2 and exc.value.column == "instruction"
    assert "at most 8,388,608" in str(exc.value)
    assert _counts(file_engine) == before


# ----------------------------------------------------------------------------- explanations
def _good_explanation() -> str:
    return Explanation(router="evoroute", phase="optimize", mode="thompson", chosen="m",
                       weights=(1.0, 0.1, 0.05), channels={"role": 3},
                       candidates=[CandidateStat(model="m", n=3, p_hat=0.5)]).to_json()


@pytest.mark.parametrize("bad,where", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"phase": "x", "mode": "y"}', "router"),
    ('{"router": 5, "phase": "x", "mode": "y"}', "router"),
    ('{"router": "r", "phase": "x", "mode": "y", "candidates": [{"n": 1}]}', "candidates.0.model"),
    ('{"router": "r", "phase": "x", "mode": "y", "candidates": "abc"}', "candidates"),
    ('{"router": "r", "phase": "x", "mode": "y", "weights": [1, 2]}', "weights"),
    ('{"router": "r", "phase": "x", "mode": "y", "c_ref": NaN}', "not finite"),
    ('{"router": "r", "phase": "x", "mode": "y", "channels": {"role": "many"}}', "channels.role"),
])
def test_invalid_explanations_are_refused_with_line_and_column(file_engine, bad, where):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["role", "model", "instruction", "cost_usd", "duration_s", "explanation"])
    w.writerow(["coder", "m", "ok", 0.1, 1, _good_explanation()])
    w.writerow(["coder", "m", "bad", 0.1, 1, bad])
    before = _counts(file_engine)
    with pytest.raises(DatasetError) as exc:
        importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="e.csv")
    assert (exc.value.line, exc.value.column) == (3, "explanation") and where in str(exc.value)
    assert _counts(file_engine) == before


def test_an_imported_explanation_reads_back(file_engine):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["role", "model", "instruction", "cost_usd", "duration_s", "explanation"])
    w.writerow(["coder", "m", "ok", 0.1, 1, _good_explanation()])
    run_id, _ = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="e.csv")
    with db.session(file_engine) as s:
        rec = s.scalars(select(StepRecord).where(StepRecord.run_id == run_id)).one()
    e = Explanation.from_json(rec.explanation)
    assert (e.chosen, e.candidates[0].n, e.weights) == ("m", 3, (1.0, 0.1, 0.05))


# ----------------------------------------------------------------------------- chunked import
def _big_csv(path, n: int, *, bad_last: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(n):
            f.write(f"coder,m{i % 7},instruction number {i} about topic {i % 97},0.001,1.5,"
                    f"{i % 2},,t{i // 4},\n")
        if bad_last:
            f.write("coder,m,bad,-1,1,1,,tx,\n")


def test_a_bad_last_row_writes_nothing(file_engine, tmp_path):
    path = tmp_path / "bad.csv"
    _big_csv(path, 12_000, bad_last=True)
    before = _counts(file_engine)
    with pytest.raises(DatasetError) as exc:
        importer.import_csv(path, engine=file_engine, chunk=1000)
    assert exc.value.line == 12_002 and exc.value.column == "cost_usd"
    assert _counts(file_engine) == before


def test_a_failure_while_writing_removes_the_batch(file_engine, tmp_path):
    path = tmp_path / "ok.csv"
    _big_csv(path, 5_000)

    class Boom:
        calls = 0

        def encode(self, texts):          # a real failure in the middle of the write phase
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("disk full (simulated by the embedder)")
            import numpy as np
            return np.zeros((len(texts), 4), dtype=np.float32)

    before = _counts(file_engine)
    with pytest.raises(RuntimeError):
        importer.import_csv(path, engine=file_engine, chunk=1000, embed=True, embedder=Boom())
    assert Boom.calls == 3 and _counts(file_engine) == before


def test_a_stale_import_of_a_dead_process_is_swept(file_engine, tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with db.session(file_engine) as s:
        run = Run(status=importer.IMPORTING, backend="import",
                  config_json=json.dumps({"source": "x.csv", "pid": dead.pid,
                                          "host": __import__("socket").gethostname()}))
        s.add(run)
        s.commit()
        s.execute(insert(StepRecord), [{"run_id": run.id, "role": "r", "model": "m",
                                        "instruction": "half"}] * 3)
        s.commit()
        rid = run.id
    assert importer.remove_stale_imports(engine=file_engine) == [rid]
    assert _counts(file_engine) == (0, 0, 0)


def test_a_concurrent_writer_waits_at_most_one_chunk(tmp_path):
    """200k rows imported in 5000-row transactions; another connection inserts a step every
    50 ms meanwhile. Its longest wait for the write lock must stay a few seconds."""
    url = f"sqlite:///{tmp_path / 'big.db'}"
    engine = db.make_engine(url)
    other = _run(engine, backend="simulated", status="running")
    path = tmp_path / "200k.csv"
    n = 200_000
    _big_csv(path, n)
    waits: list[float] = []
    done = threading.Event()
    started = threading.Event()

    def writer():
        eng = db.make_engine(url)                     # its own pool and connections
        while not done.is_set():
            t0 = time.perf_counter()
            with eng.begin() as c:
                c.execute(insert(StepRecord), [{"run_id": other.id, "role": "r", "model": "m",
                                                "instruction": "concurrent"}])
            waits.append(time.perf_counter() - t0)
            started.set()
            time.sleep(0.05)
        eng.dispose()

    th = threading.Thread(target=writer)
    th.start()
    started.wait(10)
    t0 = time.perf_counter()
    run_id, rows = importer.import_csv(path, engine=engine)
    elapsed = time.perf_counter() - t0
    done.set()
    th.join(30)
    print(f"\nimport {rows} rows in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s); concurrent "
          f"writer: {len(waits)} inserts, max wait {max(waits):.3f} s")
    assert rows == n and len(waits) >= 10
    assert max(waits) < 3.0
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(StepRecord)
                         .where(StepRecord.run_id == run_id)).scalar_one() == n
        assert c.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "finished"


def test_a_lock_timeout_names_the_writer(tmp_path, monkeypatch):
    """An import that cannot get the write lock says who holds it and lands nothing."""
    import sqlite3

    path = tmp_path / "lock.db"
    engine = db.make_engine(f"sqlite:///{path}")
    _run(engine, backend="live", dataset="agent", status="running")
    holder = sqlite3.connect(path, timeout=1)
    holder.execute("BEGIN IMMEDIATE")                      # another process's long write
    try:
        import evoroute.storage.db as dbmod
        monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)
        short = db.make_engine(f"sqlite:///{path}")
        with pytest.raises(EvoRouteError) as exc:
            importer.import_csv((HEADER + "coder,m,x,0.1,1,1,1,t1,\n").encode(), engine=short,
                           name="l.csv")
    finally:
        holder.rollback()
        holder.close()
    msg = str(exc.value)
    assert "locked by another writer" in msg and "run 1 (live on agent" in msg
    assert "EVOROUTE_DB_URL" not in msg


def test_the_cli_lock_message_blames_the_writer_not_the_url(tmp_path, monkeypatch, capsys):
    import sqlite3

    import evoroute.storage.db as dbmod
    from evoroute.cli import main as cli

    path = tmp_path / "cli_lock.db"
    engine = db.make_engine(f"sqlite:///{path}")
    _run(engine, backend="replay", dataset="routerbench", status="running")
    engine.dispose()
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(path, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        rc = cli.main(["--db", f"sqlite:///{path}", "models", "add", "x", "--input-price", "1",
                       "--output-price", "1"])
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "locked by another writer (run 1 (replay on routerbench, running))" in err
    assert "EVOROUTE_DB_URL" not in err and "check --db" not in err


def test_a_run_whose_process_is_gone_is_not_blamed(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    with db.session(engine) as s:       # no process recorded: it cannot hold a lock
        s.add(Run(backend="replay", dataset="routerbench", status="running"))
        s.commit()
    _run(engine, backend="live", dataset="agent", status="running")
    assert importer.active_writers(engine=engine) == ["run 2 (live on agent, running)"]


def test_the_synced_index_never_reads_an_import_still_being_written(file_engine):
    """Rows of a run still ``importing`` stay out of a SyncedIndex (the import may be removed
    yet), rows after them wait, and all of them arrive once the import has finished."""
    from sqlalchemy import update

    from evoroute.experience import SyncedIndex

    ids = []
    for k in range(3):
        rows = "".join(f"coder,m{k},text {k} {i},0.1,1,1,1,t{k}-{i},\n" for i in range(4 + k))
        ids.append(importer.import_csv((HEADER + rows).encode(), engine=file_engine, name=f"{k}.csv")[0])
    a, b, c = ids
    with file_engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == b).values(status="importing"))
    synced = SyncedIndex(file_engine)
    assert sorted(set(synced.index.models)) == ["m0"] and len(synced.index) == 4
    assert synced.sync() == 0                                  # still nothing of b or c
    only = SyncedIndex(file_engine, run_ids=[a, c])            # b not asked for: no wait
    assert len(only.index) == 4 + 6
    with file_engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == b).values(status="finished"))
    assert synced.sync() == 5 + 6 and len(synced.index) == 4 + 5 + 6


def test_an_export_of_two_runs_of_one_task_imports_back(file_engine, tmp_path):
    """Two runs of one dataset hold the same task key with other outcomes (a replay of gpt-4 and
    one of EvoRoute): their export imports back as two tasks — the file's run_id tells them
    apart — where the import once refused it ("task_success differs from line 2")."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run_id", *HEADER.strip().split(",")])
    w.writerow([1, "coder", "strong", "solve q1", 0.3, 1, 1, 1, "routerbench:q1", ""])
    w.writerow([1, "coder", "strong", "solve q2", 0.3, 1, 1, 1, "routerbench:q2", ""])
    w.writerow([2, "coder", "weak", "solve q1", 0.1, 1, 0, 0, "routerbench:q1", ""])
    run_id, n = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="two.csv")
    assert n == 3
    with db.session(file_engine) as s:
        tasks = {t.task_key: t.success for t in s.scalars(select(Task).where(Task.run_id == run_id))}
        steps = [(r.task_key, r.task_success) for r in s.scalars(
            select(StepRecord).where(StepRecord.run_id == run_id).order_by(StepRecord.id))]
    assert tasks == {"routerbench:q1@run1": 1.0, "routerbench:q2": 1.0, "routerbench:q1@run2": 0.0}
    assert steps == [("routerbench:q1@run1", 1.0), ("routerbench:q2", 1.0), ("routerbench:q1@run2", 0.0)]
    # without a run_id column the rows of one key are one task, and they must agree
    rows = buf.getvalue().splitlines()
    one_run = "\n".join(line.split(",", 1)[1] for line in rows) + "\n"
    with pytest.raises(DatasetError, match="task_success differs from line 2"):
        importer.import_csv(one_run.encode(), engine=file_engine, name="one.csv")


def test_renamed_task_keys_never_meet_a_key_of_the_file(file_engine):
    """Re-exporting an import beside its sources: ``q1`` of runs 1 and 2 and ``q1@run1`` of run 7
    stay three tasks; a key at the length limit keeps its suffix within it; a ``run_id`` cell that
    is not a run id is no source run (its text never reaches a key)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run_id", *HEADER.strip().split(",")])
    long_key = "k" * 256
    for run, key, ok in (("1", "q1", 1), ("2", "q1", 0), ("7", "q1@run1", 1),
                         ("1", long_key, 1), ("2", long_key, 0), ("1\x07evil", "q9", 1)):
        w.writerow([run, "coder", "m", f"solve {key[:5]}", 0.1, 1, ok, ok, key, ""])
    run_id, n = importer.import_csv(buf.getvalue().encode(), engine=file_engine, name="re.csv")
    assert n == 6
    with db.session(file_engine) as s:
        tasks = {t.task_key: t.success for t in s.scalars(select(Task).where(Task.run_id == run_id))}
    assert len(tasks) == 6
    assert tasks["q1@run1"] == 1.0 and tasks["q1@run1.2"] == 1.0 and tasks["q1@run2"] == 0.0
    longs = [k for k in tasks if k.startswith("kkk")]
    assert len(longs) == 2 and all(len(k) == 256 for k in longs)
    assert "q9" in tasks and not [k for k in tasks if "evil" in k or "\x07" in k]
