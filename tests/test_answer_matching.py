"""Answer matching against a reference: a hedge or a negated value earns nothing, the statements that only
look like one still match, and the number forms (brace-less fractions, spaced thousands, a set-apart minus
sign, tuples) that a reader takes for the reference's value."""

import pytest

from ascl_jax.rl.answers import answer_candidate, answers_match, parse_number, stated_number
from ascl_jax.rl.utility_answers import utility_correct

THIN, NARROW, NBSP = "\u2009", "\u202f", "\u00a0"


@pytest.mark.parametrize("answer, reference", [
    # two or more different values offered together state no single result
    ("The answer is 5 or 6", 6), ("The answer is 5 or 6", 5), ("The answer is 5 and 6", 6),
    ("The answer is 5, 6", 6), ("The answer is 5 (or 6)", 6), ("It is either 5 or 6.", 6),
    ("x = 5 or x = 6", 6), ("The answer is 5 cm or 6 cm", 6), ("The answer is 6 or seven", 6),
    ("The answer is 5, or if we count zero, 6", 6), ("It is 5. Or maybe 6.", 6),
    ("\\boxed{5 \\text{ or } 6}", 6), ("\\boxed{5} or \\boxed{6}", 6), ("$\\boxed{5}$, $\\boxed{6}$", 6),
    ("The answer is 5 or \\boxed{6}", 6), ("The answer is \\boxed{6}, or maybe 5", 6),
    # a value the answer rules out is not the one it states
    ("The answer is 2 and not 3", 3), ("The answer is not 3", 3), ("The answer is 3, not 2", 2),
    ("The answer isn't 3; it's 4", 3), ("The answer is 4, not 3 or 5", 5), ("The answer is 6 (not 5)", 5),
])
def test_hedges_and_negations_do_not_match(answer, reference):
    assert not answers_match(answer, reference)
    assert not utility_correct(answer, {"class": "utility", "reference": str(reference)})


@pytest.mark.parametrize("answer, reference", [
    ("The answer is 6.", 6), ("The answer is 6 or six", 6), ("The answer is six or 6", 6),
    ("between 5 and 6? No: 6", 6), ("Is it 5 or 6? It is 6.", 6), ("It cannot be 5. It is 6.", 6),
    ("So the answer is 6 or 6.0", 6), ("The answer is 1/2 or 0.5", 0.5), ("The answer is 2 and not 3", 2),
    ("The answer is 3, not 2", 3), ("The answer isn't 3; it's 4", 4), ("The answer is 4, not 3 or 5", 4),
    ("The answer is 6 (not 5)", 6), ("\\boxed{5}. Wait, no: \\boxed{6}", 6),
    ("We have 3 apples and 4 pears, total 7", 7), ("First 3, then 5, so 8.", 8), ("We get 3 or more, so 8.", 8),
    ("The total is 42.\nHope this helps!", 42), ("2 + 3 = 5", 5),
])
def test_statements_that_are_no_hedge_still_match(answer, reference):
    assert answers_match(answer, reference)


@pytest.mark.parametrize("answer, reference", [
    ("\\boxed{\\frac12}", 0.5), ("\\boxed{\\frac12}", "1/2"), ("\\boxed{\\dfrac34}", "0.75"),
    ("\\boxed{\\frac1{2}}", 0.5), ("\\boxed{\\frac{1}2}", 0.5), ("$\\tfrac 1 4$", 0.25),
    ("The answer is 1 000", 1000), (f"The answer is 1{THIN}000", 1000), (f"The answer is 1{NARROW}000", "1000"),
    (f"The answer is 1{NBSP}000", 1000), ("The answer is 1\\,000", 1000), ("The answer is $12 345 678$", 12345678),
    ("The answer is 1 000.5", 1000.5), ("So we get - 5", -5), ("x = - 5", "-5"), ("The answer is - 5.", -5),
    ("\\boxed{(1,2)}", "(1, 2)"), ("\\boxed{(1, 2)}", "(1,2)"), ("The answer is (3,  4).", "(3, 4)"),
])
def test_number_and_tuple_forms(answer, reference):
    assert answers_match(answer, reference)


@pytest.mark.parametrize("answer, reference", [
    ("So we get - 5", 5), ("7 - 5", -5), ("x - 5", -5), ("The answer is 1 000", 1), ("The answer is 1 000", 0),
    ("\\boxed{(1,2)}", "(2, 1)"), ("\\boxed{\\frac12}", 12), ("The answer is 12 34", 1234),
    ("Items:\n- 5 apples\n- 3 pears", -3),  # a list's bullet is no minus sign
])
def test_number_forms_that_are_not_the_reference(answer, reference):
    assert not answers_match(answer, reference)


def test_helpers():
    assert parse_number("1 000") == parse_number(f"1{THIN}000") == 1000
    assert parse_number(f"12{NARROW}345") == 12345 and parse_number("- 5") == -5 and parse_number("\\frac12") == 0.5
    assert parse_number("6 or seven") is None and parse_number("7 apples.") == 7
    assert stated_number("5 or 6") is None and stated_number("2 and not 3") == 2 and stated_number("not 3") is None
    assert stated_number("Is it 5 or 6? It is 6.", whole_answer=True) == 6
    assert stated_number("It is 5. Or maybe 6.", whole_answer=True) is None  # the last sentence goes on the one before
    assert answer_candidate("\\boxed{5} or \\boxed{6}") == "5 or 6"
    assert answer_candidate("$\\boxed{5}$ and $\\boxed{6}$") == "5 and 6"
    assert answer_candidate("\\boxed{5}. Wait: \\boxed{6}") == "6"
