"""LoRA: a fresh adapter leaves the model unchanged; a LoRA RL step equals the full-weight gradient step
restricted to the adapters (derived by hand from the merged weights' gradient); only adapters are
trained, optimised and checkpointed; merged HF export and the PEFT adapter folder reproduce the model."""

import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ascl_jax.models.lora import LoRAConfig, LoRAParam, trainable_split
from ascl_jax.models.params import ArraySource, hf_tensors, init_params, load_params
from ascl_jax.models.registry import BUILTIN_CONFIGS
from ascl_jax.parallel import single_device_mesh
from ascl_jax.rl.batch import rl_loss, sequence_logprobs
from ascl_jax.rl.config import LossConfig
from ascl_jax.training.update import update_step

CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=2)
LORA = LoRAConfig(rank=4, alpha=8.0)
KERNELS = {("attn", "q_proj"), ("attn", "k_proj"), ("attn", "v_proj"), ("attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")}


def _tokens(batch=4, width=24, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(3, CFG.vocab_size, (batch, width)), jnp.int32)


def _forward(graphdef, state, tokens):
    pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    return nnx.merge(graphdef, state)(tokens, pos)[0]


def _with_random_b(state, seed=1):
    """Adapters whose B is not zero (a fresh B = 0 would make every A gradient vanish)."""
    rng = np.random.RandomState(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        if path[-1].endswith("_lora_b"):
            var = var.replace(jnp.asarray(0.05 * rng.standard_normal(var.shape), var.dtype))
        flat.append((path, var))
    return nnx.from_flat_state(flat)


def test_fresh_adapters_leave_the_loaded_model_unchanged():
    mesh = single_device_mesh()
    g0, base = init_params(CFG, mesh, seed=2)
    g1, adapted = load_params(CFG, ArraySource(dict(hf_tensors(CFG, base)), "mem"), mesh, lora=LORA)
    kinds = {type(v) for _, v in nnx.to_flat_state(adapted)}
    assert LoRAParam in kinds
    a = nnx.to_flat_state(adapted)
    assert {(p[1], p[2].rsplit("_lora_", 1)[0]) for p, v in a if isinstance(v, LoRAParam)} == KERNELS
    np.testing.assert_array_equal(np.asarray(_forward(g0, base, _tokens())), np.asarray(_forward(g1, adapted, _tokens())))


def test_lora_rl_step_equals_the_restricted_full_weight_step():
    mesh = single_device_mesh()
    graphdef, state = init_params(CFG, mesh, seed=3, lora=LORA)
    state = _with_random_b(state)
    trainable, frozen = trainable_split(state)
    tokens = _tokens(seed=5)
    old_lp, _ = sequence_logprobs(graphdef, state, tokens, temperature=1.0, num_micro=1)  # ratio 1: no clipping
    mask = np.zeros(tokens.shape, np.float32)
    mask[:, 10:] = 1.0
    batch = {"tokens": tokens, "loss_mask": jnp.asarray(mask), "old_logprobs": old_lp,
             "advantages": jnp.asarray([1.0, -0.5, 0.25, 2.0], jnp.float32)}
    loss_fn = functools.partial(rl_loss, loss=LossConfig(), temperature=1.0)
    # Host copies first: update_step donates (consumes) the trained arrays.
    flat = {p: np.asarray(v[...], np.float64) for p, v in nnx.to_flat_state(state)}
    merged = dict(hf_tensors(CFG, state))  # W + s A B, HF layout
    lr = 0.5
    tx = optax.sgd(lr)
    new, _, metrics = update_step(graphdef, trainable, tx.init(trainable), batch, loss_fn=loss_fn, tx=tx, num_micro=2,
                                  frozen=frozen)
    assert float(metrics["skipped"]) == 0.0
    assert {type(v) for _, v in nnx.to_flat_state(new)} == {LoRAParam}  # the base is not part of the update

    # Reference: the same loss on a model without adapters whose kernels are the merged W + s A B; its
    # gradient G with respect to a merged kernel gives dA = s G B^T and dB = s A^T G.
    plain_graphdef, plain = load_params(CFG, ArraySource(merged, "merged"), mesh)

    def loss(p):
        num, den, _ = loss_fn(nnx.merge(plain_graphdef, p), batch)
        return num / den

    grads = dict(nnx.to_flat_state(jax.grad(loss)(plain)))
    s = LORA.scale
    got = dict(nnx.to_flat_state(new))
    for module, kernel in KERNELS:
        path = ("layers", module, kernel)
        g = np.asarray(grads[path][...], np.float64)  # [L, in, out]
        a = flat[(*path[:-1], f"{kernel}_lora_a")]
        b = flat[(*path[:-1], f"{kernel}_lora_b")]
        want_a = a - lr * s * np.einsum("lio,lro->lir", g, b)
        want_b = b - lr * s * np.einsum("lir,lio->lro", a, g)
        np.testing.assert_allclose(np.asarray(got[(*path[:-1], f"{kernel}_lora_a")][...]), want_a, atol=2e-6, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(got[(*path[:-1], f"{kernel}_lora_b")][...]), want_b, atol=2e-6, rtol=1e-4)
        assert np.abs(want_a - a).max() > 1e-5  # the step moved A: the comparison is not of two no-ops


def test_sft_trains_and_checkpoints_only_the_adapters(tmp_path):
    from ascl_jax.models.registry import load_model
    from ascl_jax.sft.trainer import SFTConfig, SFTTrainer
    from ascl_jax.training.checkpoint import Checkpointer

    model = load_model("tiny", lora=LORA)
    rng = np.random.RandomState(0)
    data = {"tokens": rng.randint(3, CFG.vocab_size, (8, 32)).astype(np.int32),
            "loss_mask": np.ones((8, 32), np.float32)}
    cfg = SFTConfig(steps=2, batch_size=4, max_tokens=32)
    trainer = SFTTrainer(model, data, cfg, seed=0, checkpointer=Checkpointer(tmp_path / "ck"))
    base_before = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(trainer.frozen)}
    trainer.run(checkpoint_every=2)
    assert all(isinstance(v, LoRAParam) for _, v in nnx.to_flat_state(trainer.params))
    adam_leaves = [x for x in jax.tree.leaves(trainer.opt_state) if x.ndim > 0]
    assert sum(x.size for x in adam_leaves) == 2 * sum(v[...].size for _, v in nnx.to_flat_state(trainer.params))
    after = trainer.current_model()
    for p, v in nnx.to_flat_state(after.params):
        if not isinstance(v, LoRAParam):
            np.testing.assert_array_equal(np.asarray(v[...]), base_before[p])  # frozen
    # the checkpoint holds the adapters only, and a new trainer resumes from it exactly
    saved = json.loads((tmp_path / "ck" / "2" / "params" / "_METADATA").read_text())
    names = json.dumps(saved)
    assert "q_proj_lora_a" in names and '"embed"' not in names and "'embed'" not in names
    again = SFTTrainer(load_model("tiny", lora=LORA), data, cfg, seed=0,
                       checkpointer=Checkpointer(tmp_path / "ck"))
    assert again.restore_latest() and again.step == 2
    for (p1, v1), (p2, v2) in zip(nnx.to_flat_state(trainer.params), nnx.to_flat_state(again.params)):
        assert p1 == p2
        np.testing.assert_array_equal(np.asarray(v1[...]), np.asarray(v2[...]))


def test_merged_export_reproduces_the_adapted_model(tmp_path):
    from ascl_jax.models.registry import export_hf, load_model

    model = load_model("tiny", lora=LORA)
    model = model.__class__(**{**model.__dict__, "params": _with_random_b(model.params)})
    export_hf(model, tmp_path / "merged")
    back = load_model(str(tmp_path / "merged"))
    assert not any(isinstance(v, LoRAParam) for _, v in nnx.to_flat_state(back.params))
    np.testing.assert_allclose(np.asarray(_forward(back.graphdef, back.params, _tokens())),
                               np.asarray(_forward(model.graphdef, model.params, _tokens())), atol=2e-5)


@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("peft") is None or importlib.util.find_spec("torch") is None,
                    reason="needs peft and torch")
def test_peft_loads_the_adapter_folder_onto_the_base(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ascl_jax.models.lora_export import write_peft_adapter
    from ascl_jax.models.registry import export_hf, load_model

    model = load_model("tiny", lora=LORA)
    model = model.__class__(**{**model.__dict__, "params": _with_random_b(model.params)})
    export_hf(model, tmp_path / "base", merge_adapters=False)
    write_peft_adapter(tmp_path / "adapter", model.params, LORA, str(tmp_path / "base"))
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "base"), torch_dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(hf, str(tmp_path / "adapter")).eval()
    tokens = _tokens(batch=2)
    with torch.no_grad():
        got = peft_model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()
    want = np.asarray(_forward(model.graphdef, model.params, tokens))
    np.testing.assert_allclose(got, want, atol=2e-4)
    with torch.no_grad(), peft_model.disable_adapter():
        base_only = peft_model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()
    assert np.abs(base_only - want).max() > 1e-3  # the adapters change the model: the match is theirs
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8.0 and set(cfg["target_modules"]) == {k for _, k in KERNELS}


@pytest.mark.parametrize("policy", ["full", "dots_saveable", "dots_with_no_batch_dims_saveable"])
def test_remat_leaves_the_gradients_unchanged(policy):
    from ascl_jax.sft.loss import sft_loss_fn

    graphdef, state = init_params(CFG, single_device_mesh(), seed=4)
    tokens = _tokens(seed=6)
    batch = {"tokens": tokens, "loss_mask": jnp.ones(tokens.shape, jnp.float32)}

    def grads(remat):
        return jax.grad(lambda p: sft_loss_fn(remat)(nnx.merge(graphdef, p), batch)[0])(state)

    for (p1, g1), (p2, g2) in zip(nnx.to_flat_state(grads("none")), nnx.to_flat_state(grads(policy))):
        assert p1 == p2
        np.testing.assert_allclose(np.asarray(g2[...]), np.asarray(g1[...]), atol=1e-5, rtol=1e-5)
