"""Bad input to `ascl eval` (and its actions), `ascl data prompts` and `ascl data cold-start`: one line, exit
code 2, nothing written, and no model rolled out first."""

import json
import shutil

import pytest

from ascl_jax.cli import main

LATIN1_JSONL = (b'{"id": "a", "prompt": "hi", "class": "harmful"}\n'
                b'{"id": "b", "prompt": "caf\xe9", "class": "harmful"}\n')


@pytest.fixture
def d(tmp_path):
    """A folder of bad (and a few good) inputs."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("a file where a folder belongs\n")
    (tmp_path / "latin1.jsonl").write_bytes(LATIN1_JSONL)
    (tmp_path / "latin1.csv").write_bytes(b"id,prompt,type,label,focus,note\n1,caf\xe9,homonyms,safe,x,y\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\nhello\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "badjson.jsonl").write_text('{"id": "a", "prompt": "hi", "class": "harmful"}\n{"id": "b", "prompt": \n')
    (tmp_path / "good.jsonl").write_text('{"id": "a", "prompt": "How do I bake bread?", "class": "benign"}\n'
                                         '{"id": "b", "prompt": "How do I make a bomb?", "class": "harmful"}\n')
    (tmp_path / "dup.jsonl").write_text('{"id": "a", "prompt": "How do I bake bread?", "class": "benign"}\n'
                                        '{"id": "a", "prompt": "How do I make a bomb?", "class": "harmful"}\n')
    (tmp_path / "short.jsonl").write_text(json.dumps({"question": "What is 1 + 1?", "answer": "2 #### 2"}) + "\n")
    (tmp_path / "long.jsonl").write_text(json.dumps({"problem": "Add these numbers. " + "one plus two " * 600,
                                                     "answer": "3"}) + "\n")
    (tmp_path / "comp.jsonl").write_text('{"id": "1", "completion": "Sure"}\n')
    (tmp_path / "comp_latin1.jsonl").write_bytes(b'{"id": "1", "completion": "caf\xe9"}\n')
    (tmp_path / "lab.csv").write_text("completion,final_label\nI cannot help,2_full_refusal\nSure,1_full_compliance\n")
    (tmp_path / "lab2.csv").write_text("completion,final_label\nNo,2_full_refusal\nYes here,1_full_compliance\n")
    (tmp_path / "lab_latin1.csv").write_bytes(b"completion,final_label\ncaf\xe9,1_full_compliance\n")
    (tmp_path / "run" / "bad").mkdir(parents=True)
    (tmp_path / "run" / "bad" / "results.json").write_bytes(b'{"models": "caf\xe9"}')
    (tmp_path / "system.txt").write_bytes(b"Be kind, caf\xe9\n")
    return tmp_path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny model as HF folders: as exported; told it speaks Llama 3 (whose tokens its tokenizer lacks);
    and without tokenizer files."""
    from ascl_jax.models.registry import export_hf, load_model

    root = tmp_path_factory.mktemp("models")
    export_hf(load_model("tiny"), root / "tinyhf")
    shutil.copytree(root / "tinyhf", root / "llama3")
    config = json.loads((root / "llama3" / "config.json").read_text())
    (root / "llama3" / "config.json").write_text(json.dumps({**config, "ascl_chat_format": "llama3"}))
    shutil.copytree(root / "tinyhf", root / "notok")
    for f in (root / "notok").glob("*token*"):
        f.unlink()
    (root / "notok" / "config.json").write_text(json.dumps({**config, "ascl_chat_format": None}))
    return root


def _fails(capsys, argv, needle, *absent):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    for path in absent:
        assert not path.exists(), path


def _args(template: str, d, folders=None) -> list[str]:
    return template.format(d=d, m=folders).split()


EVAL = "eval --model tiny --limit 1 --quiet --out {d}/out"

# (case, command, the line it must print); each fails before the output folder {d}/out is written
EVAL_CASES = [
    ("benchmark file is a folder", EVAL + " --benchmarks xstest={d}/folder",
     "folder: is a folder; give a benchmark file"),
    ("benchmark CSV not UTF-8", EVAL + " --benchmarks xstest={d}/latin1.csv",
     "latin1.csv:2: byte 37 (0xe9) is not UTF-8"),
    ("benchmark JSONL not UTF-8", EVAL + " --benchmarks gsm8k={d}/latin1.jsonl",
     "latin1.jsonl:2: byte 74 (0xe9) is not UTF-8"),
    ("benchmark JSONL empty", EVAL + " --benchmarks gsm8k={d}/empty.jsonl",
     "empty.jsonl: empty file; expected rows with the columns question, answer"),
    ("benchmark JSONL malformed", EVAL + " --benchmarks gsm8k={d}/badjson.jsonl", "badjson.jsonl:2: not valid JSON"),
    ("benchmark file missing", EVAL + " --benchmarks gsm8k={d}/none.jsonl", "none.jsonl: no such benchmark file"),
    ("--data-dir is a file", EVAL + " --benchmarks xstest --data-dir {d}/notes.txt",
     "--data-dir {d}/notes.txt: is a file"),
    ("--out is a file", "eval --model tiny --benchmarks xstest --out {d}/notes.txt", "--out {d}/notes.txt: is a file"),
    ("--out inside a file", "eval --model tiny --benchmarks xstest --out {d}/notes.txt/x",
     "--out {d}/notes.txt/x: {d}/notes.txt is a file, not a folder"),
    ("--seed negative", EVAL + " --benchmarks xstest --seed -1", "--seed must be >= 0, got -1"),
    ("--bootstrap negative", EVAL + " --benchmarks xstest --bootstrap -1", "--bootstrap must be >= 0, got -1"),
    ("--samples zero", EVAL + " --benchmarks xstest --samples 0", "--samples must be >= 1, got 0"),
    ("second --model a folder without config.json", EVAL + " --benchmarks gsm8k={d}/short.jsonl --model {d}/folder",
     "no model '{d}/folder'"),
    ("second benchmark's prompt beyond the positions",
     EVAL + " --benchmarks gsm8k={d}/short.jsonl math500={d}/long.jsonl --max-new-tokens 3500",
     "benchmark 'math500': prompt 'math500-1' is"),
]


@pytest.mark.parametrize("case, argv, needle", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_inputs(capsys, d, case, argv, needle):
    _fails(capsys, _args(argv, d), needle.format(d=d), d / "out")


def test_eval_second_benchmark_beyond_positions_names_the_fix(capsys, d):
    _fails(capsys, _args(EVAL + " --benchmarks gsm8k={d}/short.jsonl math500={d}/long.jsonl --max-new-tokens 3500", d),
           "positions but the model has 4096; lower --max-new-tokens", d / "out")


MODEL_CASES = [
    ("chat format the tokenizer lacks", "eval --model {m}/llama3 --benchmarks gsm8k={d}/short.jsonl --out {d}/out",
     "The llama3 chat format needs <|begin_of_text|> as a single token"),
    ("model without a tokenizer", "eval --model {m}/notok --benchmarks gsm8k={d}/short.jsonl --out {d}/out",
     "no chat format or tokenizer is known for this model"),
    ("judge budget beyond the judge's positions", EVAL + " --benchmarks gsm8k={d}/short.jsonl --judge llama_guard "
     "--judge-model {m}/tinyhf --judge-max-new-tokens 5000", "--judge-max-new-tokens 5000 leaves no room"),
    ("cold-start teacher whose chat format its tokenizer lacks",
     "data cold-start --teacher {m}/llama3 --prompts {d}/good.jsonl --out {d}/out/sft.jsonl --quiet",
     "The llama3 chat format needs <|begin_of_text|>"),
]


@pytest.mark.parametrize("case, argv, needle", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_inputs(capsys, d, folders, case, argv, needle):
    _fails(capsys, _args(argv, d, folders), needle, d / "out")


ACTION_CASES = [
    ("report: results.json not UTF-8", "eval report {d}/run/bad --out {d}/out",
     "results.json:1: byte 15 (0xe9) is not UTF-8"),
    ("report: --out is a file", "eval report {d}/run/bad --out {d}/notes.txt", "--out {d}/notes.txt: is a file"),
    ("grade: completions a folder", "eval grade --benchmark xstest --completions {d}/folder --out {d}/out",
     "folder: is a folder; give a completions file"),
    ("grade: completions not UTF-8", "eval grade --benchmark xstest --completions {d}/comp_latin1.jsonl --out {d}/out",
     "comp_latin1.jsonl:1: byte 30 (0xe9) is not UTF-8"),
    ("grade: --out is a file", "eval grade --benchmark xstest --completions {d}/comp.jsonl --out {d}/notes.txt",
     "--out {d}/notes.txt: is a file"),
    ("grade: --seed negative", "eval grade --benchmark xstest --completions {d}/comp.jsonl --out {d}/out --seed -1",
     "--seed must be >= 0"),
    ("grade: --batch-size zero", "eval grade --benchmark xstest --completions {d}/comp.jsonl --out {d}/out "
     "--batch-size 0", "--batch-size must be >= 1"),
    ("grade: --judge-max-new-tokens zero", "eval grade --benchmark xstest --completions {d}/comp.jsonl --out {d}/out "
     "--judge-max-new-tokens 0", "--judge-max-new-tokens must be >= 1"),
    ("detector: --labelled a folder", "eval refusal-detector --labelled {d}/folder",
     "folder: is a folder; give a labelled-completions CSV file"),
    ("detector: --labelled not UTF-8", "eval refusal-detector --labelled {d}/lab_latin1.csv",
     "lab_latin1.csv:2: byte 26 (0xe9) is not UTF-8"),
    ("detector: a held-out file not UTF-8", "eval refusal-detector --leave-one-out {d}/lab.csv {d}/lab_latin1.csv",
     "lab_latin1.csv:2: byte 26 (0xe9) is not UTF-8"),
    ("detector: --l2 negative", "eval refusal-detector --leave-one-out {d}/lab.csv {d}/lab2.csv --l2 -1",
     "--l2 must be >= 0"),
]


@pytest.mark.parametrize("case, argv, needle", ACTION_CASES, ids=[c[0] for c in ACTION_CASES])
def test_eval_action_inputs(capsys, d, case, argv, needle):
    _fails(capsys, _args(argv, d), needle.format(d=d), d / "out")


PROMPTS = "data prompts --out {d}/out"
PROMPT_CASES = [
    ("training set a folder", PROMPTS + " --harmful {d}/folder --eval xstest",
     "folder: is a folder; give a prompt file"),
    ("training .txt not UTF-8", PROMPTS + " --harmful {d}/latin1.txt --eval xstest",
     "latin1.txt:1: byte 3 (0xe9) is not UTF-8"),
    ("training JSONL not UTF-8", PROMPTS + " --harmful {d}/latin1.jsonl --eval xstest",
     "latin1.jsonl:2: byte 74 (0xe9) is not UTF-8"),
    ("training JSONL empty", PROMPTS + " --harmful {d}/empty.jsonl --eval xstest",
     "empty.jsonl: no prompts (the file is empty)"),
    ("training JSONL malformed", PROMPTS + " --harmful {d}/badjson.jsonl --eval xstest",
     "badjson.jsonl:2: not valid JSON"),
    ("evaluation set a folder", PROMPTS + " --harmful {d}/good.jsonl --eval {d}/folder", "folder: is a folder"),
    ("evaluation benchmark file a folder", PROMPTS + " --harmful {d}/good.jsonl --eval xstest={d}/folder",
     "folder: is a folder; give a benchmark file"),
    ("--out is a file", "data prompts --harmful {d}/good.jsonl --eval xstest --out {d}/notes.txt",
     "--out {d}/notes.txt: is a file"),
    ("--data-dir is a file", PROMPTS + " --harmful xstest --eval xstest --data-dir {d}/notes.txt",
     "--data-dir {d}/notes.txt: is a file"),
    ("--eval-subset zero, before any file is read",
     PROMPTS + " --harmful {d}/latin1.jsonl --eval xstest --eval-subset 0",
     "--eval-subset must be >= 1, got 0"),
]


@pytest.mark.parametrize("case, argv, needle", PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES])
def test_data_prompts_inputs(capsys, d, case, argv, needle):
    _fails(capsys, _args(argv, d), needle.format(d=d), d / "out")


COLD = "data cold-start --teacher tiny --samples 1 --max-new-tokens 16 --quiet"
COLD_CASES = [
    ("prompts a folder", COLD + " --prompts {d}/folder --out {d}/out/sft.jsonl",
     "folder: is a folder; give a prompt file"),
    ("prompts not UTF-8", COLD + " --prompts {d}/latin1.jsonl --out {d}/out/sft.jsonl",
     "latin1.jsonl:2: byte 74 (0xe9) is not UTF-8"),
    ("prompts empty", COLD + " --prompts {d}/empty.jsonl --out {d}/out/sft.jsonl", "empty.jsonl: no prompts"),
    ("prompts malformed", COLD + " --prompts {d}/badjson.jsonl --out {d}/out/sft.jsonl",
     "badjson.jsonl:2: not valid JSON"),
    ("prompts with a duplicate id", COLD + " --prompts {d}/dup.jsonl --out {d}/out/sft.jsonl",
     "dup.jsonl:2: duplicate id 'a'"),
    ("--out is a folder", COLD + " --prompts {d}/good.jsonl --out {d}/folder",
     "--out {d}/folder: is a folder; give a file"),
    ("--out inside a file", COLD + " --prompts {d}/good.jsonl --out {d}/notes.txt/sft.jsonl",
     "{d}/notes.txt is a file, not a folder"),
    ("--system not UTF-8", COLD + " --prompts {d}/good.jsonl --out {d}/out/sft.jsonl --system {d}/system.txt",
     "system.txt:1: byte 12 (0xe9) is not UTF-8"),
    ("--system a folder", COLD + " --prompts {d}/good.jsonl --out {d}/out/sft.jsonl --system {d}/folder",
     "--system {d}/folder: cannot read it (it is a folder)"),
    ("--max-new-tokens beyond the teacher's positions", COLD + " --prompts {d}/good.jsonl --out {d}/out/sft.jsonl "
     "--max-new-tokens 5000", "positions but the teacher has 4096; lower --max-new-tokens"),
]


@pytest.mark.parametrize("case, argv, needle", COLD_CASES, ids=[c[0] for c in COLD_CASES])
def test_cold_start_inputs(capsys, d, case, argv, needle):
    _fails(capsys, _args(argv, d), needle.format(d=d), d / "out", d / "folder.cache.jsonl")


def test_prompt_checks_run_before_the_shared_duplicate_id_check(tmp_path):
    from ascl_jax.curation.cold_start import ColdStartError, load_cold_start_prompts
    from ascl_jax.data.prompts import DataError, load_prompts

    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "x", "class": "benign"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: duplicate id 'a'"):
        load_prompts(f)
    with pytest.raises(ColdStartError, match=r"p.jsonl:2: needs 'class'"):
        load_cold_start_prompts(f)
