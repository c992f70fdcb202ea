"""Device mesh from config: axes (data, fsdp, tensor), all `AxisType.Auto`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from ascl_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")


@dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes; one of them may be -1 to take all remaining devices.

    data: pure data parallelism (parameters replicated); fsdp: data parallelism with parameters and
    optimizer state sharded; tensor: heads and MLP columns split across devices."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    num_devices: int = -1  # use the first N devices only (-1: all); e.g. 1 for a small model on fake devices

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        free = [i for i, s in enumerate(sizes) if s == -1]
        if len(free) > 1:
            raise ConfigError(f"mesh: at most one axis may be -1, got data={self.data} fsdp={self.fsdp} tensor={self.tensor}")
        if any(s == 0 or s < -1 for s in sizes):
            raise ConfigError(f"mesh: axis sizes must be positive or -1, got {sizes}")
        fixed = math.prod(s for s in sizes if s != -1)
        if free:
            if num_devices % fixed:
                raise ConfigError(f"mesh: {num_devices} devices cannot be split into axes {dict(zip(MESH_AXES, sizes))}")
            sizes[free[0]] = num_devices // fixed
        if math.prod(sizes) != num_devices:
            raise ConfigError(
                f"mesh: data*fsdp*tensor = {math.prod(sizes)} but {num_devices} devices are present; use -1 for one axis"
            )
        return tuple(sizes)  # type: ignore[return-value]


def make_mesh(config: MeshConfig = MeshConfig(), devices: list | None = None) -> Mesh:
    """A `Mesh` over `devices` (default: all global devices) with axes ('data', 'fsdp', 'tensor').

    Tensor is the innermost axis so that its collectives stay on the fastest links."""
    devices = list(jax.devices() if devices is None else devices)
    if config.num_devices != -1:
        if not 1 <= config.num_devices <= len(devices):
            raise ConfigError(f"mesh.num_devices={config.num_devices} but {len(devices)} devices are present")
        devices = devices[: config.num_devices]
    shape = config.resolve(len(devices))
    if len(devices) == len(jax.devices()) and devices == list(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def single_device_mesh() -> Mesh:
    """A 1x1x1 mesh on the first device: the same code path as a pod, for tests and small runs."""
    return make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1])
