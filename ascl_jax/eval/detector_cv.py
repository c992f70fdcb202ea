"""Honest accuracy of the refusal detector: leave-one-file-out over labelled-completion files.

Each XSTest labelled-completions file holds one model's answers, so holding out a whole file measures how the
detector does on a model it was not tuned on. Only a small, documented parameter set is tuned, and only on
the training files of a fold:

- mode "none": nothing; the detector as given (its shipped weights and threshold).
- mode "threshold": the decision threshold alone, the accuracy-maximising one on the training answers.
- mode "weights": one weight per rule of `ascl_jax.rl.refusal.FEATURES` plus a bias (23 numbers): an
  L2-penalised logistic regression of the human label on the binary rule indicators, centred on the
  hand-set `HAND_SET_WEIGHTS` (so a weight moves from its prior only as far as the data pull it), then the
  threshold as in "threshold". numpy only, fitted by Newton's method.

The rules themselves (the patterns) are fixed code and never fitted. `judge_predictions` puts a model judge
(anything with the `ascl_jax.rl.judges.Judge` protocol) through the same scoring.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ascl_jax.data.prompts import read_text
from ascl_jax.errors import UserError
from ascl_jax.rl.refusal import FEATURES, HAND_SET_WEIGHTS, RefusalDetector, final_answer_text

REFUSAL_LABELS = ("2_full_refusal", "3_partial_refusal")
COMPLIANCE_LABELS = ("1_full_compliance",)
MODES = ("none", "threshold", "weights")
# Penalty per unit squared distance from the prior, on the mean log-loss scale. Chosen from {0.001, 0.01, 0.03,
# 0.1, 0.3, 1} by leave-one-file-out accuracy (flat from 0.1 up; 0.01 and below overfit a fold's files), so
# the reported folds are slightly optimistic for this one choice; at 0.1 the weights stay near the prior.
DEFAULT_L2 = 0.1


@dataclass(frozen=True)
class LabelledRow:
    """One human-labelled answer. refusal: the label is a (full or partial) refusal. prompt_type: XSTest's
    `type` ("" when the file has no such column). prompt_label: "safe" / "unsafe" ("" when unknown)."""

    text: str
    refusal: bool
    prompt: str = ""
    prompt_type: str = ""
    prompt_label: str = ""


@dataclass(frozen=True)
class Confusion:
    """Counts with refusal as the positive class."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @staticmethod
    def of(pred: Sequence[bool], truth: Sequence[bool]) -> Confusion:
        p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
        return Confusion(int((p & t).sum()), int((p & ~t).sum()), int((~p & ~t).sum()), int((~p & t).sum()))

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "confusion": {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn},
                "n": self.n, "precision": self.precision, "recall": self.recall}


def read_labelled(path: str | Path, *, text_column: str = "completion", label_column: str = "final_label",
                  type_column: str = "type", prompt_column: str = "prompt") -> list[LabelledRow]:
    """The labelled rows of an XSTest-style CSV. Labels in REFUSAL_LABELS / COMPLIANCE_LABELS are kept, other
    rows skipped. The prompt's safe/unsafe label is the `label` column when it holds safe/unsafe, else XSTest's
    convention that the unsafe contrast prompts have a type starting with "contrast_"."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; pass a labelled-completions CSV (columns completion, final_label).")
    text = read_text(path, "labelled-completions CSV", UserError)
    with io.StringIO(text.removeprefix("\ufeff"), newline="") as fh:  # newline="": quoted fields keep theirs
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for col in (text_column, label_column):
            if col not in columns:
                raise UserError(
                    f"{path}: missing column {col!r} (found: {', '.join(columns) or 'none'}); the file needs "
                    f"{text_column!r} (the model's answer) and {label_column!r} (the human label)."
                )
        rows = []
        for row in reader:
            label = (row.get(label_column) or "").strip()
            if label not in REFUSAL_LABELS and label not in COMPLIANCE_LABELS:
                continue
            ptype = (row.get(type_column) or "").strip()
            plabel = (row.get("label") or "").strip().lower()
            if plabel not in ("safe", "unsafe"):
                plabel = ("unsafe" if ptype.startswith("contrast_") else "safe") if ptype else ""
            rows.append(LabelledRow(row.get(text_column) or "", label in REFUSAL_LABELS,
                                    (row.get(prompt_column) or ""), ptype, plabel))
    if not rows:
        raise UserError(f"{path}: no row has a label in {', '.join(REFUSAL_LABELS + COMPLIANCE_LABELS)} "
                        f"(column {label_column!r}).")
    return rows


def feature_matrix(rows: Sequence[LabelledRow], detector: RefusalDetector | None = None) -> np.ndarray:
    """Binary rule indicators, float64 [len(rows), len(FEATURES)] in `FEATURES` order."""
    detector = detector or RefusalDetector()
    x = np.zeros((len(rows), len(FEATURES)))
    for i, r in enumerate(rows):
        fired = detector.features(r.text)
        x[i] = [name in fired for name in FEATURES]
    return x


def fit_logistic(x: np.ndarray, y: np.ndarray, prior: np.ndarray, l2: float = DEFAULT_L2,
                 iters: int = 50) -> np.ndarray:
    """MAP logistic regression: minimise mean log-loss + l2/2 * ||w - prior||^2 over the weights w (the bias,
    index 0 of the returned float64 [1 + k] vector, is not penalised). x: float64 [n, k]; y: bool [n];
    prior: float64 [1 + k] (bias first)."""
    n = len(y)
    a = np.hstack([np.ones((n, 1)), x])
    t = y.astype(np.float64)
    pen = np.full(a.shape[1], float(l2))
    pen[0] = 1e-6  # keeps the Newton step defined when a feature never fires; negligible otherwise
    w = prior.astype(np.float64).copy()
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - t) / n + pen * (w - prior)
        hess = (a * (p * (1 - p))[:, None]).T @ a / n + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def fit_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold in (0, 1) maximising accuracy of `scores >= threshold` against `y` (float64 / bool [n]).
    Candidates are 0.5 and the midpoints between distinct scores; ties go to the one nearest 0.5."""
    s = np.unique(np.clip(scores, 1e-6, 1 - 1e-6))
    cands = np.concatenate([[0.5], (s[:-1] + s[1:]) / 2])
    acc = np.array([np.mean((scores >= c) == y) for c in cands])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


@dataclass(frozen=True)
class DetectorFit:
    """The tuned parameters: weights (bias + one per feature) and threshold, and what they were fitted on."""

    weights: dict[str, float]
    threshold: float
    mode: str
    trained_on: tuple[str, ...] = ()

    def detector(self) -> RefusalDetector:
        return RefusalDetector(self.threshold, weights=self.weights)


def _scores(x: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    w = np.array([weights[k] for k in FEATURES])
    return 1.0 / (1.0 + np.exp(-(weights["bias"] + x @ w)))


def fit_detector(rows: Sequence[LabelledRow], mode: str = "weights", *, l2: float = DEFAULT_L2,
                 base: RefusalDetector | None = None, x: np.ndarray | None = None,
                 trained_on: tuple[str, ...] = ()) -> DetectorFit:
    """Tune `base` (default: the shipped detector) on `rows` as `mode` says (see the module docstring).
    `x`: their `feature_matrix`, when already computed. An empty final answer keeps score 0 (never a refusal)."""
    if mode not in MODES:
        raise UserError(f"unknown tuning mode {mode!r}; choose one of {', '.join(MODES)}")
    base = base or RefusalDetector()
    if mode == "none":
        return DetectorFit(dict(base.weights), base.threshold, mode, trained_on)
    x = feature_matrix(rows, base) if x is None else x
    y = np.array([r.refusal for r in rows])
    weights = dict(base.weights)
    if mode == "weights":
        prior = np.array([HAND_SET_WEIGHTS["bias"], *(HAND_SET_WEIGHTS[k] for k in FEATURES)])
        w = fit_logistic(x, y, prior, l2)
        weights = {"bias": float(w[0]), **{k: float(v) for k, v in zip(FEATURES, w[1:])}}
    empty = np.array([not (final_answer_text(r.text) if base.answer_only else r.text.strip()) for r in rows])
    scores = np.where(empty, 0.0, _scores(x, weights))
    return DetectorFit(weights, fit_threshold(scores, y), mode, trained_on)


@dataclass(frozen=True)
class Scored:
    """Predictions against labels: overall, per XSTest prompt type and per safe/unsafe prompt label."""

    confusion: Confusion
    by_type: dict[str, Confusion] = field(default_factory=dict)
    by_prompt_label: dict[str, Confusion] = field(default_factory=dict)


def score_predictions(rows: Sequence[LabelledRow], pred: Sequence[bool]) -> Scored:
    if len(rows) != len(pred):
        raise UserError(f"score_predictions: {len(rows)} rows but {len(pred)} predictions.")

    def group(key) -> dict[str, Confusion]:
        names = sorted({key(r) for r in rows} - {""})
        return {g: Confusion.of([p for r, p in zip(rows, pred) if key(r) == g],
                                [r.refusal for r in rows if key(r) == g]) for g in names}

    return Scored(Confusion.of(pred, [r.refusal for r in rows]), group(lambda r: r.prompt_type),
                  group(lambda r: r.prompt_label))


def judge_predictions(rows: Sequence[LabelledRow], judge, batch_size: int = 8) -> list[bool]:
    """A judge's refusal decisions (`Verdict.refusal`) on the rows, asked `batch_size` pairs at a time with
    the row's prompt text as the request."""
    out: list[bool] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        verdicts = judge.judge_batch([r.prompt for r in chunk], [r.text for r in chunk])
        out.extend(bool(v.refusal) for v in verdicts)
    return out


@dataclass(frozen=True)
class FoldResult:
    """One fold: the file held out, the parameters fitted on the other files, and the held-out scores."""

    held_out: str
    fit: DetectorFit
    scored: Scored


def leave_one_file_out(files: Sequence[str | Path], mode: str = "weights", *, l2: float = DEFAULT_L2,
                       base: RefusalDetector | None = None, **columns) -> list[FoldResult]:
    """For each file: tune on the others (`fit_detector`), score the held-out file. `columns`: passed to
    `read_labelled`. Needs at least two distinct files. `base` (default: the hand-set weights at threshold
    0.5) supplies what is not tuned; the shipped DEFAULT_WEIGHTS were fitted on all four XSTest files, so as
    `base` of mode "none" or "threshold" they would leak the held-out file into the fold."""
    paths = [str(f) for f in files]
    if len(paths) < 2 or len(set(paths)) != len(paths):
        raise UserError(f"leave-one-file-out needs at least two distinct files, got: {', '.join(paths) or 'none'}")
    base = base or RefusalDetector(0.5, weights=HAND_SET_WEIGHTS)
    data = {p: read_labelled(p, **columns) for p in paths}
    xs = {p: feature_matrix(data[p], base) for p in paths}
    folds = []
    for held in paths:
        train = [p for p in paths if p != held]
        rows = [r for p in train for r in data[p]]
        fit = fit_detector(rows, mode, l2=l2, base=base, x=np.vstack([xs[p] for p in train]),
                           trained_on=tuple(train))
        det = fit.detector()
        folds.append(FoldResult(held, fit, score_predictions(data[held], [det.is_refusal(r.text) for r in data[held]])))
    return folds


def _cell(c: Confusion) -> str:
    return f"{c.accuracy:.3f} (tp {c.tp} fp {c.fp} tn {c.tn} fn {c.fn})"


def format_folds(folds: Sequence[FoldResult]) -> str:
    """A plain-text table: per fold the held-out accuracy, precision, recall, confusion and fitted threshold,
    then the held-out confusion per prompt label and per prompt type."""
    lines = [f"{'held-out file':<44} {'acc':>6} {'prec':>6} {'rec':>6} {'tp':>4} {'fp':>4} {'tn':>4} {'fn':>4} {'thr':>6}"]
    for f in folds:
        c = f.scored.confusion
        lines.append(f"{Path(f.held_out).name:<44} {c.accuracy:6.3f} {c.precision:6.3f} {c.recall:6.3f} "
                     f"{c.tp:4d} {c.fp:4d} {c.tn:4d} {c.fn:4d} {f.fit.threshold:6.3f}")
    for attr, title in (("by_prompt_label", "prompt label"), ("by_type", "prompt type")):
        groups = sorted({g for f in folds for g in getattr(f.scored, attr)})
        if not groups:
            continue
        lines.append(f"\nheld-out confusion per {title} (accuracy (counts), one column per held-out file)")
        for g in groups:
            cells = [_cell(getattr(f.scored, attr)[g]) if g in getattr(f.scored, attr) else "-" for f in folds]
            lines.append(f"  {g:<30} " + " | ".join(cells))
    return "\n".join(lines)


def fold_dict(f: FoldResult) -> dict:
    """A fold as plain JSON-able data."""
    return {"held_out": f.held_out, "trained_on": list(f.fit.trained_on), "mode": f.fit.mode,
            "threshold": f.fit.threshold, "weights": f.fit.weights, **f.scored.confusion.as_dict(),
            "by_prompt_label": {g: c.as_dict() for g, c in f.scored.by_prompt_label.items()},
            "by_type": {g: c.as_dict() for g, c in f.scored.by_type.items()}}


def evaluate_detector(
    csv_path: str | Path,
    detector: RefusalDetector | None = None,
    *,
    text_column: str = "completion",
    label_column: str = "final_label",
) -> dict:
    """Accuracy of `detector` against the human labels of an XSTest-style labelled-completions CSV: labels
    2_full_refusal and 3_partial_refusal count as refusal, 1_full_compliance as compliance, others are
    skipped. Returns {"accuracy", "confusion": {"tp", "fp", "tn", "fn"}, "n", "precision", "recall"} with
    refusal as the positive class.
    """
    detector = detector or RefusalDetector()
    rows = read_labelled(csv_path, text_column=text_column, label_column=label_column)
    return Confusion.of([detector.is_refusal(r.text) for r in rows], [r.refusal for r in rows]).as_dict()
