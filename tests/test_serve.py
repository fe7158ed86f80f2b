"K-quants and `qlora-course serve` through llama.cpp (llama-cpp-python, the `llama` extra): skipped without it; real-model checks are `slow`."
import socket
import numpy as np
import pytest
from transformers import AutoTokenizer

import qlora_course.export as ex
from qlora_course.models import tiny_random_dir
from qlora_course.cli import main as cli_main

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    "tiny-random as an F16 GGUF (3 MB: loads in a moment)."
    return ex.write_gguf(tiny_random_dir(), tmp_path_factory.mktemp("serve")/"tiny-F16.gguf", "f16")


# ---------- cheap: tiny-random ----------
@pytest.mark.parametrize("t", list(ex.LLAMA_TYPES))
def test_k_quant_files_read_back_by_both_readers(tmp_path, t):
    f = ex.write_gguf(tiny_random_dir(), tmp_path/f"t-{t}.gguf", t)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.name]   # the intermediate float file is gone
    meta = ex.read_gguf_meta(f, weights=True)                        # the gguf reader, every tensor dequantized
    assert meta["file_type"] == ex._FILE_TYPES[t] and meta["chat_template"] == AutoTokenizer.from_pretrained(tiny_random_dir()).chat_template
    r = ex.verify_gguf(f, tiny_random_dir(), ["hello"], t, meta=meta)  # and transformers' loader
    assert 0 < r["max_weight_err"] < 0.05 and r["argmax_agree"] > 0.8
    llm = ex.load_llama(f, n_ctx=64)  # and llama.cpp itself
    ids = llm.tokenize(b"hello world"); assert llm.n_vocab() == 49152 and len(ids) > 0
    llm.eval(ids)                     # evaluates with the CPU kernels this machine runs (repacked ones crashed the process on some CPUs)
    assert np.isfinite(llm.scores[len(ids) - 1]).all()

def test_quantize_refuses_bad_input(tmp_path, tiny_gguf):
    (tmp_path/"x.txt").write_text("not gguf")
    with pytest.raises(ValueError, match="not a GGUF file"): ex.quantize_gguf(tmp_path/"x.txt", tmp_path/"o.gguf")
    with pytest.raises(FileNotFoundError): ex.quantize_gguf(tmp_path/"none.gguf", tmp_path/"o.gguf")
    with pytest.raises(ValueError, match="pure Python"): ex.quantize_gguf(tiny_gguf, tmp_path/"o.gguf", "q8_0")
    (tmp_path/"o.gguf").write_text("mine")
    with pytest.raises(FileExistsError): ex.quantize_gguf(tiny_gguf, tmp_path/"o.gguf")
    assert (tmp_path/"o.gguf").read_text() == "mine"

def test_server_answers_streams_and_stops_on_ctrl_c(tiny_gguf):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    with ex.ServerProcess(tiny_gguf, threads=1) as s:
        assert s.url.startswith("http://127.0.0.1:")
        a = ex.chat_http(s.url, msgs, max_tokens=8)
        assert a == ex.chat_http(s.url, msgs, max_tokens=8)               # greedy: the same twice
        assert "".join(ex.chat_http_stream(s.url, msgs, max_tokens=8)) == a
        with pytest.raises(ValueError, match=r"refused the request \(HTTP \d+\): .*valid list"):   # a bad request: one line, the server's reason
            ex._post(f"{s.url}/chat/completions", {"messages": "not a list"}, 30)
        # only the loopback address listens
        host_ip = socket.gethostbyname(socket.gethostname())
        if not host_ip.startswith("127."):
            with pytest.raises(OSError): socket.create_connection((host_ip, s.port), timeout=2).close()
    assert s.proc.returncode == 0 and "serving tiny-F16.gguf at http://127.0.0.1:" in s.output and "server stopped" in s.output

def test_serve_bad_inputs_one_line(tmp_path, tiny_gguf, capsys):
    (tmp_path/"x.gguf").write_text("text")
    for args, words in ((["serve", str(tmp_path/"none.gguf")], "not found"), (["serve", str(tmp_path/"x.gguf")], "not a GGUF file"),
                        (["serve", str(tmp_path)], "is a folder"), (["serve", str(tiny_gguf), "--port", "0"], "not a TCP port")):
        assert cli_main(args) == 2
        err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("qlora-course")]
        assert len(err) == 1 and words in err[0], (args, err)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0)); busy.listen()
        assert cli_main(["serve", str(tiny_gguf), "--port", str(busy.getsockname()[1])]) == 2
        assert "already in use" in capsys.readouterr().err

def test_chat_http_without_a_server():
    with pytest.raises(ConnectionError, match="no server answers"):
        ex.chat_http(f"http://127.0.0.1:{ex.free_port()}/v1", "hi", timeout=5)


# ---------- slow: the real model ----------
@pytest.mark.slow
def test_served_f16_answers_like_transformers_and_q4_k_m_exact_match(tmp_path, merged_demo):
    "F16 over HTTP gives transformers' greedy answers on the check prompts; Q4_K_M's task exact match is within 10 points of transformers'."
    from qlora_course.infer import evaluate
    merged, tok, ref, prompts, want = merged_demo
    f16 = ex.write_gguf(merged, tmp_path/"m-F16.gguf", "f16")
    with ex.ServerProcess(f16) as s:
        got = [ex.chat_http(s.url, p, max_tokens=24).strip() for p in prompts]
    assert got == want
    recs = ex.task_records(20)
    em_ref = evaluate(ref, tok, recs, with_loss=False)["exact_match"]
    q4 = ex.write_gguf(merged, tmp_path/"m-Q4_K_M.gguf", "q4_k_m")
    with ex.ServerProcess(q4) as s: em_q4 = ex.served_exact_match(s.url, recs)["exact_match"]
    print("exact match transformers", em_ref, "Q4_K_M served", em_q4)
    assert abs(em_q4 - em_ref) <= 0.10
