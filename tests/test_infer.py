"Tests of the inference stage (qlora_course.infer) on tiny-random: generation, adapters, evaluation, CLI."
import csv, io, json, subprocess, sys
from pathlib import Path
import pytest, torch
from hypothesis import given, settings, strategies as st
from qlora_course.models import load_model
from qlora_course.infer import generate, evaluate, answer_loss, load_with_adapter, compare, Chat, before_after
from qlora_course.data import tokenize_messages
from qlora_course.cli import main

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def mt(): return load_model("tiny-random")

@pytest.fixture(scope="module")
def adapter(tmp_path_factory, mt):
    from qlora_course.train import TrainConfig, train, load_splits
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig.preset("tiny", output_dir=str(out), max_steps=3, learning_rate=5e-2)
    return train(cfg, load_splits(cfg, mt[1]).tokenized["train"], tok=mt[1]).adapter_dir

@settings(max_examples=8, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30), min_size=2, max_size=4))
def test_batch_equals_single(mt, texts):
    m, tok = mt
    assert generate(m, tok, texts, max_new_tokens=4, batch_size=4) == [generate(m, tok, [t], max_new_tokens=4)[0] for t in texts]

def test_stops_at_end_of_turn(mt):
    m, tok = mt
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    # force the model to emit <|im_end|> first: bias the output layer towards it
    with torch.no_grad():
        bias = torch.zeros(m.config.vocab_size); bias[eot] = 1e4
        h = m.lm_head.register_forward_hook(lambda mod, i, o: o + bias)
        try: assert generate(m, tok, ["hi"], max_new_tokens=10) == [""]
        finally: h.remove()

def test_sampling_seeded(mt):
    m, tok = mt
    a = generate(m, tok, ["x", "y"], max_new_tokens=5, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=3)
    assert a == generate(m, tok, ["x", "y"], max_new_tokens=5, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=3)

def test_evaluate_counts_and_csv(tmp_path, mt):
    m, tok = mt
    recs = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(5)]
    res = evaluate(m, tok, recs, max_new_tokens=3, csv_path=tmp_path/"e.csv")
    rows = list(csv.DictReader(open(tmp_path/"e.csv")))
    assert len(rows) == 5 and [r["reference"] for r in rows] == [f"a{i}" for i in range(5)]
    assert res["exact_match"] == sum(int(r["correct"]) for r in rows) / 5
    assert res["answer_tokens"] == sum(sum(l != -100 for l in tokenize_messages(tok, r["messages"])["labels"]) for r in recs)
    # an answer equal to the reference counts as correct
    recs2 = [{"messages": [r["messages"][0], {"role": "assistant", "content": row["answer"]}]} for r, row in zip(recs, res["rows"])]
    assert evaluate(m, tok, recs2, max_new_tokens=3, with_loss=False)["exact_match"] == 1.0
    with pytest.raises(ValueError): evaluate(m, tok, [])

def test_adapter_on_off(adapter):
    pm, tok = load_with_adapter("tiny-random", adapter)
    base, _ = load_model("tiny-random")
    p = ["Rewrite the date in ISO 8601 format (YYYY-MM-DD). Answer with the date only.\n\n3 May 2001"]
    with pm.disable_adapter(): off = generate(pm, tok, p, max_new_tokens=6)
    assert off == generate(base, tok, p, max_new_tokens=6)
    c = compare(pm, tok, p, max_new_tokens=6)
    assert c[0]["base"] == off[0]
    with pytest.raises(FileNotFoundError): load_with_adapter("tiny-random", adapter.parent/"nothing")

def test_chat_history(mt):
    c = Chat(*mt, system="Be brief.", max_new_tokens=3)
    c.say("one"); c.say("two")
    assert [m["role"] for m in c.messages] == ["system", "user", "assistant", "user", "assistant"]
    c.reset(); assert c.messages == [{"role": "system", "content": "Be brief."}]

def test_cli_eval(tmp_path, adapter, capsys):
    assert main(["eval", "--model", "tiny-random", "--adapter", str(adapter), "--limit", "4", "--max-new-tokens", "4", "--csv", str(tmp_path/"r.csv")]) == 0
    out = capsys.readouterr().out
    res = json.loads([l for l in out.splitlines() if l.startswith("{")][0])
    assert res["n"] == 4 and "base_exact_match" in res and "| fine-tuned |" in out
    assert len(list(csv.DictReader(open(tmp_path/"r.csv")))) == 4
    assert main(["eval", "--model", "tiny-random", "--adapter", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as e: main(["eval", "--model", "tiny-random", "--split", "dev", "--limit", "2"])
    assert e.value.code == 2 and "invalid choice: 'dev'" in capsys.readouterr().err   # refused before any model loads

def test_cli_chat_subprocess():
    r = subprocess.run([str(Path(sys.executable).parent/"qlora-course"), "chat", "--model", "tiny-random", "--max-new-tokens", "3"],
                       input="hello\n/reset\nagain\n/quit\n", capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.count("> ") == 2 and "(history cleared)" in r.stdout
