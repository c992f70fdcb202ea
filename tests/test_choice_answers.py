"""Multiple-choice answers: letters in their common forms, option texts, trailing explanations, the same
forms on the closing line after the reasoning, and an answer that names two options (or a letter with
another option's text) is wrong."""

import pytest

from ascl_jax.rl.choice_answers import choice_correct, chosen_option, reference_index

OPTS = ["Paris", "London", "Rome", "Berlin"]
ECHO = "A. Paris\nB. London\nC. Rome\nD. Berlin"
REASONING = "The capital lies on the Thames; Paris, Rome and Berlin lie elsewhere.\n\n"


@pytest.mark.parametrize("answer,index", [
    ("C", 2), ("(C)", 2), ("**C**", 2), ("C) Rome", 2), ("C. Rome", 2), ("C: Rome", 2), ("option C", 2),
    ("The answer is (C).", 2), ("The answer is C", 2), ("Answer: C", 2), ("the answer is **(B)**", 1),
    ("Let me think.\nThe answer is (D) because Berlin is the capital.", 3),
    ("The answer is (C) because option A is a different city.", 2),
    ("The answer is (A). Option B is wrong since London is in England.", 0),
    ("\\boxed{B}", 1), ("so the final answer is \\boxed{D}", 3), ("$\\boxed{\\text{C}}$", 2),
    ("The answer is Rome.", 2), ("Rome", 2), ("After some thought:\nBerlin", 3),
    ("[B]", 1), ("(c)", 2),
    ("A. Paris\nB. London\nC. Rome\nD. Berlin\n\nThe answer is (C).", 2),
    ("A. Paris\nB. London\nC. Rome\nD. Berlin\n\nRome", 2),
])
def test_chosen(answer, index):
    assert chosen_option(answer, OPTS) == index


@pytest.mark.parametrize("answer", [
    "The answer is (B) or (C).", "The answer is B and C", "B or C", "B) London or C) Rome", "The answer is B, C",
    "", None, "I am not sure.", "A tulip is a plant.", "The answer is Rome or Paris.", "E", "The answer is (E).",
    "A. Paris\nB. London\nC. Rome\nD. Berlin",  # the options repeated, none chosen
])
def test_no_single_choice(answer):
    assert chosen_option(answer, OPTS) is None


# The forms outside completions close with (simple-evals reads only "Answer: X"; lm-eval's flexible filter
# the last "(X)", an option's text, or ": X"): each after some reasoning, as graded completions have it.
@pytest.mark.parametrize("closing", [
    "**B**", "(B)", "B", "Answer: B)", "Answer: B) London", "London", "**London**", "B. London", "B) London",
    "**B. London**", "**(B) London**", "The correct option is (B).", "I choose B.", "B is correct.",
    "B is the correct answer.", "Option B", "The best answer is B", "**Answer:** B", "Answer: $\\boxed{B}$",
])
def test_closing_line_forms_after_reasoning(closing):
    assert chosen_option(REASONING + closing, OPTS) == 1
    assert choice_correct(REASONING + closing, "B", OPTS)


@pytest.mark.parametrize("answer, index", [
    (ECHO + "\n\n**B**", 1), (ECHO + "\n\n(B)", 1), (ECHO + "\n\nB. London", 1),  # apart from the list
    (ECHO + "\n\n**B. London**", 1),
])
def test_closing_choice_after_the_options_repeated(answer, index):
    assert chosen_option(answer, OPTS) == index


@pytest.mark.parametrize("answer", [
    ECHO + "\nB. London",  # one more line of the list
    ECHO + "\n\nB. Rome",  # B's letter with C's text
    "A) is in France\n\nB) is right\n\nD) is wrong because Berlin is in Germany",  # options discussed in turn
    REASONING + "B. Rome", REASONING + "B or C", REASONING + "**B** or **C**", "\\boxed{B} or \\boxed{C}",
    "(A) or \\boxed{B}", "B. Rome", "Answer: B) Rome", REASONING + "A plant needs light.",
    "Option A is wrong.\n\nSo B.",  # no letter stands as the choice
])
def test_closing_line_rejections(answer):
    assert chosen_option(answer, OPTS) is None


def test_ten_options_and_contained_texts():
    opts = [str(v) for v in (4, 14, 40, 41, 44, 1, 2, 3, 5, 6)]
    assert chosen_option("The answer is (J).", opts) == 9
    assert chosen_option("The answer is 14.", opts) == 1  # "4" inside "14" does not count
    assert chosen_option("J", opts) == 9


def test_reference_forms_and_correctness():
    assert reference_index("c", OPTS) == 2 and reference_index(3, OPTS) == 3 and reference_index("London", OPTS) == 1
    assert choice_correct("The answer is (C).", "C", OPTS) and not choice_correct("The answer is (B) or (C).", "C", OPTS)
    assert not choice_correct("The answer is (B).", "C", OPTS)
    with pytest.raises(ValueError, match="not a letter"):
        reference_index("Madrid", OPTS)
    with pytest.raises(ValueError, match="2 to 16 options"):
        chosen_option("A", [])


def test_utility_correct_dispatches_on_choices():
    from ascl_jax.rl.utility_answers import utility_correct

    mc = {"class": "utility", "reference": "C", "choices": OPTS}
    assert utility_correct("The answer is (C).", mc) and utility_correct("Rome", mc)
    assert not utility_correct("The answer is (B) or (C).", mc) and not utility_correct("", mc)
    assert utility_correct("The answer is 42.", {"class": "utility", "reference": "42"})
    assert not utility_correct("C", {"class": "utility", "reference": "42"})
