"""Model registry on a real SQLite file: litellm prices, overrides, and typed validation errors
that store nothing (checked by reading the table back through a fresh session)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from evoroute.core.errors import DuplicateModelError, UnknownModelError, ValidationError
from evoroute.registry import (
    add_model,
    litellm_catalogue,
    litellm_prices,
    model_infos,
    remove_model,
    update_model,
)
from evoroute.storage.db import session as open_session
from evoroute.storage.tables import ModelEntry


def stored(engine) -> dict[str, ModelEntry]:
    with open_session(engine) as s:
        return {m.name: m for m in s.exec(select(ModelEntry))}


def test_litellm_prices_for_a_known_id():
    # litellm's bundled map: gpt-4o-mini costs $0.15 / $0.60 per 1M input / output tokens
    assert litellm_prices("gpt-4o-mini") == (pytest.approx(0.15), pytest.approx(0.60))
    assert litellm_prices("openai/gpt-4o-mini") == (pytest.approx(0.15), pytest.approx(0.60))
    assert litellm_prices("no-such-model-xyz") is None
    assert litellm_prices("") is None
    assert "gpt-4o-mini" in litellm_catalogue()


def test_cost_map_is_litellms():
    # the file read without importing litellm is exactly the map litellm itself loads offline
    import litellm

    from evoroute.registry import _cost_map

    assert _cost_map() == dict(litellm.model_cost)


def test_cost_map_expands_aliases_as_litellm_does():
    from litellm.litellm_core_utils.get_model_cost_map import _expand_model_aliases

    from evoroute.registry import expand_aliases

    def cmap():
        return {"a": {"input_cost_per_token": 1e-6, "aliases": ["a-latest", "b", "dup"]},
                "b": {"input_cost_per_token": 2e-6},
                "c": {"input_cost_per_token": 3e-6, "aliases": ["dup", "c-1"]},
                "d": {"input_cost_per_token": 4e-6, "aliases": "not-a-list"},
                "e": {"input_cost_per_token": 5e-6, "aliases": None},
                "f": {"input_cost_per_token": 6e-6, "aliases": []},
                "sample_spec": {"max_tokens": 1}}

    ours, theirs = expand_aliases(cmap()), _expand_model_aliases(cmap())
    assert ours == theirs
    assert ours["a-latest"] is ours["a"] and ours["dup"] is ours["a"] and ours["c-1"] is ours["c"]
    assert ours["b"] == {"input_cost_per_token": 2e-6} and "aliases" not in ours["a"]
    assert ours["e"]["aliases"] is None and "aliases" not in ours["f"]     # as litellm leaves them


def test_price_lookup_does_not_import_litellm():
    # the studio's catalogue thread must not pay `import litellm` (seconds of CPU under the GIL)
    code = ("import sys; from evoroute.registry import litellm_catalogue, litellm_prices; "
            "assert litellm_prices('gpt-4o-mini') and litellm_catalogue(); "
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.stdout.strip() == "False"


def test_add_with_litellm_prices(engine, db_session):
    e = add_model(session=db_session, name="mini", litellm_id="gpt-4o-mini")
    assert (e.input_price_per_m, e.output_price_per_m, e.price_source) == \
        (pytest.approx(0.15), pytest.approx(0.60), "litellm")
    assert stored(engine)["mini"].output_price_per_m == pytest.approx(0.60)


def test_override_wins(engine, db_session):
    add_model(session=db_session, name="mini", litellm_id="gpt-4o-mini",
              input_price_per_m=1.0, output_price_per_m=2.0)
    m = stored(engine)["mini"]
    assert (m.input_price_per_m, m.output_price_per_m, m.price_source) == (1.0, 2.0, "override")
    # one price given: the other comes from litellm, the entry counts as an override
    add_model(session=db_session, name="mini2", litellm_id="gpt-4o-mini", output_price_per_m=9.0)
    m2 = stored(engine)["mini2"]
    assert (m2.input_price_per_m, m2.output_price_per_m, m2.price_source) == \
        (pytest.approx(0.15), 9.0, "override")
    # a later price change on a litellm-priced model becomes an override and is what ModelInfo uses
    add_model(session=db_session, name="mini3", litellm_id="gpt-4o-mini")
    update_model("mini3", session=db_session, input_price_per_m=0.5)
    info = {i.name: i for i in model_infos(session=db_session)}["mini3"]
    assert (info.input_price_per_m, info.output_price_per_m, info.price_source) == \
        (0.5, pytest.approx(0.60), "override")
    # cost of 1000 in + 2000 out tokens: (1000·0.5 + 2000·0.6) / 1e6 = 0.0017 USD
    assert info.cost(1000, 2000) == pytest.approx(0.0017)


@pytest.mark.parametrize("kwargs, field", [
    (dict(input_price_per_m=-1.0, output_price_per_m=1.0), "input_price_per_m"),
    (dict(input_price_per_m=1.0, output_price_per_m=float("nan")), "output_price_per_m"),
    (dict(input_price_per_m=float("inf"), output_price_per_m=1.0), "input_price_per_m"),
    (dict(input_price_per_m=1.0, output_price_per_m="cheap"), "output_price_per_m"),
    (dict(input_price_per_m="", output_price_per_m=1.0), "input_price_per_m"),
    (dict(output_price_per_m=1.0), "input_price_per_m"),                  # missing, id unknown
    (dict(input_price_per_m=1.0), "output_price_per_m"),                  # missing, id unknown
    (dict(input_price_per_m=1.0, output_price_per_m=1.0, ttft_s=-0.1), "ttft_s"),
    (dict(input_price_per_m=1.0, output_price_per_m=1.0, tokens_per_s=0), "tokens_per_s"),
    (dict(input_price_per_m=1.0, output_price_per_m=1.0, api_base="http://user:key@host/v1"), "api_base"),
])
def test_invalid_input_raises_and_stores_nothing(engine, db_session, kwargs, field):
    with pytest.raises(ValidationError) as e:
        add_model(session=db_session, name="bad", litellm_id="no-such-model-xyz", **kwargs)
    assert e.value.field == field
    assert str(e.value)                       # a message a user can read
    assert stored(engine) == {}


@pytest.mark.parametrize("name", ["", "   ", None])
def test_empty_name(engine, db_session, name):
    with pytest.raises(ValidationError) as e:
        add_model(session=db_session, name=name, input_price_per_m=1, output_price_per_m=1)
    assert e.value.field == "name"
    assert stored(engine) == {}


def test_duplicate_name_keeps_the_first(engine, db_session):
    add_model(session=db_session, name="m", input_price_per_m=1, output_price_per_m=2)
    with pytest.raises(DuplicateModelError) as e:
        add_model(session=db_session, name=" m ", input_price_per_m=5, output_price_per_m=5)
    assert e.value.field == "name" and isinstance(e.value, ValidationError)
    rows = stored(engine)
    assert list(rows) == ["m"] and rows["m"].input_price_per_m == 1


def test_invalid_update_changes_nothing(engine, db_session):
    add_model(session=db_session, name="m", input_price_per_m=1, output_price_per_m=2)
    for changes, field in ((dict(input_price_per_m=math.nan), "input_price_per_m"),
                           (dict(output_price_per_m=-3), "output_price_per_m"),
                           (dict(id=99), "id"),                 # not editable
                           (dict(tokens_per_s="fast"), "tokens_per_s")):
        with pytest.raises(ValidationError) as e:
            update_model("m", session=db_session, **changes)
        assert e.value.field == field
    m = stored(engine)["m"]
    assert (m.input_price_per_m, m.output_price_per_m, m.tokens_per_s) == (1, 2, 50.0)


def test_disable_enable_remove(engine, db_session):
    for n in ("a", "b"):
        add_model(session=db_session, name=n, input_price_per_m=1, output_price_per_m=1)
    update_model("a", session=db_session, enabled=False)
    assert [i.name for i in model_infos(session=db_session)] == ["b"]
    assert [i.name for i in model_infos(session=db_session, enabled_only=False)] == ["a", "b"]
    assert [i.name for i in model_infos(session=db_session, names=["a"])] == ["a"]
    remove_model("a", session=db_session)
    assert list(stored(engine)) == ["b"]
    with pytest.raises(UnknownModelError):
        remove_model("a", session=db_session)
    with pytest.raises(UnknownModelError):
        model_infos(session=db_session, names=["zzz"])


def test_notional_prices_stay_notional(db_session):
    add_model(session=db_session, name="local", input_price_per_m=0.01, output_price_per_m=0.02,
              notional=True)
    e = update_model("local", session=db_session, output_price_per_m=0.03)
    assert e.price_source == "notional"


def test_duplicate_name_race_is_a_typed_error(engine, db_session, monkeypatch):
    """Two processes both pass the name check; the UNIQUE constraint catches the second."""
    from evoroute.storage import repo
    add_model(session=db_session, name="m", input_price_per_m=1, output_price_per_m=2)
    monkeypatch.setattr(repo, "get_model", lambda name, *, session: None)   # the check saw nothing
    with pytest.raises(DuplicateModelError) as e:
        add_model(session=db_session, name="m", input_price_per_m=5, output_price_per_m=5)
    assert e.value.field == "name"
    monkeypatch.undo()
    assert [m.input_price_per_m for m in stored(engine).values()] == [1]
    add_model(session=db_session, name="n", input_price_per_m=1, output_price_per_m=1)  # session usable
    assert sorted(stored(engine)) == ["m", "n"]


def test_prices_equal_to_litellm_are_recorded_as_litellm(engine, db_session):
    """The studio pre-fills litellm's prices; saving them unchanged is not an override."""
    p_in, p_out = litellm_prices("gpt-4o-mini")
    e = add_model(session=db_session, name="mini", litellm_id="gpt-4o-mini",
                  input_price_per_m=p_in, output_price_per_m=p_out)
    assert e.price_source == "litellm"
    e = add_model(session=db_session, name="mini2", litellm_id="gpt-4o-mini",
                  input_price_per_m=p_in, output_price_per_m=p_out + 0.01)
    assert e.price_source == "override"
    # an unchanged price on save (the edit form sends every field) keeps the source
    e = update_model("mini", session=db_session, input_price_per_m=p_in, output_price_per_m=p_out,
                     enabled=False, notes="n")
    assert e.price_source == "litellm"
    e = update_model("mini", session=db_session, input_price_per_m=p_in + 1.0)
    assert e.price_source == "override"
    # back to litellm's prices: litellm again
    e = update_model("mini", session=db_session, input_price_per_m=p_in)
    assert e.price_source == "litellm"
    add_model(session=db_session, name="rec", input_price_per_m=1.0, output_price_per_m=2.0,
              price_source="recorded")
    assert update_model("rec", session=db_session, input_price_per_m=1.0,
                        output_price_per_m=2.0).price_source == "recorded"
    assert update_model("rec", session=db_session, input_price_per_m=1.5).price_source == "override"


def test_catalogue_lists_the_exact_id_first_for_every_id():
    """The studio filters the catalogue by substring and keeps its order: whatever id a user
    types, the exact id comes before every other id containing it (e.g. azure/gpt-4o-mini)."""
    ids = litellm_catalogue()
    assert len(ids) == len(set(ids)) > 100
    low = [i.lower() for i in ids]
    assert low.index("gpt-4o-mini") < low.index("azure/gpt-4o-mini")
    for pos, q in enumerate(low):
        first = next(k for k, other in enumerate(low) if q in other)
        assert first == pos, (ids[pos], ids[first])
