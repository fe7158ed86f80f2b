"Data stage: every format, every bad-input case, label masks on the real chat template, splits, truncation, packing, save/reload, CLI."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, assume, HealthCheck, strategies as st

from qlora_course.models import load_tokenizer, data_dir
from qlora_course.data import (read_records, normalise, prepare, load_prepared, tokenize_messages, prompt_and_answer,
                               render_prompt, split_records, dedupe, record_key, pack, check_label_mask, plot_label_mask, BadRecord,
                               TEMPLATES, SPLITS)
from qlora_course.cli import main as cli_main

EX = data_dir()/"examples"
BIN = Path(sys.executable).parent

@pytest.fixture(scope="module")
def tok(): return load_tokenizer()  # the real SmolLM2-135M-Instruct tokenizer and chat template

def write(p, text, enc="utf-8"):
    p.write_bytes(text.encode(enc)); return p

# ---------------------------------------------------------------- formats
@pytest.mark.parametrize("name,fmt,n", [("alpaca.json", "alpaca", 9), ("qa.csv", "qa", 6), ("chat.jsonl", "chat", 6),
                                        ("sharegpt.json", "chat", 4), ("completion.jsonl", "completion", 3),
                                        ("text.jsonl", "text", 3)])
def test_example_files_detected(name, fmt, n):
    recs, rep = read_records(EX/name)
    assert len(recs) == n and rep.read == n and not rep.skipped
    assert rep.formats == {str(EX/name): fmt}
    for r in recs:
        if fmt == "text": assert set(r) == {"text"}
        else:
            assert set(r) == {"messages"}
            assert {m["role"] for m in r["messages"]} <= {"system", "user", "assistant"}
            assert r["messages"][-1]["role"] == "assistant"

def test_explicit_format_and_alias():
    a, _ = read_records(EX/"sharegpt.json", fmt="sharegpt")
    b, _ = read_records(EX/"sharegpt.json")
    assert a == b
    assert a[1]["messages"][0] == {"role": "system", "content": "You are a terse librarian."}
    assert [m["role"] for m in a[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]

def test_alpaca_input_and_chinese():
    recs, _ = read_records(EX/"alpaca.json")
    assert recs[1]["messages"][0]["content"] == "Give the plural of the noun.\n\nmouse"
    assert recs[3]["messages"][0]["content"] == "Write a haiku about a kettle."  # empty input adds nothing
    assert recs[7]["messages"][1]["content"] == "The weather is nice today."
    assert recs[8]["messages"][0]["content"] == "用一句话解释什么是光合作用。"

def test_csv_quotes_extra_columns():
    recs, _ = read_records(EX/"qa.csv")
    assert recs[2]["messages"] == [{"role": "user", "content": "Which is larger, 2^10 or 10^3?"},
                                   {"role": "assistant", "content": "2^10 (1024) is larger than 10^3 (1000)."}]
    assert recs[4]["messages"][0]["content"] == 'What does the abbreviation "CPU" stand for?'
    assert recs[5]["messages"][1]["content"] == "北京"

def test_csv_bom_mapping_any_column_order():
    assert (EX/"qa_bom.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    recs, rep = read_records(EX/"qa_bom.csv", fmt="qa", mapping={"question": "query", "answer": "reply"})
    assert len(recs) == 4 and not rep.skipped
    assert recs[0]["messages"] == [{"role": "user", "content": "What is the capital of Australia?"},
                                   {"role": "assistant", "content": "Canberra"}]
    assert recs[3]["messages"][0]["content"] == "“water”用中文怎么说？"
    # mapping given as a JSON string too, and detection after mapping
    recs2, _ = read_records(EX/"qa_bom.csv", mapping='{"question": "query", "answer": "reply"}')
    assert recs2 == recs

def test_parquet_list_dataset_and_folder(tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    from datasets import Dataset
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path/"d.parquet")
    a, rep = read_records(tmp_path/"d.parquet")
    assert rep.formats[str(tmp_path/"d.parquet")] == "completion"
    b, _ = read_records(rows)
    c, _ = read_records(Dataset.from_list(rows))
    assert a == b == c and a[4]["messages"][1]["content"] == "c4"
    (tmp_path/"chat.jsonl").write_bytes((EX/"chat.jsonl").read_bytes())
    d, rep = read_records(tmp_path)
    assert len(d) == 5 + 6 and sorted(rep.formats.values()) == ["chat", "completion"]

def test_chat_message_level_mapping():
    rec = {"dialog": [{"speaker": "user", "text": "hi"}, {"speaker": "assistant", "text": "hello"}]}
    r, _ = read_records([rec], fmt="chat", mapping={"messages": "dialog", "role": "speaker", "content": "text"})
    assert r[0]["messages"][1] == {"role": "assistant", "content": "hello"}

def test_jsonl_saved_as_json(tmp_path):
    p = write(tmp_path/"x.json", '{"text": "a"}\n{"text": "b"}\n')
    assert [r["text"] for r in read_records(p)[0]] == ["a", "b"]

# ---------------------------------------------------------------- bad input: each its own message
def test_malformed_json_line_names_file_and_line(tmp_path):
    p = write(tmp_path/"bad.jsonl", '{"text": "a"}\n\n{"text": "b"\n{"text": "c"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 3: malformed JSON"): read_records(p)

def test_malformed_json_file_names_line_and_column(tmp_path):
    p = write(tmp_path/"bad.json", '[{"text": "a"},\n {"text" "b"}]')
    with pytest.raises(ValueError, match=r"bad\.json: malformed JSON at line 2, column 10"): read_records(p)

def test_missing_field_names_record_and_field(tmp_path):
    p = write(tmp_path/"m.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "input": "d"}\n')
    with pytest.raises(BadRecord, match=r"m\.jsonl:2: missing field 'output'"): read_records(p)
    with pytest.raises(BadRecord, match=r"record 2: missing field 'answer'"):
        read_records([{"question": "q", "answer": "a"}, {"question": "q2"}])
    p = write(tmp_path/"m.json", json.dumps([{"question": "q", "answer": "a"}, {"question": "", "answer": "x"}]))
    with pytest.raises(BadRecord, match=r"m\.json record 2: field 'question' is empty"): read_records(p)

def test_unknown_format_lists_formats_and_keys(tmp_path):
    p = write(tmp_path/"u.jsonl", '{"query": "a", "response": "b"}\n')
    with pytest.raises(ValueError) as e: read_records(p)
    msg = str(e.value)
    assert "['query', 'response']" in msg
    for f in ("alpaca", "qa", "chat", "completion", "text"): assert f in msg
    with pytest.raises(ValueError, match="Unknown format 'dolly'. Known formats: alpaca"): read_records(p, fmt="dolly")

@pytest.mark.parametrize("name,content", [("e.jsonl", ""), ("e.jsonl", "\n \n"), ("e.json", "[]"), ("e.csv", ""),
                                          ("e.csv", "question,answer\n")])
def test_empty_file(tmp_path, name, content):
    p = write(tmp_path/name, content)
    with pytest.raises(ValueError, match="is empty"): read_records(p)

def test_empty_list_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="list of records is empty"): read_records([])
    with pytest.raises(FileNotFoundError, match="not found"): read_records(tmp_path/"nope.jsonl")
    with pytest.raises(FileNotFoundError, match="holds no data files"): read_records(tmp_path)

def test_empty_split(tmp_path):
    recs = [{"text": f"t{i}"} for i in range(4)]
    with pytest.raises(ValueError, match="leave the validation split empty with 4 records"): split_records(recs)
    with pytest.raises(ValueError, match="leave the test split empty"): prepare(recs, load_tokenizer(), ratios=(0.75, 0.2, 0.05))
    with pytest.raises(ValueError, match="summing to 1"): split_records(recs, (0.5, 0.5, 0.5))

def test_wrong_role_name(tmp_path):
    p = write(tmp_path/"r.jsonl", json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}) + "\n")
    with pytest.raises(BadRecord, match=r"r\.jsonl:1 message 1: unknown role 'bot'; known roles: system, user, human, assistant, gpt"):
        read_records(p)

def test_non_utf8_file(tmp_path):
    p = write(tmp_path/"l.csv", "question,answer\nCafé?,oui\n", "latin-1")
    with pytest.raises(ValueError, match=r"l\.csv is not UTF-8 text: byte 0xe9 at offset 19 \(line 2\)"): read_records(p)

def test_csv_without_mapped_columns():
    with pytest.raises(ValueError, match=r"no column 'question_text' \(mapped to 'question'\); its columns are \['topic', 'reply', 'query'\]"):
        read_records(EX/"qa_bom.csv", fmt="qa", mapping={"question": "question_text", "answer": "reply"})

def test_mapping_absent_in_json(tmp_path):
    with pytest.raises(ValueError, match=r"mapping names field 'query' \(mapped to 'instruction'\)"):
        read_records([{"instr": "a", "output": "b"}], fmt="alpaca", mapping={"instruction": "query"})

def test_strict_stops_lenient_reports_every_skip(tmp_path):
    lines = ['{"instruction": "a", "output": "b"}', '{"instruction": "c", "output": "d"',
             '{"instruction": "e"}', '{"instruction": "f", "output": "g"}', '[1, 2]',
             '{"instruction": "h", "output": ""}', '{"instruction": "i", "output": "j"}']
    p = write(tmp_path/"mix.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(BadRecord, match="strict mode stops at the first bad record"): read_records(p)
    recs, rep = read_records(p, strict=False)
    assert [r["messages"][0]["content"] for r in recs] == ["a", "f", "i"]
    assert rep.read == 7 and rep.kept == 3
    assert [w for w, _ in rep.skipped] == [f"{p}:{i}" for i in (2, 3, 5, 6)]
    reasons = [r for _, r in rep.skipped]
    assert "malformed JSON" in reasons[0] and "missing field 'output'" in reasons[1]
    assert "expected an object" in reasons[2] and "'output' is empty" in reasons[3]
    assert all(f"skipped {w}" in str(rep) for w, _ in rep.skipped)
    prep = prepare(p, load_tokenizer(), strict=False, ratios=(1 / 3, 1 / 3, 1 / 3))
    assert prep.summary().count("skipped ") == 5  # the counts line and one line per skipped record

def test_all_records_bad(tmp_path):
    p = write(tmp_path/"allbad.jsonl", '{"instruction": "a"}\n{"instruction": "b"}\n')
    with pytest.raises(ValueError, match="No usable records"): read_records(p, fmt="alpaca", strict=False)

# ---------------------------------------------------------------- templates and label masks (real chat template)
SINGLE = [{"role": "user", "content": "Rewrite the date in ISO 8601 format.\n\nMarch 5, 2021"},
          {"role": "assistant", "content": "2021-03-05"}]
MULTI = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Is 91 prime?"},
         {"role": "assistant", "content": "No: 91 = 7 x 13."}, {"role": "user", "content": "And 97?"},
         {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "一周有几天？"},
         {"role": "assistant", "content": "七天。"}]

def _answer_spans(tok, msgs, template):
    enc = tokenize_messages(tok, msgs, template=template)
    ids, labels = enc["input_ids"], enc["labels"]
    return ids, labels, [(i, l) for i, l in zip(ids, labels) if l != -100]

@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("msgs", [SINGLE, MULTI], ids=["single", "multi"])
def test_label_mask_real_template(tok, template, msgs):
    check_label_mask(tok, msgs, template)
    ids, labels, trained = _answer_spans(tok, msgs, template)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    # every answer token and its end-of-turn is trained, and nothing else
    want = [t for a in answers for t in tok(a + "<|im_end|>", add_special_tokens=False)["input_ids"]]
    assert [i for i, _ in trained] == want
    assert sum(1 for i, l in zip(ids, labels) if i == eot and l != -100) == len(answers)
    # under the chat template every turn ends with <|im_end|>: those closing the system and user turns are not trained on
    if template == "chat": assert sum(1 for i in ids if i == eot) == len(msgs) + (msgs[0]["role"] != "system")
    # the prompt of the last answer, as generation sees it, is entirely untrained except earlier answers
    p, a = prompt_and_answer({"messages": msgs})
    assert a == answers[-1]
    n = len(ids) - len(trained[-len(tok(a + "<|im_end|>", add_special_tokens=False)["input_ids"]):]) - (ids[-1] != eot)
    assert tok.decode(ids[:n]) == render_prompt(tok, p, template)

def test_chat_template_is_chatml_with_default_system(tok):
    ids = tokenize_messages(tok, SINGLE)["input_ids"]
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("2021-03-05<|im_end|>\n")
    assert tok.pad_token_id == tok.convert_tokens_to_ids("<|im_end|>")  # why masks never come from pad ids

def test_alpaca_and_plain_templates(tok):
    p, _ = prompt_and_answer({"messages": SINGLE})
    a = render_prompt(tok, p, "alpaca")
    assert "### Instruction:\nRewrite the date in ISO 8601 format.\n\n### Input:\nMarch 5, 2021\n\n### Response:\n" in a
    assert a.endswith("### Response:\n")
    assert render_prompt(tok, p, "plain").endswith("User: Rewrite the date in ISO 8601 format.\n\nMarch 5, 2021\nAssistant: ")
    with pytest.raises(ValueError, match="Unknown template"): render_prompt(tok, p, "vicuna")
    with pytest.raises(ValueError, match="Unknown template"): prepare(EX/"chat.jsonl", tok, template="vicuna")

text_st = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn", "Co", "Cc")) | st.sampled_from("\n\t "),
                  min_size=1, max_size=40).filter(lambda s: s.strip() and "<|" not in s)

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(text_st, text_st), min_size=1, max_size=3), system=st.none() | text_st,
       template=st.sampled_from(TEMPLATES))
def test_label_mask_fuzz(tok, turns, system, template):
    # the check compares decoded text, so skip the rare characters this tokenizer cannot encode losslessly
    assume(all(tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t for t in (system or "", *sum(turns, ()))))
    msgs = ([{"role": "system", "content": system}] if system else []) + \
           [m for u, a in turns for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
    check_label_mask(tok, msgs, template)

def test_text_records_train_every_token(tok):
    enc = tokenize_messages(tok, {"text": "plain prose for pretraining"})
    assert enc["labels"] == enc["input_ids"] and enc["input_ids"][-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="no answer"): prompt_and_answer({"text": "x"})

# ---------------------------------------------------------------- split, dedup, truncation, packing
def test_dates_split_counts_and_determinism(tok):
    a = prepare(data_dir()/"dates.jsonl", tok)
    assert {s: len(v) for s, v in a.splits.items()} == {"train": 960, "validation": 120, "test": 120}
    b = prepare(data_dir()/"dates.jsonl", tok)
    assert a.splits == b.splits and a.tokenized["train"]["labels"] == b.tokenized["train"]["labels"]
    c = prepare(data_dir()/"dates.jsonl", tok, seed=7)
    assert c.splits["test"] != a.splits["test"]
    keys = [record_key(r) for s in SPLITS for r in a.splits[s]]
    assert len(keys) == len(set(keys)) == 1200
    ex = a.tokenized["validation"][3]
    _, ans = prompt_and_answer(a.splits["validation"][3])
    assert tok.decode([i for i, l in zip(ex["input_ids"], ex["labels"]) if l != -100]) == ans + "<|im_end|>"

@settings(max_examples=25, deadline=None)
@given(n=st.integers(10, 200), seed=st.integers(0, 10**6), dup=st.integers(0, 30))
def test_split_properties(n, seed, dup):
    recs = [{"text": f"r{i}"} for i in range(n)]
    recs2, removed = dedupe(recs + recs[:min(dup, n)])
    assert removed == min(dup, n) and recs2 == recs
    sp = split_records(recs2, (0.8, 0.1, 0.1), seed)
    assert sp == split_records(recs2, (0.8, 0.1, 0.1), seed)
    keys = [record_key(r) for s in SPLITS for r in sp[s]]
    assert sorted(keys) == sorted(record_key(r) for r in recs)
    assert all(sp[s] for s in SPLITS)

def test_duplicates_removed_and_counted(tok, tmp_path):
    recs = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(20)]
    (tmp_path/"a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs + recs[:5]))
    (tmp_path/"b.json").write_text(json.dumps([{"instruction": "q3", "output": "a3"}]))  # the same record in another format
    p = prepare(tmp_path, tok, ratios=(0.5, 0.25, 0.25))
    assert p.report.read == 26 and p.duplicates == 6 and sum(len(v) for v in p.splits.values()) == 20
    assert "duplicates removed 6" in p.summary()

def test_truncation_reported(tok):
    long = [{"question": "Say it: " + "word " * 100, "answer": "word " * 50}] + \
           [{"question": f"q{i}", "answer": f"a{i}"} for i in range(9)]
    p = prepare(long, tok, max_len=80, ratios=(1, 0, 0))
    full = len(tokenize_messages(tok, normalise(long[0], "qa"))["input_ids"])
    st_ = p.stats["train"]
    assert st_["truncated"] == 1 and st_["tokens_lost"] == full - 80 and st_["no_answer_left"] == 1
    assert max(len(x) for x in p.tokenized["train"]["input_ids"]) == 80
    assert "lost every answer token" in p.summary()

def test_packing(tok):
    plain = prepare(EX/"chat.jsonl", tok, ratios=(1, 0, 0), max_len=256)
    packed = prepare(EX/"chat.jsonl", tok, ratios=(1, 0, 0), max_len=256, packing=True)
    assert packed.stats["train"]["rows"] < plain.stats["train"]["rows"]
    assert all(len(x) <= 256 for x in packed.tokenized["train"]["input_ids"])
    assert packed.stats["train"]["trained_tokens"] == plain.stats["train"]["trained_tokens"]
    flat = [i for x in packed.tokenized["train"]["input_ids"] for i in x]
    assert flat == [i for x in plain.tokenized["train"]["input_ids"] for i in x]  # order kept, nothing lost
    rows = pack([{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [1, 2]}] * 3, 4)
    assert [r["labels"] for r in rows] == [[-100, 2, -100, 2], [-100, 2]]

# ---------------------------------------------------------------- summary, save/reload, CLI
def test_summary_save_reload(tok, tmp_path):
    p = prepare(EX/"alpaca.json", tok, ratios=(0.6, 0.2, 0.2), template="alpaca")
    s = p.summary()
    for word in ("train", "validation", "test", "median", "p95", "template: alpaca"): assert word in s
    out = p.save(tmp_path/"prep")
    assert sorted(x.name for x in out.iterdir()) == ["lengths.png", "prepared.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert (out/"lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert "光合作用" in (out/"train.jsonl").read_text(encoding="utf-8") + (out/"validation.jsonl").read_text(encoding="utf-8") \
        + (out/"test.jsonl").read_text(encoding="utf-8")  # UTF-8 written as text, not \u escapes
    back = load_prepared(out, tok)
    assert back.splits == p.splits and back.config == p.config
    for s in SPLITS: assert back.tokenized[s].to_dict() == p.tokenized[s].to_dict()
    assert read_records(out/"test.jsonl")[0] == p.splits["test"]
    with pytest.raises(FileNotFoundError, match="not a prepared-data folder"): load_prepared(tmp_path, tok)

def test_cli_in_process(tmp_path, capsys):
    rc = cli_main(["data", str(EX/"qa_bom.csv"), "--format", "qa", "--mapping", '{"question": "query", "answer": "reply"}',
                   "--ratios", "0.5", "0.25", "0.25", "--seed", "1", "--max-len", "128", "--out", str(tmp_path/"o")])
    out = capsys.readouterr().out
    assert rc == 0 and "validation" in out and "wrote train.jsonl" in out
    assert [len(read_records(tmp_path/"o"/f"{s}.jsonl")[0]) for s in SPLITS] == [2, 1, 1]
    rc = cli_main(["data", str(EX/"qa_bom.csv"), "--out", str(tmp_path/"o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot tell the format" in err and "['query', 'reply', 'topic']" in err
    rc = cli_main(["data", str(EX/"qa.csv"), "--mapping", "{bad", "--out", str(tmp_path/"o3")])
    assert rc == 2 and "--mapping is not valid JSON" in capsys.readouterr().err

def test_cli_lenient_reports_skips(tmp_path, capsys):
    p = write(tmp_path/"x.jsonl", "\n".join(json.dumps({"text": f"t{i}"}) for i in range(10)) + "\n{oops\n")
    assert cli_main(["data", str(p), "--out", str(tmp_path/"o")]) == 2
    assert f"{p} line 11: malformed JSON" in capsys.readouterr().err
    assert cli_main(["data", str(p), "--lenient", "--out", str(tmp_path/"o")]) == 0
    assert f"skipped {p}:11: {p} line 11: malformed JSON" in capsys.readouterr().out

@pytest.mark.slow  # a fresh interpreter importing torch and transformers: slow on a busy CPU; in-process CLI tests above are not
def test_cli_console_command(tmp_path):
    r = subprocess.run([str(BIN/"qlora-course"), "data", str(data_dir()/"dates.jsonl"), "--out", str(tmp_path/"d")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "960" in r.stdout
    assert [sum(1 for _ in open(tmp_path/"d"/f"{s}.jsonl", encoding="utf-8")) for s in SPLITS] == [960, 120, 120]

def test_plot_label_mask_one_box_per_token(tok):
    from matplotlib.colors import to_rgb
    enc = tokenize_messages(tok, [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}])
    fig = plot_label_mask(tok, enc, per_row=10)
    boxes = fig.axes[0].patches
    assert len(boxes) == len(enc["input_ids"])
    green = [b.get_facecolor()[:3] == to_rgb("#a9d18e") for b in boxes]
    assert green == [l != -100 for l in enc["labels"]]
