"""Independent NumPy references of the RL math (float64, plain loops; deliberately not a vectorised copy of
the JAX code), shared by the tests of the advantages, the policy loss and their options."""

from __future__ import annotations

import math

import numpy as np


def ref_std(values, ddof=0):
    n = len(values)
    if n <= ddof:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((x - mean) ** 2 for x in values) / (n - ddof))


def ref_grpo(rewards, group_size, scale="std", eps=1e-6, std_ddof=0):
    r = [float(x) for x in rewards]
    out = [0.0] * len(r)
    batch_std = ref_std(r, std_ddof)
    for start in range(0, len(r), group_size):
        group = r[start:start + group_size]
        mean = sum(group) / len(group)
        std = ref_std(group, std_ddof) if scale == "std" else batch_std
        for j, x in enumerate(group):
            out[start + j] = x - mean if scale == "none" else (x - mean) / (std + eps)
    return np.array(out)


def ref_rloo(rewards, group_size):
    r = [float(x) for x in rewards]
    out = [0.0] * len(r)
    for start in range(0, len(r), group_size):
        group = r[start:start + group_size]
        for j, x in enumerate(group):
            if len(group) > 1:
                others = [y for k, y in enumerate(group) if k != j]
                out[start + j] = x - sum(others) / len(others)
    return np.array(out)


def ref_ifpo(rewards, behaviour, group_size, alpha=1.0, max_weight=None, scope="group", scale="std",
             positive_only=False, eps=1e-6, std_ddof=0):
    """The inverse_count weighting w_i = min((|G| / (K n_{b_i}))^alpha, max_weight), with its former
    defaults (alpha 1, no cap). Returns (advantages, weights), float64."""
    base = ref_grpo(rewards, group_size, scale, eps, std_ddof)
    b = [int(x) for x in behaviour]
    adv, weights = [], []
    for i in range(len(b)):
        if scope == "group":
            start = (i // group_size) * group_size
            members = b[start:start + group_size]
        else:
            members = b
        n = sum(1 for x in members if x == b[i])
        k = len(set(members))
        w = (len(members) / (k * n)) ** alpha
        if max_weight is not None:
            w = min(w, max_weight)
        if positive_only and not base[i] > 0:
            w = 1.0
        weights.append(w)
        adv.append(w * base[i])
    return np.array(adv), np.array(weights)


def ref_ifpo_paper(rewards, behaviour, group_size, alpha=0.5, w_min=0.5, w_max=3.0, scope="group", scale="std",
                   positive_only=False, eps=1e-6, std_ddof=0):
    """Eq. 3 of arXiv 2602.13562 by loops: u_i = (|G| / N_{m_i})^alpha, w_i = clip(u_i / mean_j u_j, w_min,
    w_max), A_i = w_i * GRPO advantage. Returns (advantages, weights), float64."""
    base = ref_grpo(rewards, group_size, scale, eps, std_ddof)
    b = [int(x) for x in behaviour]
    adv, weights = [], []
    for i in range(len(b)):
        if scope == "group":
            start = (i // group_size) * group_size
            members = b[start:start + group_size]
        else:
            members = b
        u = [(len(members) / sum(1 for y in members if y == x)) ** alpha for x in members]
        mine = (len(members) / sum(1 for y in members if y == b[i])) ** alpha
        w = mine / (sum(u) / len(u))
        if w_min is not None:
            w = max(w, w_min)
        if w_max is not None:
            w = min(w, w_max)
        if positive_only and not base[i] > 0:
            w = 1.0
        weights.append(w)
        adv.append(w * base[i])
    return np.array(adv), np.array(weights)


def _clipped(x, bound=20.0):
    """(clip(x, ±bound), d clip / d x)."""
    return min(max(x, -bound), bound), (1.0 if -bound < x < bound else 0.0)


def ref_policy_loss(lp, old, adv, mask, ref=None, clip_low=0.2, clip_high=0.2, dual_clip=None, kl_coef=0.0,
                    kl_estimator="k1", agg="token_mean", norm_constant=None, ratio_level="token", kl_clamp=None,
                    seq_denominator="active", is_weights=None):
    """Returns (num, den, metrics, d num / d lp). With ratio_level "sequence" every token's ratio is the
    row's s = exp(mean of the masked log-ratios) and d ratio_t / d lp_t = s (the other tokens' log-probs
    are held: GSPO-token's stop-gradient)."""
    B, T = lp.shape
    per_tok = np.zeros((B, T))
    dper_tok = np.zeros((B, T))  # d per-token loss / d lp
    m = {k: 0.0 for k in ("token_count", "seq_count", "pg_loss_sum", "kl_sum", "ratio_sum", "ppo_kl_sum",
                          "neg_logprob_sum", "advantage_sum", "clip_frac_sum", "clip_low_frac_sum",
                          "clip_high_frac_sum", "dual_clip_frac_sum", "seq_ratio_sum", "seq_ratio_dev_sum")}
    for i in range(B):
        a = float(adv[i])
        on = [t for t in range(T) if mask[i, t] > 0]
        row_tokens = sum(float(mask[i, t]) for t in on)
        seq_log = (sum(float(mask[i, t]) * (float(lp[i, t]) - float(old[i, t])) for t in on) / row_tokens
                   if on else 0.0)
        for t in on:
            mk = float(mask[i, t])
            x, xo = float(lp[i, t]), float(old[i, t])
            d_c, dd = _clipped(seq_log if ratio_level == "sequence" else x - xo)
            rho = math.exp(d_c)
            drho = rho * dd
            rho_c = min(max(rho, 1 - clip_low), 1 + clip_high)
            unclipped, clipped = -a * rho, -a * rho_c
            if clipped > unclipped:
                pg, dpg = clipped, 0.0  # only reachable with rho outside the clip range
            else:
                pg, dpg = unclipped, -a * drho
            dual = False
            if dual_clip is not None and a < 0 and pg > -a * dual_clip:
                pg, dpg, dual = -a * dual_clip, 0.0, True
            if is_weights is not None:
                pg, dpg = pg * float(is_weights[i, t]), dpg * float(is_weights[i, t])
            kl, dkl = 0.0, 0.0
            if ref is not None:
                xr = float(ref[i, t])
                if kl_estimator == "k1":
                    kl, dkl = x - xr, 1.0
                else:
                    e_c, de = _clipped(xr - x)
                    kl = math.exp(e_c) - e_c - 1.0
                    dkl = -(math.exp(e_c) - 1.0) * de
                if kl_clamp is not None:
                    if kl > kl_clamp or kl < -kl_clamp:
                        dkl = 0.0
                    kl = min(max(kl, -kl_clamp), kl_clamp)
            per_tok[i, t] = pg + kl_coef * kl
            dper_tok[i, t] = dpg + kl_coef * dkl
            m["token_count"] += mk
            m["pg_loss_sum"] += mk * pg
            m["kl_sum"] += mk * kl
            m["ratio_sum"] += mk * rho
            m["ppo_kl_sum"] += mk * (xo - x)
            m["neg_logprob_sum"] += mk * -x
            m["advantage_sum"] += mk * a
            m["clip_frac_sum"] += mk * (clipped > unclipped)
            m["clip_low_frac_sum"] += mk * (a < 0 and rho < 1 - clip_low)
            m["clip_high_frac_sum"] += mk * (a > 0 and rho > 1 + clip_high)
            m["dual_clip_frac_sum"] += mk * dual
        if row_tokens > 0:
            m["seq_count"] += 1
            s = math.exp(_clipped(seq_log)[0])
            m["seq_ratio_sum"] += s
            m["seq_ratio_dev_sum"] += abs(s - 1.0)
    num, den = 0.0, 0.0
    grad = np.zeros((B, T))
    for i in range(B):
        tokens = sum(float(mask[i, t]) for t in range(T) if mask[i, t] > 0)
        counts = tokens > 0 or seq_denominator == "all"
        if agg == "token_mean":
            for t in range(T):
                if mask[i, t] > 0:
                    num += mask[i, t] * per_tok[i, t]
                    grad[i, t] = mask[i, t] * dper_tok[i, t]
            den += tokens
        elif agg == "seq_mean_token_mean":
            if tokens > 0:
                for t in range(T):
                    if mask[i, t] > 0:
                        num += mask[i, t] * per_tok[i, t] / tokens
                        grad[i, t] = mask[i, t] * dper_tok[i, t] / tokens
            den += counts
        else:
            c = T if norm_constant is None else norm_constant
            for t in range(T):
                if mask[i, t] > 0:
                    num += mask[i, t] * per_tok[i, t] / c
                    grad[i, t] = mask[i, t] * dper_tok[i, t] / c
            den += counts
    return num, den, m, grad


def ref_mismatch_weights(trainer, sampler, mask, level, mode="truncate", cap=2.0, floor=None):
    """(weights, new mask, metrics) of rl/correction.py, by loops."""
    B, T = trainer.shape
    weights = np.zeros((B, T))
    new_mask = np.array(mask, np.float64)
    m = {"is_token_count": 0.0, "is_seq_count": 0.0, "is_weight_sum": 0.0, "is_weight_max": -math.inf,
         "is_weight_min": math.inf, "is_bounded_sum": 0.0, "is_bounded_seq_sum": 0.0, "log_ratio_abs_sum": 0.0}
    lo = 1.0 / cap if floor is None else floor
    for i in range(B):
        on = [t for t in range(T) if mask[i, t] > 0]
        d = {t: float(trainer[i, t]) - float(sampler[i, t]) for t in on}
        total = sum(float(mask[i, t]) * d[t] for t in on)  # mask is 0/1 here
        any_bounded = False
        for t in on:
            log_w = {"token": d[t], "sequence": total, "geometric": total / len(on)}[level]
            w = math.exp(_clipped(log_w)[0])
            bounded = w > cap if mode == "truncate" else (w > cap or w < lo)
            any_bounded |= bounded
            if mode == "truncate":
                weights[i, t] = min(w, cap)
            elif bounded:
                new_mask[i, t] = 0.0
            else:
                weights[i, t] = w
            m["is_token_count"] += float(mask[i, t])
            m["is_weight_sum"] += w
            m["is_weight_max"] = max(m["is_weight_max"], w)
            m["is_weight_min"] = min(m["is_weight_min"], w)
            m["is_bounded_sum"] += bounded
            m["log_ratio_abs_sum"] += abs(d[t])
        m["is_seq_count"] += bool(on)
        m["is_bounded_seq_sum"] += any_bounded
    return weights, new_mask, m
