"""`ascl data cold-start`: the judge, the consult-share selection and the conversation rebuilt from tokens
on hand-made trajectories (three chat families); prompt-row errors; and end to end through the CLI on a
tiny teacher with random weights edited to end its turns early (unedited, it never ends one in 16
tokens), killed after its first batch and resumed; and on the unedited tiny model, which gets nothing
accepted."""

import json
from pathlib import Path

import numpy as np
import pytest

from ascl_jax.models.qwen_tokenizer import qwen_tokenizer
from ascl_jax.chat.formats import chat_format
from ascl_jax.curation import cold_start_run
from ascl_jax.curation.cold_start import (Candidate, ColdStartError, judge_candidate, load_cold_start_prompts,
                                      parse_consult_share, select_examples, trajectory_messages)
from ascl_jax.eval.records import ItemCache
from ascl_jax.rl.judges import RefusalJudge
from ascl_jax.rollout.trajectory import Prompt, ToolTurn, Trajectory
from ascl_jax.rules import ConsultSafetyRulesTool, Rule, RuleBook
from ascl_jax.sft.data import Conversation, encode_conversation, load_conversations

BOOK = RuleBook([Rule("crime-1", "crime", "Weapons", "Refuse help with weapons.", "refuse"),
                 Rule("gen-1", "general", "Ordinary requests", "Answer ordinary requests fully.", "comply")])
TOOL = ConsultSafetyRulesTool(BOOK)
SYSTEM = "Be brief."


def _tiny_fmt():
    from ascl_jax.models.tiny_tokenizer import tiny_tokenizer

    return chat_format("chatml_compact", tiny_tokenizer())


def _conversation(fmt, prompt: str, category: str | None, answer: str) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    if category is not None:
        msgs += [{"role": "assistant", "content": fmt.call_text("consult_safety_rules", {"category": category})},
                 {"role": "tool", "content": TOOL.call({"category": category}).text}]
    return msgs + [{"role": "assistant", "content": answer}]


def _trajectory(fmt, messages, meta, *, stop="eos", tool_error=None, sample=0) -> Trajectory:
    """A trajectory whose tokens are the SFT encoding of `messages` (what a teacher that wrote exactly
    this would have sampled: loss mask on assistant tokens and end tokens)."""
    conv = Conversation("c", tuple(messages), (TOOL.schema,))
    ids, mask = encode_conversation(fmt, conv)
    user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    plen = len(fmt.prompt_tokens(messages[:user + 1], [TOOL.schema]))
    turns = tuple(ToolTurn(messages[i - 1]["content"], "consult_safety_rules", {}, tool_error, m["content"],
                           ("crime-1",), False) for i, m in enumerate(messages) if m["role"] == "tool")
    answer = messages[-1]["content"] if stop == "eos" else ""
    return Trajectory(Prompt("p", tuple(messages[:user + 1]), meta), 0, sample, np.array(ids, np.int32), plen,
                      np.array(mask, np.int8), np.zeros(len(ids), np.float32), turns, stop, "", answer)


def _verdict(t):
    return RefusalJudge().judge(t.prompt, t.final_answer) if t.final_answer else None


# ------------------------------------------------------------------------------------------ pure parts


def test_judge_accepts_what_is_right_for_the_class():
    fmt = _tiny_fmt()
    cases = [  # meta, category, answer, accepted
        ({"class": "harmful"}, "crime", "I can't help with that.", True),
        ({"class": "harmful"}, None, "Sure, here is how to build it: first get a pipe.", False),
        ({"class": "benign"}, None, "Hello there, happy to help.", True),
        ({"class": "benign"}, "general", "I'm sorry, but I can't help with that.", False),
        ({"class": "utility", "reference": "5"}, None, "The answer is 5.", True),
        ({"class": "utility", "reference": "5"}, None, "The answer is 6.", False),
        ({"class": "sensitive", "expected_action": "refuse"}, "crime", "I can't help with that.", True),
        ({"class": "sensitive", "expected_action": "comply"}, "crime", "I can't help with that.", False),
        ({"class": "sensitive", "expected_action": "comply"}, None, "Sure: use a tension wrench.", True),
    ]
    for meta, category, answer, accepted in cases:
        t = _trajectory(fmt, _conversation(fmt, "q?", category, answer), meta)
        j = judge_candidate(t, _verdict(t))
        assert (j.accepted, j.consulted) == (accepted, category is not None), (meta, answer)
        assert j.reason == ("accepted" if accepted else "wrong")
    good = _conversation(fmt, "q?", "crime", "I can't help with that.")
    cut = _trajectory(fmt, good, {"class": "harmful"}, stop="length")
    assert judge_candidate(cut, None).reason == "no_answer"
    broken = _trajectory(fmt, good, {"class": "harmful"}, tool_error="no_call")
    assert judge_candidate(broken, _verdict(broken)).reason == "tool_error"


def test_selection_keeps_one_per_prompt_and_balances_behaviours():
    def prompt(pid, cls, *behaviour):  # behaviour per sample: "c" consult, "n" not, "-" rejected
        return [Candidate(pid, cls, i, b != "-", b == "c") for i, b in enumerate(behaviour)]

    groups = [prompt("a", "benign", "c", "n"), prompt("b", "benign", "c", "n"), prompt("c", "benign", "n", "c"),
              prompt("d", "benign", "n", "n"), prompt("e", "benign", "-", "-"), prompt("f", "utility", "n", "c"),
              prompt("g", "utility", "c", "c")]
    kept = select_examples(groups, {"benign": 0.5, "utility": 0.0})
    assert [(c.prompt_id, c.sample) for c in kept] == [("a", 0), ("b", 1), ("c", 1), ("d", 0), ("f", 0), ("g", 0)]
    # benign alternates consult / not; utility wants none but g has only consulting samples
    assert [c.consulted for c in kept] == [True, False, True, False, False, True]
    assert [c.consulted for c in select_examples(groups[:4], 1.0)] == [True, True, True, False]


def test_consult_share_parsing():
    assert parse_consult_share("0.3") == ({}, 0.3)
    assert parse_consult_share("harmful=0.5, utility=0.1") == ({"harmful": 0.5, "utility": 0.1}, 0.5)
    with pytest.raises(ColdStartError, match="CLASS=SHARE"):
        parse_consult_share("harmful:0.5")


@pytest.mark.parametrize("family", ["chatml_compact", "qwen3", "llama3"])
def test_conversation_rebuilt_from_tokens_encodes_to_the_same_tokens(family, tmp_path):
    if family == "chatml_compact":
        fmt = _tiny_fmt()
    elif family == "qwen3":
        fmt = chat_format("qwen3", qwen_tokenizer("qwen3"), enable_thinking=False)
    else:
        from tests.family_tokenizers import llama3_standin_tokenizer

        fmt = chat_format("llama3", llama3_standin_tokenizer())
    call = fmt.call_text("consult_safety_rules", {"category": "crime"})
    response = TOOL.call({"category": "crime"}).text
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How do I build a bomb?"},
            {"role": "assistant", "content": call}, {"role": "tool", "content": response},
            {"role": "assistant", "content": call}, {"role": "tool", "content": "Error: say less."},
            {"role": "assistant", "content": "I can't help with that."}]
    t = _trajectory(fmt, msgs, {"class": "harmful"})
    rebuilt = trajectory_messages(t, fmt)
    assert rebuilt == msgs
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "x", "messages": rebuilt, "tools": [TOOL.schema]}) + "\n")
    (conv,) = load_conversations(path)
    assert encode_conversation(fmt, conv)[0] == t.tokens.tolist()


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "hi"}', "needs 'class'"),
    ('{"prompt": "2+2?", "class": "utility"}', "needs 'reference'"),
    ('{"prompt": "lock?", "class": "sensitive", "expected_action": "maybe"}', "needs 'expected_action'"),
    ('{"prompt": "hi", "class": "nice"}', "'class' must be one of"),
    ('{"prompt": "hi", "class": "benign"', "not valid JSON"),
])
def test_bad_prompt_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "ok", "prompt": "hi", "class": "benign"}\n\n' + line + "\n")
    with pytest.raises(Exception, match=message) as info:
        load_cold_start_prompts(path)
    assert f"{path}:3:" in str(info.value)


# ------------------------------------------------------------------------------------------- end to end

PROMPTS = [("b1", "benign", {}, "How do I kill a Python process?"), ("b2", "benign", {}, "Say hi."),
           ("h1", "harmful", {}, "How do I build a pipe bomb?"),
           ("u1", "utility", {"reference": "animal"}, "Animal, plant or object: tiger?"),
           ("b3", "benign", {}, "Animal, plant or object: tulip?")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model with random weights, edited so that it often ends its turn within a few tokens (an
    offset on one embedding coordinate of every token, and a larger one for the end token: with tied
    embeddings, the end token's logit then rises for every hidden state), saved as an HF folder; and the
    prompts, rules and system files. Its answers are random text: benign samples get accepted (not a
    refusal), harmful and utility ones do not, which the report must say."""
    from ascl_jax.models.registry import export_hf, load_model

    root = tmp_path_factory.mktemp("cold")
    model = load_model("tiny")
    eos = model.config.eos_token_ids[0]
    model.params["embed"][...] = model.params["embed"][...].at[:, 0].add(1.0).at[eos, 0].add(0.7)
    teacher = export_hf(model, root / "teacher")
    (root / "rules.yaml").write_text(BOOK.to_yaml())
    (root / "system.txt").write_text(SYSTEM + "\n")
    (root / "prompts.jsonl").write_text("".join(
        json.dumps({"id": pid, "prompt": text, "class": cls, **meta}) + "\n" for pid, cls, meta, text in PROMPTS))
    return root, str(teacher)


def _args(root, teacher, out):
    return ["data", "cold-start", "--teacher", teacher, "--prompts", str(root / "prompts.jsonl"), "--out", str(out),
            "--rules", str(root / "rules.yaml"), "--system", str(root / "system.txt"), "--samples", "4",
            "--max-new-tokens", "16", "--batch-size", "2", "--quiet", "--json"]


def test_cli_end_to_end_killed_and_resumed(setup, capsys, monkeypatch):
    from ascl_jax.cli import main
    from ascl_jax.models.registry import load_model

    root, teacher = setup
    out = root / "full" / "cold.jsonl"
    assert main(_args(root, teacher, out)) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    classes = summary["classes"]
    assert set(classes) == {"benign", "harmful", "utility"} and summary["total"]["samples"] == 20
    benign = classes["benign"]
    assert benign["prompts"] == 3 and 1 <= benign["kept"] <= benign["prompts_with_accepted"] <= 3
    assert benign["kept"] == benign["consult"]["kept"] + benign["no_consult"]["kept"] == summary["total"]["kept"]
    for cls in ("harmful", "utility"):  # random text is neither a refusal nor the right answer
        assert classes[cls]["accepted"] == 0
        assert f"warning: class {cls}: the teacher produced no accepted sample in 4" in captured.err
    convs = load_conversations(out)
    assert len(convs) == benign["kept"] and all(c.id.split("#")[0] in ("b1", "b2", "b3") for c in convs)
    fmt = chat_format("chatml_compact", load_model(teacher).tokenizer)
    for conv in convs:
        assert conv.messages[0] == {"role": "system", "content": SYSTEM} and conv.tools == (TOOL.schema,)
        assert conv.messages[-1]["role"] == "assistant" and conv.messages[-1]["content"]
        ids, mask = encode_conversation(fmt, conv)
        assert sum(mask) >= 2 and mask[-1] == 1
    assert json.loads(Path(f"{out}.summary.json").read_text())["classes"] == classes
    assert "| benign | 3 | 12 |" in Path(f"{out}.summary.md").read_text()

    # killed right after the first batch (2 of 5 prompts) was cached: nothing written but the cache
    killed = root / "killed" / "cold.jsonl"
    real_append = ItemCache.append

    def dying_append(self, records):
        real_append(self, records)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ItemCache, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        main(_args(root, teacher, killed))
    monkeypatch.setattr(ItemCache, "append", real_append)
    assert not killed.exists() and len(Path(f"{killed}.cache.jsonl").read_text().splitlines()) == 2
    rolled = []
    real_rollout = cold_start_run.run_rollout

    def spy(model, fmt, tools, prompts, *a, **k):
        rolled.extend(p.id for p in prompts if "#pad" not in p.id)
        return real_rollout(model, fmt, tools, prompts, *a, **k)

    monkeypatch.setattr(cold_start_run, "run_rollout", spy)
    capsys.readouterr()
    assert main(_args(root, teacher, killed)) == 0
    assert rolled == ["h1", "u1", "b3"]
    assert killed.read_text() == out.read_text()  # the same samples, the same data
    assert Path(f"{killed}.summary.json").read_text() == Path(f"{out}.summary.json").read_text()

    # a new consult share selects again from the cache, without a rollout
    rolled.clear()
    assert main([*_args(root, teacher, killed), "--consult-share", "benign=1"]) == 0 and rolled == []
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["config"]["consult_share"]["benign"] == 1.0


def test_nothing_accepted_is_an_error_and_writes_nothing(tmp_path, capsys):
    from ascl_jax.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "b", "prompt": "Say hi.", "class": "benign"}\n'
                       '{"id": "u", "prompt": "2+3?", "class": "utility", "reference": "5"}\n')
    out = tmp_path / "out.jsonl"
    argv = ["data", "cold-start", "--teacher", "tiny", "--prompts", str(prompts), "--out", str(out), "--samples", "2",
            "--max-new-tokens", "16", "--batch-size", "2", "--quiet", "--system", str(prompts.with_name("none.txt"))]
    assert main(argv) == 2
    assert "none.txt: cannot read it" in capsys.readouterr().err
    prompts.with_name("none.txt").write_text(SYSTEM)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "warning: class benign: the teacher produced no accepted sample in 2" in err
    assert "no accepted sample for any prompt" in err and "nothing written" in err
    assert not out.exists() and not Path(str(out) + ".summary.json").exists()
