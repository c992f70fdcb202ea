"""IFPO's default weighting is Eq. 3 of Wang et al., arXiv 2602.13562 v1 (§4.3): the paper's worked values,
GRPO where a group has one behaviour, the clip bounds (this project's choice) and where they bind, jit, an
independent NumPy reference (tests/rl_reference.py), the config keys, and the earlier inverse_count weighting
still reachable with its former values."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascl_jax.config_io import load_config
from ascl_jax.errors import ConfigError
from ascl_jax.rl.advantages import (
    IFPO_ALPHA,
    IFPO_W_MAX,
    IFPO_W_MIN,
    IFPO_WEIGHTINGS,
    get_advantage_estimator,
    grpo_advantages,
    ifpo_advantages,
)
from ascl_jax.rl.config import AdvantageConfig
from ascl_jax.train_config import TrainConfig
from tests.rl_reference import ref_grpo, ref_ifpo, ref_ifpo_paper

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_CLIP = {"w_min": None, "w_max": None}
# The former default of the inverse_count weighting: alpha 1, no bounds.
FORMER = {"weighting": "inverse_count", "alpha": 1.0, **NO_CLIP}


def _split(consult: int, direct: int) -> np.ndarray:
    return np.array([1] * consult + [0] * direct, np.int32)


def _partitions(n: int, largest: int | None = None):
    """Every way to write n as a sum of positive parts, largest part first."""
    largest = n if largest is None else largest
    if n == 0:
        yield []
        return
    for part in range(min(n, largest), 0, -1):
        for rest in _partitions(n - part, part):
            yield [part, *rest]


def _keys_of(parts: list[int]) -> np.ndarray:
    return np.concatenate([np.full(p, i, np.int32) for i, p in enumerate(parts)])


@st.composite
def groups(draw, max_groups=4, max_group_size=9):
    """(rewards f32[B], behaviour i32[B], G), with single-behaviour groups and tied rewards common."""
    g = draw(st.integers(1, max_group_size))
    n = draw(st.integers(1, max_groups))
    reward = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 1.5, -0.4]), st.floats(-3, 3, width=32))
    rewards, keys = [], []
    for _ in range(n):
        rewards += [draw(reward)] * g if draw(st.booleans()) and draw(st.booleans()) else draw(
            st.lists(reward, min_size=g, max_size=g))
        pool = draw(st.sampled_from([[0, 1], [0, 1, 2, 5], [-7, 2**31 - 1]]))
        keys += [pool[0]] * g if draw(st.booleans()) else draw(st.lists(st.sampled_from(pool), min_size=g, max_size=g))
    return np.array(rewards, np.float32), np.array(keys, np.int32), g


_options = st.fixed_dictionaries({
    "alpha": st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    "w_min": st.sampled_from([None, 0.5, 0.9]),
    "w_max": st.sampled_from([None, 3.0, 1.2]),
    "scope": st.sampled_from(["group", "batch"]),
    "scale": st.sampled_from(["std", "none"]),
    "positive_only": st.booleans(),
})


def test_the_papers_worked_values():
    rewards = np.array([1.5, 0.0, 1.5, 1.5, 0.0, 1.5, 1.5, 0.0], np.float32)
    base = np.asarray(grpo_advantages(rewards, 8))
    for (consult, direct), (w_consult, w_direct) in (((7, 1), (0.829, 2.194)), ((6, 2), (0.845, 1.464)),
                                                     ((4, 4), (1.0, 1.0))):
        adv, w = ifpo_advantages(rewards, _split(consult, direct), 8)
        np.testing.assert_array_equal(np.round(np.asarray(w, np.float64), 3), [w_consult] * consult + [w_direct] * direct)
        np.testing.assert_array_equal(adv, np.asarray(w) * base)
        # before the clip the group's mean weight is 1 (the normaliser of Eq. 3)
        assert float(np.mean(w)) == pytest.approx(1.0, abs=1e-6)
    # A_i = w_i (R_i - mean) / (std + eps) with the paper's closed form of w for one rollout against G - 1
    adv, w = ifpo_advantages(rewards, _split(7, 1), 8)
    direct = 8 / (1 + np.sqrt(7))
    expected = np.array([8 / (7 + np.sqrt(7))] * 7 + [direct]) * (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    np.testing.assert_allclose(adv, expected, rtol=1e-5)


def test_the_defaults_are_the_papers_tau_and_this_projects_bounds():
    assert (IFPO_ALPHA, IFPO_W_MIN, IFPO_W_MAX) == (0.5, 0.5, 3.0)
    cfg = AdvantageConfig()
    assert (cfg.estimator, cfg.weighting, cfg.alpha, cfg.w_min, cfg.w_max) == ("ifpo", "paper", 0.5, 0.5, 3.0)
    assert IFPO_WEIGHTINGS == ("paper", "inverse_count")
    assert set(cfg.estimator_options()) == {"weighting", "alpha", "w_min", "w_max", "scope", "scale",
                                            "positive_only", "eps", "std_ddof"}


@HYP
@given(groups(), st.sampled_from(["std", "batch", "none"]), st.sampled_from(["group", "batch"]), st.sampled_from([0, 1]),
       st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.integers(-5, 5))
def test_one_behaviour_is_exactly_grpo(batch, scale, scope, ddof, alpha, key):
    rewards, _, g = batch
    same = np.full(rewards.shape, key, np.int32)
    adv, w = ifpo_advantages(rewards, same, g, alpha=alpha, scale=scale, scope=scope, std_ddof=ddof)
    np.testing.assert_array_equal(w, np.ones_like(rewards))
    np.testing.assert_array_equal(adv, grpo_advantages(rewards, g, scale=scale, std_ddof=ddof))


@HYP
@given(groups(), st.sampled_from(["std", "batch", "none"]))
def test_groups_with_one_behaviour_are_grpo_inside_a_mixed_batch(batch, scale):
    rewards, keys, g = batch
    adv, w = ifpo_advantages(rewards, keys, g, scale=scale)
    base = np.asarray(grpo_advantages(rewards, g, scale=scale)).reshape(-1, g)
    single = np.all(keys.reshape(-1, g) == keys.reshape(-1, g)[:, :1], axis=1)
    np.testing.assert_array_equal(np.asarray(w).reshape(-1, g)[single], 1.0)
    np.testing.assert_array_equal(np.asarray(adv).reshape(-1, g)[single], base[single])


@HYP
@given(groups(), _options)
def test_matches_the_numpy_reference_of_eq_3(batch, opts):
    rewards, keys, g = batch
    adv, w = ifpo_advantages(rewards, keys, g, **opts)
    ref_adv, ref_w = ref_ifpo_paper(rewards, keys, g, **opts)
    assert adv.dtype == w.dtype == np.float32 and adv.shape == w.shape == rewards.shape
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    if not opts["positive_only"] and opts["w_min"] is None and opts["w_max"] is None:
        sets = np.asarray(w).reshape(-1, g) if opts["scope"] == "group" else np.asarray(w)[None]
        np.testing.assert_allclose(sets.mean(axis=1), 1.0, rtol=1e-5)


def test_random_groups_against_the_reference():
    rng = np.random.default_rng(0)
    for g in (2, 5, 8, 16):
        rewards = rng.normal(size=6 * g).astype(np.float32)
        keys = rng.integers(0, rng.integers(1, 4), size=6 * g).astype(np.int32)
        for opts in ({}, NO_CLIP, {"alpha": 1.0, "w_min": 0.8, "w_max": 1.5}):
            adv, w = ifpo_advantages(rewards, keys, g, **opts)
            ref_adv, ref_w = ref_ifpo_paper(rewards, keys, g, **opts)
            np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)


def test_where_the_default_bounds_bind():
    rewards = np.linspace(0, 1, 16, dtype=np.float32)
    # G = 8: no split, with any number of distinct keys, reaches a bound (weights in [0.667, 2.194]).
    lows, highs = [], []
    for parts in _partitions(8):
        keys = _keys_of(parts)
        _, clipped = ifpo_advantages(rewards[:8], keys, 8)
        _, free = ifpo_advantages(rewards[:8], keys, 8, **NO_CLIP)
        np.testing.assert_array_equal(clipped, free)
        lows.append(float(np.min(free)))
        highs.append(float(np.max(free)))
    assert round(min(lows), 3) == 0.667 and round(max(highs), 3) == 2.194
    # G = 16, one rollout against 15: 3.283 unclipped, w_max = 3.0 binds; the other 15 keep 0.848.
    _, free = ifpo_advantages(rewards, _split(15, 1), 16, **NO_CLIP)
    _, clipped = ifpo_advantages(rewards, _split(15, 1), 16)
    assert round(float(free[-1]), 3) == 3.283 and float(clipped[-1]) == 3.0
    np.testing.assert_array_equal(clipped[:15], free[:15])
    assert round(float(free[0]), 3) == 0.848
    # two against 14 no longer binds (2.194)
    _, w = ifpo_advantages(rewards, _split(14, 2), 16)
    assert round(float(w[-1]), 3) == 2.194
    # G = 16 with many-valued keys: the lowest weight is 0.519, above w_min = 0.5
    _, low = ifpo_advantages(rewards, _keys_of([7] + [1] * 9), 16)
    assert round(float(low[0]), 3) == 0.519


def test_chosen_bounds_bind_exactly():
    rewards = np.array([1.5, 0.0, 1.5, 1.5, 0.0, 1.5, 1.5, 0.0], np.float32)
    keys = _split(7, 1)
    base = np.asarray(grpo_advantages(rewards, 8))
    adv, w = ifpo_advantages(rewards, keys, 8, w_min=0.9, w_max=2.0)
    np.testing.assert_array_equal(w, np.array([0.9] * 7 + [2.0], np.float32))
    np.testing.assert_array_equal(adv, np.asarray(w) * base)
    _, w = ifpo_advantages(rewards, keys, 8, w_min=None, w_max=1.5)
    np.testing.assert_allclose(w, [0.829] * 7 + [1.5], atol=5e-4)
    _, w = ifpo_advantages(rewards, keys, 8, w_min=0.85, w_max=None)
    np.testing.assert_allclose(w, [0.85] * 7 + [2.194], atol=5e-4)
    # positive_only: the weight applies where the GRPO advantage is positive, 1 elsewhere
    _, w = ifpo_advantages(rewards, keys, 8, positive_only=True)
    np.testing.assert_allclose(w, np.where(base > 0, np.r_[[0.829] * 7, 2.194], 1.0), atol=5e-4)


def test_under_jit_with_static_and_traced_options():
    rewards = np.array([1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 2, -1, 0, 3, 1, 1, 0, 0], np.float32)
    keys = np.array([5, -9, -9, 5, 1, 1, 1, 1, 2**31 - 1, 0, 0, -2**31, 1, 1, 1, 0], np.int32)
    for opts in ({}, {"alpha": 2.0, "w_min": 0.7, "w_max": 1.3, "scope": "batch", "positive_only": True,
                      "scale": "none"}):
        adv, w = jax.jit(partial(ifpo_advantages, group_size=4, **opts))(rewards, keys)
        ref_adv, ref_w = ref_ifpo_paper(rewards, keys, 4, **opts)
        np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    traced = jax.jit(lambda r, k, a, lo, hi: ifpo_advantages(r, k, 4, alpha=a, w_min=lo, w_max=hi))
    adv, w = traced(rewards, keys, 0.5, 0.9, 1.2)
    ref_adv, ref_w = ref_ifpo_paper(rewards, keys, 4, alpha=0.5, w_min=0.9, w_max=1.2)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-6)
    # the paper's worked values come out of the jitted function too
    _, w = jax.jit(partial(ifpo_advantages, group_size=8))(np.arange(8, dtype=np.float32), _split(6, 2))
    np.testing.assert_array_equal(np.round(np.asarray(w, np.float64), 3), [0.845] * 6 + [1.464] * 2)


@HYP
@given(groups(), st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.sampled_from([None, 0.5, 1.5, 3.0]))
def test_former_weighting_is_reachable_and_unchanged(batch, alpha, cap):
    rewards, keys, g = batch
    adv, w = ifpo_advantages(rewards, keys, g, **FORMER)
    ref_adv, ref_w = ref_ifpo(rewards, keys, g)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    adv, w = ifpo_advantages(rewards, keys, g, weighting="inverse_count", alpha=alpha, w_min=None, w_max=cap)
    ref_adv, ref_w = ref_ifpo(rewards, keys, g, alpha=alpha, max_weight=cap)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)


def test_former_weighting_through_the_config():
    rewards = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    keys = np.array([1, 0, 0, 0], np.int32)
    overrides = ["rl.advantage.weighting=inverse_count", "rl.advantage.alpha=1.0", "rl.advantage.w_min=null",
                 "rl.advantage.w_max=null"]
    cfg = load_config(TrainConfig, None, overrides).rl.advantage
    _, w = get_advantage_estimator(cfg.estimator)(rewards, keys, 4, **cfg.estimator_options())
    np.testing.assert_allclose(w, [2.0, 2 / 3, 2 / 3, 2 / 3], rtol=1e-6)  # 4/(2*1), 4/(2*3)
    # the same keys under the paper's weighting: (4/1)^0.5 = 2 and (4/3)^0.5 over their mean
    _, w = get_advantage_estimator("ifpo")(rewards, keys, 4, **AdvantageConfig().estimator_options())
    u = np.array([2.0] + [np.sqrt(4 / 3)] * 3)
    np.testing.assert_allclose(w, u / u.mean(), rtol=1e-6)
    np.testing.assert_allclose(ref_grpo(rewards, 4) * np.asarray(w), ref_ifpo_paper(rewards, keys, 4)[0], rtol=1e-5)


@pytest.mark.parametrize("overrides,pattern", [
    (["rl.advantage.weighting=uniform"], r"rl.advantage.weighting: 'uniform' is not one of paper, inverse_count"),
    (["rl.advantage.w_min=2", "rl.advantage.w_max=1.5"], r"rl.advantage.w_min=2.0 must be <= rl.advantage.w_max=1.5"),
    (["rl.advantage.w_min=-1"], r"rl.advantage.w_min=-1.0 must be >= 0"),
    (["rl.advantage.w_max=0"], r"rl.advantage.w_max=0.0 must be > 0"),
    (["rl.advantage.alpha=-0.5"], r"rl.advantage.alpha=-0.5 must be >= 0"),
    (["rl.advantage.max_weight=2"], r"unknown option 'rl.advantage.max_weight'"),
])
def test_bad_options_name_their_keys(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(TrainConfig, None, overrides)


def test_public_import():
    from ascl_jax import ifpo_advantages as public

    assert public is ifpo_advantages
