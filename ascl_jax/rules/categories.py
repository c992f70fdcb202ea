"""The 21 safety categories of the policy book (`policy_book.yaml`), as Wang et al. name them (arXiv
2602.13562 v1, §3.1 and Prompt A.2), and the category id each one has in a rule book.

The names are written here once; a category id is derived from its name (`category_id`), so the book's
`category:` fields and this list cannot drift apart unnoticed (the tests load the book and compare).
"""

from __future__ import annotations

import re

__all__ = ["POLICY_CATEGORIES", "POLICY_CATEGORY_IDS", "category_id", "category_name"]

POLICY_CATEGORIES: tuple[str, ...] = (
    "Violence & Weapons",
    "Sexual Content & Exploitation",
    "Privacy & Personal Data",
    "Suicide & Self-Harm",
    "Harassment",
    "Bias & Discrimination",
    "Illegal Activities",
    "Political Disinformation",
    "Financial Crimes",
    "Impersonation",
    "Infrastructure Attacks",
    "Gambling",
    "Defamation",
    "Copyright Violations",
    "Jailbreaking & Security Bypass",
    "Unsafe Expert Advice",
    "General Unethical Behavior",
    "Harm to Minors",
    "Animal Cruelty",
    "Environmental Harm",
    "Biosafety Ethics",
)

_NON_WORD = re.compile(r"[^a-z0-9]+")


def category_id(name: str) -> str:
    """The rule-book id of a category name: lower case, every run of other characters one underscore
    ("Suicide & Self-Harm" -> "suicide_self_harm"), which the rule book's id syntax accepts."""
    return _NON_WORD.sub("_", name.lower()).strip("_")


POLICY_CATEGORY_IDS: tuple[str, ...] = tuple(category_id(name) for name in POLICY_CATEGORIES)
_NAMES = dict(zip(POLICY_CATEGORY_IDS, POLICY_CATEGORIES, strict=True))


def category_name(category: str) -> str:
    """The display name of a policy category id; any other category (a user's own book) as it is."""
    return _NAMES.get(category, category)
