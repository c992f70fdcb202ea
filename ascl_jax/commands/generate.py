"""`ascl generate`: run a model on one prompt and print the answer (`--json`: the trajectory as JSON)."""

from __future__ import annotations

import argparse
import json
import sys

from ascl_jax.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate an answer to one prompt", description=__doc__)
    p.add_argument("--model", default="tiny", help="built-in name (tiny, smollm2-135m, ...), .gguf file or HF folder")
    p.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    p.add_argument("--system", default=None, help="an optional system message")
    p.add_argument("--raw", action="store_true", help="tokenize the prompt as is, without the chat template")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="override the model's dtype")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ascl_jax.models.registry import load_model
    from ascl_jax.rollout.generate import generate
    from ascl_jax.rollout.sampling import SamplingConfig

    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    sampling = SamplingConfig(greedy=args.greedy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    model = load_model(args.model, dtype=args.dtype)
    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{args.model}: no tokenizer found; put tokenizer.json in the model folder")
    if args.raw:
        prompt_ids = tok.encode(args.prompt)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    (out,) = generate(model, [list(prompt_ids)], args.max_new_tokens, sampling, seed=args.seed)
    text = tok.decode(out.tokens, skip_special_tokens=True)
    if args.json:
        print(json.dumps({
            "model": args.model, "prompt_tokens": out.prompt_tokens, "tokens": out.tokens,
            "logprobs": out.logprobs, "text": text, "stop_reason": out.stop_reason,
        }))
    else:
        sys.stdout.write(text + "\n")
    return 0
