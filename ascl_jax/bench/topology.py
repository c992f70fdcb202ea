"""Named TPU slices (`v5e-8`, `v5p-32`, ...) and their compile-only devices.

A slice name is what Cloud TPU calls it: the number after the dash counts chips for v5e and v6e and
TensorCores (two per chip) for v4 and v5p. Each maps to a topology that libtpu lays out on any machine,
without a TPU (`jax.experimental.topologies`), giving devices that programs can be compiled for and not
run on. Per-chip figures are the vendors' data sheets (dense bf16 peak, HBM capacity and bandwidth)."""

from __future__ import annotations

from dataclasses import dataclass

from ascl_jax.errors import UserError

TPU_INSTALL = 'pip install "ascl_jax[tpu]"  (or: pip install "jax[tpu]==0.10.2")'


@dataclass(frozen=True)
class Chip:
    name: str
    hbm_gib: float  # per chip
    bf16_tflops: float  # dense peak per chip
    hbm_gb_per_s: float
    ici_gb_per_s: float  # inter-chip interconnect, per chip, all links together (data sheet Gbps / 8)


CHIPS = {
    "v4": Chip("TPU v4", 32.0, 275.0, 1228.0, 300.0),
    "v5e": Chip("TPU v5e", 16.0, 197.0, 819.0, 200.0),
    "v5p": Chip("TPU v5p", 95.0, 459.0, 2765.0, 600.0),
    "v6e": Chip("TPU v6e", 32.0, 918.0, 1640.0, 448.0),
}


@dataclass(frozen=True)
class TpuSlice:
    """A slice: `chips` chips of one generation laid out as `topology` (libtpu's name), `hosts` hosts."""

    name: str
    generation: str
    topology: str
    chips: int
    hosts: int
    chips_per_host_bounds: tuple[int, int, int] | None = None  # None: libtpu's default for the generation

    @property
    def chip(self) -> Chip:
        return CHIPS[self.generation]


def _slices() -> dict[str, TpuSlice]:
    out: dict[str, TpuSlice] = {}
    # v5e / v6e: one host holds up to 8 chips (2x4); larger slices are 4-chip hosts (2x2).
    for gen in ("v5e", "v6e"):
        for chips, shape in ((1, "1x1"), (4, "2x2"), (8, "2x4"), (16, "4x4"), (32, "4x8"), (64, "8x8"),
                             (128, "8x16"), (256, "16x16")):
            dims = tuple(int(x) for x in shape.split("x"))
            single = chips <= 8
            bounds = (dims[0], dims[1], 1) if single else None
            out[f"{gen}-{chips}"] = TpuSlice(f"{gen}-{chips}", gen, f"{gen}:{shape}", chips,
                                             1 if single else chips // 4, bounds)
    # v4 / v5p: 4 chips a host (2x2x1); the name counts TensorCores, two per chip.
    for gen in ("v4", "v5p"):
        for cores, shape in ((8, "2x2x1"), (16, "2x2x2"), (32, "2x2x4"), (64, "2x4x4"), (128, "4x4x4"),
                             (256, "4x4x8"), (512, "4x8x8")):
            chips = cores // 2
            out[f"{gen}-{cores}"] = TpuSlice(f"{gen}-{cores}", gen, f"{gen}:{shape}", chips, max(1, chips // 4))
    return out


SLICES = _slices()


def resolve_slice(name: str) -> TpuSlice:
    """The slice called `name` (e.g. "v5p-32"; "v5litepod-8" is read as "v5e-8"); a UserError lists the
    valid names otherwise."""
    key = name.strip().lower().replace("v5litepod", "v5e").replace("v6litepod", "v6e")
    if key in SLICES:
        return SLICES[key]
    raise UserError(f"unknown TPU slice {name!r}; valid: {', '.join(SLICES)}")


def slice_devices(s: TpuSlice) -> list:
    """Compile-only devices of the slice (libtpu must be installed; no TPU is needed), in libtpu's order."""
    import importlib.util

    if importlib.util.find_spec("libtpu") is None:
        raise UserError(f"planning for a TPU slice needs libtpu (no TPU needed): {TPU_INSTALL}")
    import os

    # Compiling for a slice holds no TPU, so several planners (or a planner next to a run on a TPU VM) may
    # load libtpu at once; without this libtpu takes a machine-wide lock file and refuses the second.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    kwargs = {} if s.chips_per_host_bounds is None else {"chips_per_host_bounds": list(s.chips_per_host_bounds)}
    try:
        devices = topologies.get_topology_desc(platform="tpu", topology_name=s.topology, **kwargs).devices
    except Exception as exc:  # libtpu refuses the layout
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"libtpu cannot lay out {s.name} ({s.topology}): {first}") from None
    return list(devices)
