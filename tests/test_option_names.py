"""Each list of option names is written once: the config's choices are the implementing module's, the
loss options reach policy_loss by name, and the estimators' options are their functions' keywords."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import numpy as np
import pytest

from ascl_jax.errors import ConfigError
from ascl_jax.models.config import ROPE_TYPES, ModelConfig, RopeConfig
from ascl_jax.models.decoder import REMAT_POLICIES
from ascl_jax.rl import advantages, correction, loss
from ascl_jax.rl.config import AdvantageConfig, CorrectionConfig, LossConfig, RLConfig
from ascl_jax.rollout.layout import ROLLOUT_LAYOUTS


def _choices(cls, name):
    return typing.get_args(typing.get_type_hints(cls)[name])


def test_config_choices_are_the_implementations_names():
    assert _choices(AdvantageConfig, "estimator") == ("grpo", "drgrpo", "rloo", "ifpo")
    assert _choices(AdvantageConfig, "estimator") == tuple(advantages.ADVANTAGE_ESTIMATORS)
    assert _choices(AdvantageConfig, "behaviour") == advantages.BEHAVIOUR_KINDS
    assert _choices(AdvantageConfig, "weighting") == advantages.IFPO_WEIGHTINGS
    assert _choices(AdvantageConfig, "scope") == ("group", "batch")
    assert _choices(AdvantageConfig, "scale") == ("std", "batch", "none")
    assert _choices(LossConfig, "kl_estimator") == tuple(loss.KL_ESTIMATORS) == ("k1", "k3")
    assert _choices(LossConfig, "agg") == tuple(loss.LOSS_AGGREGATIONS)
    assert _choices(LossConfig, "seq_denominator") == loss.SEQ_DENOMINATORS == ("active", "all")
    assert _choices(LossConfig, "ratio_level") == loss.RATIO_LEVELS == ("token", "sequence")
    assert _choices(CorrectionConfig, "level") == correction.CORRECTION_LEVELS
    assert _choices(CorrectionConfig, "mode") == correction.CORRECTION_MODES
    assert _choices(RLConfig, "remat") == REMAT_POLICIES == (
        "none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
    assert _choices(RopeConfig, "type") == ROPE_TYPES == ("default", "linear", "llama3", "yarn")
    assert _choices(ModelConfig, "architecture") == ("llama", "qwen2", "qwen3")
    assert ROLLOUT_LAYOUTS == ("train", "replicated", "tensor")


def test_estimator_options_are_the_functions_keywords():
    assert advantages.ESTIMATOR_OPTIONS == {
        "grpo": ("scale", "eps", "std_ddof"),
        "drgrpo": ("eps",),
        "rloo": (),
        "ifpo": ("weighting", "alpha", "w_min", "w_max", "scope", "scale", "positive_only", "eps", "std_ddof"),
    }
    fields = {f.name for f in dataclasses.fields(AdvantageConfig)}
    for name, options in advantages.ESTIMATOR_OPTIONS.items():
        assert set(options) <= fields, name
        assert tuple(AdvantageConfig(estimator=name).estimator_options()) == options


def test_estimators_check_their_options():
    r = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    est = advantages.get_advantage_estimator("drgrpo")
    with pytest.raises(ConfigError, match="takes no option"):
        est(r, None, 4, std_ddof=1)  # fixed by the name, as scale is
    with pytest.raises(ConfigError, match="takes no option"):
        est(r, None, 4, scale="std")
    adv, w = est(r, None, 4, eps=1e-6)
    np.testing.assert_allclose(adv, r - r.mean(), rtol=1e-6)
    np.testing.assert_array_equal(w, np.ones(4, np.float32))
    with pytest.raises(ConfigError, match="needs behaviour keys"):
        advantages.get_advantage_estimator("ifpo")(r, None, 4)


def test_loss_config_fields_are_policy_loss_keywords_with_its_defaults():
    params = inspect.signature(loss.policy_loss).parameters
    keywords = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    options = LossConfig().loss_options()
    assert set(keywords) - set(options) == {"ref_logprobs", "is_weights"}  # per batch, not options
    assert options == {n: keywords[n] for n in options}
    custom = LossConfig(clip_high=0.28, agg="seq_mean_token_mean", ratio_level="sequence", kl_clamp=10.0)
    assert custom.loss_options() == {f.name: getattr(custom, f.name) for f in dataclasses.fields(LossConfig)}
