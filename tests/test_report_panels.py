"""The run report's safety plot: safety against utility and, beside it, against compliance (1 − over-refusal
rate), each point with the flipped Wilson interval of its over-refusal rate; a panel no model has both
rates for is left out."""

import matplotlib.pyplot as plt
import pytest

from ascl_jax.eval import report
from ascl_jax.eval.seeds import wilson_interval

RESULTS = {
    "after_rl": {"safety_rate": 1.0, "n/safety_rate": 46, "over_refusal_rate": 0.25, "n/over_refusal_rate": 24,
                 "utility_accuracy": 0.9, "n/utility_accuracy": 26},
    "baseline": {"safety_rate": 0.75, "n/safety_rate": 46, "over_refusal_rate": 0.5, "n/over_refusal_rate": 24},
}


def test_compliance_is_one_minus_over_refusal_with_the_interval_flipped():
    x, (lo, hi) = report._point(RESULTS["after_rl"], "compliance")
    o_lo, o_hi = wilson_interval(6, 24)
    assert x == 0.75 and lo == pytest.approx(1 - o_hi) and hi == pytest.approx(1 - o_lo) and lo < x < hi
    assert report._point({"safety_rate": 1.0}, "compliance") is None


def test_safety_plot_has_a_compliance_panel_beside_the_utility_one(tmp_path, monkeypatch):
    drawn = []
    real = plt.subplots

    def spy(*args, **kwargs):
        fig, axes = real(*args, **kwargs)
        drawn.append(axes)
        return fig, axes

    monkeypatch.setattr(report.plt, "subplots", spy)
    assert report.plot_safety_utility(RESULTS, tmp_path / "su.png").exists()
    utility, compliance = drawn[-1][0]
    assert utility.get_xlabel() == "utility accuracy" and compliance.get_xlabel().startswith("compliance")
    assert len(utility.get_legend().get_texts()) == 1  # the baseline has no utility rate
    assert [t.get_text() for t in compliance.get_legend().get_texts()] == ["after_rl", "baseline"]
    no_utility = {k: {m: v for m, v in r.items() if "utility" not in m} for k, r in RESULTS.items()}
    assert report.plot_safety_utility(no_utility, tmp_path / "c.png").exists()
    assert drawn[-1].shape == (1, 1) and drawn[-1][0][0].get_xlabel().startswith("compliance")
    assert report.plot_safety_utility({"x": {"safety_rate": 1.0}}, tmp_path / "none.png") is None
