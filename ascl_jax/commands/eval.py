"""`ascl eval`: run models over safety, over-refusal and utility benchmarks through the rollout engine
(with the consult_safety_rules tool) and write results.json, report.md, report.html and plots.

  ascl eval --model M [--model M2 ...] --benchmarks xstest strongreject-small [--limit N] [--out DIR]
            [--judge refusal|llama_guard|wildguard|strongreject_rubric --judge-model PATH]
            [--judge-max-new-tokens N] [--data-dir D] [--rules FILE]
            [--no-tools] [--max-new-tokens N] [--json]
  ascl eval report DIR1 DIR2 ... --out DIR     one table with a column per model of earlier evaluations
  ascl eval refusal-detector --labelled FILE.csv [--json]   the offline refusal detector against human labels

Judges: the offline refusal detector (default); guard models (llama_guard, wildguard) and the StrongREJECT
rubric (strongreject_rubric: any instruction-tuned model, prompted through its chat template; reports the
mean StrongREJECT score on harmful prompts), run from a local checkpoint by this project's model code.

A benchmark is a name (see --list-benchmarks) or name=PATH for a local file. Finished items are cached in
DIR/cache/, so an evaluation that was killed resumes where it stopped, with the same final numbers."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ascl_jax.errors import UserError

DEFAULT_BENCHMARKS = ["xstest", "strongreject-small"]
# ascl_jax.rl.judges.EVAL_JUDGES, written out so that building the parser imports no numpy (a test checks they agree)
JUDGE_CHOICES = ("refusal", "llama_guard", "wildguard", "strongreject_rubric")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("eval", help="evaluate models on benchmarks; reports; the refusal detector",
                       description=__doc__, formatter_class=fmt)
    p.add_argument("--model", action="append", default=None, metavar="M",
                   help="built-in name, .gguf file, HF folder or run folder; repeat for several models")
    p.add_argument("--benchmarks", nargs="+", default=None, metavar="NAME[=PATH]",
                   help=f"benchmarks to run (default: {' '.join(DEFAULT_BENCHMARKS)})")
    p.add_argument("--list-benchmarks", action="store_true", help="list the known benchmarks and exit")
    p.add_argument("--limit", type=int, default=None, help="the first N prompts of each benchmark")
    p.add_argument("--out", default="eval-results", help="output folder (results, report, item cache)")
    p.add_argument("--judge", choices=JUDGE_CHOICES, default="refusal",
                   help="who decides refusal / harm: the offline detector, a guard model or the StrongREJECT rubric")
    p.add_argument("--judge-model", default=None, help="local checkpoint folder of the judge model")
    p.add_argument("--judge-max-new-tokens", type=int, default=None,
                   help="tokens the judge model may write (default: 32 for guard models, 512 for strongreject_rubric)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the benchmark files (default: ../shared/data/benchmarks of the repo)")
    p.add_argument("--hub", action="store_true",
                   help="read benchmarks that have a hub source from the Hugging Face hub (online; needs datasets)")
    p.add_argument("--rules", default=None, help="a rule book (YAML or JSONL); default: the built-in one")
    p.add_argument("--no-tools", action="store_true", help="do not offer the consult_safety_rules tool")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens after the prompt, tool turns included")
    p.add_argument("--max-tool-calls", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per rollout batch")
    p.add_argument("--system", default=None, help="a system message for every prompt")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="override the models' dtype")
    p.add_argument("--title", default="ASCL evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    p.set_defaults(func=run_eval)

    actions = p.add_subparsers(dest="eval_action", metavar="[ACTION]", parser_class=type(p))
    actions.required = False
    d = actions.add_parser("refusal-detector", help="accuracy of the refusal detector on human-labelled answers",
                           description="The offline refusal detector against an XSTest-style labelled-completions "
                                       "CSV (columns completion, final_label).")
    d.add_argument("--labelled", required=True, help="labelled completions CSV")
    d.add_argument("--threshold", type=float, default=0.5)
    d.add_argument("--text-column", default="completion")
    d.add_argument("--label-column", default="final_label")
    d.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    d.set_defaults(func=run_detector)
    r = actions.add_parser("report", help="one report over several evaluation folders, a column per model",
                           description="Merge the results.json of several `ascl eval` output folders into one "
                                       "report with a column per model.")
    r.add_argument("dirs", nargs="+", help="output folders of earlier `ascl eval` runs (or their results.json)")
    r.add_argument("--out", required=True, help="folder for the combined report")
    r.add_argument("--title", default="ASCL evaluation")
    r.add_argument("--json", action="store_true", help="print the merged results as JSON on the last line")
    r.set_defaults(func=run_report)


def model_labels(specs: list[str]) -> list[str]:
    """Short unique column names for model specs: a built-in's name, a folder's name (a run's `model`
    folder is named after the run), with -2, -3 ... on clashes."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        base = path.parent.name if path.name == "model" and path.parent.name else (path.stem if path.suffix == ".gguf"
                                                                                     else path.name) or spec
        base = re.sub(r"[^A-Za-z0-9_.\-]+", "_", base).strip("_") or "model"
        label, i = base, 2
        while label in out:
            label, i = f"{base}-{i}", i + 1
        out.append(label)
    return out


def run_eval(args: argparse.Namespace) -> int:
    from ascl_jax.eval.benchmarks import BENCHMARKS, load_benchmark, resolve_benchmark
    from ascl_jax.eval.report import eval_table_rows, markdown_table, write_eval_report
    from ascl_jax.eval.runner import EvalConfig, evaluate_benchmarks, judge_budget, make_eval_judge, stderr_log
    from ascl_jax.models.registry import load_model
    from ascl_jax.rules import default_rulebook, load_rulebook

    if args.list_benchmarks:
        for name, b in BENCHMARKS.items():
            where = "shipped" if b.shipped else ("hub: " + b.hub[0] if b.hub else "file")
            print(f"{name:<22} {b.default_file:<42} {where:<34} {b.description}")
        return 0
    if not args.model:
        raise UserError("give --model (a built-in such as tiny, a .gguf file, an HF folder or a run folder); "
                        "repeat it to compare models")
    for name in ("limit", "max_new_tokens", "batch_size", "judge_max_new_tokens"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.max_tool_calls < 0 or args.bootstrap < 0:
        raise UserError("--max-tool-calls and --bootstrap must be >= 0")
    specs = args.benchmarks or DEFAULT_BENCHMARKS
    names = [resolve_benchmark(s)[0] for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--benchmarks names a benchmark twice: {' '.join(specs)}")
    if args.judge == "refusal" and args.judge_model:
        raise UserError("--judge-model is for guard-model judges; add --judge llama_guard, wildguard or "
                        "strongreject_rubric")
    if args.judge != "refusal" and not args.judge_model:
        raise UserError(f"--judge {args.judge} needs --judge-model PATH (a local checkpoint of the judge model)")
    benchmarks = {n: load_benchmark(s, args.data_dir, hub=args.hub, limit=args.limit) for n, s in zip(names, specs)}
    rulebook = None if args.no_tools else (load_rulebook(args.rules) if args.rules else default_rulebook())
    cfg = EvalConfig(max_new_tokens=args.max_new_tokens, max_tool_calls=args.max_tool_calls,
                     use_tools=not args.no_tools, batch_size=args.batch_size, bootstrap=args.bootstrap,
                     seed=args.seed, system=args.system)
    judge = make_eval_judge(args.judge, args.judge_model, max_new_tokens=args.judge_max_new_tokens,
                            batch_size=args.batch_size, dtype=args.dtype)
    out = Path(args.out)
    log = None if args.quiet else stderr_log
    models = {}
    for spec, label in zip(args.model, model_labels(args.model)):
        model = load_model(spec, dtype=args.dtype)
        models[label] = evaluate_benchmarks(model, benchmarks, out, judge, rulebook, cfg, label=label,
                                            model_spec=spec, judge_spec=args.judge_model,
                                            judge_max_new_tokens=judge_budget(args.judge, args.judge_max_new_tokens),
                                            log=log)
        del model
    notes = [f"benchmarks: {', '.join(f'{n} ({len(p)} prompts)' for n, p in benchmarks.items())}"
             + (f", first {args.limit} of each" if args.limit else ""),
             f"rule tool: {'off' if args.no_tools else (args.rules or 'built-in rule book')}; "
             f"max_new_tokens {args.max_new_tokens}"]
    paths = write_eval_report(out, models, args.title, notes)
    print(markdown_table(["metric", *models], eval_table_rows(models)))
    print(f"report: {paths['markdown']} ({paths['html'].name}, results.json)")
    if args.json:
        print(json.dumps({"out": str(out), "report": str(paths["markdown"]), "html": str(paths["html"]),
                          "models": models}))
    return 0


def run_detector(args: argparse.Namespace) -> int:
    from ascl_jax.rl.refusal import RefusalDetector, evaluate_detector

    result = evaluate_detector(args.labelled, RefusalDetector(args.threshold), text_column=args.text_column,
                               label_column=args.label_column)
    c = result["confusion"]
    print(f"{args.labelled}: accuracy {result['accuracy']:.3f} on {result['n']} labelled answers "
          f"(refusal = positive: tp {c['tp']}, fp {c['fp']}, tn {c['tn']}, fn {c['fn']}; "
          f"precision {result['precision']:.3f}, recall {result['recall']:.3f})")
    if args.json:
        print(json.dumps({"file": str(args.labelled), "threshold": args.threshold, **result}))
    return 0


def load_results(path: str | Path) -> dict:
    """The `models` of an `ascl eval` results.json (a folder holding it, or the file)."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{path}: no results.json; give the --out folder of an `ascl eval` run")
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(m, dict) and "benchmarks" in m for m in models.values()):
        raise UserError(f"{f}: not an `ascl eval` results file (expected a 'models' object with 'benchmarks')")
    return models


def run_report(args: argparse.Namespace) -> int:
    from ascl_jax.eval.report import eval_table_rows, markdown_table, write_eval_report

    merged: dict = {}
    for d in args.dirs:
        for label, m in load_results(d).items():
            name = label if label not in merged else f"{Path(d).name}/{label}"
            i = 2
            while name in merged:
                name, i = f"{Path(d).name}/{label}-{i}", i + 1
            merged[name] = m
    paths = write_eval_report(Path(args.out), merged, args.title, [f"merged from: {', '.join(args.dirs)}"])
    print(markdown_table(["metric", *merged], eval_table_rows(merged)))
    print(f"report: {paths['markdown']}", file=sys.stdout)
    if args.json:
        print(json.dumps({"out": args.out, "report": str(paths["markdown"]), "models": merged}))
    return 0
