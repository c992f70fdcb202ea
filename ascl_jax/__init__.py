"""ascl_jax: Adaptive Safe Context Learning with Inverse Frequency Policy Optimization, in JAX."""

__version__ = "0.1.0"
