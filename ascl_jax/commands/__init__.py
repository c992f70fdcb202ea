"""Subcommands of `ascl`. Each module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` on it; the list below is the command's table of contents."""

from ascl_jax.commands import bench, data, eval, generate, plan, rules, train

COMMANDS = [train.register, generate.register, eval.register, rules.register, bench.register, plan.register,
            data.register]
