"""LoRA adapters as a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`) that
`peft.PeftModel.from_pretrained(base_model, folder)` loads onto the base checkpoint.

PEFT's layout: `base_model.model.model.layers.{i}.{module}.lora_A.weight` [r, in] and `lora_B.weight`
[out, r] (this decoder keeps A [in, r] and B [r, out], so both are transposed); its scale is
lora_alpha / r, the same as here."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from ascl_jax.errors import UserError
from ascl_jax.models.hf_names import hf_module_name
from ascl_jax.models.lora import LoRAConfig, LoRAParam
from ascl_jax.models.safetensors_io import atomic_folder
from ascl_jax.parallel.host import to_host

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def adapter_tensors(state: nnx.State, dtype: str | None = None) -> dict[str, np.ndarray]:
    """PEFT-named adapter tensors of `state` (gathered to the host; every process must call it)."""
    out: dict[str, np.ndarray] = {}
    for path, var in nnx.to_flat_state(state):
        if not isinstance(var, LoRAParam):
            continue
        *module, leaf = path  # ("layers", "attn", "q_proj_lora_a")
        kernel, which = leaf.rsplit("_lora_", 1)
        name = hf_module_name((*module[1:], kernel))
        arr = to_host(var[...])
        if dtype is not None:
            arr = arr.astype(jax.numpy.dtype(dtype))
        for i in range(arr.shape[0]):
            out[f"base_model.model.model.layers.{i}.{name}.lora_{which.upper()}.weight"] = np.ascontiguousarray(arr[i].T)
    return out


def write_peft_adapter(folder: str | Path, state: nnx.State, lora: LoRAConfig, base_model: str,
                       dtype: str | None = None) -> Path:
    """Write the adapters of `state` as a PEFT folder (atomically). Under several processes every
    process calls it (the adapters are gathered) and process 0 writes."""
    if not lora.enabled:
        raise UserError("no LoRA adapters to export (lora.rank is 0)")
    tensors = adapter_tensors(state, dtype)
    if jax.process_index() != 0:
        return Path(folder)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(lora.targets),  # HF's module names: q_proj, ..., down_proj
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }
    with atomic_folder(folder) as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return Path(folder)

