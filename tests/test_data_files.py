"""JSONL data files: errors name the file and line."""
import pytest
from ascl_jax.data.prompts import load_prompts, DataError
from ascl_jax.sft.data import load_conversations
def test_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "a.jsonl"; p.write_text('{"prompt": "hi"}\n\n{bad\n')
    with pytest.raises(DataError, match="a.jsonl:3: not valid JSON"): load_prompts(p)
    p.write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n')
    assert load_conversations(p)[0].id == "line1"
    with pytest.raises(DataError, match="no such conversation file"): load_conversations(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="no such prompt file"): load_prompts(tmp_path / "none.jsonl")
