"""Build an RL prompt mix: deduplicate, drop every training prompt that overlaps an evaluation prompt,
balance the classes, split train / validation (`ascl data prompts`).

Overlap is judged on normalised text (Unicode NFKC, case-folded, dots and apostrophes inside words
dropped, other punctuation and symbols as spaces, whitespace collapsed) of the user turns:

* exact: the normalised texts are equal;
* n-gram: at least `overlap_threshold` of the training prompt's word n-grams occur in some evaluation
  prompt. Eval n-grams are kept in an inverted index, so each training prompt costs its own n-gram count,
  not a pass over the evaluation set. N-grams shared by more than `boilerplate_docs` evaluation prompts
  (e.g. an instruction appended to every maths question) are boilerplate and count on neither side; a
  prompt with fewer than n words (after boilerplate) is not judged by n-grams;
* similar: for prompts up to `SIMILAR_MAX_WORDS` words, word-sequence similarity (difflib ratio over
  words) at least `similarity_threshold` to one of the five evaluation prompts sharing most word trigrams
  with it: a short prompt with one word changed keeps no n-gram in common, but stays similar.

Everything here is a pure function of its inputs and the seed; `ascl_jax.curation.prompt_output` writes
the result."""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from ascl_jax.data.prompts import PROMPT_CLASSES, DataError
from ascl_jax.rollout.trajectory import Prompt


class PromptMixError(DataError):
    """A mix that cannot be built as asked (names the class, the share or the option to change)."""


@dataclass(frozen=True)
class MixConfig:
    """`shares`: class → share of the training mix (None keeps every prompt); `validation_fraction`: of
    each class, held out for validation; `ngram`: words per shingle; `overlap_threshold`: fraction of a
    training prompt's shingles found in the evaluation set at which it is removed; `similarity_threshold`:
    word-sequence similarity to one evaluation prompt at which it is removed (1 turns the test off);
    `boilerplate_docs`: grams in more evaluation prompts than this are ignored."""

    shares: dict[str, float] | None = None
    validation_fraction: float = 0.05
    ngram: int = 8
    overlap_threshold: float = 0.5
    similarity_threshold: float = 0.85
    boilerplate_docs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise PromptMixError(f"--ngram must be >= 1, got {self.ngram}")
        if not 0 < self.overlap_threshold <= 1:
            raise PromptMixError(f"--overlap-threshold must be in (0, 1], got {self.overlap_threshold}")
        if not 0 < self.similarity_threshold <= 1:
            raise PromptMixError(f"--similarity-threshold must be in (0, 1], got {self.similarity_threshold}")
        if not 0 <= self.validation_fraction < 1:
            raise PromptMixError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.shares is not None:
            check_shares(self.shares)


@dataclass(frozen=True)
class Item:
    """One prompt on its way through the mix, with the set it came from and its normalised text."""

    set: str
    cls: str
    prompt: Prompt
    norm: str


@dataclass(frozen=True)
class Removal:
    """Why a training prompt was removed: `reason` is "duplicate", "exact", "ngram" or "similar"; `match` is
    the id of the prompt it duplicates or the evaluation prompt it overlaps most; `score` the n-gram fraction
    or the similarity."""

    item: Item
    reason: str
    match: str
    score: float = 1.0


@dataclass
class Mix:
    """The mix and its bookkeeping: `counts[(set, class)][stage]` for the summary table."""

    train: list[Item]
    validation: list[Item]
    eval: list[Item]
    removed: list[Removal]
    counts: dict[tuple[str, str], Counter] = field(default_factory=dict)
    eval_counts: dict[tuple[str, str], Counter] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ text


_SEPARATORS = re.compile(r"\s+")
_INNER = re.compile(r"(?<=\w)[.'’](?=\w)")  # U.S. → US, user's → users: one word, not two


class _Spaces(dict):
    """str.translate table: punctuation, symbols, separators and controls → space (looked up once a char)."""

    def __missing__(self, code: int) -> int:
        self[code] = 32 if unicodedata.category(chr(code))[0] in "PSZC" else code
        return self[code]


_SPACES = _Spaces()


def normalise(text: str) -> str:
    """NFKC, case-folded, dots and apostrophes inside words dropped, other punctuation and symbols
    replaced by spaces, whitespace collapsed."""
    text = _INNER.sub("", unicodedata.normalize("NFKC", text).casefold())
    return _SEPARATORS.sub(" ", text.translate(_SPACES)).strip()


def user_text(prompt: Prompt) -> str:
    """The text a prompt asks: its user turns (system prompts are shared scaffolding, not content)."""
    return "\n".join(m["content"] for m in prompt.messages if m.get("role") == "user")


def shingles(norm: str, n: int) -> set[str]:
    """The word n-grams of a normalised text (empty when it has fewer than n words)."""
    words = norm.split()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def make_items(set_name: str, prompts: Iterable[Prompt]) -> list[Item]:
    return [Item(set_name, p.meta["class"], p, normalise(user_text(p))) for p in prompts]


def unique_ids(items: list[Item]) -> list[Item]:
    """Items whose ids are unique across the given sets: a repeated id gets `#2`, `#3`, ... in input order, so a
    rerun on the same inputs gives the same ids."""
    seen: Counter = Counter()
    taken = {it.prompt.id for it in items}
    out = []
    for it in items:
        pid = it.prompt.id
        seen[pid] += 1
        if seen[pid] > 1:
            k = seen[pid]
            while f"{pid}#{k}" in taken:
                k += 1
            pid = f"{pid}#{k}"
            taken.add(pid)
            it = Item(it.set, it.cls, Prompt(pid, it.prompt.messages, it.prompt.meta), it.norm)
        out.append(it)
    return out


# ----------------------------------------------------------------------------------- dedup, overlap


def dedup(items: list[Item]) -> tuple[list[Item], list[Removal]]:
    """The first item of each normalised text, and the later ones as removals naming the first."""
    first: dict[str, Item] = {}
    kept, removed = [], []
    for it in items:
        if it.norm in first:
            removed.append(Removal(it, "duplicate", first[it.norm].prompt.id))
        else:
            first[it.norm] = it
            kept.append(it)
    return kept, removed


# Similarity is checked on prompts up to this many words: below it an edit every few words can leave no
# n-gram in common; above it n-grams suffice, and indexing long eval prompts' trigrams costs the most.
SIMILAR_MAX_WORDS = 64


@dataclass(frozen=True)
class EvalIndex:
    """Evaluation prompts by normalised text, by n-gram and by word trigram (inverted indexes: gram → eval
    positions); `boilerplate`: grams in too many evaluation prompts to say anything about one."""

    items: list[Item]
    exact: dict[str, int]
    grams: dict[str, list[int]]
    trigrams: dict[str, list[int]]
    boilerplate: frozenset[str]
    cfg: MixConfig


def build_index(eval_items: list[Item], cfg: MixConfig) -> EvalIndex:
    exact: dict[str, int] = {}
    grams: dict[str, list[int]] = {}
    trigrams: dict[str, list[int]] = {}
    for i, it in enumerate(eval_items):
        exact.setdefault(it.norm, i)
        for g in shingles(it.norm, cfg.ngram):
            grams.setdefault(g, []).append(i)
        if it.norm.count(" ") < SIMILAR_MAX_WORDS:
            for g in shingles(it.norm, 3):
                trigrams.setdefault(g, []).append(i)
    boiler = frozenset(g for table in (grams, trigrams) for g, docs in table.items()
                       if len(docs) > cfg.boilerplate_docs)
    return EvalIndex(eval_items, exact, grams, trigrams, boiler, cfg)


def _most_shared(hits: Iterable[str], table: dict[str, list[int]], k: int) -> list[tuple[int, int]]:
    """(eval position, grams shared) of the k evaluation prompts sharing most grams; ties: the first."""
    per_eval = Counter(i for g in hits for i in table[g])
    return sorted(per_eval.items(), key=lambda x: (-x[1], x[0]))[:k]


def overlap(item: Item, index: EvalIndex) -> Removal | None:
    """The removal an item's overlap with the evaluation set calls for, or None: exact, then n-gram
    containment, then word-sequence similarity against the few eval prompts sharing most trigrams (which
    catches a short prompt with one word changed, where no n-gram survives)."""
    cfg = index.cfg
    if item.norm in index.exact:
        return Removal(item, "exact", index.items[index.exact[item.norm]].prompt.id)
    grams = shingles(item.norm, cfg.ngram) - index.boilerplate
    if grams:  # a prompt shorter than n words is left to exact match and similarity
        hits = [g for g in grams if g in index.grams]
        score = len(hits) / len(grams)
        if score >= cfg.overlap_threshold:
            best = _most_shared(hits, index.grams, 1)[0][0]
            return Removal(item, "ngram", index.items[best].prompt.id, round(score, 4))
    if cfg.similarity_threshold < 1 and item.norm.count(" ") < SIMILAR_MAX_WORDS:
        tri = [g for g in shingles(item.norm, 3) - index.boilerplate if g in index.trigrams]
        words = item.norm.split()
        for i, _ in _most_shared(tri, index.trigrams, 5):
            ratio = SequenceMatcher(None, words, index.items[i].norm.split(), autojunk=False).ratio()
            if ratio >= cfg.similarity_threshold:
                return Removal(item, "similar", index.items[i].prompt.id, round(ratio, 4))
    return None


def remove_overlap(items: list[Item], index: EvalIndex) -> tuple[list[Item], list[Removal]]:
    kept, removed = [], []
    for it in items:
        r = overlap(it, index)
        if r is None:
            kept.append(it)
        else:
            removed.append(r)
    return kept, removed


# --------------------------------------------------------------------------------- balance, split


def check_shares(shares: dict[str, float]) -> None:
    bad = [c for c in shares if c not in PROMPT_CLASSES]
    if bad:
        raise PromptMixError(f"--shares: unknown class {bad[0]!r}; use {', '.join(PROMPT_CLASSES)}")
    if any(s < 0 for s in shares.values()):
        raise PromptMixError("--shares: a share cannot be negative")
    total = sum(shares.values())
    if abs(total - 1) > 0.01:
        raise PromptMixError(f"--shares must add up to 1 (they add up to {total:g})")


def balance_targets(available: dict[str, int], shares: dict[str, float]) -> dict[str, int]:
    """How many prompts of each class to keep: the largest total whose classes match the shares without
    any class needing more prompts than it has."""
    for cls, n in available.items():
        if n and cls not in shares:
            raise PromptMixError(f"class {cls!r} has {n} prompts but --shares gives it no share; add {cls}=0 to "
                                 "leave it out, or give it a share")
    total = sum(shares.values())
    want = {c: s / total for c, s in shares.items() if s > 0}
    empty = [c for c in want if not available.get(c)]
    if empty:
        raise PromptMixError(f"--shares asks for {want[empty[0]]:.0%} {empty[0]} prompts but there are none "
                             f"(after deduplication and overlap removal); give {empty[0]}=0 or add a --{empty[0]} set")
    largest = min(available[c] / s for c, s in want.items())
    # The limiting class keeps all its prompts; rounding never asks a class for more than it has.
    return {c: min(available.get(c, 0), round(largest * want[c])) if c in want else 0 for c in available}


def balance(by_class: dict[str, list[Item]], shares: dict[str, float] | None,
            rng: random.Random) -> dict[str, list[Item]]:
    """Each class downsampled (uniformly, input order kept) to its target; no shares: all kept."""
    if shares is None:
        return by_class
    targets = balance_targets({c: len(v) for c, v in by_class.items()}, shares)
    out = {}
    for cls in sorted(by_class):
        items = by_class[cls]
        keep = set(rng.sample(range(len(items)), targets[cls]))
        out[cls] = [it for i, it in enumerate(items) if i in keep]
    return out


def split(by_class: dict[str, list[Item]], fraction: float,
          rng: random.Random) -> tuple[list[Item], list[Item]]:
    """Train and validation, stratified by class: round(fraction × n) of each class (at least one when the
    fraction is > 0 and the class has two or more prompts) go to validation."""
    train, val = [], []
    for cls in sorted(by_class):
        items = by_class[cls]
        k = round(fraction * len(items))
        if fraction > 0 and k == 0 and len(items) >= 2:
            k = 1
        held = set(rng.sample(range(len(items)), k))
        for i, it in enumerate(items):
            (val if i in held else train).append(it)
    return train, val


# ---------------------------------------------------------------------------------------- the mix


def _check_classes_left(by_class: dict[str, list[Item]], shares: dict[str, float] | None,
                        counts: dict[tuple[str, str], Counter]) -> None:
    """A class asked for but emptied by deduplication or overlap removal: say which sets lost what."""
    for cls in (c for c, share in (shares or {}).items() if share > 0 and not by_class.get(c)):
        lost = "; ".join(f"{s}: {c['read']} read, {c['duplicates']} duplicates, "
                         f"{c['overlap_exact'] + c['overlap_ngram'] + c['overlap_similar']} overlap the evaluation "
                         "sets" for (s, k), c in counts.items() if k == cls and c["read"])
        raise PromptMixError(f"--shares asks for {cls} prompts but none are left"
                             + (f" ({lost})" if lost else f"; add a --{cls} set") + f", or give {cls}=0")


def build_mix(train_sets: list[tuple[str, list[Prompt]]], eval_sets: list[tuple[str, list[Prompt]]],
              cfg: MixConfig, set_aside: dict[tuple[str, str], int] | None = None) -> Mix:
    """The whole pipeline. `train_sets` / `eval_sets`: (set name, prompts with meta["class"]) in the order
    given; earlier sets win duplicates. `set_aside`: rows a set's loader returned of another class than its
    flag asked for, (set, class) → count, carried into the summary."""
    counts: dict[tuple[str, str], Counter] = {}
    eval_counts: dict[tuple[str, str], Counter] = {}

    def tally(table, items: Iterable[Item], stage: str) -> None:
        for it in items:
            table.setdefault((it.set, it.cls), Counter())[stage] += 1

    # Training and evaluation files are separate, so each keeps its own ids: an evaluation prompt keeps the
    # benchmark's id even when its benchmark is also a training set, so `ascl eval` results line up with it.
    train = unique_ids([it for name, ps in train_sets for it in make_items(name, ps)])
    evals = unique_ids([it for name, ps in eval_sets for it in make_items(name, ps)])
    tally(counts, train, "read")
    tally(eval_counts, evals, "read")
    for (s, c), n in (set_aside or {}).items():
        counts.setdefault((s, c), Counter())["other_class"] += n

    evals, eval_dups = dedup(evals)
    tally(eval_counts, (r.item for r in eval_dups), "duplicates")
    tally(eval_counts, evals, "kept")
    train, removed = dedup(train)
    tally(counts, (r.item for r in removed), "duplicates")
    train, overlaps = remove_overlap(train, build_index(evals, cfg))
    for r in overlaps:
        counts[(r.item.set, r.item.cls)]["overlap_" + r.reason] += 1
    removed += overlaps

    rng = random.Random(cfg.seed)
    by_class: dict[str, list[Item]] = {}
    for it in train:
        by_class.setdefault(it.cls, []).append(it)
    _check_classes_left(by_class, cfg.shares, counts)
    balanced = balance(by_class, cfg.shares, rng)
    tally(counts, (it for v in balanced.values() for it in v), "balanced")
    tr, va = split(balanced, cfg.validation_fraction, rng)
    tally(counts, tr, "train")
    tally(counts, va, "validation")
    # Output in input order (sets as given, rows as read), so files diff cleanly between runs.
    order = {id(it): i for i, it in enumerate(train)}
    tr.sort(key=lambda it: order[id(it)])
    va.sort(key=lambda it: order[id(it)])
    if not tr:
        raise PromptMixError("no training prompts are left after deduplication, overlap removal and balancing")
    return Mix(tr, va, evals, removed, counts, eval_counts)
