"""Multiple-choice answers (MMLU-Pro, ARC-Challenge, GPQA): which option a model's final answer chooses.

An answer chooses an option by its letter ("C", "(C)", "**C**", "C) 42", "option C", "The answer is (C)",
"Answer: C)", "\\boxed{C}", "The correct option is (C)", "C is correct") or by the option's text ("The
answer is Paris.", "Paris"). The part read is the one that states the result (the last `\\boxed{}`, else
the text after "answer is / answer:", else the whole answer) up to the first explanation ("because ...", a
new sentence or line).

Without a marker or a box, a letter counts only where it stands as a choice: at the start of the answer or
of its closing line, alone or before ")", ".", ":" ("**B**", "(B)", "B. Paris" after the reasoning), so
the article in "A plant ..." is not read as option A. An answer that repeats the options ("A. ...\nB.
...") has not chosen the first or the last of them; after such a list a closing option line counts only
when it stands apart from the list and restates its option exactly ("B. London").

An answer that names two options ("B or C", "(B) and (C)", "\\boxed{B} or \\boxed{C}") chooses none, nor
does one whose letter and text disagree ("B. Rome" where Rome is C): it is wrong whatever the reference.

For comparison: simple-evals' MMLU reads the first letter after "Answer:" (markdown and `$\\boxed{` removed
first); lm-eval's generative tasks use a regex filter ("answer is \\(?([A-J])\\)?" for MMLU-Pro, the last
"(X)" or an option's text for its flexible multiple-choice filter); its `multiple_choice` tasks parse no
text at all (the options are scored by likelihood).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ascl_jax.rl.answers import answer_candidate, normalize_text

LETTERS = "ABCDEFGHIJKLMNOP"

# Where the statement of the choice ends and an explanation begins.
_EXPLANATION = re.compile(r"\n|(?<=[.!?;])\s|\s(?:because|since|as|as it|which|so|given)\b|\s[-\u2013\u2014]\s", re.I)
_LETTER_ANYWHERE = re.compile(r"(?<![A-Za-z0-9'])(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z]))(?![A-Za-z0-9'])")
_LETTER_AT_START = re.compile(
    r"^(?:option\s+|choice\s+)?(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])(?:[).:]|$|(?=\s+is\s+(?:the\s+)?"
    r"(?:correct|right|best)\b)))", re.I)
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-Pa-p])[).:][ \t]+\S", re.M)  # a letter and some text
_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Pa-p][).:]\s*")
# a choice stated without "answer is": "The correct option is (B)", "I choose B"
_CHOICE_MARKER = re.compile(
    r"(?:\b(?:option|choice)\s+(?:is|would be)|\bI(?:'d| would)?\s+(?:choose|pick|select|go with))\s*:?\s*(.+?)\s*"
    r"(?:$|\n|\.(?:\s|$))", re.I)
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


def _head(text: str) -> str:
    """`text` without markup, up to its first explanation."""
    return _EXPLANATION.split(_MARKUP.sub("", text).strip(), maxsplit=1)[0].strip().rstrip(".,;:!")


def _letter_at_start(text: str, options: Sequence[str]) -> list[int]:
    """The option a statement (markup removed) opens with by letter ("B", "(B)", "B) 42", "option B"), and
    any other it names beside it ("B) 42 or C) 17") or whose text follows the letter ("B. Rome" where Rome
    is C)."""
    n, head = len(options), _head(text)
    start = _LETTER_AT_START.match(head)
    if not start:
        return []
    picked = _letters(head[: start.end()], _LETTER_AT_START, n)
    picked += [i for i in _letters(head[start.end():], _LETTER_ANYWHERE, n) if i not in picked
               and re.search(rf"(?:\bor\b|\band\b|,|/)\s*\(?{LETTERS[i]}\b", head)]
    rest = _head(text[start.end():].lstrip(").:] \t"))
    return picked + [i for i in _texts(rest, options, whole_words=False) if i not in picked]


def _closing_letter(answer: str, options: Sequence[str], echoed: bool) -> list[int]:
    """The option the closing line of an answer without a marker chooses by letter ("**B**", "(B)",
    "B. Paris" after the reasoning). After a repeated list of options, its last line is no choice: a closing
    option line then counts only apart from the list and restating its option's text exactly."""
    lines = answer.strip().splitlines()
    if len(lines) < 2:
        return []
    picked = _letter_at_start(_MARKUP.sub("", lines[-1]).strip(), options)
    if echoed and _OPTION_LINE.match(lines[-1]):
        rest = _OPTION_PREFIX.sub("", _MARKUP.sub("", lines[-1]))
        restated = len(picked) == 1 and _texts(rest, options, whole_words=False) == picked
        if _OPTION_LINE.match(lines[-2]) or not restated:
            return []
    return picked


def chosen_option(answer: str | None, options: Sequence[str]) -> int | None:
    """The index into `options` of the option `answer` chooses; None when it names none or several.

    `options`: the option texts in letter order (A, B, ...), 2 to 16 of them."""
    if not options or len(options) > len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {len(options)}")
    if answer is None or not str(answer).strip():
        return None
    answer = str(answer)
    cand = answer_candidate(answer)
    n = len(options)
    if cand is not answer:  # a box or an answer marker states the choice
        head = _head(cand)
        picked = _letters(head, _LETTER_ANYWHERE, n)
        if len(picked) == 1:  # "B) Rome" where Rome is C names two
            picked = _letter_at_start(_MARKUP.sub("", cand).strip(), options) or picked
        picked = picked or _texts(head, options, whole_words=True)
        return picked[0] if len(picked) == 1 else None
    # an answer that repeats the options ("A. ...\nB. ...") has not chosen the first of them
    echoed = len({m.group(1).upper() for m in _OPTION_LINE.finditer(answer)}) >= 2
    head = _head(answer)
    picked = [] if echoed else _letter_at_start(_MARKUP.sub("", answer).strip(), options)
    picked = picked or _texts(head, options, whole_words=False)
    if not picked:
        marks = _CHOICE_MARKER.findall(answer)
        choice = _head(marks[-1]) if marks else ""
        picked = _letters(choice, _LETTER_ANYWHERE, n) or _texts(choice, options, whole_words=True)
    picked = picked or _closing_letter(answer, options, echoed)
    if not picked:  # a closing line that states the option
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
