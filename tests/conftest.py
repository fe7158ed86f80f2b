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
