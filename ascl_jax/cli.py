"""The `ascl` command: one entry point whose subcommands live in `ascl_jax.commands`."""

from __future__ import annotations

import argparse
import sys

from ascl_jax.errors import UserError


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line that says what to change, exit code 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse hook
        # `key=value` overrides may come before, between or after the flags: argparse hands the ones after
        # a flag back as unrecognised; a command that takes overrides takes them in their order.
        namespace, rest = super().parse_known_args(args, namespace)
        if any(action.dest == "overrides" for action in self._actions):
            namespace.overrides = [*namespace.overrides, *(a for a in rest if not a.startswith("-"))]
            rest = [a for a in rest if a.startswith("-")]
        return namespace, rest


def build_parser() -> argparse.ArgumentParser:
    from ascl_jax.commands import COMMANDS

    parser = _Parser(prog="ascl", description="Safety alignment by Adaptive Safe Context Learning (ASCL) in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"ascl {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
