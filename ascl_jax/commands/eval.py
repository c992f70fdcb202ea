"""`ascl eval`: run models over safety, over-refusal and utility benchmarks through the rollout engine
(with the consult_safety_rules tool) and write results.json, report.md, report.html and plots.

  ascl eval --model M [--model M2 ...] --benchmarks xstest strongreject-small [--limit N | --subset N]
            [--samples K [--temperature T] [--top-p P]] [--out DIR]
            [--judge refusal|llama_guard|wildguard|strongreject_rubric|qwen3guard|qwen3guard_loose
             --judge-model PATH]
            [--judge-max-new-tokens N] [--data-dir D] [--rules FILE]
            [--no-tools] [--max-new-tokens N] [--json]
  ascl eval report DIR1 DIR2 ... --out DIR     one table with a column per model of earlier evaluations
  ascl eval grade --benchmark NAME --completions FILE.jsonl [--out DIR]   score completions made elsewhere
  ascl eval refusal-detector --labelled FILE.csv [--judge J --judge-model PATH] [--json]
                                      the offline refusal detector (or a guard model) against human labels
  ascl eval refusal-detector --leave-one-out F1 F2 F3 F4 [--tune none|threshold|weights]
                                      tuned on all files but one, scored on that one, for each file

Judges: the offline refusal detector (default); guard models (llama_guard, wildguard) and the StrongREJECT
rubric (strongreject_rubric: any instruction-tuned model, prompted through its chat template; reports the
mean StrongREJECT score on harmful prompts) and Qwen3Guard-Gen (qwen3guard: the paper's judge, Controversial
counted as harmful; qwen3guard_loose: only Unsafe), run from a local checkpoint by this project's model code.

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
JUDGE_CHOICES = ("refusal", "llama_guard", "wildguard", "strongreject_rubric", "qwen3guard", "qwen3guard_loose")


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
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="a fixed random N prompts of each benchmark (the same N every run; for files sorted by "
                        "subject such as mmlu-pro)")
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="rollouts per prompt: 1 = greedy (avg@1); K > 1 = sampled, scored as avg@K and pass@k")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature when --samples > 1")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass when --samples > 1")
    p.add_argument("--out", default="eval-results", help="output folder (results, report, item cache)")
    p.add_argument("--judge", choices=JUDGE_CHOICES, default="refusal",
                   help="who decides refusal / harm: the offline detector, a guard model or the StrongREJECT rubric")
    p.add_argument("--judge-model", default=None, help="local checkpoint folder of the judge model")
    p.add_argument("--judge-max-new-tokens", type=int, default=None,
                   help="tokens the judge model may write (default: 32 for llama_guard and wildguard, 64 for "
                        "qwen3guard, 512 for strongreject_rubric)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the samples")
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
    d.add_argument("--labelled", default=None, help="labelled completions CSV")
    d.add_argument("--leave-one-out", nargs="+", default=None, metavar="FILE",
                   help="labelled CSVs, one per model: for each, tune on the others and score it (held out)")
    d.add_argument("--tune", choices=("none", "threshold", "weights"), default="weights",
                   help="what --leave-one-out fits on the training files (default: weights and threshold)")
    d.add_argument("--l2", type=float, default=None, help="L2 penalty of the weight fit (default: 0.1)")
    d.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the shipped one)")
    d.add_argument("--judge", dest="detector_judge", choices=JUDGE_CHOICES[1:], default="llama_guard",
                   help="with --judge-model: which model judge to score instead of the detector")
    d.add_argument("--judge-model", dest="detector_judge_model", default=None,
                   help="local checkpoint of a guard model: score it on --labelled the same way")
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
    g = actions.add_parser("grade", help="score completions written elsewhere with the same extraction and judge",
                           description="Score a JSONL file of {\"id\", \"completion\"} lines (several lines per id "
                                       "are samples) on a benchmark with the answer extraction and judge of "
                                       "`ascl eval`; writes results.json, report.md and graded.jsonl.")
    g.add_argument("--benchmark", required=True, metavar="NAME[=PATH]", help="the benchmark the completions answer")
    g.add_argument("--completions", required=True, help="JSONL file of {\"id\", \"completion\"}")
    g.add_argument("--out", default="graded", help="output folder")
    g.add_argument("--label", default=None, help="the column name in the report (default: the file's name)")
    g.add_argument("--judge", choices=JUDGE_CHOICES, default="refusal")
    g.add_argument("--judge-model", default=None, help="local checkpoint folder of the judge model")
    g.add_argument("--judge-max-new-tokens", type=int, default=None)
    g.add_argument("--data-dir", default=None, help="folder holding the benchmark files")
    g.add_argument("--hub", action="store_true", help="read the benchmark from the Hugging Face hub")
    g.add_argument("--batch-size", type=int, default=8, help="judge-model batch size")
    g.add_argument("--bootstrap", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    g.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    g.set_defaults(func=run_grade)


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


def _check_counts(args: argparse.Namespace, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """Counts given on the command line, checked before anything is loaded (None: not given)."""
    for names, low in ((positive, 1), (non_negative, 0)):
        for name in names:
            v = getattr(args, name)
            if v is not None and v < low:
                raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {v}")


def _check_judge(judge: str, judge_model: str | None) -> None:
    if judge == "refusal" and judge_model:
        raise UserError("--judge-model is for guard-model judges; add --judge llama_guard, wildguard or "
                        "strongreject_rubric")
    if judge != "refusal" and not judge_model:
        raise UserError(f"--judge {judge} needs --judge-model PATH (a local checkpoint of the judge model)")


def run_eval(args: argparse.Namespace) -> int:
    from ascl_jax.data.prompts import check_output_folder
    from ascl_jax.eval.benchmarks import BENCHMARKS, load_benchmark, resolve_benchmark
    from ascl_jax.eval.report import eval_table_rows, markdown_table, write_eval_report
    from ascl_jax.eval.runner import EvalConfig, evaluate_benchmarks, judge_budget, make_eval_judge, stderr_log
    from ascl_jax.models.registry import load_model, model_config
    from ascl_jax.rules import default_rulebook, load_rulebook

    if args.list_benchmarks:
        for name, b in BENCHMARKS.items():
            where = "shipped" if b.shipped else ("hub: " + b.hub[0] if b.hub else "file")
            print(f"{name:<22} {b.default_file:<42} {where:<34} {b.description}")
        return 0
    if not args.model:
        raise UserError("give --model (a built-in such as tiny, a .gguf file, an HF folder or a run folder); "
                        "repeat it to compare models")
    _check_counts(args, ("limit", "subset", "samples", "max_new_tokens", "batch_size", "judge_max_new_tokens"),
                  ("max_tool_calls", "bootstrap", "seed"))
    check_output_folder(args.out, "--out")
    specs = args.benchmarks or DEFAULT_BENCHMARKS
    names = [resolve_benchmark(s)[0] for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--benchmarks names a benchmark twice: {' '.join(specs)}")
    _check_judge(args.judge, args.judge_model)
    cfg = EvalConfig(max_new_tokens=args.max_new_tokens, max_tool_calls=args.max_tool_calls,
                     use_tools=not args.no_tools, batch_size=args.batch_size, bootstrap=args.bootstrap,
                     seed=args.seed, system=args.system, samples=args.samples, temperature=args.temperature,
                     top_p=args.top_p)
    benchmarks = {n: load_benchmark(s, args.data_dir, hub=args.hub, limit=args.limit, subset=args.subset)
                  for n, s in zip(names, specs)}
    if len(args.model) > 1:  # every config read now (no weights): a bad later model fails before the first runs
        for spec in args.model:
            model_config(spec, dtype=args.dtype)
    rulebook = None if args.no_tools else (load_rulebook(args.rules) if args.rules else default_rulebook())
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
             + (f", first {args.limit} of each" if args.limit else "")
             + (f", a fixed random {args.subset} of each" if args.subset else ""),
             "decoding: " + ("greedy, one rollout per prompt (avg@1)" if args.samples == 1 else
                             f"{args.samples} samples per prompt at temperature {args.temperature}, top-p "
                             f"{args.top_p} (rates are avg@{args.samples}; pass@k on reasoning prompts)"),
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
    from ascl_jax.eval.detector_cv import (DEFAULT_L2, fold_dict, format_folds, judge_predictions,
                                           leave_one_file_out, read_labelled, score_predictions)
    from ascl_jax.rl.refusal import HAND_SET_WEIGHTS, RefusalDetector

    if (args.labelled is None) == (args.leave_one_out is None):
        raise UserError("give either --labelled FILE (score one file) or --leave-one-out FILE FILE ... "
                        "(tune on all but one file, score the held-out one, for each)")
    if args.detector_judge_model and not args.labelled:
        raise UserError("--judge-model scores a model judge on one file: use it with --labelled FILE")
    if args.l2 is not None and args.l2 < 0:  # a negative penalty pushes the weights away from the prior
        raise UserError(f"--l2 must be >= 0, got {args.l2}")
    columns = {"text_column": args.text_column, "label_column": args.label_column}
    if args.leave_one_out:
        # the hand-set weights, not the shipped ones: those were fitted on the files being held out
        base = RefusalDetector(0.5 if args.threshold is None else args.threshold, weights=HAND_SET_WEIGHTS)
        folds = leave_one_file_out(args.leave_one_out, args.tune,
                                   l2=DEFAULT_L2 if args.l2 is None else args.l2, base=base, **columns)
        print(f"leave-one-file-out, tuning {args.tune} on the other files; refusal = positive")
        print(format_folds(folds))
        if args.json:
            print(json.dumps({"leave_one_out": [fold_dict(f) for f in folds]}))
        return 0
    rows = read_labelled(args.labelled, **columns)
    detector = RefusalDetector(args.threshold)
    if args.detector_judge_model:
        from ascl_jax.eval.runner import make_eval_judge

        who = f"judge {args.detector_judge} ({args.detector_judge_model})"
        pred = judge_predictions(rows, make_eval_judge(args.detector_judge, args.detector_judge_model))
    else:
        who = f"refusal detector (threshold {detector.threshold:g})"
        pred = [detector.is_refusal(r.text) for r in rows]
    scored = score_predictions(rows, pred)
    result = scored.confusion.as_dict()
    c = result["confusion"]
    print(f"{args.labelled}: {who}: accuracy {result['accuracy']:.3f} on {result['n']} labelled answers "
          f"(refusal = positive: tp {c['tp']}, fp {c['fp']}, tn {c['tn']}, fn {c['fn']}; "
          f"precision {result['precision']:.3f}, recall {result['recall']:.3f})")
    for title, groups in (("prompt label", scored.by_prompt_label), ("prompt type", scored.by_type)):
        for g, gc in groups.items():
            print(f"  {title} {g:<30} accuracy {gc.accuracy:.3f} (tp {gc.tp} fp {gc.fp} tn {gc.tn} fn {gc.fn})")
    if args.json:
        print(json.dumps({"file": str(args.labelled), "judge": who, "threshold": detector.threshold, **result,
                          "by_prompt_label": {g: v.as_dict() for g, v in scored.by_prompt_label.items()},
                          "by_type": {g: v.as_dict() for g, v in scored.by_type.items()}}))
    return 0


def load_results(path: str | Path) -> dict:
    """The `models` of an `ascl eval` results.json (a folder holding it, or the file)."""
    from ascl_jax.data.prompts import read_text

    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{path}: no results.json; give the --out folder of an `ascl eval` run")
    try:
        data = json.loads(read_text(f, "results", UserError))
    except json.JSONDecodeError as exc:
        raise UserError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(m, dict) and "benchmarks" in m for m in models.values()):
        raise UserError(f"{f}: not an `ascl eval` results file (expected a 'models' object with 'benchmarks')")
    return models


def run_report(args: argparse.Namespace) -> int:
    from ascl_jax.data.prompts import check_output_folder
    from ascl_jax.eval.report import eval_table_rows, markdown_table, write_eval_report

    check_output_folder(args.out, "--out")
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


def run_grade(args: argparse.Namespace) -> int:
    from ascl_jax.data.prompts import check_output_folder
    from ascl_jax.eval.benchmarks import load_benchmark, resolve_benchmark
    from ascl_jax.eval.grade import grade, read_completions
    from ascl_jax.eval.report import eval_table_rows, markdown_table, write_eval_report
    from ascl_jax.eval.runner import judge_budget, make_eval_judge

    _check_counts(args, ("batch_size", "judge_max_new_tokens"), ("bootstrap", "seed"))
    _check_judge(args.judge, args.judge_model)
    check_output_folder(args.out, "--out")
    name = resolve_benchmark(args.benchmark)[0]
    prompts = load_benchmark(args.benchmark, args.data_dir, hub=args.hub)
    completions = read_completions(args.completions)
    judge = make_eval_judge(args.judge, args.judge_model, max_new_tokens=args.judge_max_new_tokens,
                            batch_size=args.batch_size, dtype=args.dtype)
    metrics, records = grade(name, prompts, completions, judge, where=args.completions, n_boot=args.bootstrap,
                             seed=args.seed)
    label = args.label or Path(args.completions).stem or "completions"
    model = {"model": str(args.completions),
             "config": {"judge": judge.name, "judge_model": args.judge_model, "graded": True,
                        "judge_max_new_tokens": judge_budget(args.judge, args.judge_max_new_tokens),
                        "bootstrap": args.bootstrap, "seed": args.seed},
             "benchmarks": {name: metrics}, "overall": metrics}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "graded.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    tmp.replace(out / "graded.jsonl")
    notes = [f"graded {metrics['graded_prompts']} of {metrics['benchmark_prompts']} prompts of {name} from "
             f"{args.completions} ({metrics['samples']} completion(s) each)"]
    paths = write_eval_report(out, {label: model}, f"Graded completions: {name}", notes)
    print(markdown_table(["metric", label], eval_table_rows({label: model})))
    print(notes[0])
    print(f"report: {paths['markdown']} (results.json, graded.jsonl)")
    if args.json:
        print(json.dumps({"out": str(out), "report": str(paths["markdown"]), "models": {label: model}}))
    return 0
