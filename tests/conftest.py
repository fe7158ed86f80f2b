"Fixtures shared by several test files."
import pytest

@pytest.fixture
def merged_demo(tmp_path):
    "The real model merged with a small random demo adapter (fp16 folder), its tokenizer, the fp32 reference model, check prompts and its greedy answers."
    import torch
    from qlora_course.models import generate
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import qlora_course.export as ex
    ad = ex.make_demo_adapter("smollm2-135m-instruct", tmp_path/"ad", std=0.02, seed=0)
    merged = ex.merge_adapter("smollm2-135m-instruct", ad, tmp_path/"merged", dtype="fp16")
    tok = AutoTokenizer.from_pretrained(merged)
    ref = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    prompts = ex.heldout_prompts(3) + ["What is the capital of France?"]
    return merged, tok, ref, prompts, generate(ref, tok, prompts, max_new_tokens=24, batch_size=1)

@pytest.fixture
def bad_input(tmp_path, capsys):
    """The check every bad-input sweep makes of one case: run `qlora-course ARGV` in-process, then the exit code, the words the message
    must hold, no traceback, and every file that was in `tmp_path` before still there, unchanged. Returns the captured output."""
    from qlora_course.cli import main
    def check(name, argv, code, words):
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        try: rc = main(argv)
        except SystemExit as e: rc = e.code          # argparse refuses an option with exit code 2
        out = capsys.readouterr()
        msg = out.err + out.out
        assert rc == code, f"{name}: exit code {rc}, want {code}; printed: {msg[-500:]}"
        for w in words: assert w in msg, f"{name}: the message does not say {w!r}: {msg[-500:]}"
        assert "Traceback" not in msg
        for p, b in before.items(): assert p.exists() and p.read_bytes() == b, f"{name}: {p.name} was changed or deleted"
        return out
    return check
