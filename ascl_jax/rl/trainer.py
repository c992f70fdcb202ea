"""The RL trainer: the host loop that owns the state (parameters, optimizer state, step) and runs, per
step, data -> rollout -> rewards -> advantages -> policy updates -> metrics -> checkpoint.

Rollout and update share one set of weights on one mesh. Every random choice derives from the seed and
the step (prompt batches by random access into the grain pipeline, sampling keys from the seed, the step
and the row id), so a run stopped after step k and resumed is the same run."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.data.prompts import batch_prompts, prompt_batches
from ascl_jax.errors import UserError
from ascl_jax.models.lora import join
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.host import put_global, to_host
from ascl_jax.parallel.sharding import batch_sharding
from ascl_jax.rl.advantages import behaviour_keys, get_advantage_estimator
from ascl_jax.rl.batch import pack, rl_loss, sequence_logprobs
from ascl_jax.rl.config import LossConfig, RLConfig
from ascl_jax.rl.correction import mismatch_weights
from ascl_jax.rl.dynamic_sampling import groups_with_spread, select_groups
from ascl_jax.rl.overlong import overlong_penalty, truncated_loss_mask
from ascl_jax.rl.refusal import RefusalDetector
from ascl_jax.rl.rewards import RewardBatch, RewardFunction
from ascl_jax.rollout.layout import for_rollout
from ascl_jax.rollout.tool_loop import Rollout, RolloutConfig, run_rollout
from ascl_jax.rollout.trajectory import Prompt, Trajectory
from ascl_jax.rules.tool import ConsultSafetyRulesTool
from ascl_jax.training.checkpoint import Checkpointer
from ascl_jax.training.metrics_log import MetricsLog
from ascl_jax.training.optimizer import OptimizerConfig
from ascl_jax.training.state import TrainerState
from ascl_jax.training.update import update_step

log = logging.getLogger("ascl_jax")

ToolFactory = Callable[[Prompt], ConsultSafetyRulesTool | None]


class TrainingStopped(UserError):
    """Too many consecutive skipped updates (non-finite loss, gradients or rewards)."""


@dataclass(frozen=True)
class RLSettings:
    """What the RL trainer needs from the run config."""

    seed: int
    rollout: RolloutConfig
    rl: RLConfig
    optimizer: OptimizerConfig
    checkpoint_every: int = 10


def rollout_seed(seed: int, step: int) -> int:
    """The sampling seed of a step (row ids are folded in inside the rollout)."""
    return (seed * 1_000_003 + step) % (2**31 - 1)


class RLTrainer(TrainerState):
    def __init__(
        self,
        model: LoadedModel,
        fmt: ChatFormat,
        tool_for: ToolFactory,
        prompts: Sequence[Prompt],
        reward_fn: RewardFunction,
        settings: RLSettings,
        metrics: MetricsLog | None = None,
        checkpointer: Checkpointer | None = None,
        config_record: dict[str, Any] | None = None,
        step_offset: int = 0,
    ):
        """`step_offset` shifts the logged step numbers (e.g. after an SFT stage with its own steps)."""
        super().__init__(model, settings.optimizer, checkpointer, config_record)
        self.fmt, self.tool_for, self.prompts = fmt, tool_for, list(prompts)
        self.reward_fn, self.settings, self.metrics = reward_fn, settings, metrics
        self.step_offset = step_offset
        rl = settings.rl
        self.batches = prompt_batches(len(self.prompts), rl.prompts_per_step, settings.seed)
        # Dynamic sampling's further draws come from a stream of their own, so the first draw of every step
        # is the prompt batch that a run without it would see.
        self.extra_batches = prompt_batches(len(self.prompts), rl.prompts_per_step, settings.seed + 1)
        # The reference policy differs from the policy only in what is trained: a copy of that part.
        self.ref_params = jax.tree.map(jnp.copy, self.params) if rl.loss.kl_coef > 0 else None
        self.step = 0
        self.consecutive_skips = 0
        self.detector = RefusalDetector()
        sampling = settings.rollout.sampling
        self.temperature = 1.0 if sampling.greedy else sampling.temperature
        # One loss function object per (loss config, temperature): jit caches on its identity.
        self.loss_fn = bind_rl_loss(rl.loss, self.temperature, rl.remat)
        rows = rl.prompts_per_step * settings.rollout.group_size
        if rows % rl.micro_batches:
            raise UserError(f"rl.micro_batches={rl.micro_batches} must divide the {rows} rollouts of a step")
        self.estimator = get_advantage_estimator(rl.advantage.estimator)

    # ----- state

    def restore_latest(self) -> bool:
        """Load the newest checkpoint if there is one; returns whether it did."""
        meta = self.load_newest()
        if meta is None:
            return False
        self.step = int(meta["rl_step"])
        self.consecutive_skips = int(meta.get("consecutive_skips", 0))
        if self.metrics is not None:
            self.metrics.truncate_after(self.step + self.step_offset)
        return True

    def save(self) -> None:
        self.save_checkpoint(self.step + self.step_offset,
                             {"rl_step": self.step, "consecutive_skips": self.consecutive_skips})

    # ----- the loop

    def run(self, steps: int | None = None, on_step: Callable[[int, dict], None] | None = None) -> None:
        """Train until `steps` (default: rl.steps) RL steps are done, checkpointing as configured."""
        total = self.settings.rl.steps if steps is None else steps
        every = self.settings.checkpoint_every
        while self.step < total:
            metrics = self.train_step()
            if on_step is not None:
                on_step(self.step, metrics)
            if every and (self.step % every == 0 or self.step == total):
                self.save()

    def train_step(self) -> dict[str, Any]:
        s = self.settings
        g = s.rollout.group_size
        dyn = s.rl.dynamic_sampling
        t0 = time.perf_counter()
        policy, reshard_seconds = for_rollout(self.current_model(), s.rollout.layout)
        draws: list[_Draw] = []
        have = 0
        for k in range(dyn.max_draws if dyn.enabled else 1):
            draws.append(self._draw(policy, k))
            have += int(groups_with_spread(draws[-1].total, g).sum())
            if have >= s.rl.prompts_per_step:
                break
        del policy  # the rollout layout's copy of the weights, if any, is freed before the update
        if dyn.enabled:
            pick = select_groups([d.total for d in draws], g, s.rl.prompts_per_step)
            rows = pick.rows
        else:
            rows = np.arange(len(draws[0].trajs))
        every = [t for d in draws for t in d.trajs]
        trajs = [every[i] for i in rows]
        rewards = RewardBatch.joined([d.rewards for d in draws], rows)
        total = np.concatenate([d.total for d in draws])[rows]
        penalty = np.concatenate([d.penalty for d in draws])[rows]
        t2 = time.perf_counter()
        metrics = self._rollout_metrics(trajs, rewards)
        stats = [d.rollout.stats for d in draws]
        generated = sum(d.generated for d in draws)
        rollout_wall = sum(d.rollout_wall for d in draws)
        metrics.update(rollout_seconds=sum(d.rollout.device_seconds for d in draws),
                       tool_seconds=sum(d.rollout.tool_seconds for d in draws),
                       reward_seconds=sum(d.reward_seconds for d in draws),
                       prefill_seconds=sum(st.prefill_seconds for st in stats),
                       decode_seconds=sum(st.decode_seconds for st in stats),
                       extend_seconds=sum(st.extend_seconds for st in stats), reshard_seconds=reshard_seconds,
                       slot_occupancy=_mean([st.occupancy for st in stats]),
                       rollout_tokens_per_s=generated / max(rollout_wall, 1e-9),
                       truncated_fraction=_mean([t.truncated for t in trajs]))
        if s.rl.overlong.buffer:
            metrics["overlong_penalty_mean"] = float(penalty.mean())
        if dyn.enabled:
            metrics.update({"dynamic/draws": len(draws), "dynamic/groups_drawn": pick.drawn,
                            "dynamic/groups_dropped": pick.dropped, "dynamic/groups_filled": pick.filled})

        if not np.all(np.isfinite(total)):
            bad = [trajs[i].prompt.id for i in np.nonzero(~np.isfinite(total))[0]]
            metrics.update(self._skip(f"non-finite rewards for prompts {sorted(set(bad))}"))
        else:
            metrics.update(self._update(trajs, total, g))
        metrics["update_seconds"] = time.perf_counter() - t2
        metrics["step_seconds"] = time.perf_counter() - t0
        self.step += 1
        if self.metrics is not None:
            self.metrics.write(self.step + self.step_offset, metrics)
        return metrics

    def _draw(self, policy: LoadedModel, k: int) -> _Draw:
        """Rollout batch k of this step (k > 0 only under dynamic sampling: prompts from a second stream,
        row ids after the earlier draws'), with its rewards; the total includes the over-long penalty."""
        s = self.settings
        t0 = time.perf_counter()
        if k == 0:
            prompts = batch_prompts(self.prompts, self.batches, self.step)
        else:
            per_step = s.rl.dynamic_sampling.max_draws - 1
            prompts = batch_prompts(self.prompts, self.extra_batches, self.step * per_step + k - 1)
        tools = [self.tool_for(p) for p in prompts]
        rows = len(prompts) * s.rollout.group_size
        rollout = run_rollout(policy, self.fmt, tools, prompts, s.rollout, seed=rollout_seed(s.seed, self.step),
                              row_offset=k * rows)
        trajs = rollout.trajectories
        t1 = time.perf_counter()
        rewards = self.reward_fn(trajs)
        over = s.rl.overlong
        generated = np.array([len(t.tokens) - t.prompt_len for t in trajs])
        penalty = overlong_penalty(generated, s.rollout.max_new_tokens, over.buffer, over.penalty)
        total = np.asarray(rewards.total, np.float32) + penalty
        return _Draw(trajs=trajs, rollout=rollout, rewards=rewards, total=total, penalty=penalty,
                     generated=int(generated.sum()), rollout_wall=t1 - t0, reward_seconds=time.perf_counter() - t1)

    def _skip(self, why: str) -> dict[str, Any]:
        self.consecutive_skips += 1
        log.warning("step %d: update skipped: %s", self.step + 1, why)
        if self.consecutive_skips >= self.settings.rl.max_consecutive_skips:
            raise TrainingStopped(
                f"stopped after {self.consecutive_skips} consecutive skipped updates (last: {why}); "
                "lower optimizer.learning_rate or check the reward functions"
            )
        return {"skipped": 1.0}

    def _update(self, trajs: list[Trajectory], total: np.ndarray, g: int) -> dict[str, Any]:
        rl, model = self.settings.rl, self.model
        behaviour = behaviour_keys(
            jnp.asarray([t.num_tool_calls for t in trajs], jnp.int32),
            jnp.asarray([_category_id(t) for t in trajs], jnp.int32),
            kind=rl.advantage.behaviour,
            num_successful_calls=jnp.asarray([sum(x.error is None for x in t.tool_turns) for t in trajs], jnp.int32),
        )
        adv, weights = self.estimator(jnp.asarray(total, jnp.float32), behaviour, g, **rl.advantage.estimator_options())
        host = pack(trajs, model.config.pad_token_id or 0)
        masked = 0
        if rl.mask_truncated:
            truncated = np.array([t.truncated for t in trajs])
            host["loss_mask"] = truncated_loss_mask(host["loss_mask"], truncated)
            masked = int(truncated.sum())
        put = lambda x: put_global(x, batch_sharding(model.mesh, model.rules, x.shape))  # noqa: E731
        tokens = put(host["tokens"])
        policy = join(self.params, self.frozen)
        with jax.set_mesh(model.mesh):
            old_lp, entropy = sequence_logprobs(model.graphdef, policy, tokens, temperature=self.temperature,
                                                num_micro=rl.micro_batches)
            batch = {"tokens": tokens, "loss_mask": put(host["loss_mask"]), "old_logprobs": old_lp,
                     "advantages": put(np.asarray(adv))}
            corr, is_sums = rl.correction, {}
            if corr.level != "none":
                batch["is_weights"], batch["loss_mask"], is_sums = _mismatch_weights(
                    old_lp, put(host["sampler_logprobs"]), batch["loss_mask"], level=corr.level, mode=corr.mode,
                    cap=corr.cap, floor=corr.floor)
            if self.ref_params is not None:
                batch["ref_logprobs"], _ = sequence_logprobs(model.graphdef, join(self.ref_params, self.frozen), tokens,
                                                             temperature=self.temperature, num_micro=rl.micro_batches)
            out: dict[str, Any] = {}
            skipped = 0.0
            for _ in range(rl.epochs):
                self.params, self.opt_state, m = update_step(
                    model.graphdef, self.params, self.opt_state, batch, loss_fn=self.loss_fn, tx=self.tx,
                    num_micro=rl.micro_batches, frozen=self.frozen,
                )
                skipped = max(skipped, float(m["skipped"]))
                out = m
        mask = host["loss_mask"]
        tokens_n = max(float(mask.sum()), 1.0)
        sampler, trainer = host["sampler_logprobs"], to_host(old_lp)
        agree = np.abs(sampler - trainer) * mask
        res: dict[str, Any] = {
            "loss": float(out["loss"]),
            "grad_norm": float(out["grad_norm"]),
            "skipped": skipped,
            "clip_frac": float(out["clip_frac_sum"]) / max(float(out["token_count"]), 1.0),
            "kl": float(out["kl_sum"]) / max(float(out["token_count"]), 1.0),
            "entropy": float((to_host(entropy) * mask).sum() / tokens_n),
            "sampler_trainer_logprob_abs_diff": float(agree.sum() / tokens_n),
            "sampler_trainer_logprob_max_diff": float(agree.max()),
            "advantage_abs_mean": float(np.abs(np.asarray(adv)).mean()),
            "ifpo_weight_mean": float(np.asarray(weights).mean()),
            "ifpo_weight_max": float(np.asarray(weights).max()),
            "learning_rate": float(self.lr_schedule(self.step * rl.epochs)),
            "update_tokens": int(mask.sum()),
            **_behaviour_metrics(trajs, total, np.asarray(adv)),
        }
        if rl.mask_truncated:
            res["truncated_rows_masked"] = masked
        if rl.loss.ratio_level == "sequence":
            seqs = max(float(out["seq_count"]), 1.0)
            res["seq_ratio_mean"] = float(out["seq_ratio_sum"]) / seqs
            res["seq_ratio_abs_dev"] = float(out["seq_ratio_dev_sum"]) / seqs
        if rl.correction.level != "none":
            n, rows = max(float(is_sums["is_token_count"]), 1.0), max(float(is_sums["is_seq_count"]), 1.0)
            res.update({"correction/weight_mean": float(is_sums["is_weight_sum"]) / n,
                        "correction/weight_max": float(is_sums["is_weight_max"]),
                        "correction/weight_min": float(is_sums["is_weight_min"]),
                        f"correction/{rl.correction.mode}_frac": float(is_sums["is_bounded_sum"]) / n,
                        f"correction/{rl.correction.mode}_seq_frac": float(is_sums["is_bounded_seq_sum"]) / rows})
        if skipped:
            res.update(self._skip(f"non-finite loss or gradients (loss={res['loss']}, grad_norm={res['grad_norm']})"))
        else:
            self.consecutive_skips = 0
        return res

    def _rollout_metrics(self, trajs: list[Trajectory], rewards) -> dict[str, Any]:
        g = self.settings.rollout.group_size
        total = np.asarray(rewards.total, np.float64)
        m: dict[str, Any] = {"reward": _mean(total), **rewards.metrics()}
        consulted = np.array([t.consulted for t in trajs])
        m["consult_rate"] = _mean(consulted)
        m["tool_calls_per_rollout"] = _mean([t.num_tool_calls for t in trajs])
        # The reward's judge where it ran; the offline detector for the other rows.
        refusals = np.array([
            v.refusal if v is not None else (self.detector.is_refusal(t.final_answer) if t.final_answer else False)
            for t, v in zip(trajs, rewards.verdicts)
        ])
        classes = np.array([str(t.prompt.meta.get("class", "unlabelled")) for t in trajs])
        for cls in sorted(set(classes)):
            sel = classes == cls
            m[f"consult_rate/{cls}"] = _mean(consulted[sel])
            m[f"refusal_rate/{cls}"] = _mean(refusals[sel])
        groups = total.reshape(-1, g)
        m["zero_variance_groups"] = _mean(np.ptp(groups, axis=1) == 0)
        m["stop/eos"] = _mean([t.stop_reason == "eos" for t in trajs])
        m["stop/length"] = _mean([t.stop_reason == "length" for t in trajs])
        m["stop/tool_cap"] = _mean([t.stop_reason == "tool_cap" for t in trajs])
        m["sampled_tokens"] = int(sum(t.num_sampled for t in trajs))
        m["tokens"] = int(sum(len(t.tokens) for t in trajs))
        return m


@dataclass(frozen=True)
class _Draw:
    """One rollout batch of a step and its rewards (`total` f32[B] with the over-long `penalty`)."""

    trajs: list[Trajectory]
    rollout: Rollout
    rewards: RewardBatch
    total: np.ndarray
    penalty: np.ndarray
    generated: int
    rollout_wall: float
    reward_seconds: float


def _category_id(t: Trajectory) -> int:
    """A stable id of the first rule category the rollout consulted (-1 if none): IFPO's `category` key."""
    for turn in t.tool_turns:
        if turn.error is None and turn.arguments and isinstance(turn.arguments.get("category"), str):
            return _stable_id(turn.arguments["category"])
    return -1


def _stable_id(text: str) -> int:
    h = 0
    for ch in text.encode():
        h = (h * 131 + ch) % (2**31 - 1)
    return h


def _mean(x) -> float | None:
    x = np.asarray(x, np.float64)
    return float(x.mean()) if x.size else None


_mismatch_weights = jax.jit(mismatch_weights, static_argnames=("level", "mode", "cap", "floor"))


def _behaviour_metrics(trajs: list[Trajectory], total: np.ndarray, adv: np.ndarray) -> dict[str, float]:
    """Per class and behaviour (called the tool or not): the rows' mean reward and the sum of their
    advantages, the push the update gives that behaviour. What separates GRPO from IFPO shows here."""
    classes = np.array([str(t.prompt.meta.get("class", "unlabelled")) for t in trajs])
    consulted = np.array([t.consulted for t in trajs])
    out: dict[str, float] = {}
    for cls in sorted(set(classes)):
        for name, sel in (("consulted", consulted), ("not_consulted", ~consulted)):
            rows = (classes == cls) & sel
            if rows.any():
                out[f"reward_mean/{cls}/{name}"] = float(total[rows].mean())
                out[f"advantage_sum/{cls}/{name}"] = float(adv[rows].sum())
    return out


@functools.lru_cache(maxsize=None)
def bind_rl_loss(loss: LossConfig, temperature: float, remat: str = "none"):
    """`rl_loss` with its options bound: one object per options, since jit caches on its identity."""
    return functools.partial(rl_loss, loss=loss, temperature=temperature, remat=remat)

