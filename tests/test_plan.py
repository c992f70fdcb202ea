"""`ascl plan` compiles a run's programs for a TPU slice on this CPU machine (libtpu, no TPU): its memory
figures match what the arrays must take, its cost counts every layer and micro-batch, a run that does
not fit gets a variant that does, and bad input gets one line and exit code 2."""

import importlib.util
import json

import numpy as np
import pytest

from ascl_jax.cli import main

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason='needs libtpu: pip install -e ".[tpu]" (.ci/run installs it)')

TINY = ["--model", "tiny", "--topology", "v5e-4", "mesh.data=1", "mesh.fsdp=4"]


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
@needs_libtpu
def test_plan_memory_and_cost_of_a_small_run(capsys):
    from ascl_jax.models.registry import BUILTIN_CONFIGS

    assert main(["plan", *TINY, "rl.micro_batches=2", "--programs", "rl_update,decode_chunk", "--json"]) == 0
    out = _last_json(capsys)
    progs = {p["name"]: p for p in out["programs"]}
    assert set(progs) == {"decode_chunk", "rl_update"} and out["fits"] and out["devices"] == 4
    cfg = BUILTIN_CONFIGS["tiny"]
    params = cfg.num_params * 4  # float32, spread over fsdp 4 (every tiny dimension divides by 4)

    # The decode state: a KV cache of 64 rows x 256 slots (rows over the 4 chips) plus the row buffers.
    rows, capacity = 64, 256
    kv = 2 * cfg.num_layers * rows * capacity * cfg.num_kv_heads * cfg.head_dim * 4 // 4
    buffers = rows * capacity * (4 + 1 + 4) // 4  # tokens i32, sampled bool, logprobs f32
    d = progs["decode_chunk"]
    # (+ the row keys, limits and lengths, the norm scales, which stay whole on every chip, and the TPU's
    # tile padding of small dimensions, which XLA's figures include)
    assert kv + buffers <= d["argument_bytes"] <= 1.1 * (kv + buffers + params // 4) + 64 * 1024
    assert d["alias_bytes"] >= kv  # the state is donated: the cache is updated in place
    # The update: parameters, Adam's two moments and the batch (64 rows x 256 tokens) as arguments.
    u = progs["rl_update"]
    batch = rows * 256 * (4 + 4 + 4) // 4 + rows * 4 // 4
    assert 3 * params // 4 + batch <= u["argument_bytes"] <= 1.1 * (3 * params // 4 + batch) + 64 * 1024
    assert u["peak_bytes"] == u["argument_bytes"] + u["output_bytes"] - u["alias_bytes"] + u["temp_bytes"] + u["resident_bytes"]
    # Every layer and both micro-batches are counted: XLA's flops are within a small factor of the
    # analytic model FLOPs (a loop body counted once would be 1/8 of them or less).
    assert 0.8 <= u["xla_flops"] / u["model_flops"] <= 3.0
    assert 0.8 <= d["xla_flops"] / d["model_flops"] <= 3.0
    assert 0 < u["metrics"]["est_mfu"] <= 1 and d["metrics"]["est_tokens_per_s_per_chip"] > 0


@pytest.mark.slow
@needs_libtpu
def test_a_run_that_does_not_fit_gets_a_variant_that_does():
    from ascl_jax.bench.plan import Planner
    from ascl_jax.bench.plan_suggest import suggest, with_overrides
    from ascl_jax.bench.topology import resolve_slice
    from ascl_jax.config_io import load_config
    from ascl_jax.models.registry import model_config
    from ascl_jax.train_config import TrainConfig

    cfg = load_config(TrainConfig, None, ["mesh.data=1", "mesh.fsdp=4", "rl.micro_batches=1"])
    tpu = resolve_slice("v5e-4")
    full = Planner(cfg, tpu, model_config("tiny")).plan(only={"rl_update"}, cost=False)
    need = full.programs[0].peak_bytes
    # A chip with 60% of what the update needs: remat or more micro-batches must make it fit.
    small = int(need * 0.6 / 0.95)
    plan = Planner(cfg, tpu, model_config("tiny"), hbm_bytes=small).plan(only={"rl_update"}, cost=False)
    assert not plan.fits
    s = suggest(cfg, tpu, model_config("tiny"), plan, hbm_bytes=small)
    assert s["overrides"], s
    fixed = Planner(with_overrides(cfg, s["overrides"]), tpu, model_config("tiny"), hbm_bytes=small).plan(
        only={"rl_update"}, cost=False)
    assert fixed.fits and fixed.programs[0].peak_bytes < need


@pytest.mark.parametrize("argv, message", [
    (["--model", "tiny", "--topology", "v9-8"], "unknown TPU slice 'v9-8'; valid: v5e-1"),
    (["--model", "tiny", "--topology", "v5e-4", "mesh.data=3"], "v5e-4 has 4 devices: mesh"),
    (["--model", "qwen9-1b", "--topology", "v5e-4"], "no model 'qwen9-1b'"),
])
@needs_libtpu
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_architecture_names_resolve_without_weights():
    from ascl_jax.models.registry import architecture_names, model_config

    assert {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen2.5-7b", "llama-3.1-8b"} <= set(architecture_names())
    q = model_config("qwen3-8b")
    assert (q.num_layers, q.hidden_size, q.num_kv_heads, q.vocab_size, q.tie_word_embeddings) == (36, 4096, 8, 151936, False)
    assert abs(q.num_params / 1e9 - 8.19) < 0.01
    llama = model_config("llama-3.1-8b")
    assert llama.rope.type == "llama3" and llama.rope.factor == 8.0 and llama.num_layers == 32
    # parameter counts as published: Qwen3-1.7B 1.72B (tied), Qwen2.5-7B 7.62B, Llama-3.1-8B 8.03B
    assert np.isclose(model_config("qwen3-1.7b").num_params / 1e9, 1.72, atol=0.01)
    assert np.isclose(model_config("qwen2.5-7b").num_params / 1e9, 7.62, atol=0.01)
    assert np.isclose(llama.num_params / 1e9, 8.03, atol=0.01)


def test_without_libtpu_the_message_gives_the_install_line(monkeypatch, capsys):
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "libtpu" else real(name, *a))
    assert main(["plan", "--model", "tiny", "--topology", "v5e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "ascl_jax[tpu]"' in err and "no TPU needed" in err


@pytest.mark.slow
@needs_libtpu
def test_decode_in_the_replicated_layout_gathers_no_weights(capsys):
    """On the training layout (weights split over fsdp 4) a decode step all-gathers the weights; in the
    rollout's replicated layout it moves next to nothing, and the weights it holds are whole per chip."""
    from ascl_jax.models.registry import BUILTIN_CONFIGS

    params = BUILTIN_CONFIGS["tiny"].num_params * 4  # float32
    out = {}
    for layout in ("train", "replicated"):
        assert main(["plan", *TINY, f"rollout.layout={layout}", "--programs", "decode_chunk", "--json"]) == 0
        (d,) = _last_json(capsys)["programs"]
        out[layout] = d
    steps = 16  # the demo's decode chunk
    # every step gathers the 3/4 of the weights a chip lacks (the result of the gather is counted whole)
    assert out["train"]["collective_bytes"] >= 0.7 * steps * params
    assert out["replicated"]["collective_bytes"] < 0.05 * out["train"]["collective_bytes"]
    assert out["replicated"]["argument_bytes"] >= out["train"]["argument_bytes"] + 0.7 * params
    assert out["replicated"]["resident_bytes"] >= out["train"]["resident_bytes"] + params // 4  # training copy


def test_collective_bytes_read_from_hlo():
    from ascl_jax.bench.hlo_cost import collective_bytes

    hlo = """
  %ag = bf16[1024,512]{1,0} all-gather(bf16[128,512]{1,0} %p0), channel_id=1, replica_groups=[1,8]<=[8], dimensions={0}
  %ar = f32[64,32]{1,0} all-reduce(f32[64,32]{1,0} %x), channel_id=2, to_apply=%add
  %rs = f32[8,32]{1,0} reduce-scatter(f32[64,32]{1,0} %y), channel_id=3, dimensions={0}
  %ags = (bf16[128,512]{1,0}, bf16[1024,512]{1,0}) all-gather-start(bf16[128,512]{1,0} %p1), channel_id=4
  %agd = bf16[1024,512]{1,0} all-gather-done((bf16[128,512]{1,0}, bf16[1024,512]{1,0}) %ags)
  %add = f32[64,32]{1,0} add(f32[64,32]{1,0} %a, f32[64,32]{1,0} %b)
"""
    gathered = 1024 * 512 * 2
    assert collective_bytes(hlo) == gathered + 2 * 64 * 32 * 4 + 64 * 32 * 4 + gathered
    assert collective_bytes("%add = f32[4]{0} add(f32[4]{0} %a, f32[4]{0} %b)") == 0


@needs_libtpu
def test_micro_batches_that_do_not_split_over_the_row_shards_are_warned():
    from ascl_jax.bench.plan import Planner
    from ascl_jax.bench.topology import resolve_slice
    from ascl_jax.config_io import load_config
    from ascl_jax.models.registry import model_config
    from ascl_jax.train_config import TrainConfig

    cfg = load_config(TrainConfig, None, ["mesh.data=1", "mesh.fsdp=4", "rl.micro_batches=32", "sft.micro_batches=2"])
    planner = Planner(cfg, resolve_slice("v5e-4"), model_config("tiny"))
    (warning,) = planner._split_warnings()  # 64 rows in 32 micro-batches: 2 rows for 4 shards
    assert warning.startswith("rl.micro_batches=32 leaves 2 rows a micro-batch for 4 row shards")
    assert warning.endswith("rl.micro_batches=16 leaves 4")
