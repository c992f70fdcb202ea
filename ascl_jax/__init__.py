"""ascl_jax: Adaptive Safe Context Learning with Inverse Frequency Policy Optimization, in JAX."""

import logging as _logging

__version__ = "0.1.0"


class _NoTorchNotice(_logging.Filter):
    """transformers announces at import that PyTorch is missing; this project uses its tokenizers,
    configs and chat templates only, never its models, so that one line is noise. Others pass."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return not record.getMessage().startswith("PyTorch was not found.")


_logging.getLogger("transformers").addFilter(_NoTorchNotice())

# Public jit-able functions (docs/design.md §2), imported lazily so that `import ascl_jax` stays light and does
# not import jax before a program has set its platform flags.
_LAZY = {
    "grpo_advantages": "ascl_jax.rl.advantages",
    "ifpo_advantages": "ascl_jax.rl.advantages",
    "rloo_advantages": "ascl_jax.rl.advantages",
    "mismatch_weights": "ascl_jax.rl.correction",
    "policy_loss": "ascl_jax.rl.loss",
    "token_logprobs": "ascl_jax.rl.loss",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ascl_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
