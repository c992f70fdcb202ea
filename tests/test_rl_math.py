"""Advantages (GRPO, Dr.GRPO, RLOO, IFPO), token log-probs and the policy loss, against an independent NumPy
reference written with plain loops (float64), plus jit/grad, micro-batch and sharding invariance on a
real small model."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.sharding import NamedSharding, PartitionSpec as P

from ascl_jax.errors import ConfigError
from ascl_jax.rl.advantages import (
    ADVANTAGE_ESTIMATORS,
    behaviour_keys,
    get_advantage_estimator,
    grpo_advantages,
    ifpo_advantages,
    rloo_advantages,
)
from ascl_jax.rl.loss import LOSS_AGGREGATIONS, policy_loss, token_logprobs
from tests.rl_reference import ref_grpo, ref_ifpo, ref_ifpo_paper, ref_policy_loss, ref_rloo

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


# ------------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------------

_reward = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5, 0.3, 2.0]), st.floats(-5, 5, width=32))
_key_pool = st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=4, unique=True)


@st.composite
def grouped_batch(draw, max_groups=4, max_group_size=8):
    """(rewards f32[B], behaviour i32[B], G): ties and single-behaviour groups are common."""
    g = draw(st.integers(1, max_group_size))
    n_groups = draw(st.integers(1, max_groups))
    pool = draw(st.one_of(_key_pool, st.just([0, 1])))
    rewards, keys = [], []
    for _ in range(n_groups):
        if draw(st.booleans()) and draw(st.booleans()):  # a quarter of the groups: all rewards equal
            rewards += [draw(_reward)] * g
        else:
            rewards += draw(st.lists(_reward, min_size=g, max_size=g))
        if draw(st.booleans()):  # half of the groups: a single behaviour
            keys += [draw(st.sampled_from(pool))] * g
        else:
            keys += draw(st.lists(st.sampled_from(pool), min_size=g, max_size=g))
    return np.array(rewards, np.float32), np.array(keys, np.int32), g


_ifpo_options = st.fixed_dictionaries({
    "alpha": st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    "max_weight": st.sampled_from([None, None, 0.5, 1.5, 3.0]),
    "scope": st.sampled_from(["group", "batch"]),
    "scale": st.sampled_from(["std", "none"]),
    "positive_only": st.booleans(),
})


def _former(opts):
    """ifpo_advantages options that give the inverse_count weighting as ref_ifpo computes it from `opts`
    (its cap max_weight is w_max; no floor; alpha 1 by default)."""
    rest = dict(opts)
    return {"weighting": "inverse_count", "alpha": rest.pop("alpha", 1.0), "w_min": None,
            "w_max": rest.pop("max_weight", None), **rest}


@st.composite
def loss_batch(draw):
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 6))
    f = partial(st.floats, width=32)
    lp = np.array(draw(st.lists(f(-8, 0), min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)
    delta = st.one_of(f(-3, 3), st.sampled_from([0.0, -25.0, 25.0]))  # ±25: beyond the ±20 log-ratio clip
    d_old = np.array(draw(st.lists(delta, min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)
    d_ref = np.array(draw(st.lists(f(-3, 3), min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)
    # |A| >= 1e-3 or exactly 0: XLA on CPU flushes subnormal products to zero, which float64 NumPy does not,
    # so advantages near float32's smallest normal would test the hardware, not the loss.
    adv_values = st.one_of(f(-5, -0.0009765625), f(0.0009765625, 5), st.just(0.0))  # 2**-10
    adv = np.array(draw(st.lists(adv_values, min_size=b, max_size=b)), np.float32)
    rows = []
    for _ in range(b):
        kind = draw(st.sampled_from(["zeros", "ones", "random", "random"]))
        if kind == "zeros":
            rows.append([0.0] * t)
        elif kind == "ones":
            rows.append([1.0] * t)
        else:
            rows.append([float(x) for x in draw(st.lists(st.booleans(), min_size=t, max_size=t))])
    mask = np.array(rows, np.float32)
    return lp, (lp - d_old).astype(np.float32), (lp + d_ref).astype(np.float32), adv, mask


_loss_options = st.fixed_dictionaries({
    "clip_low": st.sampled_from([0.1, 0.2]),
    "clip_high": st.sampled_from([0.2, 0.28]),
    "dual_clip": st.sampled_from([None, 1.5, 3.0]),
    "kl_coef": st.sampled_from([0.0, 0.1]),
    "kl_estimator": st.sampled_from(["k1", "k3"]),
    "agg": st.sampled_from(AGGS),
    "norm_constant": st.sampled_from([None, 4.0]),
    "with_ref": st.booleans(),
})


# ------------------------------------------------------------------------------------------------------
# Advantages
# ------------------------------------------------------------------------------------------------------


@HYP
@given(grouped_batch(), st.sampled_from(["std", "none"]))
def test_grpo_and_rloo_match_reference(batch, scale):
    rewards, _, g = batch
    np.testing.assert_allclose(grpo_advantages(rewards, g, scale=scale), ref_grpo(rewards, g, scale), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rloo_advantages(rewards, g), ref_rloo(rewards, g), rtol=1e-5, atol=1e-5)


@HYP
@given(grouped_batch(), _ifpo_options)
def test_ifpo_matches_reference(batch, opts):
    rewards, keys, g = batch
    adv, w = ifpo_advantages(rewards, keys, g, **_former(opts))
    ref_adv, ref_w = ref_ifpo(rewards, keys, g, **opts)
    assert adv.dtype == jnp.float32 and w.dtype == jnp.float32 and adv.shape == w.shape == rewards.shape
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)


@HYP
@given(grouped_batch(), st.sampled_from(["std", "none"]), st.sampled_from(["group", "batch"]))
def test_ifpo_properties(batch, scale, scope):
    rewards, keys, g = batch
    base = grpo_advantages(rewards, g, scale=scale)
    for weighting in ("paper", "inverse_count"):
        # alpha = 0 is exactly GRPO, whatever the behaviours.
        adv0, w0 = ifpo_advantages(rewards, keys, g, weighting=weighting, alpha=0.0, scale=scale, scope=scope)
        np.testing.assert_array_equal(adv0, base)
        np.testing.assert_array_equal(w0, np.ones_like(rewards))
        # One behaviour everywhere (K = 1) gives weight exactly 1 for every alpha and scope.
        for alpha in (0.5, 1.0, 2.0):
            adv, w = ifpo_advantages(rewards, np.full_like(keys, 7), g, weighting=weighting, alpha=alpha, scale=scale,
                                     scope=scope)
            np.testing.assert_array_equal(w, np.ones_like(rewards))
            np.testing.assert_array_equal(adv, base)
    # inverse_count, alpha = 1, no bounds, scope group: each group's weights sum to G (equal share per behaviour).
    _, w1 = ifpo_advantages(rewards, keys, g, **_former({"scale": scale}))
    np.testing.assert_allclose(np.asarray(w1).reshape(-1, g).sum(axis=1), g, rtol=1e-5)


@HYP
@given(grouped_batch(), st.sampled_from([0.0, 1.0, -3.7, 0.1, 1e3]), _ifpo_options)
def test_equal_rewards_give_exactly_zero_advantages(batch, value, opts):
    _, keys, g = batch
    rewards = np.full(keys.shape, value, np.float32)
    for est in (grpo_advantages(rewards, g), grpo_advantages(rewards, g, scale="none"), rloo_advantages(rewards, g),
                ifpo_advantages(rewards, keys, g, **_former(opts))[0], ifpo_advantages(rewards, keys, g)[0]):
        np.testing.assert_array_equal(est, np.zeros_like(rewards))


def test_ifpo_inverse_count_worked_example():
    # G = 4, one consulting rollout among four: n = (1, 3), K = 2 -> w = 4/(2*1) = 2 and 4/(2*3) = 2/3.
    rewards = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    keys = np.array([1, 0, 0, 0], np.int32)
    former = _former({})
    adv, w = ifpo_advantages(rewards, keys, 4, **former)
    np.testing.assert_allclose(w, [2.0, 2 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(adv, np.array([2.0, -2 / 3, -2 / 3, 2 / 3]) * 1.0 / (1.0 + 1e-6), rtol=1e-5)
    _, w_cap = ifpo_advantages(rewards, keys, 4, **{**former, "w_max": 1.5})
    np.testing.assert_allclose(w_cap, [1.5, 2 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    adv_pos, w_pos = ifpo_advantages(rewards, keys, 4, **former, positive_only=True)
    np.testing.assert_allclose(w_pos, [2.0, 1.0, 1.0, 2 / 3], rtol=1e-6)  # Â = +1, -1, -1, +1
    np.testing.assert_allclose(adv_pos, w_pos * np.array([1, -1, -1, 1]) / (1 + 1e-6), rtol=1e-5)
    # Scope batch: counts over both groups (B = 8, keys 1 twice, 0 six times, K = 2).
    r2 = np.concatenate([rewards, rewards])
    k2 = np.array([1, 0, 0, 0, 0, 0, 0, 1], np.int32)
    _, wb = ifpo_advantages(r2, k2, 4, **former, scope="batch")
    np.testing.assert_allclose(wb, [2.0] + [8 / 12] * 6 + [2.0], rtol=1e-6)


def test_advantages_under_jit():
    rewards = np.array([1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 2, -1, 0, 3], np.float32)
    keys = np.array([5, -9, -9, 5, 1, 1, 1, 1, 2**31 - 1, 0, 0, -2**31], np.int32)
    for opts in ({}, {"alpha": 2.0, "max_weight": 3.0, "scope": "batch", "positive_only": True, "scale": "none"}):
        f = jax.jit(partial(ifpo_advantages, group_size=4, **_former(opts)))
        adv, w = f(rewards, keys)
        ref_adv, ref_w = ref_ifpo(rewards, keys, 4, **opts)
        np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    # traced alpha and cap are accepted too
    traced = jax.jit(lambda r, k, a, c: ifpo_advantages(r, k, 4, weighting="inverse_count", alpha=a, w_min=None, w_max=c))
    adv, _ = traced(rewards, keys, 0.5, 1.2)
    np.testing.assert_allclose(adv, ref_ifpo(rewards, keys, 4, alpha=0.5, max_weight=1.2)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(partial(grpo_advantages, group_size=3))(rewards), ref_grpo(rewards, 3), atol=1e-5)
    np.testing.assert_allclose(jax.jit(partial(rloo_advantages, group_size=6))(rewards), ref_rloo(rewards, 6), atol=1e-5)


def test_behaviour_keys():
    calls = np.array([0, 1, 3, 0], np.int32)
    cats = np.array([4, 2, 7, 9], np.int32)
    np.testing.assert_array_equal(behaviour_keys(calls), [0, 1, 1, 0])
    np.testing.assert_array_equal(behaviour_keys(calls, kind="num_calls"), [0, 1, 3, 0])
    np.testing.assert_array_equal(behaviour_keys(calls, cats, kind="category"), [-1, 2, 7, -1])
    with pytest.raises(ConfigError, match="rule_category_ids"):
        behaviour_keys(calls, kind="category")
    with pytest.raises(ConfigError, match="consulted"):
        behaviour_keys(calls, kind="often")


def test_estimator_registry():
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "drgrpo", "rloo", "ifpo"}
    rewards = np.array([1, 0, 0, 0, 2, 2, 1, 0], np.float32)
    keys = np.array([1, 0, 0, 0, 1, 1, 0, 3], np.int32)
    for name, expected in (
        ("grpo", ref_grpo(rewards, 4)),
        ("drgrpo", ref_grpo(rewards, 4, "none")),
        ("rloo", ref_rloo(rewards, 4)),
        ("ifpo", ref_ifpo_paper(rewards, keys, 4)[0]),
    ):
        adv, w = get_advantage_estimator(name)(rewards, keys, 4)
        np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
        assert w.shape == rewards.shape
    adv, _ = get_advantage_estimator("ifpo")(rewards, keys, 4, alpha=1.0, scope="batch")
    np.testing.assert_allclose(adv, ref_ifpo_paper(rewards, keys, 4, alpha=1.0, scope="batch")[0], rtol=1e-5, atol=1e-6)
    adv, _ = get_advantage_estimator("ifpo")(rewards, keys, 4, **_former({"alpha": 0.5, "scope": "batch"}))
    np.testing.assert_allclose(adv, ref_ifpo(rewards, keys, 4, alpha=0.5, scope="batch")[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="grpo, drgrpo, rloo, ifpo"):
        get_advantage_estimator("ppo")
    with pytest.raises(ConfigError, match="alpha"):
        get_advantage_estimator("grpo")(rewards, keys, 4, alpha=1.0)
    with pytest.raises(ConfigError, match="behaviour"):
        get_advantage_estimator("ifpo")(rewards, None, 4)


def test_advantage_validation():
    r = np.zeros(6, np.float32)
    k = np.zeros(6, np.int32)
    with pytest.raises(ValueError, match="multiple of group_size=4"):
        grpo_advantages(r, 4)
    with pytest.raises(ConfigError, match="group_size"):
        grpo_advantages(r, 0)
    with pytest.raises(ConfigError, match="'std', 'batch', 'none'"):
        grpo_advantages(r, 3, scale="mad")
    with pytest.raises(ConfigError, match="'group', 'batch'"):
        ifpo_advantages(r, k, 3, scope="prompt")
    with pytest.raises(ConfigError, match="alpha"):
        ifpo_advantages(r, k, 3, alpha=-1.0)
    with pytest.raises(ConfigError, match="w_max"):
        ifpo_advantages(r, k, 3, w_max=0.0)
    with pytest.raises(ConfigError, match="w_min"):
        ifpo_advantages(r, k, 3, w_min=-0.1)
    with pytest.raises(ConfigError, match="'paper', 'inverse_count'"):
        ifpo_advantages(r, k, 3, weighting="uniform")
    with pytest.raises(ValueError, match="behaviour"):
        ifpo_advantages(r, k[:3], 3)


# ------------------------------------------------------------------------------------------------------
# token_logprobs
# ------------------------------------------------------------------------------------------------------


def ref_token_logprobs(logits, targets, temperature):
    out = np.zeros(targets.shape)
    for i in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            # divide in float32 as the input does (1e4/0.7 is itself rounded), then work in float64
            row = (logits[i, t] / np.float32(temperature)).astype(np.float64)
            mx = max(row)
            lse = mx + math.log(sum(math.exp(v - mx) for v in row))
            out[i, t] = row[targets[i, t]] - lse
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs(temperature):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(2, 5, 11)) * 3).astype(np.float32)
    # A huge offset must neither overflow nor cost precision (max-shifted logsumexp). With a temperature
    # the scaled input itself is only good to a float32 ulp (XLA may multiply by 1/temperature), so the
    # offset there is kept to a size where that rounding is below the tolerance.
    logits[0, 0] += 1e4 if temperature == 1.0 else 100.0
    targets = rng.integers(0, 11, size=(2, 5)).astype(np.int32)
    f = jax.jit(partial(token_logprobs, temperature=temperature))
    out = f(logits, targets)
    assert out.shape == (2, 5) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref_token_logprobs(logits, targets, temperature), rtol=1e-5, atol=1e-5)
    # gradient: d lp / d logits = (onehot − softmax) / temperature
    g = jax.grad(lambda x: jnp.sum(token_logprobs(x, targets, temperature=temperature)))(logits)
    x = logits.astype(np.float64) / temperature
    sm = np.exp(x - x.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    onehot = np.eye(11)[targets]
    np.testing.assert_allclose(g, (onehot - sm) / temperature, atol=1e-5)
    with pytest.raises(ConfigError, match="temperature"):
        token_logprobs(logits, targets, temperature=0.0)


# ------------------------------------------------------------------------------------------------------
# policy_loss
# ------------------------------------------------------------------------------------------------------


def _loss_args(batch, opts):
    lp, old, ref, adv, mask = batch
    opts = dict(opts)
    with_ref = opts.pop("with_ref") or opts["kl_coef"] != 0
    return lp, old, adv, mask, (ref if with_ref else None), opts


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loss_batch(), _loss_options)
def test_policy_loss_matches_reference(batch, opts):
    lp, old, adv, mask, ref, opts = _loss_args(batch, opts)
    num, den, metrics = policy_loss(lp, old, adv, mask, ref_logprobs=ref, **opts)
    r_num, r_den, r_metrics, r_grad = ref_policy_loss(lp, old, adv, mask, ref, **opts)
    assert num.shape == den.shape == () and num.dtype == den.dtype == jnp.float32
    np.testing.assert_allclose(num, r_num, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(den, r_den, rtol=0, atol=0)
    assert set(metrics) == set(r_metrics)
    for k, v in r_metrics.items():
        np.testing.assert_allclose(metrics[k], v, rtol=1e-5, atol=1e-4, err_msg=k)
    grad = jax.grad(lambda x: policy_loss(x, old, adv, mask, ref_logprobs=ref, **opts)[0])(lp)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, r_grad, rtol=1e-5, atol=1e-5)


def test_policy_loss_worked_example():
    # Two tokens, A = +1 and A = -1, ratio e^{0.5} ~ 1.65 on both.
    lp = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)
    old = np.full_like(lp, -0.5)
    adv = np.array([1.0, -1.0], np.float32)
    mask = np.array([[1, 0], [1, 1]], np.float32)
    rho = math.exp(0.5)
    num, den, m = policy_loss(lp, old, adv, mask)
    # A > 0: clipped at 1.2 -> loss -1.2; A < 0: max(rho, 1.2) = rho on two tokens
    np.testing.assert_allclose(num, -1.2 + 2 * rho, rtol=1e-6)
    assert float(den) == 3.0
    assert float(m["clip_frac_sum"]) == 1.0 and float(m["clip_high_frac_sum"]) == 1.0
    num_d, _, m_d = policy_loss(lp, old, adv, mask, dual_clip=1.5)  # −A·c = 1.5 < rho on the A < 0 row
    np.testing.assert_allclose(num_d, -1.2 + 2 * 1.5, rtol=1e-6)
    assert float(m_d["dual_clip_frac_sum"]) == 2.0
    num_s, den_s, _ = policy_loss(lp, old, adv, mask, agg="seq_mean_token_mean")
    np.testing.assert_allclose(num_s, -1.2 + rho, rtol=1e-6)
    assert float(den_s) == 2.0
    num_n, den_n, _ = policy_loss(lp, old, adv, mask, agg="seq_mean_token_sum_norm")
    np.testing.assert_allclose(num_n, (-1.2 + 2 * rho) / 2, rtol=1e-6)  # default constant: T = 2
    assert float(den_n) == 2.0


def test_policy_loss_jit_grad_and_finite_differences():
    rng = np.random.default_rng(1)
    B, T = 3, 5
    lp = rng.uniform(-3, -0.5, size=(B, T)).astype(np.float32)
    old = (lp + rng.normal(0, 0.05, size=(B, T))).astype(np.float32)  # ratios near 1: away from the kinks
    ref = (lp + rng.normal(0, 0.3, size=(B, T))).astype(np.float32)
    adv = np.array([1.3, -0.7, 0.4], np.float32)
    mask = np.array([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32)
    for agg in AGGS:
        opts = dict(ref_logprobs=ref, kl_coef=0.1, kl_estimator="k3", agg=agg, clip_low=0.2, clip_high=0.28)

        def loss(x):
            num, den, _ = policy_loss(x, old, adv, mask, **opts)
            return num / den

        g = jax.jit(jax.grad(loss))(lp)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(jax.jit(loss)(lp), loss(lp), rtol=1e-6)
        h = 1e-3
        for i, t in [(0, 1), (0, 3), (1, 0), (1, 4), (2, 2), (0, 0)]:
            e = np.zeros_like(lp)
            e[i, t] = h
            fd = (float(loss(lp + e)) - float(loss(lp - e))) / (2 * h)
            np.testing.assert_allclose(g[i, t], fd, rtol=2e-2, atol=2e-3)
        r_num, r_den, _, r_grad = ref_policy_loss(lp, old, adv, mask, ref, clip_low=0.2, clip_high=0.28,
                                                  kl_coef=0.1, kl_estimator="k3", agg=agg)
        np.testing.assert_allclose(g, r_grad / r_den, rtol=1e-5, atol=1e-6)


def test_on_policy_old_logprobs_carry_no_gradient():
    # Passing old_logprobs = logprobs (one update per batch, no separate old pass) must give the
    # REINFORCE gradient −A·m / den, not 0: old_logprobs are constants to the loss.
    lp = np.array([[-1.0, -2.0, -0.5], [-0.3, -0.2, -4.0]], np.float32)
    adv = np.array([0.5, -2.0], np.float32)
    mask = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    g = jax.grad(lambda x: policy_loss(x, x, adv, mask)[0])(lp)
    np.testing.assert_allclose(g, -adv[:, None] * mask, rtol=1e-6)
    g_ref = jax.grad(lambda x: policy_loss(x, x, adv, mask, ref_logprobs=x, kl_coef=1.0)[0])(lp)
    np.testing.assert_allclose(g_ref, -adv[:, None] * mask + mask, rtol=1e-6)  # k1 = ℓ − sg(ℓ_ref)


def test_policy_loss_masked_positions_may_be_garbage():
    lp = np.array([[np.nan, -1.0, -np.inf]], np.float32)
    old = np.array([[np.inf, -1.2, np.nan]], np.float32)
    ref = np.array([[np.nan, -0.9, np.nan]], np.float32)
    mask = np.array([[0, 1, 0]], np.float32)
    for agg in AGGS:
        f = lambda x: policy_loss(x, old, np.ones(1, np.float32), mask, ref_logprobs=ref, kl_coef=0.1,
                                  kl_estimator="k3", agg=agg)  # noqa: E731
        num, den, metrics = f(lp)
        assert np.isfinite(num) and np.isfinite(den)
        assert all(np.isfinite(v) for v in metrics.values())
        g = jax.grad(lambda x: f(x)[0])(lp)
        assert np.all(np.isfinite(g)) and g[0, 0] == 0 and g[0, 2] == 0 and g[0, 1] != 0


def test_policy_loss_validation():
    x = np.zeros((2, 3), np.float32)
    a = np.zeros(2, np.float32)
    with pytest.raises(ConfigError, match="token_mean"):
        policy_loss(x, x, a, x, agg="mean")
    with pytest.raises(ConfigError, match="'k1', 'k3'"):
        policy_loss(x, x, a, x, ref_logprobs=x, kl_estimator="k2")
    with pytest.raises(ConfigError, match="ref_logprobs"):
        policy_loss(x, x, a, x, kl_coef=0.1)
    with pytest.raises(ConfigError, match="dual_clip"):
        policy_loss(x, x, a, x, dual_clip=0.9)
    with pytest.raises(ConfigError, match="clip_low"):
        policy_loss(x, x, a, x, clip_low=-0.1)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(x, x, np.zeros(3, np.float32), x)
    assert set(LOSS_AGGREGATIONS) == set(AGGS)


def test_top_level_exports():
    import ascl_jax

    from ascl_jax import (
        grpo_advantages as g,
        ifpo_advantages as i,
        policy_loss as p,
        rloo_advantages as r,
        token_logprobs as t,
    )

    assert (g, i, p, r, t) == (grpo_advantages, ifpo_advantages, policy_loss, rloo_advantages, token_logprobs)
    assert ascl_jax.__version__


# ------------------------------------------------------------------------------------------------------
# Micro-batch and sharding invariance on a real (tiny) model
# ------------------------------------------------------------------------------------------------------

B, T = 8, 16


@pytest.fixture(scope="module")
def tiny():
    from ascl_jax.models.registry import load_model

    m = load_model("tiny")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, m.config.vocab_size, size=(B, T)).astype(np.int32)
    positions = np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy()
    prompt = rng.integers(2, 7, size=B)
    length = rng.integers(9, T + 1, size=B)
    mask = (np.arange(T - 1)[None, :] >= prompt[:, None] - 1) & (np.arange(T - 1)[None, :] < length[:, None] - 1)
    mask = mask.astype(np.float32)
    mask[5] = 0.0  # a row with no loss token (e.g. a rollout that errored)
    logits, _ = jax.jit(lambda p, x, q: nnx.merge(m.graphdef, p)(x, q))(m.params, tokens, positions)
    lp = np.asarray(token_logprobs(logits[:, :-1], tokens[:, 1:]))
    old = (lp + rng.normal(0, 0.3, size=lp.shape)).astype(np.float32)  # some ratios clip, some dual-clip
    ref = (lp + rng.normal(0, 0.3, size=lp.shape)).astype(np.float32)
    rewards = rng.integers(0, 3, size=B).astype(np.float32)
    keys = np.array([1, 0, 0, 0, 1, 1, 1, 0], np.int32)
    adv, _ = ifpo_advantages(rewards, keys, 4)
    data = dict(tokens=tokens, positions=positions, old=old, ref=ref, adv=np.asarray(adv), mask=mask)
    return m, data


def _nums_dens(graphdef, params, d):
    """Numerators and denominators of the three aggregations, stacked [3]."""
    logits, _ = nnx.merge(graphdef, params)(d["tokens"], d["positions"])
    lp = token_logprobs(logits[:, :-1], d["tokens"][:, 1:])
    nums, dens = [], []
    for agg in AGGS:
        num, den, _ = policy_loss(lp, d["old"], d["adv"], d["mask"], ref_logprobs=d["ref"], kl_coef=0.05,
                                  kl_estimator="k3", dual_clip=1.5, clip_high=0.28, agg=agg)
        nums.append(num)
        dens.append(den)
    return jnp.stack(nums), jnp.stack(dens)


def _jac_fn(graphdef):
    def f(params, d):
        nums, dens = _nums_dens(graphdef, params, d)
        return nums, (nums, dens)

    return jax.jit(jax.jacrev(f, has_aux=True))


def _accumulate(m, data, n_micro):
    """Σ grads of numerators, Σ numerators, Σ denominators over n_micro equal micro-batches."""
    jac = _jac_fn(m.graphdef)
    size = B // n_micro
    g_sum, n_sum, d_sum = None, 0.0, 0.0
    for k in range(n_micro):
        part = {name: v[k * size:(k + 1) * size] for name, v in data.items()}
        g, (nums, dens) = jac(m.params, part)
        g_sum = g if g_sum is None else jax.tree.map(jnp.add, g_sum, g)
        n_sum, d_sum = n_sum + nums, d_sum + dens
    return g_sum, n_sum, d_sum


_WORST = [0.0]  # largest relative gradient difference seen (printed with -s)


def _assert_same(a, b, label):
    """Loss and gradient (per aggregation, per parameter leaf) agree to a relative 1e-5."""
    (ga, na, da), (gb, nb, db) = a, b
    np.testing.assert_array_equal(da, db)
    assert np.all(np.asarray(da) > 0)
    loss_a, loss_b = np.asarray(na) / np.asarray(da), np.asarray(nb) / np.asarray(db)
    assert np.all(np.abs(loss_a - loss_b) <= 1e-5 * np.abs(loss_a)), (label, loss_a, loss_b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ga), jax.tree.leaves(gb)):
        x = np.asarray(x) / np.asarray(da).reshape(-1, *([1] * (x.ndim - 1)))
        y = np.asarray(y) / np.asarray(db).reshape(-1, *([1] * (y.ndim - 1)))
        for i, agg in enumerate(AGGS):
            ref_norm = np.linalg.norm(x[i])
            assert ref_norm > 0, (label, agg, path)
            rel = np.linalg.norm(x[i] - y[i]) / ref_norm
            assert rel <= 1e-5, (label, agg, jax.tree_util.keystr(path), rel)
            _WORST[0] = max(_WORST[0], rel)


@pytest.mark.slow
def test_microbatch_invariance(tiny):
    m, data = tiny
    whole = _accumulate(m, data, 1)
    _assert_same(whole, _accumulate(m, data, 4), "1x8 vs 4x2")

    # The whole-batch gradient is that of num/den (den does not depend on the parameters).
    def loss(params):
        nums, dens = _nums_dens(m.graphdef, params, data)
        return nums[0] / dens[0]

    g = jax.jit(jax.grad(loss))(m.params)
    for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(whole[0])):
        y = np.asarray(y)[0] / float(whole[2][0])
        assert np.linalg.norm(np.asarray(x) - y) <= 1e-5 * np.linalg.norm(y)


@pytest.mark.slow
def test_sharded_batch_matches_single_device(tiny):
    from ascl_jax.parallel import MeshConfig, make_mesh

    m, data = tiny
    single = _accumulate(m, data, 4)
    mesh = make_mesh(MeshConfig(data=8, fsdp=1, tensor=1))
    with jax.set_mesh(mesh):
        params = jax.device_put(m.params, NamedSharding(mesh, P()))
        batch = {k: jax.device_put(v, NamedSharding(mesh, P("data"))) for k, v in data.items()}
        assert len(batch["tokens"].sharding.device_set) == 8
        g, (nums, dens) = _jac_fn(m.graphdef)(params, batch)
    _assert_same(single, (g, nums, dens), "4x2 single device vs 8-way data sharding")
    print(f"largest relative gradient difference across splits and sharding: {_WORST[0]:.2e}")
