"""Multiple-choice answers (MMLU-Pro, ARC-Challenge, GPQA): which option a model's final answer chooses.

An answer chooses an option by its letter ("C", "(C)", "**C**", "C) 42", "option C", "The answer is (C)",
"\\boxed{C}") or by the option's text ("The answer is Paris."). The part read is the one that states the
result (the last `\\boxed{}`, else the text after "answer is / answer:", else the whole answer) up to the
first explanation ("because ...", a new sentence or line). An answer that names two options ("B or C",
"(B) and (C)") chooses none: it is wrong whatever the reference. Without a marker or a box, a letter
counts only where it stands as a choice (the whole answer, or at its start before ")", ".", ":"), so the
article in "A plant ..." is not read as option A, nor is the first of the options an answer repeats.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ascl_jax.rl.answers import answer_candidate, normalize_text

LETTERS = "ABCDEFGHIJKLMNOP"

# Where the statement of the choice ends and an explanation begins.
_EXPLANATION = re.compile(r"\n|(?<=[.!?;])\s|\s(?:because|since|as|as it|which|so|given)\b|\s[-\u2013\u2014]\s", re.I)
_LETTER_ANYWHERE = re.compile(r"(?<![A-Za-z0-9'])(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z]))(?![A-Za-z0-9'])")
_LETTER_AT_START = re.compile(r"^(?:option\s+|choice\s+)?(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])(?:[).:]|$))", re.I)
_OPTION_LINE = re.compile(r"^\s*\(?([A-Pa-p])[).:]\s", re.M)
_MARKUP = re.compile(r"\*\*|__|`|\$|\\text\{|\\textbf\{|\}")


def _letters(text: str, pattern: re.Pattern, n: int) -> list[int]:
    """Indices (0-based) of the option letters `pattern` finds in `text`, in order, each once."""
    out: list[int] = []
    for m in pattern.finditer(text):
        letter = next(g for g in m.groups() if g).upper()
        i = LETTERS.find(letter)
        if 0 <= i < n and i not in out:
            out.append(i)
    return out


def _texts(head: str, options: Sequence[str], whole_words: bool) -> list[int]:
    """Options whose normalised text is `head` (or, with `whole_words`, stands in it as whole words); an
    option whose text lies inside a longer matched option's text does not count on its own."""
    h = normalize_text(head)
    norm = {}
    for i, opt in enumerate(options):
        o = normalize_text(opt)
        if o and (h == o or (whole_words and re.search(rf"(?<![\w]){re.escape(o)}(?![\w])", h))):
            norm[i] = o
    return [i for i in norm if not any(j != i and norm[i] in norm[j] for j in norm)]


def chosen_option(answer: str | None, options: Sequence[str]) -> int | None:
    """The index into `options` of the option `answer` chooses; None when it names none or several.

    `options`: the option texts in letter order (A, B, ...), 2 to 16 of them."""
    if not options or len(options) > len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {len(options)}")
    if answer is None or not str(answer).strip():
        return None
    answer = str(answer)
    cand = answer_candidate(answer)
    explicit = cand is not answer
    text = _MARKUP.sub("", cand).strip()
    head = _EXPLANATION.split(text, maxsplit=1)[0].strip().rstrip(".,;:!")
    n = len(options)
    if explicit:
        picked = _letters(head, _LETTER_ANYWHERE, n)
    else:
        # an answer that repeats the options ("A. ...\nB. ...") has not chosen the first of them
        echoed = len({m.group(1).upper() for m in _OPTION_LINE.finditer(answer)}) >= 2
        start = None if echoed else _LETTER_AT_START.match(head)
        picked = _letters(head[: start.end()], _LETTER_AT_START, n) if start else []
        if picked:  # "B) 42 or C) 17" names two
            picked += [i for i in _letters(head[start.end():], _LETTER_ANYWHERE, n) if i not in picked
                       and re.search(rf"(?:\bor\b|\band\b|,|/)\s*\(?{LETTERS[i]}\b", head)]
    if not picked:
        picked = _texts(head, options, whole_words=explicit)
        if not picked and not explicit:  # a closing line that states the option
            lines = [ln for ln in answer.strip().splitlines() if ln.strip()]
            picked = _texts(_MARKUP.sub("", lines[-1]), options, whole_words=False) if lines else []
    return picked[0] if len(picked) == 1 else None


def reference_index(reference: str | int, options: Sequence[str]) -> int:
    """The index of a reference given as a letter ("C"), a 0-based index, or the option's text."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        if 0 <= reference < len(options):
            return reference
    elif isinstance(reference, str):
        ref = reference.strip()
        if len(ref) == 1 and ref.upper() in LETTERS[: len(options)]:
            return LETTERS.index(ref.upper())
        matches = [i for i, o in enumerate(options) if normalize_text(o) == normalize_text(ref)]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(f"reference {reference!r} is not a letter, an index or the text of one of {len(options)} options")


def choice_correct(answer: str | None, reference: str | int, options: Sequence[str]) -> bool:
    """Whether `answer` chooses the reference option, and it alone."""
    got = chosen_option(answer, options)
    return got is not None and got == reference_index(reference, options)
