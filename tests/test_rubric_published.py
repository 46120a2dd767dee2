"""Rubrics in the published Markdown form (FineProofs-RL's ``rubrics`` column).

The fixtures are written for this project in the published *shape* (three sections,
"Checkpoints (7 pts total)", chains, zero-credit items, deductions with flat
penalties and "cap at x/7"); none is copied from the dataset.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from fineproofs.rubric import Rubric, RubricError, RubricItem, parse_rubric, render_rubric, validate_rubric

SINGLE = """1. **Checkpoints (7 pts total)**
* **(2 pts)** Reduces the inequality to the case $a_1 = a_2$ by smoothing.
* **(4 pts)** Proves the key estimate $f(a, a) \\ge 0$ for all $a > 0$.
  * Equivalent: a direct AM-GM on the three terms is also fine (2 pts if only one term is bounded).
* **(1 pt)** Determines the equality case $a = b = c$.
* **Total (max 7)**: 2 + 4 + 1 = 7.

2. **Zero-credit items**
* Checking the inequality for a few numerical values.
* Restating the problem with other notation.

3. **Deductions**
* **-1**: the equality case is claimed without verification.
"""

CHAINS = """1. **Checkpoints (7 pts total)**

**Score exactly one chain: the best chain subtotal counts; never add points across chains.**

**Chain A: induction on $n$**
* (1 pt) Checks the base case $n = 1$.
* (4 pts) Carries out the inductive step with the lemma on consecutive terms.
* (2 pts) Concludes for every $n$.

**Chain B: counting pairs in two ways**
* (3 pts) Sets up the double count of pairs $(x, S)$ with $x \\in S$.
* (4 pts) Evaluates both counts and compares them.

* **Total (max 7)**: the larger of the two chain subtotals.

2. **Zero-credit items**
* Conjecturing the formula from small cases without proof.

3. **Deductions**
* **Cap at 5/7**: the write-up makes contradictory claims about the sign of $d$.
"""

CAPS = """### Checkpoints (7 pts total)
- **[3 pts]** Key idea: colours the board in a checkerboard pattern and counts the difference.
- **[2 pts]** Shows each move keeps the difference modulo 3.
- **[2 pts]** Concludes that the final position is unreachable.
- Total: 7

### Zero-credit items
- Drawing the board for $n = 4$ without an argument.
- Stating the answer "no" alone.

### Deductions
- **−1 pt**: an arithmetic slip that breaks one count.
- **−2 pts**: one of the two move types is not checked.
- **Cap at 4/7**: the invariant is used without proving it is preserved.
- **Cap at 2/7**: the argument is circular.
- An incomplete but sound proof is not penalised here; score it by the checkpoints it reaches.
"""

# as the release stores them: the writer's reply cut to start at "Checkpoints", so the first
# line keeps the closing bold marker; titled checkpoints with detail sub-bullets; trailing penalties
CUT = """Checkpoints (7 pts total)**
* **Invariant modulo 3 (3 pts)**
  * Defines the weighted sum $S$ of the tokens and shows each move keeps $S \\bmod 3$.
  * **OR** an equivalent colouring with three colours (award the same 3 pts).
* **Start and target values (2 pts)**: computes $S$ for both positions.
* **Conclusion (2 pts)**: the residues differ, so the target is unreachable.
* **Total (max 7)**

**Zero-credit items**
* Trying a few move sequences by hand.
* Claiming that an invariant exists without naming it.

**Deductions**
* A slip in one residue that does not change the conclusion: −1
* Invariance checked for only one of the two moves: cap at 4/7
* Contradictory statements about the residue of the target: cap at 5/7
"""

FIXTURES = {"single": SINGLE, "chains": CHAINS, "caps": CAPS, "cut": CUT}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_published_form_round_trips_byte_identical(name):
    text = FIXTURES[name]
    r = parse_rubric(text, "pid")
    assert r.form == "published" and r.text == text
    assert r.render() == text  # what the judge sees is what the writer wrote
    validate_rubric(r)
    # through the build's stage file (pipelines/rubrics.py writes render() into JSON) ...
    record = json.loads(json.dumps({"problem_id": "pid", "rubric": r.render(), "attempts": 1}))
    assert record["rubric"] == text and parse_rubric(record["rubric"], "pid").render() == text
    # ... and through dataclasses.asdict / JSON of the whole record
    back = Rubric.from_dict(json.loads(json.dumps(dataclasses.asdict(r))))
    assert back == r and back.render() == text and back.notes == r.notes


def test_single_chain_structure():
    r = parse_rubric(SINGLE)
    assert [(i.points, i.chain) for i in r.items] == [(2, ""), (4, ""), (1, "")]
    assert r.items[0].description == "Reduces the inequality to the case $a_1 = a_2$ by smoothing."
    assert r.zero_credit == [
        "Checking the inequality for a few numerical values.",
        "Restating the problem with other notation.",
    ]
    assert [(d.points, d.description) for d in r.deductions] == [
        (-1, "the equality case is claimed without verification.")
    ]
    assert r.caps == [] and r.cap is None
    # the indented detail (with its own point value) and the total line are kept, not scored
    assert any("Equivalent: a direct AM-GM" in n for n in r.notes)
    assert any("Total (max 7)" in n for n in r.notes)


def test_two_chains_are_separate_and_each_sums_to_seven():
    r = parse_rubric(CHAINS)
    assert {k: [i.points for i in v] for k, v in r.chains.items()} == {"A": [1, 4, 2], "B": [3, 4]}
    assert [(c.points, c.description) for c in r.caps] == [
        (5, "the write-up makes contradictory claims about the sign of $d$.")
    ]
    assert r.cap == 5
    assert any("Score exactly one chain" in n for n in r.notes)


def test_caps_zero_credit_and_deductions():
    r = parse_rubric(CAPS)
    assert [i.points for i in r.items] == [3, 2, 2]
    assert len(r.zero_credit) == 2
    assert [d.points for d in r.deductions] == [-1, -2]
    assert [c.points for c in r.caps] == [4, 2] and r.cap == 2
    assert r.caps[0].description == "the invariant is used without proving it is preserved."
    assert r.notes == [
        "- Total: 7",
        "- An incomplete but sound proof is not penalised here; score it by the checkpoints it reaches.",
    ]


def test_release_cut_form_with_titled_checkpoints_and_trailing_penalties():
    r = parse_rubric(CUT)
    assert [(i.description, i.points) for i in r.items] == [
        ("Invariant modulo 3", 3),
        ("Start and target values: computes $S$ for both positions.", 2),
        ("Conclusion: the residues differ, so the target is unreachable.", 2),
    ]
    assert [d.points for d in r.deductions] == [-1] and [c.points for c in r.caps] == [4, 5]
    assert r.deductions[0].description == "A slip in one residue that does not change the conclusion"
    # the detail sub-bullets (one with a point value of its own) are kept, not scored
    assert [n.strip()[:12] for n in r.notes] == ["* Defines th", "* **OR** an ", "* **Total (m"]


def test_lines_the_parser_cannot_structure_are_kept():
    text = SINGLE.replace("2. **Zero-credit items**", "Graders: read the whole proof first.\n2. **Zero-credit items**")
    text = "Marking scheme follows.\n" + text + "Thank you.\n"
    r = parse_rubric(text)
    assert r.render() == text
    for line in ("Marking scheme follows.", "Graders: read the whole proof first.", "Thank you."):
        assert line in r.notes
    # every non-blank line is a heading, a scored item, a zero-credit item or a note
    scored = len(r.items) + len(r.zero_credit) + len(r.deductions) + len(r.caps)
    headings = 3
    assert scored + len(r.notes) + headings == sum(1 for ln in text.splitlines() if ln.strip())


def test_own_form_keeps_caps_and_unstructured_lines():
    text = (
        "Scheme:\n1. (3 points) Lemma.\n2. (4 points) Finish.\nDeductions:\n- (-1 points) Slip.\n"
        "- (cap at 3/7) Circular argument.\n- Be generous with notation."
    )
    r = parse_rubric(text, "pid")
    assert r.form == "own" and r.render() == text
    assert [(c.points, c.description) for c in r.caps] == [(3, "Circular argument.")]
    assert r.notes == ["Scheme:", "- Be generous with notation."]
    again = parse_rubric(render_rubric(r), "pid")  # the structure re-rendered in this project's form
    assert again == r and again.caps == r.caps


def test_rubric_built_in_code_renders_its_structure():
    r = Rubric("pid", [RubricItem("a", 3), RubricItem("b", 4)], caps=[RubricItem("contradiction", 5)])
    assert r.text == "" and r.render() == render_rubric(r)
    assert r.render().endswith("Deductions:\n- (cap at 5/7) contradiction")
    assert parse_rubric(r.render(), "pid") == r


@pytest.mark.parametrize(
    "text, message",
    [
        (SINGLE.replace("(4 pts)", "(3 pts)"), "the main solution add up to 6 points"),
        (CHAINS.replace("(3 pts) Sets up", "(2 pts) Sets up"), "chain B add up to 6 points"),
        (CHAINS.replace("(1 pt) Checks", "(2 pts) Checks"), r"main solution \(chain A\) add up to 8"),
        (CAPS.replace("Cap at 2/7", "Cap at 7/7"), "at 7/7; a cap must be a whole number from 0 to 6"),
        (CAPS.replace("Cap at 2/7", "Cap at 9/7"), "at 9/7; a cap must be"),
        (CAPS.replace("Cap at 2/7", "Cap at 2/10"), "out of 10; write caps out of 7"),
        (SINGLE.replace("**-1**", "**-9**"), "between -7 and -1"),
        (SINGLE.replace("* **(1 pt)** Determines", "* **(0 pts)** Determines"), "each must be 1 to 7"),
        ("**Checkpoints (7 pts total)**\n* (7 pts) Everything.\n", "at least 2 checkpoints, found 1"),
        ("1. (2 points) a\n2. (5 points) b\nDeductions:\n- (cap at 8/7) c", "at 8/7"),
        ("1. (2 points) a\n2. (5 points) b\nDeductions:\n- (-1 pts)", "'- \\(-P points\\) description'"),
    ],
)
def test_invalid_published_rubrics_say_why(text, message):
    with pytest.raises(RubricError, match=message):
        parse_rubric(text)


def test_reward_side_reads_published_text():
    """train/reward builds rubrics from the RL column with parse_rubric; the judge gets the text as stored."""
    r = parse_rubric(CHAINS.strip(), "pid")
    assert r.render() == CHAINS.strip()


# ---------------------------------------------------------------------------
# the rubric prompt and prompt files
# ---------------------------------------------------------------------------


def test_rubric_prompt_example_is_a_valid_rubric_and_carries_the_rules():
    from fineproofs import prompts

    p = prompts.load("rubric")
    assert p.version == "rubric-v2" and prompts.load("rubric_retry").version == "rubric-retry-v3"
    example = p.user[p.user.index("1. **Checkpoints") : p.user.index("Problem:")].strip() + "\n"
    r = parse_rubric(example)
    assert r.form == "published" and r.caps and r.deductions and r.zero_credit
    text = " ".join((p.system + " " + p.user).split())
    for rule in (
        "at least 4 points",
        "at most 3 points",
        "over-fragment",
        "highest chain subtotal",
        "Cap at x/7",
        "contradictory claims is capped",
        "incomplete but sound",
        "add up to exactly 7",
    ):
        assert rule in text, rule
    msgs = p.render(problem="P", solution="S")
    assert msgs[-1]["content"].endswith("Reference solution:\nS")


def test_prompt_from_a_file_with_header(tmp_path):
    from fineproofs import prompts

    f = tmp_path / "mine.txt"
    f.write_text("version: my-rubric-v7\n---\n[system]\nSys.\n[user]\nProblem {{problem}} / {{solution}}\n")
    p = prompts.load("rubric", f)
    assert (p.version, p.system, p.path) == ("my-rubric-v7", "Sys.", str(f))
    assert p.render(problem="x", solution="y")[-1]["content"] == "Problem x / y"
    with pytest.raises(KeyError):
        p.render(problem="x")


def test_prompt_from_a_plain_file_gets_a_content_version_and_single_braces(tmp_path):
    from fineproofs import prompts

    f = tmp_path / "orig.txt"
    f.write_text("Write a rubric for $\\frac{a}{b}$.\n### PROBLEM\n{problem}\n### SOLUTION\n{solution}")
    p = prompts.load("rubric", str(f))
    assert p.version.startswith("rubric-file-") and len(p.version) == len("rubric-file-") + 12
    (msg,) = p.render(problem="P1", solution="S1")
    assert msg == {"role": "user", "content": "Write a rubric for $\\frac{a}{b}$.\n### PROBLEM\nP1\n### SOLUTION\nS1"}
    g = tmp_path / "orig2.txt"
    g.write_text(f.read_text() + " ")
    assert prompts.load("rubric", g).version != p.version  # any edit is a new version
    assert prompts.load("rubric").version == "rubric-v2"  # the packaged one is untouched


def test_prompt_file_errors_are_config_errors(tmp_path):
    from fineproofs import prompts
    from fineproofs.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read"):
        prompts.load("rubric", tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("version: x-v1\n---\nstray text\n[user]\nU\n")
    with pytest.raises(ConfigError, match="before the first"):
        prompts.load("rubric", bad)
