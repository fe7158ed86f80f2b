"lm-evaluation-harness (the `eval` extra): the course's task written as a local harness task scores as the course's own `evaluate`."
import pytest
from qlora_course.infer import harness_task, harness_eval, evaluate, exact
from qlora_course.models import load_model, data_dir
from qlora_course.data import prepare

lm_eval = pytest.importorskip("lm_eval")

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, tok = load_model("tiny-random", device="cpu")
    recs = prepare(str(data_dir()/"dates.jsonl"), tok).splits["test"][:6]
    recs = [{"messages": [{"role": "system", "content": "Answer briefly."}] + r["messages"]} for r in recs]
    return model, tok, recs, tmp_path_factory.mktemp("harness")

def test_the_task_folder(setup):
    model, tok, recs, d = setup
    out, system = harness_task(recs, d/"task", tok)
    assert system == "Answer briefly." and sorted(p.name for p in out.iterdir()) == ["course_rule.py", "qlora_course_dates.parquet", "qlora_course_dates.yaml"]
    import pyarrow.parquet as pq
    t = pq.read_table(out/"qlora_course_dates.parquet")
    assert t.num_rows == 6 and t.column("answer")[0].as_py() == recs[0]["messages"][-1]["content"] and str(t.schema.field("answer").type) == "string"
    assert '"<|im_end|>"' in (out/"qlora_course_dates.yaml").read_text()

def test_bad_records_are_refused(setup, tmp_path):
    model, tok, recs, d = setup
    two = [{"messages": [{"role": "system", "content": "Other."}] + recs[0]["messages"][1:]}] + recs[1:]
    with pytest.raises(ValueError, match="2 different system prompts"): harness_task(two, tmp_path, tok)
    multi = [{"messages": recs[0]["messages"][1:] * 2}]
    with pytest.raises(ValueError, match="single-turn"): harness_task(multi, tmp_path, tok)
    with pytest.raises(ValueError, match="at least one"): harness_task([], tmp_path, tok)

def test_harness_answers_and_scores_as_evaluate(setup):
    model, tok, recs, d = setup
    out, system = harness_task(recs, d/"task2", tok)
    h = harness_eval(model, tok, out, system)
    e = evaluate(model, tok, recs, with_loss=False)
    assert h["n"] == e["n"] == 6
    assert [a.strip() for a in h["answers"]] == [r["answer"].strip() for r in e["rows"]]   # the same greedy answers
    assert h["exact_match"] == e["exact_match"]

def test_a_right_answer_scores_one_in_the_harness_hook():
    from qlora_course.infer import harness_process_results
    assert harness_process_results({"answer": "2021-03-05"}, [" 2021-03-05\n"]) == {"exact_match": 1} == {"exact_match": exact(" 2021-03-05\n", "2021-03-05")}
    assert harness_process_results({"answer": "2021-03-05"}, ["2021-03-05."]) == {"exact_match": 0}

def test_cli_eval_with_the_harness(tmp_path, capsys):
    import json
    from qlora_course.cli import main
    assert main(["eval", "--model", "tiny-random", "--limit", "4", "--max-new-tokens", "6", "--harness", str(tmp_path/"h")]) == 0
    out = capsys.readouterr().out
    res = json.loads([l for l in out.splitlines() if l.startswith("{")][0])
    assert res["n"] == 4 and res["harness_exact_match"] == res["exact_match"]
    assert "max_gen_toks: 6" in (tmp_path/"h"/"qlora_course_dates.yaml").read_text() and f"lm_eval --include_path {tmp_path/'h'}" in out

def test_the_harness_on_a_served_gguf_answers_as_the_course_does(setup, tmp_path):
    "Through `qlora-course serve` (the llama extra): the harness's local-chat-completions model gets the course's own served answers."
    pytest.importorskip("llama_cpp.server.app")
    import qlora_course.export as ex
    from qlora_course.models import tiny_random_dir
    model, tok, recs, d = setup
    f = ex.write_gguf(tiny_random_dir(), tmp_path/"t-F16.gguf", "f16")
    out, system = harness_task(recs, d/"served", tok, max_new_tokens=8)
    with ex.ServerProcess(f) as s:
        h = harness_eval(s.url, None, out, system)
        c = ex.served_exact_match(s.url, recs, max_tokens=8)
    assert h["n"] == c["n"] == 6 and [a.strip() for a in h["answers"]] == [r["answer"].strip() for r in c["rows"]]
    assert h["exact_match"] == c["exact_match"]
