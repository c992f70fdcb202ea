"""Cold-start conversations: a documented JSONL format and their tokens with an assistant-only loss mask.

One JSON object per line:

    {"id": "c1", "messages": [
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "<tool_call>{\\"name\\": \\"consult_safety_rules\\", ...}</tool_call>"},
        {"role": "tool", "content": "[rule ...] ..."},
        {"role": "assistant", "content": "Sure. ..."}],
     "tools": [ ...optional JSON tool schemas shown to the model... ]}

Assistant turns hold the text the model writes, tool calls in its family's own syntax (Hermes
`<tool_call>` for Qwen and ChatML, a JSON object for Llama 3, DeepSeek's call markers; `ChatFormat.call_text`
writes one). The tokens are built exactly as a rollout builds them: the prompt, then each assistant turn as
the model writes it (loss on; where a call ends the turn, Llama 3, with its end token), then the template's tool-turn delta (loss off), and the end-of-turn token after the
final answer (loss on), so SFT trains on the same token stream the policy later samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.data.prompts import DataError, read_jsonl


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: tuple[dict, ...]
    tools: tuple[dict, ...] | None = None


def encode_conversation(fmt: ChatFormat, conv: Conversation) -> tuple[list[int], list[int]]:
    """(token ids, loss mask) of a conversation whose turns after the last user message alternate
    assistant (ending in a tool call) / tool ... and end with a final assistant answer."""
    msgs = list(conv.messages)
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last_user is None:
        raise DataError(f"conversation {conv.id!r}: needs a user message")
    tools = list(conv.tools) if conv.tools else None
    ids = list(fmt.prompt_tokens(msgs[: last_user + 1], tools))
    mask = [0] * len(ids)
    tail = msgs[last_user + 1 :]
    if not tail or tail[-1]["role"] != "assistant":
        raise DataError(f"conversation {conv.id!r}: must end with an assistant message")
    i = 0
    while i < len(tail):
        m = tail[i]
        if m["role"] != "assistant":
            raise DataError(f"conversation {conv.id!r}: expected an assistant message at turn {last_user + 2 + i}")
        part = fmt.encode_assistant(m["content"])
        ids += part
        mask += [1] * len(part)
        responses = []
        i += 1
        while i < len(tail) and tail[i]["role"] == "tool":
            responses.append(tail[i]["content"])
            i += 1
        if responses:
            if fmt.call_ends_turn:  # the model ends its call turn with the end token itself (Llama 3)
                ids.append(fmt.eos_token_ids[0])
                mask.append(1)
            delta = fmt.tool_turn_delta(responses)
            ids += delta
            mask += [0] * len(delta)
        elif i < len(tail):
            raise DataError(f"conversation {conv.id!r}: an assistant turn not ending in a tool call is followed by more turns")
    ids.append(fmt.eos_token_ids[0])
    mask.append(1)
    return ids, mask


def load_conversations(path: str | Path) -> list[Conversation]:
    """Conversations from JSONL; a bad line raises DataError naming the file and line."""
    out = []
    for n, where, rec in read_jsonl(path, "conversation"):
        msgs = rec.get("messages") if isinstance(rec, dict) else None
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: needs 'messages', a non-empty list")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool") \
                    or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{j}] must be {{\"role\": system|user|assistant|tool, \"content\": str}}")
        tools = rec.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise DataError(f"{where}: 'tools' must be a list of tool schemas")
        out.append(Conversation(str(rec.get("id", f"line{n}")), tuple(msgs), tuple(tools) if tools else None))
    if not out:
        raise DataError(f"{path}: no conversations")
    return out


def pack_examples(examples: list[tuple[list[int], list[int]]], pad_id: int, max_width: int,
                  multiple: int = 16) -> dict[str, np.ndarray]:
    """tokens i32[N, W], loss_mask f32[N, W] with W the longest example rounded up to `multiple`, at most
    `max_width` (sft.max_tokens): short conversations (a baseline without tool turns) do not pay for the
    longest ones a data set could have. An example over `max_width` is an error, not a silent cut."""
    for i, (ids, _) in enumerate(examples):
        if len(ids) > max_width:
            raise DataError(f"example {i} has {len(ids)} tokens; sft.max_tokens is {max_width}")
    longest = max((len(ids) for ids, _ in examples), default=1)
    width = min(max_width, -(-longest // multiple) * multiple)
    tokens = np.full((len(examples), width), pad_id, np.int32)
    mask = np.zeros((len(examples), width), np.float32)
    for i, (ids, m) in enumerate(examples):
        tokens[i, : len(ids)] = ids
        mask[i, : len(m)] = m
    return {"tokens": tokens, "loss_mask": mask}
