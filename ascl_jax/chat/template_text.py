"""The chat templates shipped in `ascl_jax/chat/templates/`, read by name."""

from __future__ import annotations

from importlib import resources

from ascl_jax.errors import ConfigError


def chat_template_text(name: str) -> str:
    """The Jinja text of a shipped template (`qwen3`, `qwen2_5`, `chatml_tools`, `chatml_compact`, `llama3`,
    `deepseek_r1`; `.jinja` optional)."""
    filename = name if name.endswith(".jinja") else f"{name}.jinja"
    try:
        return resources.files("ascl_jax.chat").joinpath("templates", filename).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"No chat template named {name!r} in ascl_jax/chat/templates; choose one of: qwen3, qwen2_5, chatml_tools."
        ) from None
