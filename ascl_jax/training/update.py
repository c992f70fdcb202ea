"""One optimizer update over micro-batches, shared by SFT and RL.

A loss is given as a numerator and a denominator (docs/design.md §2): the step minimises
sum(numerators) / sum(denominators) over all micro-batches, devices and hosts. Denominators never depend
on the parameters (they count tokens or sequences), so the gradient is sum(grad numerator) divided by
the global denominator, and the update does not depend on how the batch was split.

`params` are the trained parameters; `frozen` (LoRA: the base weights) joins them in the model but gets
no gradient and no optimizer state."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# loss_fn(model, micro_batch) -> (numerator f32[], denominator f32[], metric sums dict[str, f32[]])
LossFn = Callable[[nnx.Module, dict[str, jax.Array]], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


def split_micro_batches(batch: dict[str, jax.Array], num_micro: int) -> dict[str, jax.Array]:
    """[B, ...] -> [num_micro, B // num_micro, ...] for every array of the batch."""
    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {num_micro} micro-batches")
        return x.reshape(num_micro, x.shape[0] // num_micro, *x.shape[1:])

    return jax.tree.map(split, batch)


@functools.partial(jax.jit, static_argnames=("graphdef", "loss_fn", "tx", "num_micro"), donate_argnames=("params", "opt_state"))
def update_step(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    opt_state: Any,
    batch: dict[str, jax.Array],
    *,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    num_micro: int,
    frozen: nnx.State | None = None,
):
    """Accumulate over `num_micro` micro-batches (lax.scan), then one optimizer update.

    Returns (params, opt_state, metrics) where metrics hold the loss, the gradient norm, the skipped flag
    and the summed metric values of `loss_fn`. A non-finite loss or gradient skips the update (params
    and optimizer state unchanged) and reports `skipped = 1`."""
    grads, num, den, sums = accumulate_gradients(graphdef, params, batch, loss_fn=loss_fn, num_micro=num_micro,
                                                 frozen=frozen)
    return apply_gradients(params, opt_state, grads, num, den, sums, tx=tx)


def accumulate_gradients(graphdef, params, batch, *, loss_fn: LossFn, num_micro: int,
                         frozen: nnx.State | None = None):
    """(sum of numerator gradients, sum of numerators, sum of denominators, summed metrics)."""
    micro = split_micro_batches(batch, num_micro)
    rest = () if frozen is None else (frozen,)

    def numerator(p, mb):
        num, den, sums = loss_fn(nnx.merge(graphdef, p, *rest), mb)
        return num, (den, sums)

    def body(carry, mb):
        g_acc, n_acc, d_acc, s_acc = carry
        (num, (den, sums)), g = jax.value_and_grad(numerator, has_aux=True)(params, mb)
        return (jax.tree.map(jnp.add, g_acc, g), n_acc + num, d_acc + den, jax.tree.map(jnp.add, s_acc, sums)), None

    _, (_, sums_shape) = jax.eval_shape(numerator, params, jax.tree.map(lambda x: x[0], micro))
    init = (
        jax.tree.map(jnp.zeros_like, params),
        jnp.float32(0),
        jnp.float32(0),
        jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape),
    )
    (grads, num, den, sums), _ = jax.lax.scan(body, init, micro)
    return grads, num, den, sums


def apply_gradients(params, opt_state, grads, num, den, sums, *, tx):
    den = jnp.maximum(den, 1e-9)
    grads = jax.tree.map(lambda g: g / den, grads)
    loss = num / den
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": (~finite).astype(jnp.float32), **sums}
    return keep(new_params, params), keep(new_opt_state, opt_state), metrics
