"""LLM compression benchmark: gzip/bz2/xz/zstd/brotli vs rank coding vs arithmetic coding vs the model's
cross-entropy bound, measured side by side in one run on the same text; optionally again after LoRA on the domain text.

    .venv/bin/python bench/llmzip.py                      # SmolLM2-135M-Instruct on data/prose/heldout.txt
    .venv/bin/python bench/llmzip.py --chars 2000 --context 128
    .venv/bin/python bench/llmzip.py --finetune 60        # also LoRA on data/prose/domain.txt (never on the held-out text)
"""
import argparse, time
from pathlib import Path
import torch
from qlora_course.models import load_model, data_dir, DEFAULT_MODEL
from qlora_course.llmzip import measure, print_table, targets, finetune_lora, adapter_bytes

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(data_dir()/"prose"/"heldout.txt"))
    ap.add_argument("--domain", default=str(data_dir()/"prose"/"domain.txt"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--chars", type=int, default=0, help="only the first N characters (0: all)")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--finetune", type=int, default=0, help="LoRA steps on the domain text, then measure again (0: skip)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    text = Path(a.text).read_text(encoding="utf-8")
    if a.chars: text = text[:a.chars]
    model, tok = load_model(a.model)
    dev = next(model.parameters()).device
    print(f"model {a.model} on {dev.type} ({model.dtype}), context {a.context}, batch {a.batch}, threads {torch.get_num_threads()}")
    t0 = time.time()
    m = measure(text, model, tok, a.context, a.batch, progress=True)
    print_table(m, f"\n{Path(a.text).name}, base model")
    tg = targets(m)
    print(f"targets: arithmetic payload {100*tg['payload_over_bound']:+.2f}% vs the cross-entropy bound "
          f"(<= +1%: {'met' if tg['within_1pct'] else 'NOT met'}); file {tg['vs_xz']:.3f}x xz -9e "
          f"(<= 0.45x: {'met' if tg['le_045_xz'] else 'NOT met'})")
    if a.finetune:
        domain = Path(a.domain).read_text(encoding="utf-8")
        pm = finetune_lora(model, tok, domain, steps=a.finetune)
        m2 = measure(text, pm, tok, a.context, a.batch, progress=True)
        print_table(m2, f"\n{Path(a.text).name}, after {a.finetune} LoRA steps on {Path(a.domain).name}")
        ab, za = adapter_bytes(pm), m2["sizes"]["arithmetic coding"]
        print(f"top-1 share {m['top1']:.3f} -> {m2['top1']:.3f}; arithmetic bits/char "
              f"{8*m['sizes']['arithmetic coding']/m['nchars']:.3f} -> {8*za/m2['nchars']:.3f}; adapter {ab:,} bytes; "
              f"ratio {m2['nbytes']/za:.2f} without the adapter, {m2['nbytes']/(za+ab):.3f} with it")
    print(f"total {time.time()-t0:.0f} s")

if __name__ == "__main__": main()
