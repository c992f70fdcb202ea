"""The benchmark commands run and print their numbers as JSON (no timing is asserted)."""

import json

import pytest

from ascl_jax.cli import main


@pytest.mark.slow
def test_bench_rollout_json(capsys):
    assert main(["bench", "rollout", "--model", "tiny", "--batch", "2", "--prompt-len", "8", "--new-tokens", "8",
                 "--splice-len", "8", "--repeats", "1", "--greedy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("decode_tokens_per_s", "decode_full_cache_tokens_per_s", "prefill_tokens_per_s",
                "tool_turn_ratio_extend", "tool_turn_ratio_reprefill", "tool_turn_ratio_extend_full_cache"):
        assert out[key] > 0


@pytest.mark.slow
def test_bench_rollout_longtail_json(capsys):
    assert main(["bench", "rollout", "--workload", "longtail", "--model", "tiny", "--batch", "16", "--group-size", "2",
                 "--prompt-len", "8", "--new-tokens", "40", "--chunk", "8", "--repeats", "1", "--greedy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["workload"] == "longtail" and out["tokens_identical"] is True
    assert out["static"]["slots"] == 16 and out["continuous"]["slots"] == 4
    assert out["kv_cache_ratio"] < 0.5 and out["continuous_over_static"] > 0
    assert out["generated_tokens"] > 0 and out["rows_at_budget"] >= 0


def test_bench_forward_json(capsys):
    assert main(["bench", "forward", "--model", "tiny", "--batch", "2", "--seq-len", "16", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["forward_tokens_per_s"] > 0 and out["params"] == 918912


@pytest.mark.parametrize("bench", ["attention", "logprobs"])
def test_bench_kernels_json(capsys, bench):
    extra = ["--heads", "2", "--kv-heads", "1", "--head-dim", "8", "--block", "16"] if bench == "attention" else \
        ["--vocab", "64", "--hidden", "8", "--chunk", "16"]
    assert main(["bench", bench, "--lengths", "32,48", *extra, "--repeats", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["T"] for r in rows] == [32, 48]
    other = "blockwise" if bench == "attention" else "chunked"
    assert all(r["dense_s"] > 0 and r[f"{other}_s"] > 0 and r[f"{other}_temp_mib"] >= 0 for r in rows)


def test_bench_kernels_bad_lengths(capsys):
    assert main(["bench", "attention", "--lengths", "a,b"]) == 2
    assert "--lengths 'a,b'" in capsys.readouterr().err
