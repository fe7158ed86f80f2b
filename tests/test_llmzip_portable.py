"""Format 4 (issues 31 and 34): archives made with the portable step decode on any CPU kind, thread count and dtype, and long
streams with a sliding window code every token exactly.

The cross-CPU tests run the encoder and the decoder in subprocesses whose PyTorch, oneDNN and MKL kernels are limited to what an
AVX2 CPU or a plain x86-64 CPU has, and compare the per-step frequency tables themselves, so a difference shows where it starts."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from qlora_course.models import load_model, random_model
from qlora_course import llmzip
from qlora_course.llmzip import (compress, decompress, read_header, pack_container, PortableStep, portable_weights, int_frequencies,
                                 _encode, _decode, _start_id, stream_length, chunk_layout, FLAG_CRLF, FORMAT_VERSION)

KINDS = {"native": {}, "avx2": dict(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2"),
         "default": dict(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41", MKL_ENABLE_INSTRUCTIONS="SSE4_2")}
TEXT = ("Archives must open on the next laptop too. Les archives s'ouvrent partout. Ünïcödé ✓ 12,345.67\r\n" * 6)

# a subprocess: the per-step frequency tables of a windowed multi-row run (hashes), then zip or unzip with the CLI's functions
SCRIPT = r"""
import sys, json, hashlib, torch
from qlora_course.models import load_model
from qlora_course.llmzip import PortableStep, portable_weights, int_frequencies, compress, decompress, _start_id
model, threads, dtype, job, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
torch.set_num_threads(threads)
m, tok = load_model(model, dtype=getattr(torch, dtype))
w = portable_weights(m)
r = PortableStep(w, 3, _start_id(tok), 40, window=9)           # a window shorter than the run: the ring buffer wraps
g = torch.Generator().manual_seed(0); toks = torch.randint(0, len(tok), (39, 3), generator=g)
tables = [int_frequencies(r.step())] + [int_frequencies(r.step(t)) for t in toks]
hashes = [hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16] for t in tables]
if job == "zip": open(dst, "wb").write(compress(open(src, "rb").read(), m, tok, context_size=16, batch_size=3, verify=False))
else: open(dst, "wb").write(decompress(open(src, "rb").read(), m, tok))
print(json.dumps(dict(cap=torch.backends.cpu.get_cpu_capability(), hashes=hashes)))
"""

def _run(kind, threads, dtype, job, src, dst, model="tiny-random"):
    env = {**os.environ, **KINDS[kind], "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, "-c", SCRIPT, model, str(threads), dtype, job, str(src), str(dst)], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

def _first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)

def _cross(tmp_path, model, runs):
    "Zip under the first (kind, threads, dtype), unzip under each of the others; every run's per-step tables must equal the first's."
    src = tmp_path/"in.txt"; src.write_bytes(TEXT.encode())
    (k0, t0, d0), *rest = runs
    ref = _run(k0, t0, d0, "zip", src, tmp_path/"a.llmz", model)
    assert read_header((tmp_path/"a.llmz").read_bytes())["version"] == FORMAT_VERSION
    caps = {ref["cap"]}
    for i, (k, t, d) in enumerate(rest):
        out = _run(k, t, d, "unzip", tmp_path/"a.llmz", tmp_path/f"out{i}.txt", model)
        caps.add(out["cap"])
        step = _first_difference(ref["hashes"], out["hashes"])
        assert step is None, f"frequency tables differ from step {step} on: {k}, {t} threads, {d}"
        assert (tmp_path/f"out{i}.txt").read_bytes() == src.read_bytes(), (k, t, d)
    return caps

def test_zip_native_unzip_as_other_cpus_threads_and_dtypes(tmp_path):
    caps = _cross(tmp_path, "tiny-random", [("native", 2, "float32"), ("avx2", 1, "bfloat16"), ("default", 3, "float32"),
                                            ("native", 3, "bfloat16"), ("native", 1, "float32")])
    assert {"AVX2", "DEFAULT"} <= caps   # the limits took effect (the subprocesses report their kernels)

def test_zip_as_plain_cpu_unzip_native(tmp_path):
    _cross(tmp_path, "tiny-random", [("default", 1, "float32"), ("native", 2, "float32"), ("avx2", 2, "bfloat16")])

@pytest.mark.slow
def test_real_model_across_cpus(tmp_path):
    _cross(tmp_path, "smollm2-135m-instruct", [("native", 2, "bfloat16"), ("avx2", 1, "float32"), ("default", 3, "float32")])

def test_int_mm_exact_at_the_extremes():
    "The integer product the portable step relies on: exact for int8 activations and weights in [-63, 63], at the extremes too."
    a = torch.randint(-127, 128, (17, 1536), generator=torch.Generator().manual_seed(0)).to(torch.int8)
    a[0], a[1], a[2, ::2], a[2, 1::2] = 127, -127, 127, -127
    b = torch.randint(-63, 64, (1536, 40), generator=torch.Generator().manual_seed(1)).to(torch.int8)
    b[:, 0], b[:, 1], b[::2, 2], b[1::2, 2] = 63, -63, 63, -63
    assert torch.equal(torch._int_mm(a, b).double(), a.double() @ b.double())

GOLDEN = Path(__file__).parent/"data"/"portable_v4_smollm2.llmz"

def test_a_format_4_archive_made_earlier_still_decodes():
    """`tests/data` holds `TEXT` zipped by the portable step of commit 321556b (SmolLM2-135M-Instruct, 3 streams of 84 tokens,
    a window of 24: the ring buffer wraps), before its attention and lookups were rearranged for speed. Any change to the step
    that moves one bit of one frequency fails here."""
    m, tok = load_model("smollm2-135m-instruct")
    blob = GOLDEN.read_bytes()
    h = read_header(blob)
    assert (h["version"], h["engine"], h["window"], h["context_size"], h["batch_size"], h["flags"]) == (4, "portable", 24, 84, 3, FLAG_CRLF)
    assert decompress(blob, m, tok) == TEXT.encode()

def _tables(w, toks, window=9):
    "The frequency tables of a 3-row windowed run fed `toks`."
    r = PortableStep(w, 3, 0, len(toks) + 1, window=window)
    return [int_frequencies(r.step())] + [int_frequencies(r.step(t)) for t in toks]

def test_the_gpu_branches_give_the_cpu_bits(mt, monkeypatch):
    """On a GPU the integer products run in float64 (no int8 kernel; TF32 never applies). Forced onto this CPU, those branches
    must give the int8 kernel's frequencies bit for bit (before this test, their products came back in float64 and every
    later operation rounded differently)."""
    m, tok = mt
    w = portable_weights(m)
    toks = torch.randint(0, len(tok), (29, 3), generator=torch.Generator().manual_seed(7))
    ref = _tables(w, toks)
    monkeypatch.setattr(llmzip, "_cpu", lambda t: False)
    got = _tables(w, toks)
    step = next((i for i, (a, b) in enumerate(zip(ref, got)) if not torch.equal(a, b)), None)
    assert step is None, f"the float64 branches differ from step {step}"

def test_the_gpu_branches_decode_the_earlier_archive(monkeypatch):
    monkeypatch.setattr(llmzip, "_cpu", lambda t: False)
    m, tok = load_model("smollm2-135m-instruct")
    assert decompress(GOLDEN.read_bytes(), m, tok) == TEXT.encode()

def test_attention_digits_and_blocks_give_the_same_bits(mt):
    "The attention-value product as two base-64 digits over the whole window, or in blocks of 32 positions: the same integers."
    m, tok = mt
    w = portable_weights(m)
    a, b = PortableStep(w, 3, 0, 70, window=50), PortableStep(w, 3, 0, 70, window=50)
    b.digits_below = 0
    toks = torch.randint(0, len(tok), (69, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.step(), b.step())
    for t in toks: assert torch.equal(a.step(t), b.step(t))
    assert a.digits_below == 2064 and llmzip.AV_DIGIT * llmzip.ACT_LEVELS * 2064 < 2**24

# --- streams and the window --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mt():
    torch.set_num_threads(1)
    return load_model("tiny-random")

def _ids_round_trip(m, tok, ids, stream_len, batch, window, mode="arith"):
    w, start = portable_weights(m), _start_id(tok)
    codec, payload, _ = _encode(m, ids, mode, stream_len, batch, start, engine="portable", window=window, weights=w)
    return _decode(m, len(ids), mode, codec, payload, stream_len, batch, start, engine="portable", window=window, weights=w)

@pytest.mark.parametrize("n", [1, 7, 8, 9, 30])   # window 8: shorter than it, exactly it, one token past it, several times it
@pytest.mark.parametrize("mode", ["arith", "rank"])
def test_stream_boundaries_around_the_window(mt, n, mode):
    m, tok = mt
    ids = torch.randint(0, len(tok), (n,), generator=torch.Generator().manual_seed(n)).tolist()
    assert _ids_round_trip(m, tok, ids, stream_len=n, batch=1, window=8, mode=mode) == ids

def test_many_streams_of_unequal_length(mt):
    m, tok = mt
    ids = torch.randint(0, len(tok), (53,), generator=torch.Generator().manual_seed(1)).tolist()
    lay = chunk_layout(53, 8, 3)
    assert len({e - s for bt in lay for s, e in bt}) > 1 and len(lay) > 1   # unequal streams, more than one batch
    assert _ids_round_trip(m, tok, ids, stream_len=8, batch=3, window=3) == ids

def test_window_evicts_exactly_after_window_steps(mt):
    "A windowed runner gives the full runner's bits while everything fits, and other logits once a token has left the window."
    m, tok = mt
    w = portable_weights(m)
    full, win = PortableStep(w, 2, 0, 20), PortableStep(w, 2, 0, 20, window=6)
    toks = torch.randint(0, len(tok), (19, 2), generator=torch.Generator().manual_seed(3))
    a, b = [full.step()], [win.step()]
    for t in toks: a.append(full.step(t)); b.append(win.step(t))
    assert all(torch.equal(x, y) for x, y in zip(a[:6], b[:6]))      # positions 0-5: six tokens, all in the window
    assert not torch.equal(a[6], b[6])                                # position 6: token 1 has left (the sink, token 0, stays)

def test_stream_length_policy():
    assert stream_length(100, 64, 8191) == 100                      # a short text: one stream
    assert stream_length(38_000, 64, 8191) == 594                   # 64 streams
    assert stream_length(10**6, 64, 8191) == 8191                    # never past the model's positions
    assert stream_length(3149, 64, 8191) == llmzip.STREAM_LEN

# --- the container --------------------------------------------------------------------------------------------------------

def test_header_fields_and_crlf_flag(mt):
    m, tok = mt
    crlf, lf = "line one\r\nline two\r\n" * 5, "line one\nline two\r\n"
    for text, flag in ((crlf, FLAG_CRLF), (lf, 0)):
        z = compress(text, m, tok, context_size=12, batch_size=3)
        h = read_header(z)
        assert (h["version"], h["engine"], h["window"], h["batch_size"], h["flags"]) == (4, "portable", 12, 3, flag)
        assert h["threads"] is None and h["dtype"] is None and decompress(z, m, tok) == text.encode()

def test_crafted_format_4_headers_are_refused(mt):
    m, tok = mt
    h = read_header(compress("some text to code", m, tok, context_size=8))
    for bad, msg in [(dict(flags=2), "unknown flags"), (dict(window=1), "window"), (dict(engine="lean", dtype=0, device=0, threads=1, version=4), "made with the lean")]:
        blob = pack_container({**h, **bad})
        with pytest.raises(ValueError, match=msg): decompress(blob, m, tok)

def test_format_3_files_still_decode(mt):
    m, tok = mt
    z = compress("machine-only archive", m, tok, engine="lean", context_size=8)
    assert read_header(z)["version"] == 3 and decompress(z, m, tok) == b"machine-only archive"

def test_bfloat16_load_decodes_float32_archive_and_other_model_is_refused(mt):
    m, tok = mt
    z = compress(TEXT, m, tok, context_size=16, batch_size=2, verify=False)
    m16 = load_model("tiny-random", dtype=torch.bfloat16)[0]
    assert decompress(z, m16, tok) == TEXT.encode()
    with pytest.raises(ValueError, match="other model"): decompress(z, random_model("tiny-random", seed=1), tok)

def test_adapter_round_trip_and_refusal(mt):
    from peft import LoraConfig, get_peft_model
    m, tok = load_model("tiny-random")
    pm = get_peft_model(m, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)).eval()
    z = compress(TEXT, pm, tok, context_size=16, batch_size=2)
    assert decompress(z, pm, tok) == TEXT.encode()
    with pytest.raises(ValueError, match="other adapter"): decompress(z, load_model("tiny-random")[0], tok)
