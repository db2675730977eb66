"""Collaboration replay on hand-made rows with known answers (issue 13, item 1)."""

import numpy as np
import pandas as pd
import pytest
from bounded import ends_within

from evoroute.collab.answers import choice_table, options, parse_choice
from evoroute.collab.modes import Mode, majority, order_by_strength, replay

Q4 = "Which?\nA) dry palms\nB) wet palms\nC) palms covered with oil\nD) lotion\nAnswer:"
Q2 = "Ian ate because _ despised it.\nA) Ian\nB) Dennis\nAnswer:"


def test_options_and_parse_rule():
    opts = options(Q4)
    assert opts == {"A": "dry palms", "B": "wet palms", "C": "palms covered with oil", "D": "lotion"}
    assert [parse_choice(r, opts) for r in ("B", " C\n", "A)", "D (lotion)", "A.", "D:")] == [
        "B", "C", "A", "D", "A", "D"]
    # an article is not a letter, a letter outside the options is not an answer
    assert parse_choice("A chart shows", opts) is None
    assert parse_choice("E", opts) is None
    assert parse_choice("I do not know", opts) is None
    assert parse_choice("", opts) is None and parse_choice(None, opts) is None
    two = options(Q2)
    assert parse_choice("Dennis", two) == "B" and parse_choice("Denn", two) == "B"
    assert parse_choice("De", two) is None          # a prefix shorter than 3 characters


def test_majority_ties_go_to_the_earliest_voter():
    assert majority(["A", "B", "B"]) == "B"
    assert majority(["A", "B"]) == "A"
    assert majority(["B", "A", "", "A", "B"]) == "B"
    assert majority(["", "", "C"]) == "C"
    assert majority(["", ""]) == ""


def _frame(rows):
    """rows: (query_id, question, model, response, score, cost)."""
    return pd.DataFrame([{"query_id": q, "query": text, "model": m, "response": r, "score": s,
                          "cost_usd": c, "role": "arc_challenge", "split": "test"}
                         for q, text, m, r, s, c in rows])


@pytest.fixture
def table():
    rows = []
    # q1: gold B (m2 and m3 correct); m1 says A
    rows += [("q1", Q4, "m1", "A", 0, 1.0), ("q1", Q4, "m2", "B", 1, 2.0), ("q1", Q4, "m3", "B", 1, 10.0)]
    # q2: no model correct -> every mode wrong
    rows += [("q2", Q4, "m1", "A", 0, 1.0), ("q2", Q4, "m2", "C", 0, 2.0), ("q2", Q4, "m3", "A", 0, 10.0)]
    # q3: gold D (m3); m1 unparseable, m2 says C: a tie between nothing and C -> C, wrong
    rows += [("q3", Q4, "m1", "I do not", 0, 1.0), ("q3", Q4, "m2", "C", 0, 2.0),
             ("q3", Q4, "m3", "D", 1, 10.0)]
    # q4: gold A (m1); m2 says B, m3 says C: a 1-1-1 tie goes to the first voter listed
    rows += [("q4", Q4, "m1", "A", 1, 1.0), ("q4", Q4, "m2", "B", 0, 2.0), ("q4", Q4, "m3", "C", 0, 10.0)]
    return choice_table(_frame(rows))


def test_gold_is_recovered_from_correct_models(table):
    assert list(table.query_ids) == ["q1", "q2", "q3", "q4"]
    assert list(table.gold) == ["B", "", "D", "A"]
    assert table.conflicts == 0 and table.disagreements == 0
    assert table.answers[2, 0] == ""              # unparseable kept as an abstention


def test_vote_scores_and_costs(table):
    out = replay(Mode("vote", ("m1", "m2", "m3")), table)
    # q1 B (2 of 3) right; q2 no gold; q3 C vs D -> tie to m2's C, wrong; q4 tie -> m1's A, right
    assert list(out.correct) == [1, 0, 0, 1]
    assert list(out.cost) == [13.0] * 4 and list(out.calls) == [3] * 4
    out = replay(Mode("vote", ("m3", "m2", "m1")), table)        # order decides ties
    assert list(out.correct) == [1, 0, 1, 0]


def test_escalate_calls_the_strong_model_only_on_disagreement(table):
    out = replay(Mode("escalate", ("m1", "m2", "m3")), table)
    # q1 A/B disagree -> m3 right; q2 A/C -> m3 wrong; q3 ''/C -> m3 right; q4 A/B -> m3 wrong
    assert list(out.correct) == [1, 0, 1, 0]
    assert list(out.cost) == [13.0, 13.0, 13.0, 13.0]
    agree = _frame([("q", Q4, "m1", "B", 1, 1.0), ("q", Q4, "m2", "B", 1, 2.0),
                    ("q", Q4, "m3", "A", 0, 10.0)])
    out = replay(Mode("escalate", ("m1", "m2", "m3")), choice_table(agree))
    assert list(out.correct) == [1] and list(out.cost) == [3.0] and list(out.calls) == [2]


def test_an_escalation_whose_pair_agrees_on_a_wrong_answer_is_wrong_and_stops():
    rows = [("q", Q4, "m1", "A", 0, 1.0), ("q", Q4, "m2", "A", 0, 2.0), ("q", Q4, "m3", "B", 1, 10.0)]
    out = replay(Mode("escalate", ("m1", "m2", "m3")), choice_table(_frame(rows)))
    assert list(out.correct) == [0] and list(out.cost) == [3.0] and list(out.calls) == [2]


def test_a_query_whose_only_correct_response_does_not_parse_has_no_gold():
    """The one correct model's answer cannot be read, so no vote can be scored right (nothing
    is invented); its own single-model mode keeps its recorded score."""
    rows = [("q", Q4, "m1", "A", 0, 1.0), ("q", Q4, "m2", "well, it depends", 1, 2.0),
            ("q", Q4, "m3", "A", 0, 10.0)]
    t = choice_table(_frame(rows))
    assert list(t.gold) == [""]
    assert replay(Mode("vote", ("m2", "m1", "m3")), t).correct.tolist() == [0]
    assert replay(Mode("escalate", ("m1", "m3", "m2")), t).correct.tolist() == [0]   # agree on A
    assert replay(Mode("escalate", ("m1", "m2", "m3")), t).correct.tolist() == [0]   # m3 wrong
    assert replay(Mode("single", ("m2",)), t).correct.tolist() == [1]


def test_single_uses_recorded_score(table):
    out = replay(Mode("single", ("m3",)), table)
    assert list(out.correct) == [1, 0, 1, 0] and out.total_cost == 40.0


def test_a_contradicting_record_is_counted_not_hidden():
    rows = [("q", Q4, "m1", "A", 1, 1.0), ("q", Q4, "m2", "B", 1, 1.0)]   # both "correct"
    t = choice_table(_frame(rows))
    assert t.conflicts == 1 and list(t.gold) == [""]
    assert replay(Mode("vote", ("m1", "m2")), t).correct.tolist() == [0]


def test_order_by_strength_and_mode_validation(table):
    assert order_by_strength(table)[0] == "m3"
    with pytest.raises(ValueError, match="unknown collaboration mode"):
        Mode("debate", ("m1",))
    with pytest.raises(ValueError, match="two distinct"):
        Mode("vote", ("m1", "m1"))
    with pytest.raises(ValueError, match="takes 3"):
        Mode("escalate", ("m1", "m2"))
    assert np.isnan(replay(Mode("single", ("m1",)), table.subset("train")).quality)


def test_options_are_read_in_linear_time():
    """A question is untrusted text too: the option pattern once retried every remaining newline
    from every line start (200,000 newlines took minutes)."""
    ends_within("""
from evoroute.collab.answers import options
assert options("\\n" * 200_000 + "A) x\\nB)" + " " * 200_000 + "y") == {"A": "x", "B": "y"}
assert options("A)" + " " * 200_000) == {"A": ""}
""")
