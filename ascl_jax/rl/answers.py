"""Verifiable answers: is a model's final answer the reference? Numbers (thousands separators of commas,
spaces or thin spaces, fractions, units, a trailing full stop, a minus sign set apart), `\\boxed{}`
contents, LaTeX fractions (braced or not) and text commands, and algebraic expressions (compared by
evaluating both at fixed points), else normalised text.

A final answer that hedges earns nothing: two or more different values offered together ("5 or 6",
"5, 6", "\\boxed{5} or \\boxed{6}", "6 or seven") state no single result, and a value the answer negates
("2 and not 3", "not 3") is not the one it states. Otherwise a policy trained on this match would learn
to list candidates.

`answers_match(answer, reference)` is the entry point; `answer_candidate` finds the part of an answer that
states the result ("the answer is ...", a box), `stated_number` the one number it states, `normalize_text`
is the text comparison's normal form."""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# LaTeX lets a one-character argument go without braces: \frac12, \frac1{2}, \frac{1}2
_FRAC_ARG = r"(?:\{([^{}]*)\}|([0-9A-Za-z]))"
_FRAC = re.compile(rf"\\[dt]?frac\s*{_FRAC_ARG}\s*{_FRAC_ARG}")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,;!: ]|\\left|\\right|\$|\\\(|\\\)|\\\[|\\\]|\^\s*\{?\\circ\}?|\\%")
_MARKER = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:$|\n|\.(?:\s|$))", re.I
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
# one number, optionally after a currency sign and before a unit / period ("7 apples.", "50%", "3 km/h");
# a tail that joins or negates ("6 or seven", "2 and not 3") is no unit
_PURE_NUMBER = re.compile(
    rf"^[\s$€£¥]*({_NUMBER})\s*(?:(?![^\n]*\b(?:or|and|nor|not|but)\b)[a-zA-Z%°][a-zA-Z%°²³/. ]*|\.)?$", re.I
)
# digit groups set apart by a space, no-break space, thin space or narrow no-break space ("1 000", "12 345")
_SPACE_GROUPS = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+(?!\d)")
# a minus sign set apart from its number where no operand precedes it ("we get - 5", "= - 5"); after a
# digit, a bracket or a one-letter variable it is a subtraction ("7 - 5", "x - 5")
_SPACED_MINUS = re.compile(r"(^|[=:(\[]|(?<!\w)[A-Za-z]{2,})[ \t]*-[ \t]+(?=\.?\d)")


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each closed `\\boxed{...}` in `text` (nested braces allowed), in order."""
    out = []
    for m in _BOXED.finditer(text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth == 0:
            out.append((m.start(), j, text[m.end() : j - 1]))
    return out


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed), or None."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def _frac(m: re.Match) -> str:
    a, b = (m.group(1) or m.group(2)).strip(), (m.group(3) or m.group(4)).strip()
    simple = re.compile(r"^-?\d+(?:\.\d+)?$|^[a-z]$", re.I)
    out = f"{a}/{b}" if simple.match(a) and simple.match(b) else f"({a})/({b})"
    # \frac123 is (1/2)*3 in LaTeX; without the brackets "1/23" would read as another number
    return f"({out})" if re.match(r"[\w(]", m.string[m.end() : m.end() + 1]) else out


def _clean_latex(s: str) -> str:
    s = _FRAC.sub(_frac, s)
    s = _TEXT_CMD.sub(r"\1", s)
    return _LATEX_NOISE.sub("", s).replace("\u2212", "-").strip()


def _numeric_text(text: str) -> str:
    """`text` with LaTeX noise removed, space-separated digit groups joined and a set-apart minus sign
    moved onto its number, so that the number patterns read "1 000" as 1000 and "we get - 5" as -5."""
    s = _SPACE_GROUPS.sub(lambda m: re.sub(r"\s", "", m.group()), _clean_latex(text))
    return _SPACED_MINUS.sub(r"\1 -", s)


def _to_float(num: str) -> float | None:
    num = num.replace(",", "").replace(" ", "")
    try:
        if "/" in num:
            a, b = num.split("/")
            return float(a) / float(b)
        return float(num)
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(text: Any) -> float | None:
    """`text` as one number, or None: "1,000" -> 1000, "7.0" -> 7, "1/2" -> 0.5, "\\frac{1}{2}" -> 0.5,
    "$12" -> 12, "7 apples." / "50%" -> 7 / 50 (a trailing unit or period is dropped). Text with more than
    one number is not one number."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(text) else None
    s = _numeric_text(str(text)).strip().strip("*").strip()
    s = re.sub(r"^\(([^()]*)\)$", r"\1", s)
    m = _PURE_NUMBER.match(s)
    return _to_float(m.group(1)) if m else None


def last_number(text: str) -> float | None:
    """The last number written in `text` (with the normalisations of `parse_number`), or None."""
    found = _NUMBER_RE.findall(_numeric_text(text))
    return _to_float(found[-1]) if found else None


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def normalize_text(text: str) -> str:
    """Lower-case, LaTeX wrappers and markdown emphasis removed, whitespace collapsed, surrounding quotes,
    brackets and trailing punctuation stripped."""
    s = _clean_latex(str(text)).lower().replace("**", "").replace("__", "")
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s*,\s*", ",", s)  # "(1,2)" and "(1, 2)" are one tuple
    s = s.strip(" \t\"'`")
    s = s.rstrip(".!;,:").strip()
    while len(s) >= 2 and s[0] + s[-1] in ("()", "[]", "{}", '""', "''"):
        s = s[1:-1].strip()
    return s


# what may stand between boxes offered together ("\boxed{5} or \boxed{6}", "$\boxed{5}$, $\boxed{6}$"), and an
# alternative offered beside a box in its sentence ("\boxed{6}, or maybe 5", "5 or \boxed{6}")
_BOX_JOIN = re.compile(r"^\s*(?:,|;|&|and/or|,?\s*or|,?\s*and)?\s*$", re.I)
_ALTERNATIVE_WORDS = r"(?:or|either|maybe|perhaps|possibly|alternatively)"
_AFTER_BOX = re.compile(rf"^[\s$]*,?\s*{_ALTERNATIVE_WORDS}\b[^.\n]*", re.I)
_BEFORE_BOX = re.compile(rf"\(?[^\s$(]+[\s)]*,?\s*{_ALTERNATIVE_WORDS}\s*[$(]*\s*$", re.I)


def _box_statement(answer: str, boxes: list[tuple[int, int, str]]) -> str:
    """The last box's content, joined with the boxes and the alternatives offered together with it."""
    k = len(boxes) - 1
    while k and _BOX_JOIN.match(_LATEX_NOISE.sub("", answer[boxes[k - 1][1] : boxes[k][0]])):
        k -= 1
    parts = [boxes[k][2]]
    for (_, end, _), (start, _, content) in zip(boxes[k:], boxes[k + 1 :]):
        parts += [f" {_LATEX_NOISE.sub('', answer[end:start]).strip() or ','} ", content]
    before = _BEFORE_BOX.search(answer[boxes[k - 1][1] if k else 0 : boxes[k][0]])
    after = _AFTER_BOX.match(answer[boxes[-1][1] :])
    return (before.group() if before else "") + "".join(parts) + (after.group() if after else "")


def answer_candidate(answer: str) -> str:
    """The part of a final answer that states the result: the last `\\boxed{}` (with the boxes and
    alternatives offered together with it: "\\boxed{5} or \\boxed{6}" states "5 or 6"), else the text after
    an "answer is / answer:" marker, else the whole answer."""
    boxes = _boxes(answer)
    if boxes:
        return _box_statement(answer, boxes)
    marks = _MARKER.findall(answer)
    if marks:
        return marks[-1]
    return answer


# ----------------------------------------------------------------------------- the number an answer states

# number words, only to see that "6 or seven" offers two values and "6 or six" one
_NUMBER_WORDS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORD_RE = re.compile(rf"\b(?:{'|'.join(_NUMBER_WORDS)})\b", re.I)
# a value right after one of these is one the answer rules out ("2 and not 3", "isn't 3", "rather than 3")
_NEGATION = re.compile(
    r"(?:\bnot|n't|\bnever|\bno longer|\brather than|\binstead of|\bother than|\bexcept(?: for)?|\u2260|!=)"
    r"\s*(?:equal to|exactly|just|simply|=)?\s*[$€£¥]?\s*$", re.I)
# What links two values offered together: an alternative word anywhere between them ("5, or if we count
# zero, 6"; not the "or" of "3 or more"), or nothing but a list separator after an optional unit and
# before an optional "x =" ("5, 6", "5 cm and 6 cm", "x = 5 and x = 6").
_ALTERNATIVE = re.compile(
    rf"\b(?!or\s+(?:more|less|fewer|so|greater|higher|lower|above|below|over|under)\b){_ALTERNATIVE_WORDS}\b", re.I)
_LIST_JOIN = re.compile(
    r"^[\s()\[\]]*(?:[^\W\d_]+\.?\s*)?(?:,|;|&|\band\b)[\s()\[\]]*(?:[a-z]\s*=\s*)?[$€£¥]?\s*$", re.I)
# where a sentence of an answer without a marker ends; one that opens with a joiner goes on the one before
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_OPENS_JOINED = re.compile(rf"^\W*(?:and|{_ALTERNATIVE_WORDS})\b", re.I)


def _values(text: str) -> list[tuple[int, int, float, bool]]:
    """(start, end, value, is_word) of each value `text` states, in order: numbers and number words, less
    those it negates ("not 3"), a negation reaching over the values joined to it ("not 3 or 5")."""
    found = [(m.start(), m.end(), _to_float(m.group()), False) for m in _NUMBER_RE.finditer(text)]
    found += [(m.start(), m.end(), _NUMBER_WORDS[m.group().lower()], True) for m in _NUMBER_WORD_RE.finditer(text)]
    found = sorted(v for v in found if v[2] is not None)
    out, negated = [], False
    for i, v in enumerate(found):
        before = text[found[i - 1][1] if i else 0 : v[0]]
        negated = bool(_NEGATION.search(before[-24:])) or (negated and _joins(before))
        if not negated:
            out.append(v)
    return out


def _joins(between: str) -> bool:
    """Whether `between`, the text between two values, offers them together."""
    return bool(_ALTERNATIVE.search(between) or _LIST_JOIN.match(between))


def _final_statement(text: str) -> str:
    """The last sentence of `text` that states a value (with any sentence before it that it continues:
    "It is 5. Or maybe 6."), or all of `text` when none does."""
    parts = [p for p in _SENTENCE_END.split(text) if p.strip()]
    for k in range(len(parts) - 1, -1, -1):
        if any(not v[3] for v in _values(parts[k])):
            first = k
            while first and _OPENS_JOINED.match(parts[first]):
                first -= 1
            return " ".join(parts[first : k + 1])
    return text


def stated_number(text: str, *, whole_answer: bool = False) -> float | None:
    """The one number `text` states as its result, or None: `text` as one number ("1 000", "\\frac12",
    "- 5"), else the last number it does not negate ("2 and not 3" states 2) unless that number is offered
    together with a different value ("5 or 6", "5, 6", "x = 5 or x = 6", "6 or seven": no single result).

    `whole_answer`: `text` is a whole answer without an answer marker, so only its last sentence that
    states a value is read ("Is it 5 or 6? It is 6." states 6)."""
    got = parse_number(text)
    if got is not None:
        return got
    s = _numeric_text(text)
    if whole_answer:
        s = _final_statement(s)
    values = _values(s)
    last = max((i for i, v in enumerate(values) if not v[3]), default=None)
    if last is None:
        return None
    lo = hi = last  # the run of values joined to the stated one ("5 or 6", "five, 6")
    while lo and _joins(s[values[lo - 1][1] : values[lo][0]]):
        lo -= 1
    while hi + 1 < len(values) and _joins(s[values[hi][1] : values[hi + 1][0]]):
        hi += 1
    if any(not _numbers_equal(v[2], values[last][2]) for v in values[lo : hi + 1]):
        return None
    return values[last][2]


# A sympy-free check that two simple expressions are equal: evaluate both at a few fixed points.
_EXPR_CHARS = re.compile(r"^[0-9a-z+\-*/^(). ]+$")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}


def _to_python_expr(s: str) -> str | None:
    s = _clean_latex(s).lower().replace(" ", "")
    if not s or not _EXPR_CHARS.match(s):
        return None
    s = s.replace("^", "**")
    # implicit multiplication: 2x, 2(x), x(y), )(, )x, xy
    s = re.sub(r"(?<=[0-9a-z)])(?=[a-z(])", "*", s)
    s = re.sub(r"(?<=\))(?=[0-9])", "*", s)
    return s


def _eval(node: ast.AST, env: dict[str, float]) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _eval(node.operand, env)
        return v if isinstance(node.op, ast.UAdd) else -v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e6):
            raise OverflowError("power too large")
        r = _OPS[type(node.op)](a, b)
        if isinstance(r, complex) or not math.isfinite(r):
            raise OverflowError("not a finite real")
        return r
    raise ValueError(f"unsupported expression element {type(node).__name__}")


_POINTS = (0.731, 1.618, -1.234, 2.459, 0.317)


def expressions_equal(a: str, b: str) -> bool:
    """True when `a` and `b` are simple algebraic expressions (numbers, single-letter variables, + - * / ^,
    parentheses, implicit multiplication) that agree at several fixed points: "x+1" == "1 + x",
    "2(x+1)" == "2x+2". Anything else (functions, equations, words) returns False."""
    pa, pb = _to_python_expr(a), _to_python_expr(b)
    if pa is None or pb is None:
        return False
    try:
        ta, tb = ast.parse(pa, mode="eval"), ast.parse(pb, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    names = sorted({n.id for t in (ta, tb) for n in ast.walk(t) if isinstance(n, ast.Name)})
    if any(len(n) != 1 for n in names):
        return False
    agree = 0
    for k, p in enumerate(_POINTS):
        env = {n: p + 0.37 * i * (k + 1) for i, n in enumerate(names)}
        try:
            va, vb = _eval(ta, env), _eval(tb, env)
        except ZeroDivisionError:
            continue
        except (OverflowError, ValueError, KeyError, RecursionError, TypeError):
            return False
        if not math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9):
            return False
        agree += 1
    return agree >= 2


def answers_match(answer: str, reference: Any) -> bool:
    """Whether a final answer states the reference answer.

    The answer's result is its last `\\boxed{}` (with boxes offered together with it), else the text after
    "answer is"/"answer:", else the whole answer. A numeric reference is compared as a number (relative
    tolerance 1e-6) with the number that result states (`stated_number`: "1,000" == "1 000" == 1000,
    "7.0" == 7, "1/2" == "\\frac12" == 0.5, units and periods dropped; a hedge such as "5 or 6" or a
    negated value such as the 3 of "2 and not 3" matches nothing). Otherwise the two are compared as simple
    expressions ("x+1" == "1 + x") and as normalised text (case, LaTeX wrappers, quotes, brackets, spaces
    after commas and trailing punctuation ignored: "(1,2)" == "(1, 2)").
    """
    if answer is None or not str(answer).strip():
        return False
    answer = str(answer)
    cand = answer_candidate(answer)
    ref_num = parse_number(reference)
    if ref_num is not None:
        got = stated_number(cand, whole_answer=cand is answer)
        return got is not None and _numbers_equal(got, ref_num)
    ref = str(reference)
    if normalize_text(cand) == normalize_text(ref) and normalize_text(ref):
        return True
    if expressions_equal(cand, ref):
        return True
    if cand is answer:  # no explicit marker: also accept a last line that states it
        lines = [ln for ln in answer.strip().splitlines() if ln.strip()]
        if lines and (normalize_text(lines[-1]) == normalize_text(ref) or expressions_equal(lines[-1], ref)):
            return True
    return False
