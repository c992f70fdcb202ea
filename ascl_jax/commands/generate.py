"""`ascl generate`: run a model on one prompt with the rule tool and print what it did: each tool call,
the rules it got back, and the final answer (`--json`: the trajectory as JSON on the last line)."""

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
    p.add_argument("--raw", action="store_true", help="tokenize the prompt as is: no chat template, no tools")
    p.add_argument("--rules", default=None, help="a rule book (YAML or JSONL); default: the built-in one")
    p.add_argument("--no-tools", action="store_true", help="do not offer the consult_safety_rules tool")
    p.add_argument("--max-tool-calls", type=int, default=2)
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens after the prompt, tool turns included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="override the model's dtype")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ascl_jax.models.registry import load_model
    from ascl_jax.rollout.sampling import SamplingConfig

    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    sampling = SamplingConfig(greedy=args.greedy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    model = load_model(args.model, dtype=args.dtype)
    if model.tokenizer is None:
        raise UserError(f"{args.model}: no tokenizer found; put tokenizer.json in the model folder")
    result = _raw(model, args, sampling) if args.raw else _chat(model, args, sampling)
    if args.json:
        print(json.dumps(result))
    else:
        for turn in result.get("tool_turns", []):
            call = json.dumps(turn["arguments"]) if turn["error"] is None else f"error: {turn['error']}"
            sys.stdout.write(f"[tool call] {turn['name'] or '?'} {call}\n")
            sys.stdout.write(f"[rules] {', '.join(turn['rule_ids']) or '(none)'}\n")
        sys.stdout.write(result.get("final_answer") or result["text"])
        sys.stdout.write("\n")
    return 0


def _raw(model, args, sampling) -> dict:
    from ascl_jax.rollout.generate import generate

    prompt_ids = model.tokenizer.encode(args.prompt)
    (out,) = generate(model, [list(prompt_ids)], args.max_new_tokens, sampling, seed=args.seed)
    return {
        "model": args.model, "prompt_tokens": out.prompt_tokens, "tokens": out.tokens, "logprobs": out.logprobs,
        "text": model.tokenizer.decode(out.tokens, skip_special_tokens=True), "stop_reason": out.stop_reason,
    }


def _chat(model, args, sampling) -> dict:
    from ascl_jax.chat.formats import chat_format
    from ascl_jax.rollout.tool_loop import RolloutConfig, run_rollout
    from ascl_jax.rollout.trajectory import Prompt
    from ascl_jax.rules import ConsultSafetyRulesTool, default_rulebook, load_rulebook

    if model.chat_family is None:
        raise UserError(f"{args.model}: no chat format is known for this model; use --raw")
    fmt = chat_format(model.chat_family, model.tokenizer)
    tool = None
    if not args.no_tools:
        tool = ConsultSafetyRulesTool(load_rulebook(args.rules) if args.rules else default_rulebook())
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}
    ]
    prompt_len = len(fmt.prompt_tokens(messages, [tool.schema] if tool else None))
    cfg = RolloutConfig(group_size=1, max_prompt_tokens=prompt_len, max_new_tokens=args.max_new_tokens,
                        max_tool_calls=args.max_tool_calls, sampling=sampling)
    (t,) = run_rollout(model, fmt, [tool], [Prompt("cli", tuple(messages))], cfg, seed=args.seed).trajectories
    data = t.to_json()
    gen = slice(t.prompt_len, None)
    return {
        "model": args.model,
        "prompt_tokens": data["tokens"][: t.prompt_len],
        "tokens": data["tokens"][gen],
        "loss_mask": data["loss_mask"][gen],
        "logprobs": data["sampler_logprobs"][gen],
        "text": model.tokenizer.decode(t.tokens[gen].tolist(), skip_special_tokens=True),
        "final_answer": t.final_answer,
        "tool_turns": data["tool_turns"],
        "rule_ids": data["rule_ids"],
        "stop_reason": t.stop_reason,
    }
