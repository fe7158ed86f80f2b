"""LLM compression benchmark, one run on the same text:

1. the model's own speed limits on this machine: prefill tokens/s and the KV-cached decode ceiling at the chosen
   batch, dtype, thread count and step engine (the same steps over the same chunk layout as the coder, with no coding),
   and transformers' own step over the same layout beside it;
2. zip (encoder alone) and unzip tokens/s and KB/s, each as a fraction of that ceiling; zip with its verifying decode;
3. bits/char and the ratio to xz -9e; then the full size table (gzip/bz2/xz/zstd/brotli, rank coding, arithmetic
   coding, the cross-entropy bound); optionally the context x batch trade-off grid and a LoRA on the domain text.

    .venv/bin/python bench/llmzip.py                        # SmolLM2-135M-Instruct on data/prose/heldout.txt, the defaults
    .venv/bin/python bench/llmzip.py --context 512 --batch 8 # the settings of format version 1, for comparison
    .venv/bin/python bench/llmzip.py --engine transformers   # code with transformers' step instead of the lean one
    .venv/bin/python bench/llmzip.py --grid                 # also the trade-off, context 64..512 x batch 8..64
    .venv/bin/python bench/llmzip.py --finetune 60          # also LoRA on data/prose/domain.txt (never on the held-out text)

Speeds depend on what else the CPU is doing: on a shared machine, run it twice and read the fractions (zip and
unzip against the ceiling measured in the same run), which move much less than the absolute figures.
"""
import argparse, time
from pathlib import Path
import torch
from qlora_course.models import load_model, data_dir, DEFAULT_MODEL
from qlora_course.llmzip import (measure_compression, print_table, targets, finetune_lora, adapter_bytes, speed_report, tradeoff,
                                 auto_dtype, default_threads, pick_engine, CONTEXT, BATCH)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(data_dir()/"prose"/"heldout.txt"))
    ap.add_argument("--domain", default=str(data_dir()/"prose"/"domain.txt"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--chars", type=int, default=0, help="only the first N characters (0: all)")
    ap.add_argument("--context", type=int, default=CONTEXT)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: llmzip's default, torch's count at most 8)")
    ap.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto", help="auto: bfloat16 where the CPU does it natively")
    ap.add_argument("--engine", choices=["auto", "lean", "transformers"], default="auto", help="the step engine to code with")
    ap.add_argument("--grid", action="store_true", help="also measure the context x batch trade-off")
    ap.add_argument("--table", action="store_true", help="also the full size table (rank coding too: one more pass)")
    ap.add_argument("--finetune", type=int, default=0, help="LoRA steps on the domain text, then measure again (0: skip)")
    a = ap.parse_args()
    threads = a.threads or default_threads()
    text = Path(a.text).read_text(encoding="utf-8")
    if a.chars: text = text[:a.chars]
    dtype = auto_dtype("cpu") if a.dtype == "auto" else getattr(torch, a.dtype)
    model, tok = load_model(a.model, dtype=dtype)
    dev = next(model.parameters()).device
    engine = pick_engine(model, a.engine)
    print(f"model {a.model} on {dev.type} ({model.dtype}), context {a.context}, batch {a.batch}, threads {threads}, {engine} step")
    t0 = time.time()
    r = speed_report(text, model, tok, a.context, a.batch, threads, progress=True, engine=engine)
    print(f"\n{Path(a.text).name}: {r['bytes']:,} bytes, {r['chars']:,} chars, {r['tokens']:,} tokens; "
          f"{r['rows']} rows side by side, {r['dtype']}, {r['threads']} threads")
    hf = f" (transformers' own step over the same layout: {r['transformers_tok_s']:.1f})" if r["transformers_tok_s"] else ""
    print(f"ceilings: prefill {r['prefill_tok_s']:.0f} tokens/s; KV-cached decode, {r['engine']} step, {r['ceiling_tok_s']:.1f} tokens/s{hf}")
    for k in ("zip", "unzip"):
        print(f"{k:5s} {r[k+'_tok_s']:7.1f} tokens/s {r[k+'_kb_s']:7.3f} KB/s  = {r[k+'_fraction']:.0%} of the decode ceiling")
    print(f"zip with its verifying decode: {r['zip_verified_kb_s']:.3f} KB/s")
    print(f"arithmetic coding: {r['bpc']:.4f} bits/char, {r['vs_xz']:.3f}x xz -9e")
    if a.grid:
        print("\ntrade-off (bits/char: the model's cross-entropy; speed: at the decode ceiling)")
        print(f"{'context':>7s} {'batch':>5s} {'rows':>4s} {'bits/char':>9s} {'tokens/s':>8s} {'KB/s':>7s}")
        for g in tradeoff(text, model, tok, threads=threads, engine=engine):
            print(f"{g['context']:7d} {g['batch']:5d} {g['rows']:4d} {g['bpc']:9.4f} {g['tok_s']:8.1f} {g['kb_s']:7.3f}")
    if a.table or a.finetune:
        m = measure_compression(text, model, tok, a.context, a.batch, progress=True, verify=False)
        print_table(m, f"\n{Path(a.text).name}, base model")
        tg = targets(m)
        print(f"targets: arithmetic payload {100*tg['payload_over_bound']:+.2f}% vs the cross-entropy bound "
              f"(<= +1%: {'met' if tg['within_1pct'] else 'NOT met'}); file {tg['vs_xz']:.3f}x xz -9e "
              f"(<= 0.45x: {'met' if tg['le_045_xz'] else 'NOT met'})")
    if a.finetune:
        domain = Path(a.domain).read_text(encoding="utf-8")
        pm = finetune_lora(model, tok, domain, steps=a.finetune)
        m2 = measure_compression(text, pm, tok, a.context, a.batch, progress=True)
        print_table(m2, f"\n{Path(a.text).name}, after {a.finetune} LoRA steps on {Path(a.domain).name}")
        ab, za = adapter_bytes(pm), m2["sizes"]["arithmetic coding"]
        print(f"top-1 share {m['top1']:.3f} -> {m2['top1']:.3f}; arithmetic bits/char "
              f"{8*m['sizes']['arithmetic coding']/m['nchars']:.3f} -> {8*za/m2['nchars']:.3f}; adapter {ab:,} bytes; "
              f"ratio {m2['nbytes']/za:.2f} without the adapter, {m2['nbytes']/(za+ab):.3f} with it")
    print(f"total {time.time()-t0:.0f} s")

if __name__ == "__main__": main()
