"""Joining several processes into one JAX program (multi-controller: TPU pods, GPU clusters).

`initialize_from_env` reads ASCL_COORDINATOR_ADDRESS, ASCL_NUM_PROCESSES and ASCL_PROCESS_ID (what
`launch/slurm_gpu.sbatch` sets) and calls `jax.distributed.initialize`; on TPU VMs and under SLURM,
`ASCL_DISTRIBUTED=auto` lets JAX detect the cluster itself. It must run before any JAX computation."""

from __future__ import annotations

import os

from ascl_jax.errors import ConfigError

ENV_VARS = ("ASCL_COORDINATOR_ADDRESS", "ASCL_NUM_PROCESSES", "ASCL_PROCESS_ID")


def initialize_from_env(environ: dict[str, str] | None = None) -> bool:
    """Join the processes named by the environment; returns whether it did (False: single process)."""
    env = os.environ if environ is None else environ
    given = {k: env[k] for k in ENV_VARS if env.get(k)}
    auto = env.get("ASCL_DISTRIBUTED") == "auto"
    if not given and not auto:
        return False
    import jax

    # CPU processes (tests, laptops) need a cross-process collectives backend; GPUs and TPUs ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto and not given:
        jax.distributed.initialize()
        return True
    missing = [k for k in ENV_VARS if k not in given]
    if missing:
        raise ConfigError(f"multi-process start needs all of {', '.join(ENV_VARS)}; missing {', '.join(missing)}")
    try:
        num, pid = int(given["ASCL_NUM_PROCESSES"]), int(given["ASCL_PROCESS_ID"])
    except ValueError:
        raise ConfigError("ASCL_NUM_PROCESSES and ASCL_PROCESS_ID must be integers") from None
    if not 0 <= pid < num:
        raise ConfigError(f"ASCL_PROCESS_ID={pid} must be in [0, ASCL_NUM_PROCESSES={num})")
    jax.distributed.initialize(coordinator_address=given["ASCL_COORDINATOR_ADDRESS"], num_processes=num,
                               process_id=pid)
    return True
