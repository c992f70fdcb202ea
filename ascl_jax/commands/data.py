"""`ascl data`: build training data files. Actions: `prompts` (the RL prompt mix)."""

from __future__ import annotations

import argparse
import time

from ascl_jax.errors import UserError

_SPEC_HELP = ("a benchmark name (shipped file), name=PATH, or a prompts file (JSONL/CSV/TSV/parquet with a "
              "'prompt' or 'messages' column, or .txt one prompt a line)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build training data files (the RL prompt mix)",
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
    from ascl_jax.data.prompt_mix import MixConfig, build_mix
    from ascl_jax.data.prompt_output import summary_markdown, write_mix
    from ascl_jax.data.prompt_sources import read_source, split_class

    start = time.perf_counter()
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
        eval_sets.append((source.name, source.prompts))
    mix = build_mix(train_sets, eval_sets, cfg, set_aside)
    inputs = {c: list(getattr(args, c)) for c in classes if getattr(args, c)} | {"eval": list(args.eval)}
    s = write_mix(mix, args.out, cfg, inputs)
    print(summary_markdown(s))
    print(f"wrote {args.out}: prompts.jsonl ({len(mix.train)}), validation_prompts.jsonl ({len(mix.validation)}), "
          f"eval_prompts.jsonl ({len(mix.eval)}), removed.jsonl ({len(mix.removed)}), summary.md, summary.json "
          f"in {time.perf_counter() - start:.1f}s")
    return 0
