"""The options practitioners bring from verl and TRL: sampler/trainer mismatch correction (TIS / MIS),
GSPO's sequence ratio, DAPO's dynamic sampling, and the parity options (std ddof, batch std, k3 clamp,
sequence means over all rows, the successful-consult behaviour key), each against an independent NumPy
reference (tests/rl_reference.py)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascl_jax.errors import ConfigError
from ascl_jax.rl.advantages import behaviour_keys, get_advantage_estimator, grpo_advantages, ifpo_advantages
from ascl_jax.rl.config import AdvantageConfig, CorrectionConfig, DynamicSamplingConfig, LossConfig
from ascl_jax.rl.correction import mismatch_weights
from ascl_jax.rl.dynamic_sampling import groups_with_spread, select_groups
from ascl_jax.rl.loss import policy_loss
from ascl_jax.rl.rewards import RewardBatch
from tests.rl_reference import ref_grpo, ref_ifpo_paper, ref_mismatch_weights, ref_policy_loss

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
f32 = partial(st.floats, width=32)


@st.composite
def rewards_batch(draw):
    g = draw(st.integers(1, 6))
    n = draw(st.integers(1, 4))
    values = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), f32(-3, 3))
    rewards = []
    for _ in range(n):
        rewards += [draw(values)] * g if draw(st.booleans()) and draw(st.booleans()) else draw(
            st.lists(values, min_size=g, max_size=g))
    keys = draw(st.lists(st.integers(0, 2), min_size=n * g, max_size=n * g))
    return np.array(rewards, np.float32), np.array(keys, np.int32), g


# ----- advantages: std ddof, batch std


@HYP
@given(rewards_batch(), st.sampled_from(["std", "batch", "none"]), st.sampled_from([0, 1]),
       st.sampled_from([1e-6, 1e-4]))
def test_grpo_scale_and_ddof_match_reference(batch, scale, ddof, eps):
    rewards, keys, g = batch
    got = grpo_advantages(rewards, g, scale=scale, eps=eps, std_ddof=ddof)
    np.testing.assert_allclose(got, ref_grpo(rewards, g, scale, eps, ddof), rtol=2e-5, atol=2e-5)
    adv, w = ifpo_advantages(rewards, keys, g, scale=scale, eps=eps, std_ddof=ddof)
    ref_adv, ref_w = ref_ifpo_paper(rewards, keys, g, scale=scale, eps=eps, std_ddof=ddof)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5)
    np.testing.assert_allclose(adv, ref_adv, rtol=2e-5, atol=2e-5)


def test_grpo_ddof1_worked_example():
    # verl / TRL: torch.std is the sample std. Group (1, 0, 0, 1): mean 0.5, std sqrt(1/3).
    r = np.array([1, 0, 0, 1], np.float32)
    np.testing.assert_allclose(grpo_advantages(r, 4, std_ddof=1, eps=0.0), 0.5 / np.sqrt(1 / 3) * np.array([1, -1, -1, 1]),
                               rtol=1e-6)
    # a group of one: no std; the advantage is 0, not the raw reward and not nan
    np.testing.assert_array_equal(grpo_advantages(np.array([3.0], np.float32), 1, std_ddof=1), [0.0])
    # batch std: group means stay, the divisor is the std of all rewards
    r2 = np.array([1, 0, 1, 1], np.float32)
    np.testing.assert_allclose(grpo_advantages(r2, 2, scale="batch", eps=0.0), np.array([0.5, -0.5, 0, 0]) / np.std(r2),
                               rtol=1e-6)
    with pytest.raises(ConfigError, match="std_ddof"):
        grpo_advantages(r, 4, std_ddof=2)
    with pytest.raises(ConfigError, match="std_ddof"):
        AdvantageConfig(std_ddof=2)
    est = get_advantage_estimator("grpo")
    adv, _ = est(r, None, 4, **AdvantageConfig(estimator="grpo", std_ddof=1, eps=1e-4).estimator_options())
    np.testing.assert_allclose(adv, ref_grpo(r, 4, "std", 1e-4, 1), rtol=1e-6)


def test_behaviour_key_consulted_ok():
    calls = np.array([0, 1, 2, 1], np.int32)  # row 1: one malformed call; row 2: one good of two
    ok = np.array([0, 0, 1, 1], np.int32)
    np.testing.assert_array_equal(behaviour_keys(calls), [0, 1, 1, 1])
    np.testing.assert_array_equal(behaviour_keys(calls, kind="consulted_ok", num_successful_calls=ok), [0, 0, 1, 1])
    with pytest.raises(ConfigError, match="num_successful_calls"):
        behaviour_keys(calls, kind="consulted_ok")


# ----- the loss: GSPO, k3 clamp, all-rows denominator, importance weights


@st.composite
def loss_inputs(draw):
    b, t = draw(st.integers(1, 4)), draw(st.integers(1, 6))

    def grid(values):
        return np.array(draw(st.lists(values, min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)

    lp = grid(f32(-8, 0))
    old = (lp - grid(st.one_of(f32(-2, 2), st.sampled_from([0.0, -25.0, 25.0])))).astype(np.float32)
    ref = (lp + grid(st.one_of(f32(-3, 3), st.sampled_from([-15.0, 15.0])))).astype(np.float32)  # k3 of 15: ~3e6
    adv = np.array(draw(st.lists(st.one_of(f32(-5, -2**-10), f32(2**-10, 5), st.just(0.0)), min_size=b, max_size=b)),
                   np.float32)
    mask = grid(st.sampled_from([0.0, 1.0, 1.0]))
    if draw(st.booleans()):
        mask[0] = 0.0  # a row without loss tokens
    weights = grid(f32(0, 2))
    return lp, old, ref, adv, mask, weights


_new_options = st.fixed_dictionaries({
    "ratio_level": st.sampled_from(["token", "sequence"]),
    "kl_clamp": st.sampled_from([None, 10.0]),
    "seq_denominator": st.sampled_from(["active", "all"]),
    "agg": st.sampled_from(["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]),
    "dual_clip": st.sampled_from([None, 3.0]),
    "with_weights": st.booleans(),
    "kl_estimator": st.sampled_from(["k1", "k3"]),
})


@HYP
@given(loss_inputs(), _new_options)
def test_policy_loss_options_match_reference(inputs, opts):
    lp, old, ref, adv, mask, weights = inputs
    w = weights if opts.pop("with_weights") else None
    kw = dict(opts, kl_coef=0.1, clip_low=0.2, clip_high=0.28)
    num, den, metrics = policy_loss(lp, old, adv, mask, ref_logprobs=ref, is_weights=w, **kw)
    r_num, r_den, r_metrics, r_grad = ref_policy_loss(lp, old, adv, mask, ref=ref, is_weights=w, **kw)
    np.testing.assert_allclose(float(den), r_den, rtol=1e-6)
    np.testing.assert_allclose(float(num), r_num, rtol=2e-4, atol=1e-4 * max(1.0, abs(r_num)))
    for k, v in r_metrics.items():
        np.testing.assert_allclose(float(metrics[k]), v, rtol=2e-4, atol=1e-3 * max(1.0, abs(v)), err_msg=k)
    grad = jax.grad(lambda x: policy_loss(x, old, adv, mask, ref_logprobs=ref, is_weights=w, **kw)[0])(lp)
    np.testing.assert_allclose(grad, r_grad, rtol=2e-4, atol=1e-4 * max(1.0, np.abs(r_grad).max()))


def test_gspo_ratio_is_the_sequence_geometric_mean():
    # Row 0: log-ratios (0.2, -0.1, 0.5) -> s = exp(0.2); every token's ratio is s, and d loss / d lp_t is
    # -A·s / |y| per token under seq_mean_token_mean (GSPO), not the token ratio.
    lp = np.array([[-1.0, -2.0, -0.5]], np.float32)
    old = lp - np.array([[0.2, -0.1, 0.5]], np.float32)
    mask, adv = np.ones((1, 3), np.float32), np.array([1.0], np.float32)
    kw = dict(ratio_level="sequence", agg="seq_mean_token_mean", clip_low=0.5, clip_high=0.5)
    num, den, m = policy_loss(lp, old, adv, mask, **kw)
    s = np.exp(0.2)
    np.testing.assert_allclose([float(num), float(den)], [-s, 1.0], rtol=1e-6)
    np.testing.assert_allclose(float(m["ratio_sum"]), 3 * s, rtol=1e-6)
    np.testing.assert_allclose(float(m["seq_ratio_sum"]), s, rtol=1e-6)
    g = jax.grad(lambda x: policy_loss(x, old, adv, mask, **kw)[0])(lp)
    np.testing.assert_allclose(g, np.full((1, 3), -s / 3), rtol=1e-6)
    # clipped: s outside [1 - 0.1, 1 + 0.1] with A > 0 gives no gradient at all
    g = jax.grad(lambda x: policy_loss(x, old, adv, mask, **{**kw, "clip_low": 0.1, "clip_high": 0.1})[0])(lp)
    np.testing.assert_array_equal(g, np.zeros((1, 3)))


def test_loss_option_errors():
    x = np.zeros((1, 2), np.float32)
    for bad, match in (({"ratio_level": "row"}, "ratio_level"), ({"seq_denominator": "rows"}, "seq_denominator"),
                       ({"kl_clamp": 0.0}, "kl_clamp")):
        with pytest.raises(ConfigError, match=match):
            policy_loss(x, x, np.zeros(1, np.float32), x, **bad)
    with pytest.raises(ValueError, match="is_weights"):
        policy_loss(x, x, np.zeros(1, np.float32), x, is_weights=np.zeros((1, 3), np.float32))
    with pytest.raises(ConfigError, match="kl_clamp"):
        LossConfig(kl_clamp=-1.0)


def test_loss_under_jit_with_new_options():
    rng = np.random.default_rng(0)
    lp = rng.uniform(-5, 0, (4, 7)).astype(np.float32)
    old = (lp + rng.normal(0, 0.3, lp.shape)).astype(np.float32)
    mask = (rng.uniform(size=lp.shape) > 0.3).astype(np.float32)
    adv = rng.normal(size=4).astype(np.float32)
    w = rng.uniform(0, 2, lp.shape).astype(np.float32)
    kw = dict(ratio_level="sequence", seq_denominator="all", agg="seq_mean_token_mean")
    eager = policy_loss(lp, old, adv, mask, is_weights=w, **kw)[:2]
    jitted = jax.jit(lambda a, b, c, d, e: policy_loss(a, b, c, d, is_weights=e, **kw)[:2])(lp, old, adv, mask, w)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)


# ----- mismatch correction


@st.composite
def mismatch_inputs(draw):
    b, t = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    trainer = np.array(draw(st.lists(f32(-6, 0), min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)
    diff = st.one_of(f32(-1.5, 1.5), st.sampled_from([0.0, 30.0, -30.0]))
    sampler = trainer - np.array(draw(st.lists(diff, min_size=b * t, max_size=b * t)), np.float32).reshape(b, t)
    mask = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 1.0]), min_size=b * t, max_size=b * t)),
                    np.float32).reshape(b, t)
    return trainer, sampler.astype(np.float32), mask


@HYP
@given(mismatch_inputs(), st.sampled_from(["token", "sequence", "geometric"]), st.sampled_from(["truncate", "mask"]),
       st.sampled_from([2.0, 3.0]), st.sampled_from([None, 0.25]))
def test_mismatch_weights_match_reference(inputs, level, mode, cap, floor):
    trainer, sampler, mask = inputs
    w, new_mask, m = mismatch_weights(trainer, sampler, mask, level=level, mode=mode, cap=cap, floor=floor)
    r_w, r_mask, r_m = ref_mismatch_weights(trainer, sampler, mask, level, mode, cap, floor)
    np.testing.assert_allclose(w, r_w, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(new_mask, r_mask)
    assert np.all(np.asarray(w)[mask == 0] == 0)
    for k, v in r_m.items():
        if np.isinf(v):
            assert not np.any(mask) and np.isinf(float(m[k])), k
        else:
            np.testing.assert_allclose(float(m[k]), v, rtol=2e-5, atol=1e-5 * max(1.0, abs(v)), err_msg=k)


def test_mismatch_weights_worked_example_and_errors():
    trainer = np.log(np.array([[0.5, 0.5, 0.2]], np.float32))
    sampler = np.log(np.array([[0.25, 0.5, 0.4]], np.float32))  # token ratios 2, 1, 0.5
    mask = np.ones((1, 3), np.float32)
    w, _, _ = mismatch_weights(trainer, sampler, mask, level="token", cap=1.5)
    np.testing.assert_allclose(w, [[1.5, 1.0, 0.5]], rtol=1e-6)  # TIS: min(ρ, C), no lower bound
    w, m2, _ = mismatch_weights(trainer, sampler, mask, level="token", mode="mask", cap=1.5)
    np.testing.assert_allclose(w, [[0.0, 1.0, 0.0]], rtol=1e-6)  # MIS: outside [1/1.5, 1.5] leaves the loss
    np.testing.assert_array_equal(m2, [[0, 1, 0]])
    w, _, _ = mismatch_weights(trainer, sampler, mask, level="sequence", cap=5.0)
    np.testing.assert_allclose(w, [[1.0, 1.0, 1.0]], rtol=1e-6)  # Π ρ = 2 · 1 · 0.5
    with pytest.raises(ConfigError, match="level"):
        mismatch_weights(trainer, sampler, mask, level="none")
    with pytest.raises(ConfigError, match="cap"):
        CorrectionConfig(level="token", cap=0.0)
    with pytest.raises(ConfigError, match="floor"):
        CorrectionConfig(level="token", mode="mask", cap=2.0, floor=3.0)


# ----- dynamic sampling


def _ref_select(totals, g, needed):
    groups = [np.asarray(t, np.float64)[i:i + g] for t in totals for i in range(0, len(t), g)]
    spread = [i for i, grp in enumerate(groups) if max(grp) != min(grp)][:needed]
    flat = [i for i, grp in enumerate(groups) if max(grp) == min(grp)][: needed - len(spread)]
    return [i * g + j for i in spread + flat for j in range(g)], len(spread), len(flat)


@HYP
@given(st.integers(1, 4), st.integers(1, 4), st.lists(st.integers(0, 3), min_size=1, max_size=4), st.data())
def test_select_groups_matches_reference(g, needed, draw_sizes, data):
    draw_sizes = [max(n, needed) if i == 0 else n for i, n in enumerate(draw_sizes)]
    totals = [np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n * g, max_size=n * g)), np.float32)
              for n in draw_sizes]
    pick = select_groups(totals, g, needed)
    rows, kept, filled = _ref_select(totals, g, needed)
    assert pick.rows.tolist() == rows and (pick.kept, pick.filled) == (kept, filled)
    assert pick.drawn == sum(draw_sizes) and pick.dropped == sum(int((~groups_with_spread(t, g)).sum()) for t in totals)
    assert len(pick.rows) == needed * g


def test_select_groups_errors_and_reward_join():
    with pytest.raises(ValueError, match="2 groups drawn, 3 needed"):
        select_groups([np.zeros(4, np.float32)], 2, 3)
    with pytest.raises(ConfigError, match="max_draws"):
        DynamicSamplingConfig(enabled=True, max_draws=0)
    a = RewardBatch(total=np.array([1.0, 1.0]), values={"x": np.array([1.0, 2.0])}, masks={"x": np.array([True, False])},
                    verdicts=[None, None])
    b = RewardBatch(total=np.array([0.0, 1.0]), values={"x": np.array([3.0, 4.0])}, masks={"x": np.array([True, True])},
                    verdicts=[None, None])
    j = RewardBatch.joined([a, b], np.array([2, 3]))
    assert j.total.tolist() == [0.0, 1.0] and j.values["x"].tolist() == [3.0, 4.0] and j.masks["x"].tolist() == [True, True]


def test_equal_rewards_stay_zero_with_new_scales():
    r = jnp.full((6,), 0.7, jnp.float32)
    for scale in ("std", "batch"):
        for ddof in (0, 1):
            np.testing.assert_array_equal(grpo_advantages(r, 3, scale=scale, std_ddof=ddof), np.zeros(6))
