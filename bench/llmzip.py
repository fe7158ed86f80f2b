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
    .venv/bin/python bench/llmzip.py --text data/prose/domain.txt --chars 20480 --vs-float   # portable vs the float lean step, 20 KB
    .venv/bin/python bench/llmzip.py --streams 128,256,512,1024   # the stream length: bits against speed
    .venv/bin/python bench/llmzip.py --ts-zip               # alice29.txt (../shared/corpus), held-out: bits/byte beside ts_zip and xz
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python bench/llmzip.py ...   # as an AVX2 CPU

Speeds depend on what else the CPU is doing: on a shared machine, run it twice and read the fractions (zip and
unzip against the ceiling measured in the same run), which move much less than the absolute figures.
"""
import argparse, time
from pathlib import Path
import torch
from qlora_course.models import load_model, data_dir, DEFAULT_MODEL
from qlora_course.llmzip import (measure_compression, print_table, targets, finetune_lora, adapter_bytes, speed_report, tradeoff,
                                 auto_dtype, default_threads, pick_engine, compress, baselines, CONTEXT, BATCH, WINDOW, STREAM_LEN)

TS_ZIP = {"alice29.txt": 1.142, "book1": 1.431, "enwik8": 1.106}   # bits per byte, bellard.org/ts_zip (RWKV 169M v4)
ALICE = Path(__file__).resolve().parents[2]/"shared"/"corpus"/"alice29.txt"   # ts_zip's table file, as this course's machines hold it

def versus_ts_zip(model, tok, paths, threads, stream_len=None):
    "bits per byte of each file with the portable default, beside xz -9e and ts_zip's published figure; every file unzipped and checked."
    print(f"\n{'file':16s} {'bytes':>8s} {'llmzip':>8s} {'bits/byte':>9s} {'xz -9e':>8s} {'ts_zip':>7s} {'zip KB/s':>8s} {'unzip KB/s':>10s} exact")
    for p in paths:
        d, s = Path(p).read_bytes(), {}
        z = compress(d, model, tok, threads=threads, stats=s, stream_len=stream_len)
        xz, ts = baselines(d)["xz -9e"], TS_ZIP.get(Path(p).name)
        print(f"{Path(p).name:16s} {len(d):8,d} {len(z):8,d} {8*len(z)/len(d):9.4f} {8*xz/len(d):8.3f} {ts if ts else 'n/a':>7} "
              f"{len(d)/1024/s['encode_s']:8.3f} {len(d)/1024/s['decode_s']:10.3f} yes  ({s['streams']} streams of at most {s['stream_len']} tokens, CRLF->LF {s['crlf']})")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(data_dir()/"prose"/"heldout.txt"))
    ap.add_argument("--domain", default=str(data_dir()/"prose"/"domain.txt"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--chars", type=int, default=0, help="only the first N characters (0: all)")
    ap.add_argument("--context", type=int, default=None, help=f"portable: the window (default {WINDOW}); lean/transformers: the chunk length (default {CONTEXT})")
    ap.add_argument("--stream-len", type=int, default=None, help=f"portable: tokens per stream at least (default {STREAM_LEN})")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: llmzip's default, torch's count at most 8)")
    ap.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto", help="auto: bfloat16 where the CPU does it natively")
    ap.add_argument("--engine", choices=["auto", "portable", "lean", "transformers"], default="auto", help="the step engine to code with")
    ap.add_argument("--vs-float", action="store_true", help="also the float lean step (this machine only) on the same text, side by side")
    ap.add_argument("--streams", default="", help="comma-separated stream lengths: bits/char and zip KB/s of each (the portable trade-off)")
    ap.add_argument("--ts-zip", action="store_true", help="bits per byte of alice29.txt, the held-out text and --text beside ts_zip's and xz's")
    ap.add_argument("--grid", action="store_true", help="also measure the context x batch trade-off")
    ap.add_argument("--table", action="store_true", help="also the full size table (rank coding too: one more pass)")
    ap.add_argument("--finetune", type=int, default=0, help="LoRA steps on the domain text, then measure again (0: skip)")
    a = ap.parse_args()
    threads = a.threads or default_threads()
    text = Path(a.text).read_bytes().decode("utf-8")   # as it is on disk (read_text would turn CR LF into LF)
    if a.chars: text = text[:a.chars]
    dtype = auto_dtype("cpu") if a.dtype == "auto" else getattr(torch, a.dtype)
    model, tok = load_model(a.model, dtype=dtype)
    dev = next(model.parameters()).device
    engine = pick_engine(model, a.engine)
    print(f"model {a.model} on {dev.type} ({model.dtype}), kernels {torch.backends.cpu.get_cpu_capability()}, context {a.context or 'default'}, "
          f"batch {a.batch}, threads {threads}, {engine} step")
    t0 = time.time()
    r = speed_report(text, model, tok, a.context, a.batch, threads, progress=True, engine=engine, stream_len=a.stream_len)
    print(f"\n{Path(a.text).name}: {r['bytes']:,} bytes, {r['chars']:,} chars, {r['tokens']:,} tokens; "
          f"{r['rows']} rows side by side, {r['dtype']}, {r['threads']} threads")
    hf = f" (transformers' own step over the same layout: {r['transformers_tok_s']:.1f})" if r["transformers_tok_s"] else ""
    print(f"ceilings: prefill {r['prefill_tok_s']:.0f} tokens/s; KV-cached decode, {r['engine']} step, {r['ceiling_tok_s']:.1f} tokens/s{hf}")
    for k in ("zip", "unzip"):
        print(f"{k:5s} {r[k+'_tok_s']:7.1f} tokens/s {r[k+'_kb_s']:7.3f} KB/s  = {r[k+'_fraction']:.0%} of the decode ceiling")
    print(f"zip with its verifying decode: {r['zip_verified_kb_s']:.3f} KB/s")
    print(f"arithmetic coding: {r['bpc']:.4f} bits/char, {r['vs_xz']:.3f}x xz -9e" + (f"; streams of {r['stream_len']} tokens" if r["stream_len"] else ""))
    if a.vs_float:
        f = speed_report(text, model, tok, None, a.batch, threads, progress=True, engine="lean", compare=False)
        print(f"\n{'step':9s} {'rows':>4s} {'bits/char':>9s} {'vs xz':>6s} {'zip KB/s':>8s} {'unzip KB/s':>10s} {'zip/ceiling':>11s} {'unzip/ceiling':>13s}")
        for x in (r, f):
            print(f"{x['engine']:9s} {x['rows']:4d} {x['bpc']:9.4f} {x['vs_xz']:6.3f} {x['zip_kb_s']:8.3f} {x['unzip_kb_s']:10.3f} "
                  f"{x['zip_fraction']:11.0%} {x['unzip_fraction']:13.0%}")
        print(f"portable / float: bits/char {r['bpc']/f['bpc']:.3f}x, zip speed {r['zip_kb_s']/f['zip_kb_s']:.2f}x, unzip speed {r['unzip_kb_s']/f['unzip_kb_s']:.2f}x")
    if a.streams:
        print(f"\n{'stream len':>10s} {'streams':>7s} {'bits/char':>9s} {'zip KB/s':>8s}   (portable, window {a.context or WINDOW})")
        for L in map(int, a.streams.split(",")):
            s = {}; z = compress(text, model, tok, context_size=a.context, batch_size=a.batch, threads=threads, verify=False, stats=s, stream_len=L)
            print(f"{s['stream_len']:10d} {s['streams']:7d} {8*len(z)/len(text):9.4f} {len(text.encode())/1024/s['encode_s']:8.3f}")
    if a.ts_zip:
        versus_ts_zip(model, tok, list(dict.fromkeys(p.resolve() for p in (ALICE, data_dir()/"prose"/"heldout.txt", Path(a.text)) if p.exists())),
                      threads, a.stream_len)
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
