"""Logical-axis sharding: every parameter and activation names its dimensions with logical axes
('embed', 'heads', 'batch', ...); one rule table maps those names to mesh axes.

Changing the parallel layout is a change of rules, never of model code."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MeshAxes = str | tuple[str, ...] | None

DEFAULT_RULES: tuple[tuple[str, MeshAxes], ...] = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("layers", None),  # the stacked layer axis: the layer scan slices it, so it is never split
    ("lora_rank", None),
    # activations
    ("batch", ("data", "fsdp")),
    ("seq", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_seq", None),
)


@dataclass(frozen=True)
class ShardingRules:
    """Logical axis -> mesh axes. A logical name that is absent maps to None (replicated)."""

    rules: tuple[tuple[str, MeshAxes], ...] = DEFAULT_RULES

    def mesh_axes(self, logical: str | None) -> MeshAxes:
        if logical is None:
            return None
        for name, axes in self.rules:
            if name == logical:
                return axes
        return None

    def spec(self, logical_axes: tuple[str | None, ...], shape: tuple[int, ...] | None = None,
             mesh: Mesh | jax.sharding.AbstractMesh | None = None) -> PartitionSpec:
        """PartitionSpec for `logical_axes`. With `shape` and `mesh`, a dimension is split over the longest
        leading run of its mesh axes that divides it evenly (none: replicated), and a mesh axis already
        used by an earlier dimension is skipped."""
        used: set[str] = set()
        out: list[MeshAxes] = []
        for i, logical in enumerate(logical_axes):
            axes = self.mesh_axes(logical)
            names = (axes,) if isinstance(axes, str) else tuple(axes or ())
            names = tuple(n for n in names if n not in used)
            if mesh is not None:
                names = tuple(n for n in names if n in mesh.axis_names)
                # The longest leading run of the axes whose size divides the dimension (e.g. 8 KV heads
                # over fsdp x tensor = 8 x 2 are split over fsdp alone).
                while shape is not None and names and shape[i] % math.prod(mesh.shape[n] for n in names):
                    names = names[:-1]
            used.update(names)
            out.append(None if not names else names[0] if len(names) == 1 else names)
        return PartitionSpec(*out)

    def sharding(self, mesh: Mesh, logical_axes: tuple[str | None, ...], shape: tuple[int, ...]) -> NamedSharding:
        return NamedSharding(mesh, self.spec(logical_axes, shape, mesh))


def constrain(x: jax.Array, rules: ShardingRules, logical_axes: tuple[str | None, ...]) -> jax.Array:
    """Sharding constraint on an activation inside jit, under the mesh set by `jax.set_mesh`; a no-op
    when no mesh is set (plain single-device use)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = rules.spec(logical_axes, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def batch_sharding(mesh: Mesh, rules: ShardingRules, shape: tuple[int, ...]) -> NamedSharding:
    """Sharding of a host batch array [B, ...]: rows over the batch axes where they divide B."""
    return rules.sharding(mesh, ("batch",) + (None,) * (len(shape) - 1), tuple(shape))
