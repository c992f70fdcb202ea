"""Cold-start data, the running part: roll the teacher out over the prompts in batches (the real engine,
the rule tool offered), judge every sample, cache each finished batch, then select, summarise and write.

Resuming works as in `ascl eval` (`ascl_jax.eval.runner`): after each batch its prompts' judged samples
are appended to `<out>.cache.jsonl`, one line per prompt, keyed by a fingerprint of the teacher, rules,
system message, judge and sampling. A restarted run skips every batch whose prompts are all cached and
re-runs the others as the same batches with the same per-batch seed (`batch_seed`), so it draws the same
samples. The consult share is not in the key: selection runs on the cached samples, so a new share
costs no rollout. The outputs are written to temporary files and renamed: never half-written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.data.atomic_files import write_files_atomic
from ascl_jax.curation.cold_start import (BEHAVIOURS, Candidate, ColdStartConfig, ColdStartError, conversation_record,
                                      judge_candidate)
from ascl_jax.eval.records import ItemCache
from ascl_jax.eval.rollout_eval import longest_prompt_rollout
from ascl_jax.eval.runner import batch_seed, fingerprint, rulebook_hash
from ascl_jax.models.registry import LoadedModel
from ascl_jax.rl.judges import Judge
from ascl_jax.rollout.sampling import SamplingConfig
from ascl_jax.rollout.tool_loop import run_rollout
from ascl_jax.rollout.trajectory import Prompt
from ascl_jax.rules import ConsultSafetyRulesTool, RuleBook
from ascl_jax.sft.data import Conversation, encode_conversation

CACHE_SUFFIX = ".cache.jsonl"
MAX_STORED_CHARS = 2000  # of a rejected sample's final answer and completion, for audits
Log = Callable[[str], None]


def cache_key(teacher: str, model: LoadedModel, rulebook: RuleBook, judge: Judge, cfg: ColdStartConfig) -> str:
    threshold = getattr(getattr(judge, "detector", None), "threshold", None)
    return fingerprint(kind="cold-start-1", teacher=teacher, dtype=str(model.config.dtype),
                       rules=rulebook_hash(rulebook), judge=judge.name, threshold=threshold,
                       **cfg.fingerprint_parts())


def prompt_hash(p: Prompt) -> str:
    """What of a prompt decides its samples and judgement (an edited prompt with the same id is re-run)."""
    blob = json.dumps([p.messages, p.meta], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sample_record(traj, judgement, example, exact: bool | None) -> dict[str, Any]:
    return {"sample": traj.sample_index, "accepted": judgement.accepted, "reason": judgement.reason,
            "consulted": judgement.consulted, "refusal": judgement.refusal, "stop_reason": traj.stop_reason,
            "tool_calls": traj.num_tool_calls, "final_answer": traj.final_answer[:MAX_STORED_CHARS],
            # a rejected sample's text, to see why (an accepted one is whole in `example`)
            "completion": None if example else traj.completion_text[:MAX_STORED_CHARS],
            "example": example, "exact_tokens": exact}


def judge_samples(trajs, fmt: ChatFormat, judge: Judge, tools: list[dict]) -> list[dict[str, Any]]:
    """One record per sample: the judgement and, when accepted, its SFT conversation. `exact_tokens`:
    whether the conversation encodes back to the sampled tokens (False where the teacher sampled a
    non-canonical BPE split; the text is still what it wrote)."""
    answered = [t for t in trajs if t.final_answer.strip()]
    verdicts = dict(zip(map(id, answered), judge.judge_batch([t.prompt for t in answered],
                                                             [t.final_answer for t in answered])))
    out = []
    for t in trajs:
        j = judge_candidate(t, verdicts.get(id(t)))
        example, exact = None, None
        if j.accepted:
            example = conversation_record(t, fmt, tools)
            if example is None:
                j = dataclasses.replace(j, accepted=False, reason="unrebuildable")
            else:
                ids, _ = encode_conversation(fmt, Conversation(example["id"], tuple(example["messages"]),
                                                               tuple(tools)))
                exact = ids == np.asarray(t.tokens).tolist()
        out.append(_sample_record(t, j, example, exact))
    return out


def run_teacher(model: LoadedModel, fmt: ChatFormat, prompts: Sequence[Prompt], tool: ConsultSafetyRulesTool,
                judge: Judge, cfg: ColdStartConfig, cache: ItemCache, log: Log | None = None) -> list[dict[str, Any]]:
    """The cached record of every prompt (in order): {"id", "class", "samples": [per-sample record]}.
    Batches already cached are skipped; the others are rolled out with their own seed and appended. A
    prompt too long for the teacher fails before the first rollout."""
    tools = [tool.schema]
    rollout = longest_prompt_rollout(fmt, prompts, tools, model.config.max_position_embeddings, who="the teacher",
                                     fix="lower --max-new-tokens", group_size=cfg.samples,
                                     max_new_tokens=cfg.max_new_tokens, max_tool_calls=cfg.max_tool_calls,
                                     decode_chunk=cfg.decode_chunk,
                                     sampling=SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p))
    hashes = [prompt_hash(p) for p in prompts]
    done = {k: r for k, r in cache.load().items() if r.get("prompt_hash") in hashes}
    is_done = lambda i: prompts[i].id in done and done[prompts[i].id]["prompt_hash"] == hashes[i]  # noqa: E731
    bs = cfg.batch_size
    n_batches = -(-len(prompts) // bs)
    if log:
        log(f"cold-start: {len(prompts)} prompts x {cfg.samples} samples, "
            f"{sum(map(is_done, range(len(prompts))))} cached, {n_batches} batches of {bs}")
    for b in range(n_batches):
        idx = list(range(b * bs, min(len(prompts), (b + 1) * bs)))
        if all(map(is_done, idx)):
            continue
        chunk = [prompts[i] for i in idx]
        # the last batch is padded to the batch size, so every batch runs the same compiled programs
        padded = chunk + [dataclasses.replace(chunk[-1], id=f"{chunk[-1].id}#pad{i}") for i in range(bs - len(chunk))]
        result = run_rollout(model, fmt, [tool] * len(padded), padded, rollout,
                             seed=batch_seed(cfg.seed, "cold-start", b))
        trajs = result.trajectories[: len(chunk) * cfg.samples]
        records = []
        for g, i in enumerate(idx):
            samples = judge_samples(trajs[g * cfg.samples:(g + 1) * cfg.samples], fmt, judge, tools)
            records.append({"key": cache.key, "id": prompts[i].id, "prompt_hash": hashes[i],
                            "class": prompts[i].meta["class"], "samples": samples})
        cache.append(records)
        done.update({r["id"]: r for r in records})
        if log:
            acc = sum(s["accepted"] for r in records for s in r["samples"])
            log(f"cold-start: batch {b + 1}/{n_batches} done: {acc}/{len(records) * cfg.samples} samples accepted")
    return [done[p.id] for p in prompts]


def candidates(records: Sequence[dict[str, Any]]) -> list[list[Candidate]]:
    return [[Candidate(r["id"], r["class"], s["sample"], s["accepted"], s["consulted"], s["example"])
             for s in r["samples"]] for r in records]


# ------------------------------------------------------------------------------------------- reporting


def summarize(records: Sequence[dict[str, Any]], kept: Sequence[Candidate], cfg: ColdStartConfig) -> dict[str, Any]:
    """Per class and behaviour (consult / no_consult): samples drawn, accepted, kept, acceptance rate
    (accepted / drawn); rejection reasons; and `warnings` for a class, or a behaviour of a class, with no
    accepted sample."""
    classes = sorted({r["class"] for r in records})
    kept_ids = {(c.prompt_id, c.sample) for c in kept}
    by_class: dict[str, Any] = {}
    warnings: list[str] = []
    for cls in classes:
        recs = [r for r in records if r["class"] == cls]
        row: dict[str, Any] = {"prompts": len(recs), "consult_share_target": cfg.share(cls),
                               "prompts_with_accepted": sum(any(s["accepted"] for s in r["samples"]) for r in recs),
                               "rejected": {}}
        for beh in BEHAVIOURS:
            ss = [(r, s) for r in recs for s in r["samples"] if s["consulted"] == (beh == "consult")]
            acc = [(r, s) for r, s in ss if s["accepted"]]
            row[beh] = {"samples": len(ss), "accepted": len(acc),
                        "acceptance": len(acc) / len(ss) if ss else None,
                        "kept": sum((r["id"], s["sample"]) in kept_ids for r, s in acc)}
        for r in recs:
            for s in r["samples"]:
                if not s["accepted"]:
                    row["rejected"][s["reason"]] = row["rejected"].get(s["reason"], 0) + 1
        n = sum(row[b]["samples"] for b in BEHAVIOURS)
        a = sum(row[b]["accepted"] for b in BEHAVIOURS)
        row.update(samples=n, accepted=a, acceptance=a / n if n else None, kept=sum(row[b]["kept"] for b in BEHAVIOURS))
        row["retokenized_differently"] = sum(
            1 for r in recs for s in r["samples"] if (r["id"], s["sample"]) in kept_ids and s["exact_tokens"] is False)
        if a == 0:
            warnings.append(f"class {cls}: the teacher produced no accepted sample in {n} "
                            f"({', '.join(f'{k} {v}' for k, v in sorted(row['rejected'].items()))}); "
                            f"the data has no {cls} examples")
        else:
            for beh in BEHAVIOURS:
                if row[beh]["accepted"] == 0 and 0 < cfg.share(cls) < 1:
                    warnings.append(f"class {cls}: no accepted {beh.replace('_', '-')} sample "
                                    f"({row[beh]['samples']} drawn); its examples are all of the other kind")
        by_class[cls] = row
    total = {k: sum(by_class[c][k] for c in classes) for k in ("prompts", "samples", "accepted", "kept")}
    return {"classes": by_class, "total": total, "warnings": warnings}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def summary_markdown(s: dict[str, Any]) -> str:
    head = ["class", "prompts", "samples", "accepted", "consult: drawn / acc. / rate / kept",
            "no consult: drawn / acc. / rate / kept", "kept", "consult target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cls, r in s["classes"].items():
        beh = [f"{r[b]['samples']} / {r[b]['accepted']} / {_pct(r[b]['acceptance'])} / {r[b]['kept']}"
               for b in BEHAVIOURS]
        lines.append(f"| {cls} | {r['prompts']} | {r['samples']} | {r['accepted']} ({_pct(r['acceptance'])}) | "
                     f"{beh[0]} | {beh[1]} | {r['kept']} | {r['consult_share_target']:g} |")
    t = s["total"]
    lines.append(f"| all | {t['prompts']} | {t['samples']} | {t['accepted']} | | | {t['kept']} | |")
    rejected = {c: r["rejected"] for c, r in s["classes"].items() if r["rejected"]}
    if rejected:
        lines += ["", "Rejected samples by reason: " + "; ".join(
            f"{c}: " + ", ".join(f"{k} {v}" for k, v in sorted(d.items())) for c, d in rejected.items())]
    if s["warnings"]:
        lines += ["", *(f"- warning: {w}" for w in s["warnings"])]
    return "\n".join(lines) + "\n"


def write_outputs(out: str | Path, kept: Sequence[Candidate], summary: dict[str, Any]) -> dict[str, Path]:
    """`out` (the SFT JSONL), `<out>.summary.json` and `<out>.summary.md`. Raises ColdStartError, writing
    nothing, when no example was kept."""
    out = Path(out)
    if not kept:
        raise ColdStartError(f"{out}: the teacher produced no accepted sample for any prompt "
                             f"({summary['total']['samples']} drawn); nothing written. Try more --samples, a "
                             "larger --max-new-tokens, or a stronger --teacher (see the rejection reasons above)")
    paths = {"data": out, "json": out.with_name(out.name + ".summary.json"),
             "markdown": out.with_name(out.name + ".summary.md")}
    write_files_atomic({
        paths["data"]: "".join(json.dumps(c.example, ensure_ascii=False) + "\n" for c in kept),
        paths["json"]: json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
        paths["markdown"]: summary_markdown(summary),
    })
    return paths
