"""An optional dense retriever: cosine similarity between a query's embedding and each rule's.

Wang et al. (arXiv 2602.13562 v1, §3.1) retrieve policy clauses by embedding similarity without naming
the model. This project ships no embedding model and downloads none, so the tools retrieve lexically
(BM25, `ascl_jax.rules.retrieval`) unless a caller passes an `EmbeddingRetriever` built on its own
`TextEmbedder`: any object with `embed(texts) -> array [len(texts), dim]` (a sentence-transformers
model behind a two-line adapter, a remote service, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ascl_jax.errors import ConfigError
from ascl_jax.rules.retrieval import BM25Retriever
from ascl_jax.rules.rulebook import Rule, RuleBook

__all__ = ["EmbeddingRetriever", "TextEmbedder"]


@runtime_checkable
class TextEmbedder(Protocol):
    """Anything that embeds texts: returns a float array of shape [len(texts), dim], one row per text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingRetriever:
    """Rules ranked by the cosine similarity of their embedding (title, text and keywords, the text BM25
    indexes) to the query's; the category argument is ignored, as `retrieve_policy` has none.

    The book is embedded once, here. Returns the best `k` rules with their similarity in [-1, 1], ties
    in book order; nothing for an empty query. `embedder=None` is a `ConfigError` that says what to pass.
    """

    def __init__(self, rulebook: RuleBook, embedder: TextEmbedder | None):
        if embedder is None:
            raise ConfigError(
                "EmbeddingRetriever: no embedding model is configured, and none is downloaded; pass an object "
                "with embed(texts) -> array [n, dim], or use the lexical default (BM25Retriever)"
            )
        if not isinstance(embedder, TextEmbedder):
            raise ConfigError(
                f"EmbeddingRetriever: {type(embedder).__name__} has no embed(texts) method; implement TextEmbedder"
            )
        self.rulebook = rulebook
        self.embedder = embedder
        self._matrix = self._unit(self._embed([BM25Retriever.document_text(rule) for rule in rulebook.rules]))

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise ConfigError(
                f"EmbeddingRetriever: embed() of {len(texts)} texts gave an array of shape {vectors.shape}; "
                f"it must be finite, of shape [{len(texts)}, dim]"
            )
        return vectors

    @staticmethod
    def _unit(vectors: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)  # a zero vector stays zero: similarity 0

    def retrieve(self, category: str | None, query: str | None, k: int) -> list[tuple[Rule, float]]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, not {type(k).__name__}")
        query = (query or "").strip()
        if not query or k <= 0:
            return []
        similarity = self._matrix @ self._unit(self._embed([query]))[0]
        order = sorted(range(len(similarity)), key=lambda i: (-similarity[i], i))[: int(k)]
        rules = self.rulebook.rules
        return [(rules[i], float(similarity[i])) for i in order]
