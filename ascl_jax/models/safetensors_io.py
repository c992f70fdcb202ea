"""Hugging Face safetensors folders: read lazily (single file or sharded with an index) and write
atomically (config.json + model.safetensors, sharded with an index when large)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ascl_jax.errors import WeightsError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class SafetensorsFolder:
    """A `TensorSource` over an HF folder; tensors are read slice by slice, never whole unless asked."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise WeightsError(f"{index}: not a valid safetensors index ({exc})") from None
            files = sorted(set(weight_map.values()))
        elif (self.folder / SINGLE_FILE).exists():
            files = [SINGLE_FILE]
            weight_map = None
        else:
            found = sorted(p.name for p in self.folder.glob("*.safetensors"))
            if not found:
                raise WeightsError(f"{self.folder}: no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors file")
            files, weight_map = found, None
        self._handles = {}
        self._file_of: dict[str, str] = {}
        for name in files:
            path = self.folder / name
            if not path.exists():
                raise WeightsError(f"{index}: names shard {name!r}, which is missing from {self.folder}")
            try:
                handle = safe_open(str(path), framework="numpy")
            except Exception as exc:  # safetensors raises its own error types for corrupt headers
                raise WeightsError(f"{path}: cannot read safetensors file ({exc})") from None
            self._handles[name] = handle
            for key in handle.keys():
                self._file_of[key] = name
        if weight_map is not None:
            for key, name in weight_map.items():
                if self._file_of.get(key) != name:
                    raise WeightsError(f"{index}: tensor {key!r} is listed in {name!r} but is not in that file")

    def names(self) -> list[str]:
        return sorted(self._file_of)

    def shape(self, name: str) -> tuple[int, ...] | None:
        file = self._file_of.get(name)
        if file is None:
            return None
        return tuple(self._handles[file].get_slice(name).get_shape())

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        return self._handles[self._file_of[name]].get_slice(name)[index]

    def where(self, name: str | None = None) -> str:
        if name is not None and name in self._file_of:
            return str(self.folder / self._file_of[name])
        return str(self.folder)


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling of `folder` to write into; on success it replaces `folder` (which then
    appears complete or not at all), on failure it is removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_hf_folder(
    folder: str | Path,
    config: dict,
    tensors: Iterable[tuple[str, np.ndarray]],
    write_extra: Callable[[Path], None] | None = None,
    max_shard_bytes: int = 4 << 30,
) -> Path:
    """Write config.json and the tensors as safetensors (sharded with an index past `max_shard_bytes`).

    The folder appears complete or not at all (`atomic_folder`). An existing folder is replaced."""
    with atomic_folder(folder) as tmp:
        # Shards are flushed as they fill, so a large model never sits whole in host memory.
        written: list[tuple[str, list[str]]] = []
        current: dict[str, np.ndarray] = {}
        size = total = 0
        meta = {"format": "pt"}  # transformers refuses files without this marker

        def flush() -> None:
            part = f"part-{len(written):05d}.tmp"
            save_file(current, str(tmp / part), metadata=meta)
            written.append((part, list(current)))
            current.clear()

        for name, arr in tensors:
            if current and size + arr.nbytes > max_shard_bytes:
                flush()
                size = 0
            current[name] = np.ascontiguousarray(arr)
            size += arr.nbytes
            total += arr.nbytes
        if current or not written:
            flush()
        if len(written) == 1:
            os.replace(tmp / written[0][0], tmp / SINGLE_FILE)
        else:
            weight_map = {}
            for i, (part, names) in enumerate(written):
                fname = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
                os.replace(tmp / part, tmp / fname)
                weight_map.update({n: fname for n in names})
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if write_extra is not None:  # e.g. the tokenizer's files
            write_extra(tmp)
    return Path(folder)
