"""Hugging Face hub ids (`Qwen/Qwen3-0.6B`) as `--model`: a local snapshot through huggingface_hub's cache.

Online, the checkpoint's config, tokenizer and safetensors files are downloaded into the cache (once) and
its folder is used. Offline (`HF_HUB_OFFLINE=1`, or no network), a snapshot already in the cache is used;
without one the error says how to get the folder onto the machine."""

from __future__ import annotations

import re
from pathlib import Path

from ascl_jax.errors import ModelNotFoundError

# What a model folder needs; other files in a hub repo (original/ checkpoints, GGUF, ONNX) are skipped.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(spec: str) -> bool:
    """"org/name" that is not a path on this machine."""
    return bool(_HUB_ID.match(spec)) and not Path(spec).exists()


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of `repo_id`'s checkpoint (downloaded into the hub cache when online)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    offline = huggingface_hub.constants.is_offline_mode()
    try:
        folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=CHECKPOINT_FILES, local_files_only=offline,
                                                   cache_dir=_cache_dir())
    except LocalEntryNotFoundError:
        why = "the hub is switched off here (HF_HUB_OFFLINE=1)" if offline else "the hub cannot be reached"
        raise ModelNotFoundError(
            f"{repo_id} looks like a Hugging Face hub id, but {why} and it is not in the hub cache: download "
            f"it where there is network (huggingface-cli download {repo_id} --local-dir DIR), copy DIR here "
            "and pass --model DIR"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{repo_id}: no such model on the Hugging Face hub (or it is gated: log in "
                                 "with huggingface-cli login)") from None
    return Path(folder)


def _cache_dir() -> str | None:
    # Read at call time: huggingface_hub fixes its cache folder when it is imported.
    import os

    return os.environ.get("HF_HUB_CACHE") or None
