import pytest

from fineproofs.rubric import RubricError, parse_rubric, render_rubric

GOOD = """Here is the scheme.
1. (2 points) Reduces to the case a = b.
2. (3 points) Proves the key inequality.
3. (2 points) Concludes with the equality case.
Alternative A:
A1. (4 points) Sets up the SOS form.
A2. (3 points) Shows each square term is non-negative.
Zero credit:
- Checking small cases only.
Deductions:
- (-1 points) Missing the equality case.
"""


def test_parse_validate_render_roundtrip():
    r = parse_rubric(GOOD, "pid")
    assert [i.points for i in r.items] == [2, 3, 2, 4, 3]
    assert r.zero_credit == ["Checking small cases only."]
    assert r.deductions[0].points == -1
    text = render_rubric(r)
    assert parse_rubric(text, "pid") == r
    assert text.startswith("1. (2 points) Reduces")


def test_description_may_continue_on_next_line():
    r = parse_rubric("1. (3 points)\nProves the lemma.\n2. (4 points) Finishes.")
    assert r.items[0].description == "Proves the lemma."


@pytest.mark.parametrize(
    "text, message",
    [
        ("1. (2 points) a\n2. (3 points) b", "add up to 5"),
        ("1. (7 points) all", "at least 2 checkpoints"),
        ("1. (2 points) a\n2. (5 points) b\nAlternative A:\nA1. (3 points) c", "alternative A add up to 3"),
        ("1. (0 points) a\n2. (7 points) b", "each must be 1 to 7"),
        ("1. (2 points) a\n2. (5 points) b\nDeductions:\n- (-9 points) c", "between -7 and -1"),
        ("1. (2 points) a\n2. (5 points) b\nsomething (3 points) odd", "cannot read the line"),
        ("no scheme at all", "found 0"),
    ],
)
def test_invalid_rubrics_say_why(text, message):
    with pytest.raises(RubricError, match=message):
        parse_rubric(text)
