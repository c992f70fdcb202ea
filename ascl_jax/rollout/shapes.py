"""Shape buckets: lengths rounded up so that a run compiles a few programs, not one per length."""

from __future__ import annotations

PROMPT_BUCKET = 64


def bucket(n: int, multiple: int = PROMPT_BUCKET) -> int:
    """Round n up to a multiple, so that varying lengths compile a few programs, not one each."""
    return max(multiple, -(-n // multiple) * multiple)
