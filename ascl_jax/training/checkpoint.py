"""Checkpoints (orbax): parameters, optimizer state, step and the resolved config, written by all
processes together; a step's folder appears only once complete (orbax commits it atomically), and the
last `keep` are kept. Restoring checks that the checkpoint was written for the same model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from ascl_jax.errors import ConfigError, UserError


class CheckpointError(UserError):
    """A checkpoint folder that is corrupt, or that belongs to another config."""


def model_record(config: Any) -> dict[str, Any]:
    """A model config (dataclass) as the plain JSON a checkpoint's meta stores, so that restoring into a
    model of another shape or dtype names the differing fields instead of failing inside orbax."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs with the shardings of `tree`, to restore into the same layout."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    def __init__(self, directory: str | Path | epath.Path, keep: int = 2):
        """`directory`: a local folder or a URL that orbax writes through tensorstore (gs://BUCKET/PATH)."""
        if keep < 1:
            raise ConfigError(f"checkpoint.keep must be >= 1, got {keep}")
        url = "://" in str(directory)
        self.directory = epath.Path(str(directory) if url else Path(directory).absolute())
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params, opt_state, meta: dict[str, Any]) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                opt=ocp.args.StandardSave(opt_state),
                meta=ocp.args.JsonSave(meta),
            ),
        )
        self.manager.wait_until_finished()

    def read_meta(self, step: int) -> dict[str, Any]:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as exc:  # orbax raises assorted errors for damaged folders
            raise CheckpointError(f"{self.directory / str(step)}: cannot read checkpoint metadata ({exc})") from None

    def restore(self, step: int, params_like, opt_like, expect: dict[str, Any],
                expect_meta: dict[str, Any] | None = None) -> tuple[Any, Any, dict[str, Any]]:
        """(params, opt_state, meta) of `step`, in the layout of `params_like` / `opt_like`.

        `expect` holds the config sections that must match (e.g. the model), `expect_meta` entries of the
        meta itself (e.g. `model_config`, see `model_record`); a difference raises CheckpointError naming
        each differing key."""
        meta = self.read_meta(step)
        diffs = _differences(meta.get("config", {}), expect) + _differences(meta, expect_meta or {})
        if diffs:
            raise CheckpointError(
                f"{self.directory / str(step)} was written by another config: " + "; ".join(diffs)
            )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(abstract_like(params_like)),
                    opt=ocp.args.StandardRestore(abstract_like(opt_like)),
                ),
            )
        except Exception as exc:  # orbax / tensorstore errors can run to hundreds of lines: keep the first
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise CheckpointError(
                f"{self.directory / str(step)}: cannot restore the checkpoint, it is damaged or incomplete "
                f"({type(exc).__name__}: {first}); delete that step folder to resume from an earlier one"
            ) from None
        return restored["params"], restored["opt"], meta


def copy_stage(src: Path, dst: Path) -> bool:
    """Copy the newest finished checkpoint of a stage folder `src` into `dst` (local folders), so a run in
    `dst` starts where `src` ended; nothing is done when `dst` already holds a checkpoint or `src` none.
    Written under a temporary name and renamed: a killed copy leaves no half-written step behind."""
    src, dst = Path(src), Path(dst)
    steps = sorted((int(p.name) for p in src.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True) \
        if src.is_dir() else []
    if not steps or (dst.is_dir() and any(p.name.isdigit() for p in dst.iterdir())):
        return False
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / f".copy-{steps[0]}"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src / str(steps[0]), tmp)
    tmp.rename(dst / str(steps[0]))
    return True


def _differences(saved: dict, expect: dict, prefix: str = "") -> list[str]:
    out = []
    for key, want in expect.items():
        name = f"{prefix}{key}"
        have = saved.get(key, "<absent>")
        if isinstance(want, dict) and isinstance(have, dict):
            out.extend(_differences(have, want, name + "."))
        elif have != want:
            out.append(f"{name} is {have!r} there, {want!r} here")
    return out


def restore_newest(checkpointer: Checkpointer | None, params_like, opt_like, config_record: dict[str, Any],
                   model_config: Any) -> tuple[Any, Any, dict[str, Any]] | None:
    """(params, opt_state, meta) of the newest checkpoint, checked against the run's model (its name in
    `config_record` and its `model_config`), or None when there is none yet."""
    if checkpointer is None or checkpointer.latest_step() is None:
        return None
    # The model and its adapters decide what the saved arrays are.
    expect = {k: config_record[k] for k in ("model", "lora") if k in config_record}
    return checkpointer.restore(checkpointer.latest_step(), params_like, opt_like, expect,
                                {"model_config": model_record(model_config)})
