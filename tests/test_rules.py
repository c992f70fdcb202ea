"""Rule books, retrievers, the consult_safety_rules tool and `ascl rules`."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ascl_jax.cli import main
from ascl_jax.errors import RuleBookError, UserError
from ascl_jax.rules import (
    ACTIONS,
    BM25Retriever,
    CategoryRetriever,
    ConsultSafetyRulesTool,
    HybridRetriever,
    Rule,
    RuleBook,
    RuleRetriever,
    ToolResult,
    default_rulebook,
    load_rulebook,
    parse_rulebook,
    tokenize,
)
from ascl_jax.rules.retrieval import stem

REQUIRED_CATEGORIES = (
    "violent_harm_and_weapons",
    "cyber_misuse",
    "illicit_goods_and_fraud",
    "self_harm",
    "sexual_content_and_minors",
    "hate_and_harassment",
    "privacy",
    "misinformation_and_elections",
    "regulated_advice",
)


def _rule(rule_id: str, category: str = "cat", text: str = "some text", **kw) -> Rule:
    return Rule(id=rule_id, category=category, title=kw.pop("title", f"title {rule_id}"), text=text,
                action=kw.pop("action", "comply"), **kw)


# ---------------------------------------------------------------------------------------------------
# the default book
# ---------------------------------------------------------------------------------------------------
def test_default_book_size_and_balance():
    book = default_rulebook()
    assert len(book.categories) >= 9
    for category in REQUIRED_CATEGORIES:
        rules = book.by_category(category)
        assert len(rules) >= 3, category
        actions = {rule.action for rule in rules}
        # every harm area marks both what to refuse and what is fine (against over-refusal)
        assert "refuse" in actions, category
        assert actions & {"comply", "comply_with_care"}, category
    for category in book.categories:
        assert len(book.by_category(category)) >= 3, category
    assert len({rule.id for rule in book}) == len(book)
    assert {rule.action for rule in book} == set(ACTIONS)
    # three rules of the default book fit the tool's default 1200 characters
    longest = sorted((len(ConsultSafetyRulesTool.format_rule(r)) for r in book), reverse=True)
    assert sum(longest[:3]) + 4 <= 1200
    assert default_rulebook() is book  # cached


def test_default_book_is_package_data():
    from importlib import resources

    assert resources.files("ascl_jax.rules").joinpath("default_rules.yaml").is_file()


# ---------------------------------------------------------------------------------------------------
# Rule and RuleBook
# ---------------------------------------------------------------------------------------------------
def test_rule_normalises_and_validates():
    rule = Rule(id=" a-1 ", category="c", title=" T ", text=" body\n", action="refuse", keywords=["x", " y "])
    assert (rule.id, rule.title, rule.text, rule.keywords) == ("a-1", "T", "body", ("x", "y"))
    with pytest.raises(RuleBookError, match="action"):
        Rule(id="a", category="c", title="t", text="x", action="deny")
    with pytest.raises(RuleBookError, match="'text' is empty"):
        Rule(id="a", category="c", title="t", text="  ", action="comply")
    with pytest.raises(RuleBookError, match="no spaces"):
        Rule(id="a b", category="c", title="t", text="x", action="comply")


def test_rulebook_collection():
    book = RuleBook([_rule("a", "x"), _rule("b", "y"), _rule("c", "x")], name="toy")
    assert len(book) == 3 and [r.id for r in book] == ["a", "b", "c"]
    assert book.categories == ("x", "y")
    assert [r.id for r in book.by_category("x")] == ["a", "c"]
    assert book.by_category("nope") == ()
    assert book.get("b").category == "y" and "b" in book and "z" not in book
    with pytest.raises(RuleBookError, match="did you mean 'a'"):
        book.get("A")
    sub = book.subset(["c", "a"])
    assert [r.id for r in sub] == ["a", "c"] and sub.name == "toy"
    with pytest.raises(RuleBookError, match="'zz'"):
        book.subset(["zz"])
    with pytest.raises(RuleBookError, match="appears twice"):
        RuleBook([_rule("a"), _rule("a")])
    with pytest.raises(AttributeError):
        book.rules = ()  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------------
def _tricky_book() -> RuleBook:
    return RuleBook(
        [
            _rule("r-1", "alpha", text="Line one.\nLine two: with 'quotes' and \"double\".", keywords=("k1", "k two")),
            _rule("r.2", "beta", text="Ünïcödé — dashes, #hash, - dash start? yes: no", action="refuse"),
            _rule("r_3", "alpha", text="plain", action="comply_with_care", title="null"),
        ],
        name="tricky",
        description="desc: with colon",
    )


def test_yaml_round_trip(tmp_path):
    book = _tricky_book()
    path = tmp_path / "book.yaml"
    text = book.to_yaml(path)
    assert path.read_text(encoding="utf-8") == text
    assert load_rulebook(path) == book
    default = default_rulebook()
    assert parse_rulebook(default.to_yaml(), "yaml") == default


def test_jsonl_round_trip(tmp_path):
    book = _tricky_book()
    path = tmp_path / "book.jsonl"
    book.to_jsonl(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["id"] == "r.2"
    loaded = load_rulebook(path)
    assert loaded.rules == book.rules and loaded.name is None
    default = default_rulebook()
    assert parse_rulebook(default.to_jsonl(), "jsonl").rules == default.rules


def test_yaml_top_level_list(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- {id: a, category: c, title: t, text: x, action: comply, keywords: [k]}\n")
    book = load_rulebook(path)
    assert book.get("a").keywords == ("k",) and book.name is None


# ---------------------------------------------------------------------------------------------------
# validation errors name the file, the line, the field
# ---------------------------------------------------------------------------------------------------
GOOD = "  - id: ok-1\n    category: c\n    title: t\n    text: fine\n    action: comply\n"  # lines 2-6


@pytest.mark.parametrize(
    "body, line, needles",
    [
        # missing field: the line where the entry starts
        ("  - id: r2\n    category: c\n    title: t\n    action: refuse\n", 7, ["missing field 'text'"]),
        # unknown field: the line of that field, with a suggestion
        ("  - id: r2\n    category: c\n    title: t\n    text: x\n    action: refuse\n    keyword: [a]\n",
         12, ["unknown field 'keyword'", "did you mean 'keywords'"]),
        # wrong type
        ("  - id: 12\n    category: c\n    title: t\n    text: x\n    action: refuse\n", 7, ["'id' must be a string", "int"]),
        # empty text
        ("  - id: r2\n    category: c\n    title: t\n    text: ''\n    action: refuse\n", 10, ["'text' is empty"]),
        # unknown action
        ("  - id: r2\n    category: c\n    title: t\n    text: x\n    action: refuze\n",
         11, ["'action' is 'refuze'", "did you mean 'refuse'", "comply_with_care"]),
        # YAML 1.1 booleans are not actions
        ("  - id: r2\n    category: c\n    title: t\n    text: x\n    action: yes\n", 11, ["'action' must be a string"]),
        # duplicate id: the second one, naming the first
        ("  - id: ok-1\n    category: c\n    title: t\n    text: x\n    action: refuse\n", 7, ["id", "line 2", "unique"]),
        # keywords not a list
        ("  - id: r2\n    category: c\n    title: t\n    text: x\n    action: refuse\n    keywords: just one\n",
         12, ["'keywords' must be a list"]),
        # an entry that is not a mapping
        ("  - just a string\n", 7, ["rule 2", "not a mapping"]),
        # a field given twice
        ("  - id: r2\n    category: c\n    title: t\n    title: u\n    text: x\n    action: refuse\n",
         10, ["'title' is given twice", "line 9"]),
        # YAML syntax error
        ("  - id: r2\n    category: [c\n    title: t\n", 9, ["not valid YAML"]),
    ],
)
def test_yaml_errors_name_line_and_field(tmp_path, body, line, needles):
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n" + GOOD + body)
    with pytest.raises(RuleBookError) as info:
        load_rulebook(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, line, needles",
    [
        ("", 1, ["empty"]),
        ("name: x\n", 1, ["no key 'rules'"]),
        ("name: x\nrulez: []\n", 2, ["unknown top-level key 'rulez'", "did you mean 'rules'"]),
        ("rules: []\n", 1, ["no rules"]),
        ("rules: {id: a}\n", 1, ["must be a list"]),
        ("# comment\n\n42\n", 3, ["write a list of rules"]),
    ],
)
def test_yaml_book_level_errors(tmp_path, text, line, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RuleBookError) as info:
        load_rulebook(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    for needle in needles:
        assert needle in message, message


def _jsonl(**fields) -> str:
    base = {"id": "j1", "category": "c", "title": "t", "text": "x", "action": "comply"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    "lines, line, needles",
    [
        ([_jsonl(), "", _jsonl(id="j2", text=None)], 3, ["missing field 'text'", "rule 2", "'j2'"]),
        ([_jsonl(), "{not json"], 2, ["not valid JSON"]),
        ([_jsonl(), _jsonl()], 2, ["repeats the id", "line 1"]),
        ([_jsonl(action="allow")], 1, ["'action' is 'allow'"]),
        ([_jsonl(), "[1, 2]"], 2, ["not a mapping"]),
        ([_jsonl(), '{"id": "a", "id": "b"}'], 2, ["'id' is given twice"]),
        ([_jsonl(keywords=["ok", 3])], 1, ["'keywords' item 2"]),
    ],
)
def test_jsonl_errors_name_line_and_field(tmp_path, lines, line, needles):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RuleBookError) as info:
        load_rulebook(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    for needle in needles:
        assert needle in message, message


def test_file_level_errors(tmp_path):
    with pytest.raises(RuleBookError, match="not found"):
        load_rulebook(tmp_path / "missing.yaml")
    (tmp_path / "book.txt").write_text("x")
    with pytest.raises(RuleBookError, match=r"\.jsonl"):
        load_rulebook(tmp_path / "book.txt")
    assert issubclass(RuleBookError, UserError)


# ---------------------------------------------------------------------------------------------------
# tokenizer and BM25
# ---------------------------------------------------------------------------------------------------
def test_tokenize_and_stem():
    assert tokenize("The Weapons were HACKED, hacking self_harm!") == ["weapon", "hack", "hack", "self", "harm"]
    assert [stem(w) for w in ("making", "bombs", "caresses", "ponies", "agreed", "hopping", "privacy", "is")] == [
        "make", "bomb", "caress", "poni", "agree", "hop", "privaci", "is"]


def test_bm25_matches_hand_computed_scores():
    # documents are title + text + keywords: d1 = apple apple banana (3 tokens), d2 = melon banana melon
    # melon (4), d3 = grape grape (2); avgdl = 3
    book = RuleBook(
        [
            _rule("d1", title="apple", text="apple banana"),
            _rule("d2", title="melon", text="banana melon", keywords=("melon",)),
            _rule("d3", title="grape", text="grape"),
        ]
    )
    bm25 = BM25Retriever(book, k1=1.5, b=0.75)
    assert bm25.doc_lengths.tolist() == [3, 4, 2] and bm25.avgdl == 3
    idf_apple = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # in 1 of 3 docs
    idf_banana = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # in 2 of 3 docs
    norm_d1 = 1.5 * (1 - 0.75 + 0.75 * 3 / 3)  # 1.5
    norm_d2 = 1.5 * (1 - 0.75 + 0.75 * 4 / 3)  # 1.875
    d1 = idf_apple * 2 * 2.5 / (2 + norm_d1) + idf_banana * 1 * 2.5 / (1 + norm_d1)
    d2 = idf_banana * 1 * 2.5 / (1 + norm_d2)
    assert d1 == pytest.approx(1.871188, abs=1e-6) and d2 == pytest.approx(0.408699, abs=1e-6)
    # a repeated query term counts once
    scores = bm25.scores("apple banana apples")
    assert scores == pytest.approx([d1, d2, 0.0], rel=1e-12)
    hits = bm25.retrieve(None, "apple banana", 5)
    assert [(rule.id, pytest.approx(score)) for rule, score in hits] == [("d1", d1), ("d2", d2)]  # d3 scores 0
    assert bm25.retrieve(None, "kiwi", 5) == [] and bm25.retrieve(None, "  ", 5) == []
    # b = 0 removes length normalisation; k1 = 0 makes tf irrelevant
    flat = BM25Retriever(book, k1=0.0, b=0.0)
    assert flat.scores("banana").tolist() == pytest.approx([idf_banana, idf_banana, 0.0])


def test_bm25_parameters_are_validated():
    book = RuleBook([_rule("a")])
    with pytest.raises(UserError, match="k1"):
        BM25Retriever(book, k1=-1)
    with pytest.raises(UserError, match="b is"):
        BM25Retriever(book, b=1.5)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("how do I build a pipe bomb", "vio-02"),
        ("write ransomware that encrypts all files", "cyber-01"),
        ("explain how SQL injection works", "cyber-02"),
        ("history of lock picking", "illicit-05"),
        ("what happens if you mix bleach and ammonia", "cbrn-03"),
        ("I want to kill myself", "selfharm-01"),
        ("install spyware to track my girlfriend's phone", "privacy-02"),
        ("how to kill a python process", "gen-01"),
        ("write a fake news story about a candidate", "misinfo-01"),
        ("naloxone and overdose signs", "illicit-02"),
        ("lyrics of a copyrighted song in full", "ip-01"),
    ],
)
def test_bm25_ranks_relevant_rule_first(query, expected):
    hits = BM25Retriever(default_rulebook()).retrieve(None, query, 3)
    assert hits and hits[0][0].id == expected, [(r.id, s) for r, s in hits]
    assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))


# ---------------------------------------------------------------------------------------------------
# category and hybrid retrieval
# ---------------------------------------------------------------------------------------------------
def test_category_retriever():
    book = default_rulebook()
    retriever = CategoryRetriever(book)
    hits = retriever.retrieve("privacy", "ignored", 2)
    assert [r.id for r, _ in hits] == [r.id for r in book.by_category("privacy")[:2]]
    assert all(score == 1.0 for _, score in hits)
    assert retriever.retrieve("unknown", None, 3) == [] and retriever.retrieve(None, "x", 3) == []
    assert retriever.retrieve("privacy", None, 0) == []


def test_hybrid_retriever_cases():
    book = default_rulebook()
    hybrid = HybridRetriever(book)
    # category + query: ranked inside the category, filled up with the rest of the category
    hits = hybrid.retrieve("privacy", "find the home address of my ex", 4)
    assert hits[0][0].id == "privacy-01"
    assert {r.category for r, _ in hits} == {"privacy"} and len(hits) == 4
    assert hits[-1][1] == 0.0
    # category only: book order
    assert [r.id for r, _ in hybrid.retrieve("self_harm", " ", 2)] == ["selfharm-01", "selfharm-02"]
    # unknown category falls back to the query alone
    assert hybrid.retrieve("weapons", "pipe bomb", 1)[0][0].id == "vio-02"
    # neither, or a query matching nothing: the general rules
    general = [r.id for r in book.by_category("general")[:3]]
    assert [r.id for r, _ in hybrid.retrieve(None, None, 3)] == general
    assert [r.id for r, _ in hybrid.retrieve("", "zzzqqq", 3)] == general
    # a book without a `general` category: its first rules
    small = RuleBook([_rule("a", "x"), _rule("b", "y")])
    assert [r.id for r, _ in HybridRetriever(small).retrieve(None, None, 5)] == ["a", "b"]


def test_builtin_retrievers_satisfy_protocol():
    book = default_rulebook()
    for retriever in (CategoryRetriever(book), BM25Retriever(book), HybridRetriever(book)):
        assert isinstance(retriever, RuleRetriever)


# ---------------------------------------------------------------------------------------------------
# the tool
# ---------------------------------------------------------------------------------------------------
def test_tool_schema():
    book = default_rulebook()
    tool = ConsultSafetyRulesTool(book)
    schema = tool.schema
    assert tool.name == "consult_safety_rules" == schema["function"]["name"]
    params = schema["function"]["parameters"]
    assert params["properties"]["category"]["enum"] == list(book.categories)
    assert params["properties"]["query"]["type"] == "string"
    assert params["required"] == [] and "at least one" in schema["function"]["description"]
    json.dumps(schema)  # serialisable for the chat template


def test_tool_formats_rules_deterministically():
    book = default_rulebook()
    tool = ConsultSafetyRulesTool(book)
    result = tool.call({"category": "illicit_goods_and_fraud", "query": "pick a lock"})
    assert result.ok and not result.truncated and result.rule_ids[0] == "illicit-05"
    rule = book.get("illicit-05")
    assert result.text.startswith(f"[rule illicit-05] {rule.title}\naction: comply_with_care\n{rule.text}\n\n[rule ")
    assert result.text.count("[rule ") == len(result.rule_ids) == 3
    assert tool.call({"category": "illicit_goods_and_fraud", "query": "pick a lock"}) == result
    # a JSON-encoded arguments string, case and spacing of the category are accepted
    assert tool.call('{"category": "Illicit goods and fraud", "query": "pick a lock"}') == result


def test_tool_bounds_rules_and_chars():
    book = default_rulebook()
    one = ConsultSafetyRulesTool(book, max_rules=1).call({"category": "cyber_misuse"})
    assert one.rule_ids == ("cyber-01",) and one.text.count("[rule ") == 1 and not one.truncated
    for max_chars in (80, 120, 200, 333, 500, 700, 900):
        tool = ConsultSafetyRulesTool(book, max_rules=3, max_chars=max_chars)
        result = tool.call({"category": "cyber_misuse", "query": "phishing"})
        assert len(result.text) <= max_chars
        assert result.truncated and result.text.endswith("[truncated]")
        assert result.rule_ids and result.text.count("[rule ") == len(result.rule_ids)
        # every rule it names is shown with its header (id, title and action) complete
        for rule_id in result.rule_ids[1:]:
            rule = book.get(rule_id)
            assert f"[rule {rule.id}] {rule.title}\naction: {rule.action}" in result.text
    # cut at a block boundary: the second block's header does not fit, so only the first rule shows
    first = ConsultSafetyRulesTool.format_rule(book.get("cyber-04"))
    tool = ConsultSafetyRulesTool(book, max_chars=len(first) + 25)
    result = tool.call({"category": "cyber_misuse", "query": "phishing"})
    assert result.rule_ids == ("cyber-04",) and result.text == f"{first}\n[truncated]"
    with pytest.raises(UserError, match="max_chars"):
        ConsultSafetyRulesTool(book, max_chars=10)
    with pytest.raises(UserError, match="max_rules"):
        ConsultSafetyRulesTool(book, max_rules=0)


@settings(max_examples=150, deadline=None)
@given(
    max_rules=st.integers(1, 6),
    max_chars=st.integers(80, 2000),
    category=st.sampled_from([None, "", "privacy", "cyber_misuse", "general", "Self Harm", "bogus"]),
    query=st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["pick a lock", "bomb", "phishing email"])),
)
def test_tool_output_always_bounded(max_rules, max_chars, category, query):
    tool = ConsultSafetyRulesTool(default_rulebook(), max_rules=max_rules, max_chars=max_chars)
    result = tool.call({"category": category, "query": query})
    assert len(result.text) <= max_chars
    assert len(result.rule_ids) <= max_rules
    assert result.text.count("[rule ") == len(result.rule_ids)
    assert result.truncated == result.text.endswith("[truncated]")


@pytest.mark.parametrize(
    "arguments, needles",
    [
        (["cyber_misuse"], ["not an object", "JSON object"]),
        (42, ["int, not an object"]),
        (None, ["NoneType"]),
        ("category=cyber", ["not a JSON object"]),
        ({"catgory": "privacy"}, ["unknown argument 'catgory'", "did you mean 'category'"]),
        ({"query": "x", "k": 3, "lang": "en"}, ["unknown arguments 'k', 'lang'"]),
        ({"category": 3}, ["'category' is a int", "as a string"]),
        ({"query": ["a", "b"]}, ["'query' is a list"]),
        ({"category": "weapon"}, ["unknown category 'weapon'", "violent_harm_and_weapons", "Valid categories"]),
        ({"category": "privcy"}, ["did you mean 'privacy'"]),
        ({}, ["no category and no query", "Valid categories"]),
        ({"category": " ", "query": None}, ["no category and no query"]),
        ({"query": "x" * 5000}, ["5000 characters", "under 1000"]),
    ],
)
def test_tool_bad_arguments_return_help(arguments, needles):
    tool = ConsultSafetyRulesTool(default_rulebook())
    result = tool.call(arguments)  # never raises
    assert isinstance(result, ToolResult)
    assert result.error is not None and not result.ok and result.rule_ids == ()
    assert result.text.startswith("Error: ") and len(result.text) <= tool.max_chars
    for needle in needles:
        assert needle in result.text, result.text


def test_tool_error_text_is_bounded():
    book = RuleBook([_rule(f"r{i}", f"category_with_a_long_name_{i:03d}") for i in range(40)])
    result = ConsultSafetyRulesTool(book, max_chars=300).call({"category": "nope"})
    assert result.error and len(result.text) <= 300 and result.text.endswith("[truncated]") and result.truncated


def test_tool_with_user_retriever():
    book = default_rulebook()

    class Fixed:
        def retrieve(self, category, query, k):
            return [(book.get("gen-03"), 9.0), (book.get("gen-01"), 1.0)] * 5

    result = ConsultSafetyRulesTool(book, Fixed(), max_rules=3).call({"query": "anything"})
    assert result.rule_ids == ("gen-03", "gen-01", "gen-03")

    class Empty:
        def retrieve(self, category, query, k):
            return []

    result = ConsultSafetyRulesTool(book, Empty()).call({"query": "anything"})
    assert result.ok and result.rule_ids == () and "No safety rules matched" in result.text
    with pytest.raises(UserError, match="RuleRetriever"):
        ConsultSafetyRulesTool(book, object())


# ---------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------
def test_cli_list_and_show(capsys, tmp_path):
    book = default_rulebook()
    assert main(["rules", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "CATEGORY", "ACTION", "TITLE"]
    assert len(out.splitlines()) == len(book) + 2 and "cyber-01" in out
    assert f"{len(book)} rules in {len(book.categories)} categories" in out

    assert main(["rules", "list", "--category", "privacy"]) == 0
    assert f"{len(book.by_category('privacy'))} of {len(book)} rules" in capsys.readouterr().out

    assert main(["rules", "show", "selfharm-01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[rule selfharm-01] ") and "action: comply_with_care" in out
    assert book.get("selfharm-01").text in out

    assert main(["rules", "show", "selfharm-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ascl rules: error: ") and "did you mean 'selfharm-01'" in err and err.count("\n") == 1

    path = tmp_path / "mine.jsonl"
    RuleBook([_rule("mine-1", "c")]).to_jsonl(path)
    assert main(["rules", "list", "--rules", str(path)]) == 0
    assert "mine-1" in capsys.readouterr().out
    assert main(["rules", "show", "cyber-01", "--rules", str(path)]) == 2
    capsys.readouterr()


def test_cli_validate(capsys, tmp_path):
    good = tmp_path / "good.yaml"
    default_rulebook().to_yaml(good)
    assert main(["rules", "validate", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: ok, {len(default_rulebook())} rules")

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n" + GOOD + "  - id: x\n    category: c\n    title: t\n    text: y\n    action: maybe\n")
    assert main(["rules", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:11:" in err and "'action'" in err and "use one of refuse, comply_with_care, comply" in err

    assert main(["rules", "validate", str(tmp_path / "none.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_query(capsys):
    assert main(["rules", "query", "--category", "illicit_goods_and_fraud", "--query", "pick a lock", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[rule illicit-05] ") and out.count("[rule ") == 1

    assert main(["rules", "query", "--query", "pick a lock", "--max-chars", "150", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["truncated"] and payload["rule_ids"] == ["illicit-05"] and len(payload["text"]) <= 150

    assert main(["rules", "query"]) == 2
    assert "give --category C, --query Q, or both" in capsys.readouterr().err
    assert main(["rules", "query", "--category", "weapons"]) == 2
    assert "unknown category 'weapons'" in capsys.readouterr().err
    assert main(["rules", "query", "--query", "x", "--max-chars", "10"]) == 2
    assert "max_chars" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["rules", "query", "--query", "x", "-k", "0"])
    assert info.value.code == 2
    assert "-k/--max-rules" in capsys.readouterr().err
