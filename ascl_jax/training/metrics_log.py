"""Per-step metrics: one JSON line per step (metrics.jsonl) and TensorBoard scalars, by process 0."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax


class MetricsLog:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.active = jax.process_index() == 0
        self.writer = None
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

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return v
