"""Shared test fixtures: tiny HF configs of each family and their random torch reference models."""

from __future__ import annotations

import numpy as np

TINY_HF = {
    "llama": dict(
        model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    ),
    "qwen2": dict(
        model_type="qwen2", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    "qwen3": dict(
        model_type="qwen3", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    "tied_llama": dict(
        model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
    "yarn_qwen3": dict(
        model_type="qwen3", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 64},
    ),
}


def torch_reference(family: str, seed: int = 0):
    """A transformers PyTorch model of the family with random (non-trivial) weights, in eval mode."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = dict(TINY_HF[family])
    model_type = hf.pop("model_type")
    config = AutoConfig.for_model(model_type, **hf)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # norms and biases start at 1/0: perturb them all
            p.add_(0.05 * torch.randn_like(p))
    return model


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


def overfit(model, sequences, masks, steps=150, lr=3e-3):
    """Train `model` (a LoadedModel) by SFT on a few sequences until it reproduces them; returns params.

    A real training loop (the project's SFT loss and update step), used to make a tiny model behave in a
    known way, e.g. call the rule tool, so the rollout machinery can be checked end to end."""
    import jax.numpy as jnp

    from ascl_jax.sft.loss import sft_loss
    from ascl_jax.training.optimizer import OptimizerConfig, make_optimizer
    from ascl_jax.training.update import update_step

    width = max(len(s) for s in sequences)
    tokens = np.zeros((len(sequences), width), np.int32)
    mask = np.zeros((len(sequences), width), np.float32)
    for i, (s, m) in enumerate(zip(sequences, masks)):
        tokens[i, : len(s)] = s
        mask[i, : len(m)] = m
    tx = make_optimizer(OptimizerConfig(learning_rate=lr, total_steps=steps, min_lr_ratio=0.3, max_grad_norm=1.0))
    params = jax_tree_copy(model.params)
    opt_state = tx.init(params)
    batch = {"tokens": jnp.asarray(tokens), "loss_mask": jnp.asarray(mask)}
    for _ in range(steps):
        params, opt_state, metrics = update_step(model.graphdef, params, opt_state, batch, loss_fn=sft_loss, tx=tx,
                                                 num_micro=1)
    return params, float(metrics["loss"])


def jax_tree_copy(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.copy, tree)
