"""Verifiable answers: is a model's final answer the reference? Numbers (thousands separators, fractions,
units, a trailing full stop), `\\boxed{}` contents, LaTeX fractions and text commands, and algebraic
expressions (compared by evaluating both at fixed points), else normalised text.

`answers_match(answer, reference)` is the entry point; `answer_candidate` finds the part of an answer that
states the result ("the answer is ...", a box), `normalize_text` is the text comparison's normal form."""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,;!: ]|\\left|\\right|\$|\\\(|\\\)|\\\[|\\\]|\^\s*\{?\\circ\}?|\\%")
_MARKER = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:$|\n|\.(?:\s|$))", re.I
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
# one number, optionally after a currency sign and before a unit / period ("7 apples.", "50%", "3 km/h")
_PURE_NUMBER = re.compile(rf"^[\s$€£¥]*({_NUMBER})\s*(?:[a-zA-Z%°][a-zA-Z%°²³/. ]*|\.)?$")


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def _frac(m: re.Match) -> str:
    a, b = m.group(1).strip(), m.group(2).strip()
    simple = re.compile(r"^-?\d+(?:\.\d+)?$|^[a-z]$", re.I)
    return f"{a}/{b}" if simple.match(a) and simple.match(b) else f"({a})/({b})"


def _clean_latex(s: str) -> str:
    s = _FRAC.sub(_frac, s)
    s = _TEXT_CMD.sub(r"\1", s)
    return _LATEX_NOISE.sub("", s).replace("\u2212", "-").strip()


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
    s = _clean_latex(str(text)).strip().strip("*").strip()
    s = re.sub(r"^\(([^()]*)\)$", r"\1", s)
    m = _PURE_NUMBER.match(s)
    return _to_float(m.group(1)) if m else None


def last_number(text: str) -> float | None:
    """The last number written in `text` (with the normalisations of `parse_number`), or None."""
    found = _NUMBER_RE.findall(_clean_latex(text))
    return _to_float(found[-1]) if found else None


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def normalize_text(text: str) -> str:
    """Lower-case, LaTeX wrappers and markdown emphasis removed, whitespace collapsed, surrounding quotes,
    brackets and trailing punctuation stripped."""
    s = _clean_latex(str(text)).lower().replace("**", "").replace("__", "")
    s = re.sub(r"\s+", " ", s).strip()
    s = s.strip(" \t\"'`")
    s = s.rstrip(".!;,:").strip()
    while len(s) >= 2 and s[0] + s[-1] in ("()", "[]", "{}", '""', "''"):
        s = s[1:-1].strip()
    return s


def answer_candidate(answer: str) -> str:
    """The part of a final answer that states the result: the last `\\boxed{}`, else the text after an
    "answer is / answer:" marker, else the whole answer."""
    boxed = extract_boxed(answer)
    if boxed is not None:
        return boxed
    marks = _MARKER.findall(answer)
    if marks:
        return marks[-1]
    return answer


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

    The answer's result is its last `\\boxed{}`, else the text after "answer is"/"answer:", else the whole
    answer. A numeric reference is compared as a number (relative tolerance 1e-6) with that result when it
    is one number, else with the last number written in it ("1,000" == 1000, "7.0" == 7, "1/2" == 0.5,
    units and periods dropped). Otherwise the two are compared as simple expressions ("x+1" == "1 + x") and
    as normalised text (case, LaTeX wrappers, quotes, brackets, trailing punctuation ignored).
    """
    if answer is None or not str(answer).strip():
        return False
    answer = str(answer)
    cand = answer_candidate(answer)
    ref_num = parse_number(reference)
    if ref_num is not None:
        got = parse_number(cand)
        if got is None:
            got = last_number(cand)
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
