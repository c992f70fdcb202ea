"""Per-step metrics: one JSON line per step (metrics.jsonl), TensorBoard scalars and, optionally, a Weights &
Biases run, by process 0."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax


class MetricsLog:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, wandb_run: Any = None):
        """`wandb_run`: a started `wandb` run (see `start_wandb`) that gets every step's scalars too."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.active = jax.process_index() == 0
        self.writer = None
        self.wandb_run = wandb_run if self.active else None
        if self.active and tensorboard:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps > `step` (left by a run killed between logging and checkpointing)."""
        if not self.active or not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.active:
            return
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.wandb_run is not None:
            scalars = {k: v for k, v in record.items()
                       if isinstance(v, (int, float)) and k != "step" and math.isfinite(v)}
            self.wandb_run.log(scalars, step=step)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def wandb_module():
    """The `wandb` package, or a UserError that says how to get it."""
    from ascl_jax.errors import UserError

    try:
        import wandb
    except ImportError:
        raise UserError("logging.wandb=true needs the wandb package: pip install wandb (or set logging.wandb=false)") from None
    return wandb


def start_wandb(run_dir: str | Path, project: str, name: str | None, config: dict[str, Any]):
    """A Weights & Biases run for `run_dir` (process 0 only; None elsewhere). Its id derives from the run
    folder, so a resumed run continues the same W&B run."""
    if jax.process_index() != 0:
        return None
    import hashlib

    wandb = wandb_module()
    run_id = hashlib.sha1(str(Path(run_dir).absolute()).encode()).hexdigest()[:16]
    return wandb.init(project=project, name=name or Path(run_dir).name, id=run_id, resume="allow", config=config,
                      dir=str(run_dir))


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return v
