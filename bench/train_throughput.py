"""Training throughput of three QLoRA recipes on the same random-initialised Llama-architecture model.

    python bench/train_throughput.py --size llama-1b --steps 20          # on a GPU (the issue's table)
    python bench/train_throughput.py --size tiny-random --steps 2 --n 24 --max-len 96   # CPU smoke run

Recipes (same data: variable-length instruction-like samples of 40..480 tokens; same LoRA: r=16 on all
linear layers, NF4 double quant):
  seed      pad every example to 512, batch 2 x accumulation 4, gradient checkpointing, paged 8-bit AdamW, HF Trainer
  hf-tuned  the same libraries used well: packed rows (no padding), SDPA attention, no checkpointing
  course    the course's `gpu-80gb` preset from qlora_course.train (packed, batch/length from the preset)
For each: real (non-padding) tokens per second, peak memory, and ratios to `seed`.
On CPU, paged 8-bit AdamW (CUDA only) falls back to AdamW and peak memory is the process's peak RSS
(it only grows, so later recipes can't read lower); the printed table says so.
"""
import argparse, gc, os, random, resource, sys, time
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments, TrainerCallback
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from qlora_course.models import random_model, quant_config, get_device, get_compute_dtype, detect_lora_targets, cache_dir
from qlora_course.train import TrainConfig

def make_samples(n, lo, hi, vocab, seed=0):
    "n token sequences of random length in [lo, hi] (instruction-like: a prompt part and an answer part)."
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        L = rng.randint(lo, hi); ids = [rng.randrange(3, vocab) for _ in range(L)]
        cut = rng.randint(L // 3, 2 * L // 3)
        out.append(dict(input_ids=ids, labels=[-100] * cut + ids[cut:]))
    return out

def padded(samples, L):
    "Every sample cut/padded to exactly L tokens (padding = label -100, mask 0)."
    rows = []
    for s in samples:
        ids, lab = s["input_ids"][:L], s["labels"][:L]; k = len(ids)
        rows.append(dict(input_ids=ids + [2] * (L - k), labels=lab + [-100] * (L - k), attention_mask=[1] * k + [0] * (L - k)))
    return rows

def packed(samples, L):
    "Samples concatenated into rows of exactly L tokens (no padding)."
    ids, lab, rows = [], [], []
    for s in samples:
        ids += s["input_ids"]; lab += s["labels"]
        while len(ids) >= L:
            rows.append(dict(input_ids=ids[:L], labels=lab[:L], attention_mask=[1] * L)); ids, lab = ids[L:], lab[L:]
    return rows

class Timer(TrainerCallback):
    "Times steps after the first (warm-up) and counts real tokens."
    def __init__(self): self.t0, self.t1 = None, None
    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == 1 and self.t0 is None:
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.t0 = time.perf_counter()
    def on_train_end(self, args, state, control, **kw):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.t1 = time.perf_counter()

def peak_mem_reset():
    if torch.cuda.is_available(): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

def peak_mem():
    if torch.cuda.is_available(): return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (process peak RSS)

def run_recipe(name, size, samples, steps, out):
    dev = get_device(); cuda = dev.type == "cuda"; dt = get_compute_dtype(dev)
    course = TrainConfig.preset("gpu-80gb")
    if name == "seed": L, bs, ga, gc_, optim = 512, 2, 4, True, "paged_adamw_8bit"
    elif name == "hf-tuned": L, bs, ga, gc_, optim = 2048, 4, 1, False, "adamw_torch_fused" if cuda else "adamw_torch"
    elif name == "course": L, bs, ga, gc_, optim = course.max_len, course.batch_size, course.grad_accum, course.gradient_checkpointing, course.optim
    else: raise ValueError(f"unknown recipe {name!r}; use seed, hf-tuned or course")
    L = min(L, out["max_len"]); rows = padded(samples, L) if name == "seed" else packed(samples, L)
    bs = min(bs, out["max_batch"])
    if not cuda and "8bit" in optim: optim = "adamw_torch"
    peak_mem_reset()
    model = random_model(size, dtype=dt)
    d = out["tmp"] / f"{size}-{name}"; model.save_pretrained(d); del model; gc.collect()
    from transformers import AutoModelForCausalLM
    kw = dict(dtype=dt, attn_implementation="sdpa", quantization_config=quant_config("nf4", dt))
    kw["device_map"] = {"": 0} if cuda else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(d, **kw)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc_)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=detect_lora_targets(model), task_type="CAUSAL_LM"))
    need = steps * bs * ga
    rows = (rows * (need // max(len(rows), 1) + 1))[:need]
    real = sum(sum(r["attention_mask"]) for r in rows)
    args = TrainingArguments(output_dir=str(out["tmp"] / "o"), max_steps=steps, per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
                             gradient_checkpointing=gc_, optim=optim, learning_rate=1e-4, logging_steps=10**6, save_strategy="no",
                             report_to=[], bf16=dt == torch.bfloat16, fp16=dt == torch.float16, use_cpu=not cuda, disable_tqdm=True,
                             dataloader_num_workers=0, remove_unused_columns=False)
    timer = Timer()
    tr = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[timer])
    tr.train()
    per_step = real / steps
    secs = timer.t1 - timer.t0
    tps = per_step * (steps - 1) / secs if steps > 1 else per_step / secs
    res = dict(recipe=name, size=size, max_len=L, batch=f"{bs}x{ga}", ckpt=gc_, optim=optim, tok_s=tps, peak_gib=peak_mem())
    del tr, model; gc.collect(); peak_mem_reset()
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", nargs="+", default=["smollm2-135m", "llama-1b"], help="architectures (qlora_course.models.ARCH_CONFIGS keys)")
    ap.add_argument("--recipes", nargs="+", default=["seed", "hf-tuned", "course"])
    ap.add_argument("--steps", type=int, default=20); ap.add_argument("--n", type=int, default=2000, help="number of samples")
    ap.add_argument("--min-tokens", type=int, default=40); ap.add_argument("--max-tokens", type=int, default=480)
    ap.add_argument("--max-len", type=int, default=4096, help="cap on every recipe's row length (CPU smoke runs)")
    ap.add_argument("--max-batch", type=int, default=64, help="cap on every recipe's batch size (CPU smoke runs)")
    a = ap.parse_args(argv)
    import tempfile
    out = dict(tmp=__import__("pathlib").Path(tempfile.mkdtemp(dir=cache_dir())), max_len=a.max_len, max_batch=a.max_batch)
    dev = get_device()
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"device: {name}; memory: {'peak allocated GPU memory' if dev.type == 'cuda' else 'process peak RSS (monotonic)'}")
    results = []
    for size in a.size:
        samples = make_samples(a.n, min(a.min_tokens, a.max_len), min(a.max_tokens, a.max_len), 49152 if size != "llama-1b" else 128256)
        base = None
        for r in a.recipes:
            res = run_recipe(r, size, samples, a.steps, out)
            base = base or res
            res["speedup"] = res["tok_s"] / base["tok_s"]; res["mem_ratio"] = res["peak_gib"] / base["peak_gib"]
            results.append(res)
    print(f"{'size':14s} {'recipe':9s} {'len':>5s} {'batch':>6s} {'ckpt':>5s} {'optim':18s} {'tokens/s':>10s} {'peak GiB':>9s} {'x seed tok/s':>13s} {'x seed mem':>11s}")
    for r in results:
        print(f"{r['size']:14s} {r['recipe']:9s} {r['max_len']:5d} {r['batch']:>6s} {str(r['ckpt']):>5s} {r['optim']:18s} "
              f"{r['tok_s']:10.1f} {r['peak_gib']:9.2f} {r['speedup']:13.2f} {r['mem_ratio']:11.2f}")
    import shutil; shutil.rmtree(out["tmp"], ignore_errors=True)
    return results

if __name__ == "__main__":
    main()
