"""`ascl train`: SFT cold start then RL (ASCL with IFPO by default) on the built-in demo or your data,
with evaluation and a report. `ascl compare`: the same run under several advantage estimators (same
seeds), their consult rates per class side by side.

Options are `key=value` overrides of the run config (see `ascl train --help` for every key and its
default), applied after an optional YAML file: `ascl train configs/demo.yaml rl.steps=60`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ascl_jax.errors import UserError


def options_epilog() -> str:
    from ascl_jax.config_io import describe
    from ascl_jax.train_config import TrainConfig

    rows = describe(TrainConfig)
    width = max(len(k) for k, _, _ in rows)
    return "run config options (key=value):\n" + "\n".join(
        f"  {k:<{width}}  {t:<24} default: {d}" for k, t, d in rows
    )


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                   help="an optional YAML config, then dotted overrides")
    p.add_argument("--model", default=None, help="shorthand for model=...")
    p.add_argument("--run-dir", default=None, help="shorthand for run_dir=...")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("train", help="SFT cold start, then RL, then evaluation and a report",
                       description=__doc__, epilog=options_epilog(), formatter_class=fmt)
    add_config_arguments(p)
    p.add_argument("--algo", choices=("grpo", "drgrpo", "rloo", "ifpo"), default=None,
                   help="shorthand for rl.advantage.estimator=...")
    p.add_argument("--method", choices=("ascl", "context-distillation"), default=None,
                   help="shorthand for method=...")
    p.add_argument("--no-baseline", action="store_true",
                   help="do not also train the context-distillation baseline on the demo")
    d = p.add_argument_group("several processes (jax.distributed; flags win over ASCL_* variables)")
    d.add_argument("--coordinator-address", metavar="HOST:PORT", help="process 0's address (ASCL_COORDINATOR_ADDRESS)")
    d.add_argument("--num-processes", metavar="N", help="how many processes (ASCL_NUM_PROCESSES)")
    d.add_argument("--process-id", metavar="I", help="this process, 0..N-1 (ASCL_PROCESS_ID)")
    d.add_argument("--distributed-auto", action="store_true",
                   help="let JAX detect the cluster (TPU VMs, SLURM) (ASCL_DISTRIBUTED=auto)")
    _add_log_every(p)
    p.set_defaults(func=run_train)
    c = sub.add_parser("compare", help="the same run under several advantage estimators, side by side",
                       description=__doc__, epilog=options_epilog(), formatter_class=fmt)
    add_config_arguments(c)
    c.add_argument("--algos", type=_algos, default=("grpo", "ifpo"),
                   help="comma-separated estimators to compare (default: grpo,ifpo)")
    c.add_argument("--seeds", type=_positive, default=1, metavar="N",
                   help="run every estimator on N seeds (seed, seed+1, ...); results with 95%% intervals (default 1)")
    _add_log_every(c)
    c.set_defaults(func=run_compare)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of 1 or more (got {text!r})")
    return n


def _algos(text: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    valid = ("grpo", "drgrpo", "rloo", "ifpo")
    bad = [a for a in names if a not in valid]
    if bad or len(names) < 2:
        raise argparse.ArgumentTypeError(f"give two or more of {', '.join(valid)}, comma-separated (got {text!r})")
    return names


def resolve_config(args: argparse.Namespace, extra: list[str]):
    """The TrainConfig of `args.overrides` ([CONFIG.yaml] key=value ...), --model, --run-dir and `extra`."""
    from ascl_jax.config_io import load_config
    from ascl_jax.train_config import TrainConfig

    # The YAML file and the overrides may come in any order among the flags; the file is the one
    # argument without "=", and the overrides apply in their order.
    items = [i for i in args.overrides if "=" in i]
    paths = [i for i in args.overrides if "=" not in i]
    if len(paths) > 1:
        raise UserError(f"{paths[1]!r}: overrides look like key=value (only one argument may be a YAML file, "
                        f"{paths[0]!r} is already)")
    path = paths[0] if paths else None
    if path is not None and not Path(path).is_file():
        raise UserError(f"{path}: no such config file (overrides look like key=value)")
    if args.model:
        items.append(f"model={args.model}")
    if args.run_dir:
        items.append(f"run_dir={args.run_dir}")
    return load_config(TrainConfig, path, items + extra)


def _step_info(stage: str, metrics: dict[str, Any]) -> str:
    if stage == "sft":
        return f"loss {metrics['sft/loss']:.3f}  acc {metrics['sft/token_accuracy']:.3f}"
    rate = metrics.get("sampled_tokens", 0) / max(metrics.get("step_seconds") or 1e-9, 1e-9)
    return (f"reward {metrics.get('reward') or 0:.3f}  consult {metrics.get('consult_rate') or 0:.2f}  "
            f"{metrics.get('step_seconds', 0):.1f}s/step  {rate:.0f} sampled tok/s")


class _LogLines:
    """Progress for a log file (not a terminal: a cluster job, nohup, CI): one flushed line per stage step
    at most every `every` seconds, and always the first and the last step of a stage, with an ETA."""

    def __init__(self, every: float):
        self.every = every
        self.last: dict[str, float] = {}
        self.start: dict[str, float] = {}
        self.step: dict[str, int] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        now = time.monotonic()
        if step <= self.step.get(stage, 0):  # the stage runs again (the baseline's SFT): a new clock
            self.start.pop(stage, None), self.last.pop(stage, None)
        self.step[stage] = step
        self.start.setdefault(stage, now - (metrics.get("step_seconds") or 0.0))
        if step not in (1, total) and now - self.last.get(stage, 0.0) < self.every:
            return
        self.last[stage] = now
        per_step = (now - self.start[stage]) / max(step, 1)
        eta = per_step * (total - step)
        sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {stage} step {step}/{total}  {_step_info(stage, metrics)}"
                         f"  eta {eta / 60:.1f} min\n")
        sys.stdout.flush()

    def table(self, title: str, results: dict[str, dict[str, Any]]) -> None:
        from ascl_jax.eval.report import ROWS, _fmt

        print(title)
        names = list(results)
        for row in ROWS:
            if any(row in r for r in results.values()):
                print(f"  {row:<28}" + "  ".join(f"{n}={_fmt(results[n].get(row))}" for n in names))


class _Console:
    """A rich progress bar per stage, and the final tables."""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, info="")
        self.progress.update(self.tasks[stage], completed=step, info=_step_info(stage, metrics))

    def table(self, title: str, results: dict[str, dict[str, Any]]) -> None:
        from rich.table import Table

        from ascl_jax.eval.report import ROWS, _fmt

        t = Table(title=title)
        t.add_column("metric")
        for name in results:
            t.add_column(name)
        for row in ROWS:
            if any(row in r for r in results.values()):
                t.add_row(row, *(_fmt(r.get(row)) for r in results.values()))
        self.console.print(t)


def _progress(every: float):
    """The rich display on a terminal, plain log lines anywhere else."""
    return _Console() if sys.stderr.isatty() and sys.stdout.isatty() else _LogLines(every)


def _add_log_every(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                   help="when the output is not a terminal: a progress line at most every SECONDS (default 30)")


def run_train(args: argparse.Namespace) -> int:
    from ascl_jax.parallel.distributed import initialize_from_env

    env = dict(os.environ)
    for flag, var in (("coordinator_address", "ASCL_COORDINATOR_ADDRESS"), ("num_processes", "ASCL_NUM_PROCESSES"),
                      ("process_id", "ASCL_PROCESS_ID")):
        if getattr(args, flag) is not None:
            env[var] = getattr(args, flag)
    if args.distributed_auto:
        env["ASCL_DISTRIBUTED"] = "auto"
    initialize_from_env(env)  # before any JAX computation
    from ascl_jax.eval.report import write_report
    from ascl_jax.pipeline import run_training

    extra = ([f"rl.advantage.estimator={args.algo}"] if args.algo else []) + (
        [f"method={args.method}"] if args.method else [])
    cfg = resolve_config(args, extra)
    import jax

    # Every process runs the same stages; the console and the report are process 0's.
    lead = jax.process_index() == 0
    ui = _progress(args.log_every) if lead else None
    with ui if ui is not None else contextlib.nullcontext():
        out = run_training(cfg, ui)
        results = {f"{cfg.method}/{k}": v for k, v in out["results"].items()}
        notes = [f"model {cfg.model}, method {cfg.method}, advantage {cfg.rl.advantage.estimator}, seed {cfg.seed}"]
        if cfg.data.task == "demo" and cfg.method == "ascl" and not args.no_baseline:
            base = dataclasses.replace(cfg, method="context-distillation",
                                       run_dir=str(Path(cfg.run_dir) / "baseline-context-distillation"))
            base_out = run_training(base, ui)
            results.update({f"context-distillation/{k}": v for k, v in base_out["results"].items()})
            notes.append("context-distillation: SFT on conversations that recite the rules, no tool, no RL")
    if ui is not None:
        path = write_report(Path(cfg.run_dir), "ASCL demo run" if cfg.data.task == "demo" else "ASCL run",
                            results, out["metrics"], notes)
        ui.table(f"results ({path})", results)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Each estimator on each seed: run folders `RUN_DIR/seed<S>/<algo>`; the SFT stage of a seed runs once
    and its checkpoint starts every estimator of that seed. A killed comparison resumes where it stopped."""
    from ascl_jax.eval.seeds import comparison_markdown, plot_consult_bands
    from ascl_jax.pipeline import run_training

    base = resolve_config(args, [])
    seeds = [base.seed + k for k in range(args.seeds)]
    root = Path(base.run_dir)
    ui = _progress(args.log_every)
    final: dict[str, list[dict[str, Any]]] = {a: [] for a in args.algos}
    curves: dict[str, list[list[dict[str, Any]]]] = {a: [] for a in args.algos}
    initial: list[dict[str, Any]] = []
    with ui:
        for seed in seeds:
            first: Path | None = None
            for algo in args.algos:
                run_dir = root / f"seed{seed}" / algo
                cfg = dataclasses.replace(
                    base, seed=seed, run_dir=str(run_dir),
                    rl=dataclasses.replace(base.rl, advantage=dataclasses.replace(base.rl.advantage, estimator=algo)),
                )
                if first is not None and not base.checkpoint.directory:
                    _share_sft(first, run_dir)
                out = run_training(cfg, ui)
                first = first or run_dir
                res = out["results"]
                if algo == args.algos[0]:  # the after-SFT model all estimators of this seed start from
                    initial.append(res.get("after_sft") or res.get("initial") or {})
                final[algo].append(res.get("after_rl") or {})
                curves[algo].append([m for m in out["metrics"] if "reward" in m])
    plot = plot_consult_bands(curves, root / "consult_rates.png")
    setting = (f"Model {base.model}, data {base.data.task}, {base.rl.steps} RL steps of {base.rl.prompts_per_step} "
               f"prompts x {base.rollout.group_size}, tool_call_cost {base.rewards.tool_call_cost}.")
    text = comparison_markdown(final, initial, seeds, setting, plot.name if plot else None, curves)
    (root / "comparison.md").write_text(text)
    (root / "comparison.json").write_text(json.dumps({"seeds": seeds, "after_sft": initial, "after_rl": final},
                                                     indent=2))
    results = {f"{a}/after_rl/seed{s}": r for a in args.algos for s, r in zip(seeds, final[a])}
    ui.table(f"comparison ({root / 'comparison.md'})", results)
    return 0


def _share_sft(src: Path, dst: Path) -> None:
    """Start `dst` from the SFT checkpoints of `src` (same seed, same model and data: the same SFT)."""
    from ascl_jax.training.checkpoint import copy_stage

    copy_stage(src / "checkpoints" / "sft", dst / "checkpoints" / "sft")
