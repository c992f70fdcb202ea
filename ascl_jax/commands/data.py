"""`ascl data`: build training data files. Actions: `prompts` (the RL prompt mix), `cold-start` (SFT
conversations from a teacher's own rollouts with the rule tool)."""

from __future__ import annotations

import argparse
import random
import time

from ascl_jax.errors import UserError

_SPEC_HELP = ("a benchmark name (shipped file), name=PATH, or a prompts file (JSONL/CSV/TSV/parquet with a "
              "'prompt' or 'messages' column, or .txt one prompt a line)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build training data files (the RL prompt mix, cold-start SFT data)",
        description="Build the data files `ascl train` reads.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser(
        "prompts",
        help="build prompts.jsonl / eval_prompts.jsonl: deduplicated, decontaminated, balanced",
        description="Read prompt sets by class, deduplicate, remove every training prompt that overlaps an "
                    "evaluation prompt (normalised exact match or word n-gram overlap), balance the classes, split "
                    "train/validation and write the files `ascl train` reads (data.prompts, data.eval_prompts). "
                    "A set given under a class flag keeps only its rows of that class (e.g. --benign xstest takes "
                    "XSTest's safe prompts); the others are counted as 'other class'. Each SPEC is " + _SPEC_HELP + ".",
    )
    for cls in ("harmful", "benign", "utility", "sensitive"):
        p.add_argument(f"--{cls}", nargs="+", default=[], metavar="SPEC", help=f"{cls} training prompt sets")
    p.add_argument("--eval", nargs="+", required=True, metavar="SPEC",
                   help="evaluation sets: held out (every overlapping training prompt is removed) and written to "
                        "eval_prompts.jsonl; plain files need a 'class' column")
    p.add_argument("--eval-subset", type=int, default=None, metavar="N",
                   help="hold out a fixed random N prompts of each evaluation set (the N that `ascl eval --subset N` "
                        "picks) instead of all of it, so a benchmark's other prompts can be trained on, e.g. "
                        "--utility gsm8k --eval gsm8k --eval-subset 200")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; its files are replaced)")
    p.add_argument("--shares", metavar="C=F,...", type=_shares,
                   help="class shares of the training mix, e.g. harmful=0.3,benign=0.3,utility=0.4 (adding up to 1); "
                        "over-represented classes are downsampled. Default: keep every prompt")
    p.add_argument("--validation-fraction", type=float, default=0.05, metavar="F",
                   help="fraction of each class held out in validation_prompts.jsonl (default 0.05)")
    p.add_argument("--overlap-threshold", type=float, default=0.5, metavar="F",
                   help="remove a training prompt when at least this fraction of its word n-grams occur in the "
                        "evaluation prompts (default 0.5)")
    p.add_argument("--similarity-threshold", type=float, default=0.85, metavar="F",
                   help="also remove a training prompt whose word sequence is at least this similar (difflib ratio) "
                        "to an evaluation prompt: near-duplicates too short for n-grams (default 0.85; 1 = off)")
    p.add_argument("--ngram", type=int, default=8, metavar="N", help="words per n-gram (default 8)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding benchmark files (default: the shipped ones)")
    p.add_argument("--seed", type=int, default=0, help="seed for balancing and the split (default 0)")
    p.set_defaults(func=run_prompts)
    _register_cold_start(sub)


def _shares(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        cls, eq, value = part.partition("=")
        try:
            out[cls.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected CLASS=SHARE, e.g. harmful=0.3") from None
        if not eq:
            raise argparse.ArgumentTypeError(f"{part!r}: expected CLASS=SHARE, e.g. harmful=0.3")
    if not out:
        raise argparse.ArgumentTypeError("expected CLASS=SHARE,..., e.g. harmful=0.3,benign=0.3,utility=0.4")
    return out


def run_prompts(args: argparse.Namespace) -> int:
    from ascl_jax.curation.prompt_mix import MixConfig, build_mix
    from ascl_jax.curation.prompt_output import summary_markdown, write_mix
    from ascl_jax.curation.prompt_sources import read_source, split_class
    from ascl_jax.data.prompts import check_output_folder
    from ascl_jax.eval.benchmarks import fixed_subset

    start = time.perf_counter()
    check_output_folder(args.out, "--out")
    if args.eval_subset is not None and args.eval_subset < 1:
        raise UserError(f"--eval-subset must be >= 1, got {args.eval_subset}")
    cfg = MixConfig(shares=args.shares, validation_fraction=args.validation_fraction, ngram=args.ngram,
                    overlap_threshold=args.overlap_threshold,
                    similarity_threshold=args.similarity_threshold, seed=args.seed)
    classes = ("harmful", "benign", "utility", "sensitive")
    if not any(getattr(args, c) for c in classes):
        raise UserError("give at least one training set: --harmful, --benign, --utility or --sensitive SPEC ...")
    train_sets, set_aside = [], {}
    for cls in classes:
        for spec in getattr(args, cls):
            source = read_source(spec, cls, args.data_dir)
            kept, other = split_class(source.prompts, cls)
            for other_cls, n in other.items():
                set_aside[(source.name, other_cls)] = set_aside.get((source.name, other_cls), 0) + n
            if not kept:
                found = ", ".join(f"{c} {n}" for c, n in other.items())
                raise UserError(f"--{cls} {spec}: no {cls} prompts in it (it has: {found})")
            train_sets.append((source.name, kept))
    eval_sets = []
    for spec in args.eval:
        source = read_source(spec, None, args.data_dir)
        prompts = fixed_subset(source.prompts, args.eval_subset) if args.eval_subset else source.prompts
        eval_sets.append((source.name, prompts))
    mix = build_mix(train_sets, eval_sets, cfg, set_aside)
    inputs = {c: list(getattr(args, c)) for c in classes if getattr(args, c)} | {"eval": list(args.eval)}
    if args.eval_subset:
        inputs["eval_subset"] = [str(args.eval_subset)]
    s = write_mix(mix, args.out, cfg, inputs)
    print(summary_markdown(s))
    print(f"wrote {args.out}: prompts.jsonl ({len(mix.train)}), validation_prompts.jsonl ({len(mix.validation)}), "
          f"eval_prompts.jsonl ({len(mix.eval)}), removed.jsonl ({len(mix.removed)}), summary.md, summary.json "
          f"in {time.perf_counter() - start:.1f}s")
    return 0


def _register_cold_start(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cold-start",
        help="cold-start SFT conversations from a teacher's rollouts with the rule tool, judged and balanced",
        description="Roll a teacher model out over a prompts file through the rollout engine with the "
                    "consult_safety_rules tool offered, K samples per prompt; keep samples whose final answer is "
                    "right for the prompt's class (harmful: refused; benign: answered; utility: correct; "
                    "sensitive: the meta expected_action, refuse or comply), at most one per prompt, balancing "
                    "consult and no-consult examples per class; write them as SFT JSONL (data.sft of `ascl "
                    "train`) with the exact tool turns the engine produced, plus <out>.summary.json/.md. "
                    "Finished batches are cached in <out>.cache.jsonl: a killed run resumes where it stopped.",
    )
    p.add_argument("--teacher", required=True, metavar="MODEL",
                   help="the model whose samples become the data: a built-in name (tiny, smollm2-135m), an HF "
                        "folder, a .gguf file or a run folder; usually the policy you will train, so the data is "
                        "in its own words and chat format")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="prompts JSONL (the `ascl data prompts` format); every row needs a class, utility rows a "
                        "reference, sensitive rows an expected_action")
    p.add_argument("--out", required=True, metavar="FILE", help="the SFT JSONL to write (replaced)")
    p.add_argument("--rules", metavar="FILE", help="rule book the tool answers from (default: the built-in one)")
    p.add_argument("--system", metavar="FILE",
                   help="file holding the system message (default: one that says to consult on sensitive or "
                        "possibly harmful requests only, then refuse or help fully); prompts with their own "
                        "system message keep it")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="a random N of the prompts, drawn with --seed (a rerun takes the same N)")
    p.add_argument("--samples", type=int, default=4, metavar="K", help="samples per prompt (default 4)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens after the prompt, tool turns included")
    p.add_argument("--max-tool-calls", type=int, default=2, help="rule-tool calls per sample (default 2)")
    p.add_argument("--consult-share", default="0.5", metavar="F|C=F,...",
                   help="wanted fraction of each class's kept examples that consult: one number for every class "
                        "or e.g. harmful=0.5,benign=0.3,utility=0.1,sensitive=0.8 (others 0.5); default 0.5")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per rollout batch (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (with the batch index; default 0)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="override the teacher's dtype")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.set_defaults(func=run_cold_start)


def run_cold_start(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ascl_jax.curation.cold_start import (DEFAULT_SYSTEM, PROMPT_CLASSES, ColdStartConfig, ColdStartError,
                                          load_cold_start_prompts, parse_consult_share, select_examples,
                                          with_system)
    from ascl_jax.data.prompts import check_output_file, read_text

    start = time.perf_counter()
    check_output_file(args.out, "--out")
    shares, default_share = parse_consult_share(args.consult_share)
    system = DEFAULT_SYSTEM
    if args.system:
        path = Path(args.system)
        if not path.is_file():
            raise ColdStartError(f"--system {args.system}: cannot read it "
                                 f"({'it is a folder' if path.is_dir() else 'no such file'})")
        system = read_text(path, "system message", ColdStartError).strip()
        if not system:
            raise ColdStartError(f"--system {args.system}: the file is empty")
    cfg = ColdStartConfig(samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                          max_new_tokens=args.max_new_tokens, max_tool_calls=args.max_tool_calls,
                          batch_size=args.batch_size, seed=args.seed, system=system, consult_share=shares,
                          default_share=default_share)
    if args.subset is not None and args.subset < 1:
        raise UserError(f"--subset must be >= 1, got {args.subset}")
    prompts = load_cold_start_prompts(args.prompts)
    if args.subset is not None and args.subset < len(prompts):
        # a seeded draw, not the id-hash ranking of `ascl eval --subset`: a training file built with
        # --eval-subset lacks exactly the prompts that ranking puts first, so it would skip their benchmark
        keep = sorted(random.Random(args.seed).sample(range(len(prompts)), args.subset))
        prompts = [prompts[i] for i in keep]
    prompts = [with_system(p, cfg.system) for p in prompts]

    from ascl_jax.chat.formats import chat_format
    from ascl_jax.curation import cold_start_run as run
    from ascl_jax.eval.records import ItemCache
    from ascl_jax.models.registry import load_model
    from ascl_jax.rl.judges import RefusalJudge
    from ascl_jax.rules import ConsultSafetyRulesTool, default_rulebook, load_rulebook

    book = load_rulebook(args.rules) if args.rules else default_rulebook()
    model = load_model(args.teacher, dtype=args.dtype)
    if model.chat_family is None or model.tokenizer is None:
        raise UserError(f"--teacher {args.teacher}: no chat format or tokenizer is known for this model")
    fmt = chat_format(model.chat_family, model.tokenizer)
    judge = RefusalJudge()
    out = Path(args.out)
    cache = ItemCache(out.with_name(out.name + run.CACHE_SUFFIX), run.cache_key(args.teacher, model, book, judge, cfg))
    log = None if args.quiet else (lambda m: (sys.stderr.write(m + "\n"), sys.stderr.flush()))
    records = run.run_teacher(model, fmt, prompts, ConsultSafetyRulesTool(book), judge, cfg, cache, log)
    kept = select_examples(run.candidates(records), {c: cfg.share(c) for c in PROMPT_CLASSES})
    summary = run.summarize(records, kept, cfg)
    summary["config"] = {"teacher": args.teacher, "prompts": args.prompts, "rules": args.rules or "built-in",
                         "judge": judge.name, "cache_key": cache.key, **cfg.fingerprint_parts(),
                         "consult_share": {c: cfg.share(c) for c in sorted({r["class"] for r in records})}}
    print(run.summary_markdown(summary), end="")
    for w in summary["warnings"]:
        sys.stderr.write(f"warning: {w}\n")
    paths = run.write_outputs(out, kept, summary)
    print(f"wrote {paths['data']} ({len(kept)} conversations), {paths['json'].name}, {paths['markdown'].name} "
          f"in {time.perf_counter() - start:.1f}s")
    if args.json:
        print(json.dumps(summary))
    return 0
