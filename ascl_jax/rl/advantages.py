"""Group-relative advantage estimators: GRPO, Dr.GRPO, RLOO and IFPO (docs/design.md §1).

All functions are pure and jit-able. Rows of one group are contiguous: rows ``g*G .. g*G+G-1`` are the G
rollouts of prompt g, so a batch of B rows holds B/G groups. ``group_size`` and every option are static
(Python values); only the arrays are traced, and ``alpha``, ``w_min``, ``w_max`` may be traced too.

IFPO's default weighting is Eq. 3 of Wang et al., "Mitigating the Safety-Utility Trade-off in LLM Alignment
via Adaptive Safe Context Learning", arXiv 2602.13562 v1 (ICML 2026), §4.3, with the paper's τ = 0.5.
The paper does not give its clip bounds w_min, w_max; the defaults 0.5 and 3.0 are this project's choice
(see ``ifpo_advantages``). The project's earlier weighting stays available as ``weighting="inverse_count"``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from ascl_jax.errors import ConfigError

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "BEHAVIOUR_KINDS",
    "BehaviourKind",
    "ESTIMATOR_OPTIONS",
    "EstimatorName",
    "IFPO_ALPHA",
    "IFPO_WEIGHTINGS",
    "IFPO_W_MAX",
    "IFPO_W_MIN",
    "IfpoWeighting",
    "Scale",
    "Scope",
    "behaviour_keys",
    "check_ifpo_options",
    "get_advantage_estimator",
    "grpo_advantages",
    "ifpo_advantages",
    "rloo_advantages",
]

# Each choice is written once, as a Literal (the config's field types); the tuples check values at run time.
Scale = Literal["std", "batch", "none"]
Scope = Literal["group", "batch"]
BehaviourKind = Literal["consulted", "consulted_ok", "num_calls", "category"]
_SCALES: tuple[str, ...] = get_args(Scale)
_SCOPES: tuple[str, ...] = get_args(Scope)
BEHAVIOUR_KINDS: tuple[str, ...] = get_args(BehaviourKind)

# "paper": Eq. 3 of arXiv 2602.13562 (mean-normalised inverse frequency); "inverse_count": (G / (K n_b))^alpha.
IfpoWeighting = Literal["paper", "inverse_count"]
IFPO_WEIGHTINGS: tuple[str, ...] = get_args(IfpoWeighting)
IFPO_ALPHA = 0.5  # the paper's τ
# Clip bounds of the weight, this project's choice (the paper gives none). At alpha 0.5 the weights of a
# group of 8 lie in [0.667, 2.194] whatever the keys, so neither bound binds at the paper's G = 8; in a group
# of 16 only one rollout against 15 binds (3.283 -> 3.0). See ifpo_advantages for the numbers.
IFPO_W_MIN = 0.5
IFPO_W_MAX = 3.0


def _check_choice(what: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{what}={value!r} is not valid; choose one of {', '.join(repr(c) for c in choices)}")


def _grouped(x: jax.Array, group_size, what: str) -> jax.Array:
    """[B] -> [B/G, G]; checks (at trace time) that G divides B."""
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) or group_size < 1:
        raise ConfigError(f"group_size must be a positive int (the rollouts per prompt), got {group_size!r}")
    if x.ndim != 1:
        raise ValueError(f"{what} must be 1-D [B], got shape {x.shape}")
    if x.shape[0] % group_size:
        raise ValueError(
            f"{what} has {x.shape[0]} rows, not a multiple of group_size={group_size}; "
            "each prompt's rollouts must be contiguous and complete"
        )
    return x.reshape(x.shape[0] // group_size, group_size)


def grpo_advantages(rewards: jax.Array, group_size: int, *, scale: Scale = "std", eps: float = 1e-6,
                    std_ddof: int = 0) -> jax.Array:
    """Group-relative advantages Â_i = (r_i − mean_g(r)) / (σ + eps).

    Args:
      rewards: f32[B], groups of ``group_size`` contiguous rows.
      group_size: G, static.
      scale: "std": σ is the group's std (GRPO); "batch": σ is the std of all B rewards, the mean still the
        group's (TRL ``scale_rewards="batch"``); "none": no division (Dr.GRPO: Â_i = r_i − mean_g(r)).
      eps: added to σ (verl 1e-6, TRL 1e-4).
      std_ddof: 0 (population std) or 1 (sample std, as torch.std in verl and TRL). With 1, a group (or
        batch) of one row has no std: its advantage is 0 (verl would pass the raw reward through, TRL nan).

    Returns:
      f32[B]. A group of one row, or of equal rewards, gets exactly 0.
    """
    _check_choice("scale", scale, _SCALES)
    if std_ddof not in (0, 1):
        raise ConfigError(f"std_ddof={std_ddof!r} must be 0 (population std) or 1 (sample std, as verl and TRL)")
    r = _grouped(jnp.asarray(rewards, jnp.float32), group_size, "rewards")
    # Centre on the group's first reward before averaging: with equal rewards r - r_0 is exactly 0, so
    # the advantage is exactly 0 (a plain float32 mean of equal values can be off by one ulp, which
    # divided by std + eps ~ 1e-6 would turn into a spurious advantage of order 0.01). It also removes
    # the cancellation error when rewards share a large offset.
    d = r - r[:, :1]
    centred = d - jnp.mean(d, axis=1, keepdims=True)
    if scale == "std":
        centred = centred / (_std(centred, group_size, std_ddof, axis=1) + eps)
    elif scale == "batch":
        flat = r.reshape(-1) - r.reshape(-1)[0]
        spread = flat - jnp.mean(flat)
        centred = centred / (_std(spread, spread.shape[0], std_ddof, axis=0) + eps)
    return centred.reshape(-1)


def _std(centred: jax.Array, n: int, ddof: int, axis: int) -> jax.Array:
    """The std of already-centred values over `axis` (n of them), keepdims; 0 where n <= ddof."""
    if n <= ddof:
        return jnp.zeros_like(jnp.sum(centred, axis=axis, keepdims=True))
    return jnp.sqrt(jnp.sum(centred * centred, axis=axis, keepdims=True) / (n - ddof))


def rloo_advantages(rewards: jax.Array, group_size: int) -> jax.Array:
    """Leave-one-out baseline: A_i = r_i − (Σ_{j≠i} r_j) / (G − 1).

    Args:
      rewards: f32[B], groups of ``group_size`` contiguous rows.
      group_size: G, static.

    Returns:
      f32[B]; for G = 1 there is no other rollout to form a baseline, and the advantage is 0 (as GRPO's).
    """
    r = _grouped(jnp.asarray(rewards, jnp.float32), group_size, "rewards")
    if group_size == 1:
        return jnp.zeros(r.shape[0], jnp.float32)
    d = r - r[:, :1]  # same exact-zero-on-ties shift as grpo_advantages
    others = (jnp.sum(d, axis=1, keepdims=True) - d) / (group_size - 1)
    return (d - others).reshape(-1)


def _distinct_and_counts(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For keys [N, M] (N independent sets of M keys): n [N, M] = how many keys of the row equal key j,
    and K [N, 1] = number of distinct keys in the row.

    Pairwise equality, so the keys can be arbitrary int32 values (no one-hot over a key range). K counts
    first occurrences (no equal key at a lower index), which is exact in integers."""
    m = keys.shape[1]
    eq = keys[:, :, None] == keys[:, None, :]  # [N, M, M]
    n = jnp.sum(eq, axis=2, dtype=jnp.int32)
    earlier = jnp.tril(jnp.ones((m, m), bool), k=-1)  # earlier[j, k] = k < j
    first = ~jnp.any(eq & earlier[None], axis=2)
    k = jnp.sum(first, axis=1, keepdims=True, dtype=jnp.int32)
    return n, k


def check_ifpo_options(weighting, alpha, w_min, w_max, prefix: str = "") -> None:
    """Raises ConfigError for an IFPO option out of range; traced values are not checked. ``prefix`` goes
    before each key in the message (the config passes "rl.advantage.")."""
    _check_choice(f"{prefix}weighting", weighting, IFPO_WEIGHTINGS)
    if isinstance(alpha, numbers.Real) and alpha < 0:
        raise ConfigError(f"{prefix}alpha={alpha!r} must be >= 0 (0 is plain GRPO; the paper's τ is 0.5)")
    if isinstance(w_min, numbers.Real) and w_min < 0:
        raise ConfigError(f"{prefix}w_min={w_min!r} must be >= 0 (or null for no lower bound)")
    if isinstance(w_max, numbers.Real) and w_max <= 0:
        raise ConfigError(f"{prefix}w_max={w_max!r} must be > 0 (or null for no upper bound)")
    if isinstance(w_min, numbers.Real) and isinstance(w_max, numbers.Real) and w_min > w_max:
        raise ConfigError(f"{prefix}w_min={w_min!r} must be <= {prefix}w_max={w_max!r}")


def _power(ratio: jax.Array, alpha) -> jax.Array:
    """ratio ** alpha, exact for a static alpha of 0 (all ones) or 1 (the ratio itself)."""
    if isinstance(alpha, numbers.Real) and alpha == 0:
        return jnp.ones_like(ratio)
    if isinstance(alpha, numbers.Real) and alpha == 1:
        return ratio
    return jnp.power(ratio, jnp.asarray(alpha, jnp.float32))


def ifpo_advantages(
    rewards: jax.Array,
    behaviour: jax.Array,
    group_size: int,
    *,
    weighting: IfpoWeighting = "paper",
    alpha: float = IFPO_ALPHA,
    w_min: float | None = IFPO_W_MIN,
    w_max: float | None = IFPO_W_MAX,
    scope: Scope = "group",
    scale: Scale = "std",
    positive_only: bool = False,
    eps: float = 1e-6,
    std_ddof: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Inverse Frequency Policy Optimization advantages A_i = w_i · Â_i.

    Â_i is the GRPO advantage (group-relative always). Counts are taken over the group of G rows
    (``scope="group"``, as the paper) or over the whole batch of B rows (``scope="batch"``, G then reads B):
    n_b rows have key b, K keys are distinct.

    ``weighting="paper"`` (Eq. 3 of arXiv 2602.13562, alpha is its τ):
        u_i = (G / n_{b_i})^alpha,  w_i = clip(u_i / mean_j u_j, w_min, w_max).
      Before the clip a group's weights average exactly 1. Worked values at G = 8, alpha = 0.5: 7 consult /
      1 direct -> 0.829 / 2.194; 6 / 2 -> 0.845 / 1.464; 4 / 4 -> 1 / 1.
    ``weighting="inverse_count"`` (this project's earlier definition):
        w_i = clip((G / (K · n_{b_i}))^alpha, w_min, w_max).
      With alpha = 1 and no bounds each behaviour's weights sum to G / K; that exact former default is
      ``alpha=1.0, w_min=None, w_max=None`` (its former cap ``max_weight=c`` is ``w_max=c``).

    Either way one behaviour in the set (K = 1) gives weight exactly 1 before the clip, so with bounds
    around 1 that group is exactly GRPO, and alpha = 0 is exactly GRPO everywhere.

    The bounds are this project's choice (the paper gives none). At alpha = 0.5 with two behaviours (the
    default key) the paper weights lie in [0.829, 2.194] for G = 8 and [0.829, 3.283] for G = 16 (the top
    being one rollout against G - 1: G / (1 + sqrt(G - 1))), and never below 2(sqrt(2) - 1) = 0.828 for any
    G. With many-valued keys (num_calls, category) the lowest is 0.667 for G = 8 and 0.519 for G = 16. So
    w_max = 3.0 leaves the paper's G = 8 untouched and binds only for one rollout in 16 or more (3.283 -> 3
    at 16, 4.872 -> 3 at 32): no rollout's advantage grows past 3x its GRPO value. w_min = 0.5 binds only
    for many-valued keys in groups over 16: the common behaviour keeps at least half its GRPO advantage.
    Once a bound binds, the group's mean weight is no longer 1.

    Args:
      rewards: f32[B].
      behaviour: i32[B] behaviour keys; any int values (see ``behaviour_keys``).
      group_size: G, static.
      weighting: "paper" or "inverse_count".
      alpha: exponent (the paper's τ), >= 0.
      w_min: lower clip bound of w (>= 0), or None for none.
      w_max: upper clip bound of w (> 0, >= w_min), or None for none.
      scope: "group" or "batch".
      scale: "std", "batch" or "none", for Â (see ``grpo_advantages``).
      positive_only: apply w only where Â_i > 0 (a rare behaviour's successes are amplified, not its
        failures); elsewhere the weight is 1.
      eps: added to the std.
      std_ddof: 0 or 1, for Â (see ``grpo_advantages``).

    Returns:
      (advantages f32[B], weights f32[B]); ``weights`` are the ones actually applied, so advantages ==
      weights * grpo_advantages(...) always (with positive_only, rows with Â_i <= 0 report 1).
    """
    _check_choice("scope", scope, _SCOPES)
    check_ifpo_options(weighting, alpha, w_min, w_max)
    base = grpo_advantages(rewards, group_size, scale=scale, eps=eps, std_ddof=std_ddof)
    keys = jnp.asarray(behaviour)
    if keys.shape != base.shape:
        raise ValueError(f"behaviour has shape {keys.shape}, rewards {base.shape}: one key per row is needed")
    keys = keys.astype(jnp.int32)

    # [groups, G] for scope group, [1, B] for scope batch: [1, B] makes the pairwise comparison [B, B].
    sets = _grouped(keys, group_size, "behaviour") if scope == "group" else keys[None, :]
    n, k = _distinct_and_counts(sets)
    size = jnp.float32(sets.shape[1])
    if weighting == "paper":
        u = _power(size / n.astype(jnp.float32), alpha)  # [S, M]; exactly 1.0 where n = size
        # u * size / sum(u) rather than u / mean(u): a set of equal u then gives x / x, exactly 1, where
        # a mean could be rounded by a reciprocal of the set size.
        weights = (u * size / jnp.sum(u, axis=1, keepdims=True)).reshape(-1)
    else:
        weights = _power(size / (k * n).astype(jnp.float32), alpha).reshape(-1)  # exactly 1.0 when K = 1
    if w_min is not None:
        weights = jnp.maximum(weights, jnp.asarray(w_min, jnp.float32))
    if w_max is not None:
        weights = jnp.minimum(weights, jnp.asarray(w_max, jnp.float32))
    if positive_only:
        weights = jnp.where(base > 0, weights, jnp.ones_like(weights))
    return weights * base, weights


def behaviour_keys(
    num_tool_calls: jax.Array,
    rule_category_ids: jax.Array | None = None,
    kind: BehaviourKind = "consulted",
    num_successful_calls: jax.Array | None = None,
) -> jax.Array:
    """Behaviour key per rollout, for ``ifpo_advantages``.

    Args:
      num_tool_calls: i32[B], how many times the rollout called ``consult_safety_rules``, malformed calls
        (an error came back instead of rules) included.
      rule_category_ids: i32[B] or None, the rule category the rollout consulted (required for
        kind="category").
      kind: "consulted" (default: 1 if it called the tool at least once, even with a malformed call, else
        0: the attempt is the behaviour), "consulted_ok" (1 if at least one call returned rules, as the
        `consult_rate` metric counts, else 0), "num_calls" (the number of calls itself), or "category"
        (the category id for rollouts that consulted; -1 for rollouts that did not, so "did not consult"
        is its own behaviour).
      num_successful_calls: i32[B] or None, the calls that returned rules (required for "consulted_ok").

    Returns:
      i32[B].
    """
    _check_choice("behaviour kind", kind, BEHAVIOUR_KINDS)
    calls = jnp.asarray(num_tool_calls).astype(jnp.int32)
    if kind == "consulted":
        return (calls > 0).astype(jnp.int32)
    if kind == "consulted_ok":
        if num_successful_calls is None:
            raise ConfigError("behaviour kind 'consulted_ok' needs num_successful_calls (one count per rollout)")
        return (jnp.asarray(num_successful_calls).astype(jnp.int32) > 0).astype(jnp.int32)
    if kind == "num_calls":
        return calls
    if rule_category_ids is None:
        raise ConfigError("behaviour kind 'category' needs rule_category_ids (one category id per rollout)")
    cats = jnp.asarray(rule_category_ids).astype(jnp.int32)
    return jnp.where(calls > 0, cats, jnp.int32(-1))


# --- registry --------------------------------------------------------------------------------------------
# Every entry has one signature, so a trainer can call whichever the config names:
#     estimator(rewards f32[B], behaviour i32[B] | None, group_size, **options) -> (advantages f32[B], weights f32[B])
# Non-IFPO estimators ignore `behaviour` and return weights of 1. An estimator's options are the keyword-only
# parameters of its function less the ones its name fixes, read here once, so a new option of a function is
# an option of its estimators (and, through ESTIMATOR_OPTIONS, of AdvantageConfig) without a second list.


class _Entry(NamedTuple):
    fn: Callable  # (rewards, [behaviour,] group_size, *, options...)
    weighted: bool = False  # takes the behaviour keys and returns its own weights (IFPO)
    fixed: tuple[tuple[str, Any], ...] = ()  # options the name sets: Dr.GRPO is GRPO without the std


_ENTRIES: dict[str, _Entry] = {
    "grpo": _Entry(grpo_advantages),
    # std_ddof only shapes the std, which Dr.GRPO does not divide by, so it is not one of its options.
    "drgrpo": _Entry(grpo_advantages, fixed=(("scale", "none"), ("std_ddof", 0))),
    "rloo": _Entry(rloo_advantages),
    "ifpo": _Entry(ifpo_advantages, weighted=True),
}


def _keyword_options(entry: _Entry) -> tuple[str, ...]:
    fixed = dict(entry.fixed)
    params = inspect.signature(entry.fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in fixed)


ESTIMATOR_OPTIONS: dict[str, tuple[str, ...]] = {name: _keyword_options(e) for name, e in _ENTRIES.items()}


def _check_options(name: str, options: dict) -> None:
    allowed = ESTIMATOR_OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"advantage estimator {name!r} takes no option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )


def _estimator(name: str, entry: _Entry) -> Callable:
    fixed = dict(entry.fixed)

    def estimator(rewards, behaviour=None, group_size: int = 1, **options):
        _check_options(name, options)
        if entry.weighted:
            if behaviour is None:
                raise ConfigError(f"advantage estimator {name!r} needs behaviour keys (one per rollout)")
            return entry.fn(rewards, behaviour, group_size, **options, **fixed)
        adv = entry.fn(rewards, group_size, **options, **fixed)
        return adv, jnp.ones_like(adv)

    what = "advantages and weights" if entry.weighted else "advantages with unit weights"
    estimator.__name__ = f"{name}_estimator"
    estimator.__doc__ = f"{name!r} {what}; options: {', '.join(ESTIMATOR_OPTIONS[name]) or 'none'}."
    return estimator


ADVANTAGE_ESTIMATORS: dict[str, Callable] = {name: _estimator(name, e) for name, e in _ENTRIES.items()}
# The config's type for `rl.advantage.estimator`: the registered names, in registration order.
EstimatorName = Literal[tuple(ADVANTAGE_ESTIMATORS)]


def get_advantage_estimator(name: str) -> Callable:
    """The estimator registered as ``name`` (see ``ADVANTAGE_ESTIMATORS`` for the common signature)."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown advantage estimator {name!r}; valid names: {', '.join(ADVANTAGE_ESTIMATORS)}"
        ) from None
