"""An out-of-memory failure of a device program, turned into an error that names the settings to change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

from ascl_jax.errors import UserError


def is_out_of_memory(exc: BaseException) -> bool:
    """True for XLA's RESOURCE_EXHAUSTED (a program or a buffer that does not fit device memory)."""
    return isinstance(exc, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(exc)


@contextlib.contextmanager
def out_of_memory_hint(stage: str, fixes: str) -> Iterator[None]:
    """Re-raise an out-of-memory failure inside the block as a `UserError` naming `stage` and `fixes`.

    Asynchronous dispatch reports the failure where a result is first read, so the block must hold that
    read (a metric turned into a float) as well as the call that launched the program."""
    try:
        yield
    except jax.errors.JaxRuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"out of device memory in {stage} ({first}); {fixes}") from exc
