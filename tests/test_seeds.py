"""Intervals across seeds and of one evaluation, RL-step curves and their bands, the comparison text."""

import math

import numpy as np
import pytest

from ascl_jax.eval.seeds import (comparison_markdown, curve_band, rl_curve, smooth, t_interval,
                                 wilson_interval)


def test_t_interval_against_the_textbook():
    mean, lo, hi = t_interval([0.2, 0.4, 0.6])
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert mean == pytest.approx(0.4) and lo == pytest.approx(0.4 - half) and hi == pytest.approx(0.4 + half)
    assert t_interval([0.7]) == (0.7, None, None)
    with pytest.raises(ValueError):
        t_interval([])


def test_wilson_interval():
    lo, hi = wilson_interval(10, 20)  # a textbook case: p = 0.5, n = 20
    assert lo == pytest.approx(0.2993, abs=1e-4) and hi == pytest.approx(0.7007, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and 0 < wilson_interval(0, 10)[1] < 0.31
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(10, 10)[0] > 0.69


def test_curves_count_rl_steps_and_band_over_seeds():
    sft = [{"step": s, "sft/loss": 1.0} for s in range(1, 11)]
    runs = [sft + [{"step": 10 + k, "reward": 0.0, "consult_rate/utility": v} for k, v in enumerate(vals, 1)]
            for vals in ([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])]
    steps, values = rl_curve(runs[0], "consult_rate/utility")
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [0.0, 0.5, 1.0]
    assert smooth(np.array([0.0, 1.0, 2.0, 3.0]), window=2).tolist() == [0.0, 0.5, 1.5, 2.5]
    s, mean, lo, hi, raw = curve_band(runs, "consult_rate/utility", window=1)
    assert s.tolist() == [1, 2, 3] and mean.tolist() == [0.0, 0.75, 1.0] and len(raw) == 2
    assert lo[0] == hi[0] == 0.0 and lo[1] < 0.75 < hi[1]
    assert curve_band([sft], "consult_rate/utility") is None


def test_comparison_text_says_what_happened():
    final = {"grpo": [{"consult_rate/utility": v, "utility_accuracy": 0.9} for v in (0.9, 0.95, 1.0)],
             "ifpo": [{"consult_rate/utility": v, "utility_accuracy": 0.9} for v in (0.1, 0.15, 0.2)]}
    initial = [{"consult_rate/utility": 0.5, "utility_accuracy": 0.9}] * 3
    text = comparison_markdown(final, initial, [0, 1, 2], "setting", "plot.png")
    assert "3 seeds (0, 1, 2)" in text and "| consult_rate/utility | 0.500 [0.500, 0.500] | 0.950 [" in text
    assert "grpo 0.95, ifpo 0.15 (after SFT 0.50); the intervals separate them" in text
    assert "utility accuracy: grpo 0.90, ifpo 0.90 (after SFT 0.90); the intervals overlap" in text
    assert "![consult rate per class over RL steps, a band per estimator](plot.png)" in text


def test_report_plot_and_paragraph_at_the_edges(tmp_path):
    from ascl_jax.eval.report import plot_safety_utility, run_paragraph

    results = {"after_rl": {"safety_rate": 1.0, "n/safety_rate": 7, "utility_accuracy": 0.0, "n/utility_accuracy": 3},
               "baseline": {"safety_rate": 0.5, "n/safety_rate": 4, "utility_accuracy": 1.0, "n/utility_accuracy": 2}}
    assert plot_safety_utility(results, tmp_path / "su.png").exists()
    text = run_paragraph(results)
    assert "after_rl: safety 1.00 [0.65, 1.00] of 7; utility 0.00 [0.00, 0.56] of 3" in text


def test_comparison_gives_each_behaviours_reward_and_push():
    step = lambda r1, r0, a1, a0: {"reward": 1.0, "reward_mean/sensitive/consulted": r1,  # noqa: E731
                                   "reward_mean/sensitive/not_consulted": r0,
                                   "advantage_sum/sensitive/consulted": a1, "advantage_sum/sensitive/not_consulted": a0}
    curves = {"grpo": [[step(1.5, 0.8, 8.0, -8.0), step(1.5, 0.9, 6.0, -6.0)]],
              "ifpo": [[step(1.5, 0.8, 7.0, -10.0)], [step(1.4, 0.8, 7.0, -11.0)]]}
    final = {"grpo": [{"utility_accuracy": 1.0}], "ifpo": [{"utility_accuracy": 1.0}] * 2}
    text = comparison_markdown(final, [{"utility_accuracy": 1.0}], [0], "setting", None, curves)
    assert "| sensitive | 1.50 / 0.85 | +7.00 / -7.00 | 1.45 / 0.80 | +7.00 / -10.50 |" in text
    # runs without the per-behaviour metrics (older metrics files) get no table
    assert "advantage a step" not in comparison_markdown(final, [{}], [0], "setting", None, {"grpo": [[{"reward": 1}]]})
