"""Whether a final answer to a utility prompt is right: a multiple-choice prompt (meta `choices`: the
option texts in letter order, `reference`: a letter, an index or an option's text) by the option it
chooses (`choice_answers`); any other by `answers_match` against meta `reference` (numbers, expressions,
normalised text)."""

from __future__ import annotations

from typing import Any

from ascl_jax.rl.answers import answers_match
from ascl_jax.rl.choice_answers import choice_correct


def utility_correct(answer: str | None, meta: dict[str, Any]) -> bool:
    """True when `answer` is non-empty and right for the prompt whose metadata is `meta` (both graders
    give False for an empty answer)."""
    choices = meta.get("choices")
    if choices is not None:
        return choice_correct(answer, meta.get("reference"), list(choices))
    return answers_match(answer, meta.get("reference"))
