"""Rule retrievers: answer a `consult_safety_rules` call with a ranked list of (rule, score).

Three are built in:

* `CategoryRetriever`: the rules of the requested category, in book order (score 1.0 each).
* `BM25Retriever`: Okapi BM25 over each rule's title, text and keywords (query only).
* `HybridRetriever` (the tool's default): filter by category, rank by BM25 inside it.

Any object with a matching `retrieve(category, query, k)` method is a `RuleRetriever`, so a user can plug
in their own (an embedding index, a remote service) without subclassing anything.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ascl_jax.errors import ConfigError
from ascl_jax.rules.rulebook import Rule, RuleBook

__all__ = [
    "RuleRetriever",
    "CategoryRetriever",
    "BM25Retriever",
    "HybridRetriever",
    "tokenize",
    "stem",
    "STOPWORDS",
]


@runtime_checkable
class RuleRetriever(Protocol):
    """Anything that ranks rules for a tool call.

    `category` and `query` are None when the call did not give them. Returns at most `k` pairs
    (rule, score), best first; scores are only comparable within one retriever.
    """

    def retrieve(self, category: str | None, query: str | None, k: int) -> list[tuple[Rule, float]]: ...


# -- tokenizer ------------------------------------------------------------------------------------------
STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been being but by can could did do does doing
    for from had has have having he her here hers him his how i if in into is it its itself me more most
    my no nor not of on once only or other our ours out over own same she should so some such than that
    the their theirs them then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours""".split()
)

_WORD_RE = re.compile(r"[^\W_]+")


def _is_consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(word: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in the word."""
    m, prev_vowel = 0, False
    for i in range(len(word)):
        consonant = _is_consonant(word, i)
        if consonant and prev_vowel:
            m += 1
        prev_vowel = not consonant
    return m


def _has_vowel(word: str) -> bool:
    return any(not _is_consonant(word, i) for i in range(len(word)))


def _ends_cvc(word: str) -> bool:
    return (
        len(word) >= 3
        and _is_consonant(word, len(word) - 3)
        and not _is_consonant(word, len(word) - 2)
        and _is_consonant(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


def stem(word: str) -> str:
    """Light stemming: steps 1a, 1b and 1c of the Porter stemmer (plurals, -ed, -ing, final -y).

    `weapons` -> `weapon`, `hacking` -> `hack`, `making` -> `make`, `privacy` -> `privaci`. Words of
    two letters or fewer, and words that are not plain ASCII letters, are returned unchanged.
    """
    if len(word) <= 2 or not (word.isascii() and word.isalpha()):
        return word
    # 1a: plurals
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("ss"):
        pass
    elif word.endswith("s"):
        word = word[:-1]
    # 1b: -eed, -ed, -ing
    tidy = False
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    elif word.endswith("ed") and _has_vowel(word[:-2]):
        word, tidy = word[:-2], True
    elif word.endswith("ing") and _has_vowel(word[:-3]):
        word, tidy = word[:-3], True
    if tidy:
        if word.endswith(("at", "bl", "iz")):
            word += "e"
        elif len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1) and word[-1] not in "lsz":
            word = word[:-1]
        elif _measure(word) == 1 and _ends_cvc(word):
            word += "e"
    # 1c: final y -> i after a vowel-bearing stem
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase, split on anything that is not a letter or digit (so `self_harm` is two words), drop
    English stopwords, stem each word with `stem`."""
    return [stem(word) for word in _WORD_RE.findall(text.lower()) if word not in STOPWORDS]


# -- retrievers -----------------------------------------------------------------------------------------
def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, not {type(k).__name__}")
    return max(int(k), 0)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class CategoryRetriever:
    """The first `k` rules of the requested category in book order, each with score 1.0.

    The query is ignored; an unknown or missing category gives no rules.
    """

    def __init__(self, rulebook: RuleBook):
        self.rulebook = rulebook

    def retrieve(self, category: str | None, query: str | None, k: int) -> list[tuple[Rule, float]]:
        k = _check_k(k)
        category = _clean(category)
        if category is None:
            return []
        return [(rule, 1.0) for rule in self.rulebook.by_category(category)[:k]]


class BM25Retriever:
    """Okapi BM25 over each rule's title, text and keywords; the category argument is ignored.

    score(q, d) = sum over the distinct terms t of q of
        idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    with idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)) (the non-negative form used by Lucene),
    N the number of rules, n(t) the number of rules containing t, |d| a rule's length in tokens and
    avgdl the mean length. Only rules with a positive score are returned; ties keep book order.

    `normalise=True` makes `retrieve` return each score over `bound(query)`, the most any rule could
    score for the query's indexed terms, so that scores lie in (0, 1] and read alike across queries
    (the ranking is the same). `scores` and `rank` stay raw either way.
    """

    def __init__(
        self,
        rulebook: RuleBook,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        tokenizer: Callable[[str], list[str]] = tokenize,
        normalise: bool = False,
    ):
        if not (isinstance(k1, (int, float)) and math.isfinite(k1) and k1 >= 0):
            raise ConfigError(f"BM25 k1 is {k1!r}; use a number >= 0 (1.2 to 2.0 is usual)")
        if not (isinstance(b, (int, float)) and 0 <= b <= 1):
            raise ConfigError(f"BM25 b is {b!r}; use a number between 0 and 1 (0.75 is usual)")
        self.rulebook = rulebook
        self.k1 = float(k1)
        self.b = float(b)
        self.tokenizer = tokenizer
        self.normalise = bool(normalise)
        docs = [tokenizer(self.document_text(rule)) for rule in rulebook.rules]
        n_docs = len(docs)
        self.doc_lengths = np.array([len(doc) for doc in docs], dtype=np.float64)
        self.avgdl = float(self.doc_lengths.mean()) if n_docs and self.doc_lengths.sum() > 0 else 1.0
        counts: dict[str, dict[int, int]] = {}
        for index, doc in enumerate(docs):
            for term in doc:
                row = counts.setdefault(term, {})
                row[index] = row.get(index, 0) + 1
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.idf: dict[str, float] = {}
        for term, row in counts.items():
            indices = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            tfs = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            self._postings[term] = (indices, tfs)
            n = len(row)
            self.idf[term] = math.log(1.0 + (n_docs - n + 0.5) / (n + 0.5))
        # the length normalisation of every document, computed once
        self._norm = self.k1 * (1.0 - self.b + self.b * self.doc_lengths / self.avgdl)

    @staticmethod
    def document_text(rule: Rule) -> str:
        """The text indexed for one rule: title, text and keywords."""
        return "\n".join((rule.title, rule.text, " ".join(rule.keywords)))

    def scores(self, query: str | None) -> np.ndarray:
        """BM25 score of every rule of the book (in book order) for this query."""
        out = np.zeros(len(self.rulebook), dtype=np.float64)
        if not query:
            return out
        for term in dict.fromkeys(self.tokenizer(query)):
            posting = self._postings.get(term)
            if posting is None:
                continue
            indices, tfs = posting
            out[indices] += self.idf[term] * tfs * (self.k1 + 1.0) / (tfs + self._norm[indices])
        return out

    def bound(self, query: str | None) -> float:
        """An upper bound on any rule's score for this query: the sum over its distinct indexed terms of
        idf(t) * (k1 + 1), which a term's saturating tf factor approaches but, for k1 > 0, never reaches.
        0.0 when no term of the query is in the index."""
        if not query:
            return 0.0
        terms = [term for term in dict.fromkeys(self.tokenizer(query)) if term in self.idf]
        return sum(self.idf[term] for term in terms) * (self.k1 + 1.0)

    def rank(self, query: str | None, k: int, candidates: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """(index into the book, score) of the best `k` rules among `candidates` (default: all),
        best first, ties in book order. Rules scoring 0 are included, so this can fill up a category."""
        k = _check_k(k)
        scores = self.scores(query)
        pool = range(len(scores)) if candidates is None else candidates
        ordered = sorted(pool, key=lambda i: (-scores[i], i))
        return [(i, float(scores[i])) for i in ordered[:k]]

    def retrieve(self, category: str | None, query: str | None, k: int) -> list[tuple[Rule, float]]:
        query = _clean(query)
        if query is None:
            return []
        rules = self.rulebook.rules
        hits = [(rules[i], score) for i, score in self.rank(query, k) if score > 0.0]
        if self.normalise and hits:
            top = self.bound(query)
            hits = [(rule, min(score / top, 1.0)) for rule, score in hits]
        return hits


class HybridRetriever:
    """Category filter, then BM25 ranking inside the category. The tool's default retriever.

    * known category and a query: the category's rules ranked by BM25 (rules of the category that do
      not match the query follow, in book order, with score 0.0), so the call gets up to `k` rules;
    * known category, no query: the category's rules in book order, score 1.0;
    * unknown or missing category, a query: BM25 over the whole book (positive scores only); when
      nothing matches, the default below;
    * neither (or nothing matched): the default, the first `k` rules of `default_category` (the default
      book's `general` rules: how to judge requests and how to decline) or, where the book has no such
      category, its first `k` rules; score 0.0.
    """

    def __init__(
        self,
        rulebook: RuleBook,
        *,
        bm25: BM25Retriever | None = None,
        default_category: str | None = "general",
        k1: float = 1.5,
        b: float = 0.75,
    ):
        self.rulebook = rulebook
        self.bm25 = bm25 if bm25 is not None else BM25Retriever(rulebook, k1=k1, b=b)
        if self.bm25.rulebook is not rulebook and self.bm25.rulebook != rulebook:
            raise ConfigError("HybridRetriever: the BM25 index was built for another rule book; build it from the same book")
        self.default_category = default_category
        self._index = {rule.id: i for i, rule in enumerate(rulebook.rules)}

    def default(self, k: int) -> list[tuple[Rule, float]]:
        """What a call with neither a known category nor a matching query gets."""
        k = _check_k(k)
        pool = self.rulebook.by_category(self.default_category) if self.default_category else ()
        if not pool:
            pool = self.rulebook.rules
        return [(rule, 0.0) for rule in pool[:k]]

    def retrieve(self, category: str | None, query: str | None, k: int) -> list[tuple[Rule, float]]:
        k = _check_k(k)
        category, query = _clean(category), _clean(query)
        rules = self.rulebook.rules
        in_category = self.rulebook.by_category(category) if category is not None else ()
        if in_category:
            if query is None:
                return [(rule, 1.0) for rule in in_category[:k]]
            candidates = [self._index[rule.id] for rule in in_category]
            return [(rules[i], score) for i, score in self.bm25.rank(query, k, candidates)]
        if query is not None:
            found = self.bm25.retrieve(None, query, k)
            if found:
                return found
        return self.default(k)
