"""`ascl rules`: list, show, validate and query a rule book (the shipped default or `--rules FILE`)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from ascl_jax.errors import UserError

_DEFAULT_NOTE = "the shipped default rule book"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="list, show, validate or query a safety rule book",
        description="Inspect the safety rule book that the consult_safety_rules tool retrieves from.",
    )
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="list the rules (id, category, action, title)")
    _add_rules_option(p)
    p.add_argument("--category", help="list only this category")
    p.set_defaults(func=run_list)

    p = sub.add_parser("show", help="show one rule in full")
    p.add_argument("id", metavar="ID", help="the rule id, e.g. cyber-01")
    _add_rules_option(p)
    p.set_defaults(func=run_show)

    p = sub.add_parser("validate", help="check a rule book file; errors name the line and the fix")
    p.add_argument("file", metavar="FILE", help="a .yaml/.yml or .jsonl rule book")
    p.set_defaults(func=run_validate)

    p = sub.add_parser("query", help="print what the consult_safety_rules tool would return")
    p.add_argument("--category", help="the category argument of the tool call")
    p.add_argument("--query", help="the query argument of the tool call")
    p.add_argument("-k", "--max-rules", type=_positive_int, default=3, metavar="N", help="most rules returned (default 3)")
    p.add_argument("--max-chars", type=_positive_int, default=1200, metavar="N", help="most characters returned (default 1200)")
    p.add_argument("--json", action="store_true", help="print the whole tool result as JSON")
    _add_rules_option(p)
    p.set_defaults(func=run_query)


def _add_rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="FILE", help=f"a .yaml or .jsonl rule book (default: {_DEFAULT_NOTE})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a whole number >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; give a whole number >= 1")
    return value


def _book(args: argparse.Namespace):
    from ascl_jax.rules.rulebook_files import default_rulebook, load_rulebook

    return load_rulebook(args.rules) if args.rules else default_rulebook()


def _summary(book) -> str:
    return f"{len(book)} rules in {len(book.categories)} categories"


def run_list(args: argparse.Namespace) -> int:
    book = _book(args)
    rules = book.rules
    if args.category is not None:
        if args.category not in book.categories:
            raise UserError(f"--category {args.category!r} is not in the rule book; use one of {', '.join(book.categories)}")
        rules = book.by_category(args.category)
    header = ("ID", "CATEGORY", "ACTION", "TITLE")
    rows = [(r.id, r.category, r.action, r.title) for r in rules]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    source = args.rules or _DEFAULT_NOTE
    shown = f"{len(rules)} of {len(book)} rules" if len(rules) != len(book) else _summary(book)
    print(f"{shown} ({source})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    book = _book(args)
    rule = book.get(args.id)
    print(f"[rule {rule.id}] {rule.title}")
    print(f"category: {rule.category}")
    print(f"action: {rule.action}")
    if rule.keywords:
        print(f"keywords: {', '.join(rule.keywords)}")
    print()
    print(rule.text)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from ascl_jax.rules.rulebook_files import load_rulebook

    book = load_rulebook(args.file)
    actions = Counter(rule.action for rule in book)
    counts = ", ".join(f"{action} {actions[action]}" for action in ("refuse", "comply_with_care", "comply"))
    print(f"{args.file}: ok, {_summary(book)} ({counts})")
    return 0


def run_query(args: argparse.Namespace) -> int:
    from ascl_jax.rules.tool import ConsultSafetyRulesTool

    if not (args.category or "").strip() and not (args.query or "").strip():
        raise UserError("give --category C, --query Q, or both (`ascl rules list` shows the categories)")
    book = _book(args)
    tool = ConsultSafetyRulesTool(book, max_rules=args.max_rules, max_chars=args.max_chars)
    arguments = {key: value for key, value in (("category", args.category), ("query", args.query)) if value is not None}
    result = tool.call(arguments)
    if result.error is not None:
        raise UserError(result.text.removeprefix("Error: "))
    if args.json:
        print(json.dumps({"arguments": arguments, **result.to_dict()}, ensure_ascii=False, indent=2))
    else:
        print(result.text)
    return 0
