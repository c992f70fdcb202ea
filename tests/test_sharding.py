"""The forward on 8 fake devices (data=2, fsdp=2, tensor=2) equals one device, and every parameter
carries the sharding its logical axes name under the rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from ascl_jax.models.params import hf_tensors, init_params, load_params, ArraySource
from ascl_jax.models.registry import BUILTIN_CONFIGS
from ascl_jax.parallel import MeshConfig, ShardingRules, make_mesh, single_device_mesh
from ascl_jax.errors import ConfigError

CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=2)


def test_eight_fake_devices():
    assert len(jax.devices()) == 8


def test_sharded_forward_equals_single_device():
    rules = ShardingRules()
    single = single_device_mesh()
    graphdef, params = init_params(CFG, single, rules, seed=7)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    tensors = dict(hf_tensors(CFG, params))
    graphdef8, params8 = load_params(CFG, ArraySource(tensors, "mem"), mesh, rules)

    tokens = jnp.asarray(np.random.RandomState(0).randint(0, CFG.vocab_size, (4, 16)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (4, 16))

    def fwd(graphdef, params, tokens, positions):
        return nnx.merge(graphdef, params)(tokens, positions)[0]

    ref = jax.jit(fwd, static_argnums=0)(graphdef, params, tokens, positions)
    with jax.set_mesh(mesh):
        got = jax.jit(fwd, static_argnums=0)(graphdef8, params8, tokens, positions)
    assert len(got.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5, rtol=0)

    # random init placed directly on the mesh is the same model as on one device
    _, direct = init_params(CFG, mesh, rules, seed=7)
    for (p1, v1), (p2, v2) in zip(nnx.to_flat_state(params), nnx.to_flat_state(direct)):
        assert p1 == p2
        np.testing.assert_array_equal(np.asarray(v1[...]), np.asarray(v2[...]))


def test_parameters_carry_rule_shardings():
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    _, params = init_params(CFG, mesh, ShardingRules())
    specs = {path: var[...].sharding.spec for path, var in nnx.to_flat_state(params)}
    assert specs[("embed",)] == P("tensor", "fsdp")
    # layer parameters are stacked over a leading layer axis, which is never split
    assert params["layers"]["attn"]["q_proj"][...].shape == (2, 128, 128)
    assert specs[("layers", "attn", "q_proj")] == P(None, "fsdp", "tensor")
    assert specs[("layers", "attn", "k_proj")] == P(None, "fsdp", "tensor")
    assert specs[("layers", "attn", "o_proj")] == P(None, "tensor", "fsdp")
    assert specs[("layers", "mlp", "down_proj")] == P(None, "tensor", "fsdp")
    assert specs[("layers", "input_norm", "scale")] == P(None, None)
    # a different rule table changes the layout without touching the model
    rules = ShardingRules(rules=(("embed", None), ("mlp", ("fsdp", "tensor")), ("heads", None)))
    _, params2 = init_params(CFG, mesh, rules)
    specs2 = {path: var[...].sharding.spec for path, var in nnx.to_flat_state(params2)}
    assert specs2[("layers", "mlp", "up_proj")] == P(None, None, ("fsdp", "tensor"))
    assert specs2[("layers", "attn", "q_proj")] == P(None, None, None)


def test_indivisible_dimension_stays_replicated():
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=8))
    spec = ShardingRules().spec(("kv_heads", "embed"), (12, 64), mesh)
    assert spec[0] is None  # 12 heads do not split over 8 devices: replicated rather than an error


@pytest.mark.parametrize("bad", [MeshConfig(data=3, fsdp=1, tensor=1), MeshConfig(data=-1, fsdp=-1),
                                 MeshConfig(data=0)])
def test_bad_mesh_config_names_the_problem(bad):
    with pytest.raises(ConfigError, match="mesh"):
        make_mesh(bad)


def test_optimizer_state_is_sharded_like_the_parameters():
    from ascl_jax.training.optimizer import OptimizerConfig, init_optimizer_state, make_optimizer

    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    _, params = init_params(CFG, mesh, ShardingRules())
    state = init_optimizer_state(make_optimizer(OptimizerConfig()), params, mesh)
    param_specs = {v[...].sharding.spec for _, v in nnx.to_flat_state(params)}
    moment_specs = {leaf.sharding.spec for leaf in jax.tree.leaves(state) if leaf.ndim > 0}
    assert moment_specs == param_specs and P(None, "fsdp", "tensor") in moment_specs
