"""`ascl bench`: throughput benchmarks that print numbers (`--json`: one JSON object on the last line)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput benchmarks", description=__doc__)
    kinds = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    kinds.required = True
    f = kinds.add_parser("forward", help="forward tokens/s (no cache) and model load time")
    f.add_argument("--model", default="tiny")
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--seq-len", type=int, default=128)
    f.add_argument("--repeats", type=int, default=5)
    f.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=run_forward)
    r = kinds.add_parser("rollout", help="prefill/decode tokens/s and the cost of a spliced tool turn; "
                         "--workload longtail: continuous batching against the static batch")
    r.add_argument("--model", default="tiny")
    r.add_argument("--workload", choices=("turns", "longtail"), default="turns",
                   help="turns: decode, windowed and not, and a tool turn spliced or re-prefilled (default); "
                        "longtail: long-tailed row lengths through slots and through the static batch")
    r.add_argument("--batch", type=int, default=None, help="rows (default: 8; longtail: 64)")
    r.add_argument("--prompt-len", type=int, default=64)
    r.add_argument("--new-tokens", type=int, default=None, help="tokens per row (default: 128; longtail: 512, the budget)")
    r.add_argument("--splice-len", type=int, default=128, help="tokens of the spliced tool response (R)")
    r.add_argument("--slots", type=int, default=None, help="longtail: decode slots (default: a quarter of the rows)")
    r.add_argument("--group-size", type=int, default=4, help="longtail: samples per prompt")
    r.add_argument("--chunk", type=int, default=32, help="longtail: decode steps per device call")
    r.add_argument("--greedy", action="store_true", help="greedy decoding (default: sampling at temperature 1)")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=run_rollout)
    a = kinds.add_parser("attention", help="dense against blockwise attention: forward+backward time and "
                         "compiled temporaries per sequence length")
    a.add_argument("--lengths", default="512,1024,2048,4096")
    a.add_argument("--heads", type=int, default=8)
    a.add_argument("--kv-heads", type=int, default=2)
    a.add_argument("--head-dim", type=int, default=64)
    a.add_argument("--block", type=int, default=512)
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_attention)
    lp = kinds.add_parser("logprobs", help="dense against chunked log-probabilities: forward+backward time "
                          "and compiled temporaries per sequence length")
    lp.add_argument("--lengths", default="512,1024,2048,4096")
    lp.add_argument("--vocab", type=int, default=32768)
    lp.add_argument("--hidden", type=int, default=512)
    lp.add_argument("--chunk", type=int, default=512)
    lp.add_argument("--repeats", type=int, default=3)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_logprobs)
    __import__("ascl_jax.bench.train", fromlist=["add_subcommand"]).add_subcommand(kinds)  # `bench train`
    from ascl_jax.bench import compile_time
    from ascl_jax.commands.train import add_config_arguments

    c = kinds.add_parser("compile", help="compile time and program size against model depth (TPU slice, no TPU)",
                         description=compile_time.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(c)
    c.add_argument("--topology", default="v5p-32", metavar="SLICE")
    c.add_argument("--layers", default="8,28,36", help="comma-separated depths")
    c.add_argument("--program", default="rl_update", help="a program name as `ascl plan` lists them")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_compile)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


def run_forward(args: argparse.Namespace) -> int:
    from ascl_jax.bench.forward import bench_forward

    _print(bench_forward(args.model, args.batch, args.seq_len, args.repeats, args.dtype), args.json)
    return 0


def run_rollout(args: argparse.Namespace) -> int:
    if args.workload == "longtail":
        from ascl_jax.bench.rollout_longtail import bench_longtail

        result = bench_longtail(args.model, args.batch or 64, args.group_size, args.prompt_len, args.new_tokens or 512,
                                args.slots, args.chunk, args.greedy, args.repeats, args.dtype)
    else:
        from ascl_jax.bench.rollout import bench_rollout

        result = bench_rollout(args.model, args.batch or 8, args.prompt_len, args.new_tokens or 128, args.splice_len,
                               args.greedy, args.repeats, args.dtype)
    _print(result, args.json)
    return 0


def _lengths(text: str) -> list[int]:
    from ascl_jax.errors import UserError

    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise UserError(f"--lengths {text!r}: give comma-separated positive integers, e.g. 512,1024,2048")
    return out


def _table(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    keys = list(rows[0])
    print("  ".join(f"{k:>16}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]:>16}" for k in keys))


def run_attention(args: argparse.Namespace) -> int:
    from ascl_jax.bench.kernels import bench_attention

    _table(bench_attention(_lengths(args.lengths), heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim,
                           block=args.block, repeats=args.repeats, dtype=args.dtype), args.json)
    return 0


def run_logprobs(args: argparse.Namespace) -> int:
    from ascl_jax.bench.kernels import bench_logprobs

    _table(bench_logprobs(_lengths(args.lengths), vocab=args.vocab, hidden=args.hidden, chunk=args.chunk,
                          repeats=args.repeats), args.json)
    return 0


def run_compile(args: argparse.Namespace) -> int:
    from ascl_jax.bench.compile_time import bench_compile
    from ascl_jax.commands.train import resolve_config
    from ascl_jax.errors import UserError

    try:
        layers = [int(x) for x in args.layers.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--layers {args.layers!r}: give comma-separated integers, e.g. 8,28,36") from None
    rows = bench_compile(resolve_config(args, []), args.topology, layers, args.program)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['layers']:>4} layers  {r['program']}  compile {r['compile_seconds']:.1f} s  "
                  f"code {r['code_bytes'] / 2**20:.1f} MiB  temps {r['temp_gib']} GiB" + (f"  {r['error']}" if r["error"] else ""))
    return 0
