"""The command line's shape: `qlora-course --help` imports no stage (so no torch), every subcommand kept the options it had
before the argparse definitions moved from the stages into `qlora_course/cli.py`, and errors end it as the one table says."""
import argparse, subprocess, sys
from pathlib import Path
import pytest
from qlora_course import cli
from qlora_course.cli import COMMANDS, build_parser, main

BIN = Path(sys.executable).parent

# Every subcommand as the stages' `add_cli` functions defined it (commit 7fd4cf0): its help, the function it ran, and each
# option's attributes (argparse's defaults left out: not required, no nargs/metavar/choices/type/help).
OLD = {
    'models': ('list the known models and the cache location', 'qlora_course.models.models_main', {
        '--prepare': {'dest': 'prepare', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'convert the embedded model into the cache now'},
    }),
    'survey': ("print each PEFT method's modules and trainable parameters for a model (no training)", 'qlora_course.survey.survey_main', {
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct', 'help': 'a known name, a HF folder, a .gguf file, or a hub id'},
        '--methods': {'dest': 'methods', 'action': '_StoreAction', 'default': None, 'help': 'comma-separated subset of: full,bitfit,prefix,prompt,ptuning,adapter,lora,qlora,dora,ia3'},
        '--r': {'dest': 'r', 'action': '_StoreAction', 'default': 8, 'type': 'int', 'help': 'LoRA/DoRA rank'},
        '--n-virtual': {'dest': 'n_virtual', 'action': '_StoreAction', 'default': 16, 'type': 'int', 'help': 'virtual tokens for prompt, prefix and P-tuning'},
        '--bottleneck': {'dest': 'bottleneck', 'action': '_StoreAction', 'default': 16, 'type': 'int', 'help': "bottleneck adapters' inner size"},
    }),
    'data': ('read a data file or folder, split, tokenize and save train/validation/test JSONL', 'qlora_course.data.data_main', {
        'input': {'dest': 'input', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'a .json/.jsonl/.csv/.parquet file or a folder of them'},
        '--format': {'dest': 'format', 'action': '_StoreAction', 'default': None, 'help': 'one of alpaca, qa, chat, completion, text (aliases: sharegpt, conversations, messages, prompt, prompt-completion, plain); default: detect'},
        '--mapping': {'dest': 'mapping', 'action': '_StoreAction', 'default': None, 'help': 'JSON object: canonical field -> your field, e.g. \'{"instruction": "query"}\''},
        '--ratios': {'dest': 'ratios', 'action': '_StoreAction', 'default': [0.8, 0.1, 0.1], 'type': 'float', 'nargs': 3, 'metavar': ['TRAIN', 'VAL', 'TEST']},
        '--seed': {'dest': 'seed', 'action': '_StoreAction', 'default': 42, 'type': 'int'},
        '--max-len': {'dest': 'max_len', 'action': '_StoreAction', 'default': 512, 'type': 'int', 'help': 'cut examples to this many tokens (0: no limit)'},
        '--template': {'dest': 'template', 'action': '_StoreAction', 'default': 'chat', 'choices': ['chat', 'alpaca', 'plain']},
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct', 'help': 'whose tokenizer (and chat template) to use'},
        '--packing': {'dest': 'packing', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'pack the training split into rows of max-len tokens'},
        '--lenient': {'dest': 'lenient', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'skip bad records (each is reported) instead of stopping'},
        '--out': {'dest': 'out', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'output folder'},
    }),
    'train': ('QLoRA fine-tuning with TRL SFTTrainer + PEFT', 'qlora_course.train.train_main', {
        '--config': {'dest': 'config', 'action': '_StoreAction', 'default': None, 'help': "YAML config file (TrainConfig fields, optional 'preset')"},
        '--preset': {'dest': 'preset', 'action': '_StoreAction', 'default': 'cpu', 'choices': ['cpu', 'gpu-16gb', 'gpu-24gb', 'gpu-80gb', 'tiny']},
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': None, 'type': 'str'},
        '--data': {'dest': 'data', 'action': '_StoreAction', 'default': None, 'type': 'str'},
        '--output-dir': {'dest': 'output_dir', 'action': '_StoreAction', 'default': None, 'type': 'str'},
        '--quant': {'dest': 'quant', 'action': '_StoreAction', 'default': None, 'type': 'str'},
        '--lora-r': {'dest': 'lora_r', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--lora-alpha': {'dest': 'lora_alpha', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--max-steps': {'dest': 'max_steps', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--learning-rate': {'dest': 'learning_rate', 'action': '_StoreAction', 'default': None, 'type': 'float'},
        '--batch-size': {'dest': 'batch_size', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--grad-accum': {'dest': 'grad_accum', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--max-len': {'dest': 'max_len', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--seed': {'dest': 'seed', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--save-steps': {'dest': 'save_steps', 'action': '_StoreAction', 'default': None, 'type': 'int'},
        '--system-prompt': {'dest': 'system_prompt', 'action': '_StoreAction', 'default': None, 'type': 'str'},
        '--resume': {'dest': 'resume', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'resume from the last checkpoint in the output dir'},
    }),
    'chat': ('chat with a model (+ adapter) in the terminal', 'qlora_course.infer.chat_main', {
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct'},
        '--adapter': {'dest': 'adapter', 'action': '_StoreAction', 'default': None, 'help': "adapter folder ('none': the base alone)"},
        '--quant': {'dest': 'quant', 'action': '_StoreAction', 'default': None, 'choices': [None, 'nf4', 'int8']},
        '--system': {'dest': 'system', 'action': '_StoreAction', 'default': None},
        '--max-new-tokens': {'dest': 'max_new_tokens', 'action': '_StoreAction', 'default': 128, 'type': 'integer >= 1'},
        '--temperature': {'dest': 'temperature', 'action': '_StoreAction', 'default': 0.0, 'type': 'float'},
        '--top-p': {'dest': 'top_p', 'action': '_StoreAction', 'default': 1.0, 'type': 'float'},
    }),
    'eval': ('exact match and answer loss on a held-out split, base vs adapter', 'qlora_course.infer.eval_main', {
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct'},
        '--adapter': {'dest': 'adapter', 'action': '_StoreAction', 'default': None, 'help': "adapter folder ('none': the base alone)"},
        '--quant': {'dest': 'quant', 'action': '_StoreAction', 'default': None, 'choices': [None, 'nf4', 'int8']},
        '--system': {'dest': 'system', 'action': '_StoreAction', 'default': None},
        '--max-new-tokens': {'dest': 'max_new_tokens', 'action': '_StoreAction', 'default': None, 'type': 'integer >= 1'},
        '--data': {'dest': 'data', 'action': '_StoreAction', 'default': None},
        '--split': {'dest': 'split', 'action': '_StoreAction', 'default': 'test', 'choices': ['train', 'validation', 'test']},
        '--limit': {'dest': 'limit', 'action': '_StoreAction', 'default': 0, 'type': 'integer >= 0', 'help': 'evaluate the first N records (0: all)'},
        '--csv': {'dest': 'csv', 'action': '_StoreAction', 'default': None},
        '--force': {'dest': 'force', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'overwrite an existing --csv file'},
    }),
    'merge': ('merge a LoRA adapter into its base and save a Hugging Face folder', 'qlora_course.export.merge_main', {
        '--base': {'dest': 'base', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct', 'help': 'base model: name, folder, .gguf or hub id'},
        '--adapter': {'dest': 'adapter', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'PEFT LoRA adapter folder'},
        '--out': {'dest': 'out', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'output folder (new or empty)'},
        '--dtype': {'dest': 'dtype', 'action': '_StoreAction', 'default': 'fp16', 'choices': ['fp32', 'fp16', 'bf16'], 'help': 'dtype of the merge and the saved weights'},
        '--prompts': {'dest': 'prompts', 'action': '_StoreAction', 'default': 4, 'type': 'int', 'help': 'held-out prompts used by the check'},
        '--no-verify': {'dest': 'verify', 'action': '_StoreFalseAction', 'default': True, 'nargs': 0, 'help': 'skip the check against base + adapter'},
        '--force': {'dest': 'force', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'write into a non-empty --out, replacing only the files a merge writes'},
        '--other-base': {'dest': 'other_base', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'merge even though --base is not the base named in adapter_config.json'},
    }),
    'gguf': ('write a merged folder as GGUF (pure Python, or K-quants via llama.cpp) plus an Ollama Modelfile', 'qlora_course.export.gguf_main', {
        'model': {'dest': 'model', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'merged Hugging Face folder'},
        '--type': {'dest': 'type', 'action': '_AppendAction', 'default': None, 'help': 'f32, f16, bf16, q8_0, q4_0, or with the llama extra q6_k, q5_k_m, q4_k_m (repeatable; default f16)'},
        '--out-dir': {'dest': 'out_dir', 'action': '_StoreAction', 'default': None, 'help': 'folder for the files (default: the model folder)'},
        '--system': {'dest': 'system', 'action': '_StoreAction', 'default': None, 'help': "system prompt for the Modelfile (default: the chat template's own)"},
        '--no-modelfile': {'dest': 'modelfile', 'action': '_StoreFalseAction', 'default': True, 'nargs': 0, 'help': 'do not write a Modelfile'},
        '--no-verify': {'dest': 'verify', 'action': '_StoreFalseAction', 'default': True, 'nargs': 0, 'help': 'skip loading the file back and comparing logits'},
        '--force': {'dest': 'force', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'replace existing .gguf files and Modelfile of the same names'},
    }),
    'serve': ("serve a GGUF file with llama.cpp's OpenAI-compatible server on 127.0.0.1 (needs the llama extra)", 'qlora_course.export.serve_main', {
        'model': {'dest': 'model', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'the .gguf file'},
        '--host': {'dest': 'host', 'action': '_StoreAction', 'default': '127.0.0.1', 'help': 'listen address (default 127.0.0.1: this machine only; the server has no authentication)'},
        '--port': {'dest': 'port', 'action': '_StoreAction', 'default': 8080, 'type': 'int', 'help': 'listen port (default 8080)'},
        '--n-ctx': {'dest': 'n_ctx', 'action': '_StoreAction', 'default': 2048, 'type': 'int', 'help': 'context length in tokens'},
        '--threads': {'dest': 'threads', 'action': '_StoreAction', 'default': None, 'type': 'int', 'help': 'CPU threads (default: half the cores)'},
        '--verbose': {'dest': 'verbose', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': "show llama.cpp's own log"},
    }),
    'prune': ('prune a model: structured (l2/taylor/random) or unstructured (magnitude/wanda, N:M)', 'qlora_course.prune.prune_main', {
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct'},
        '--method': {'dest': 'method', 'action': '_StoreAction', 'default': 'taylor', 'help': 'l2, taylor, random (structured); magnitude, wanda (unstructured)'},
        '--sparsity': {'dest': 'sparsity', 'action': '_StoreAction', 'default': 0.25, 'type': 'float', 'help': 'fraction to remove, in [0, 1)'},
        '--nm': {'dest': 'nm', 'action': '_StoreAction', 'default': None, 'help': 'N:M pattern for magnitude/wanda, e.g. 2:4'},
        '--calib': {'dest': 'calib', 'action': '_StoreAction', 'default': None, 'help': 'text file for calibration (default data/prose/domain.txt)'},
        '--calib-batches': {'dest': 'calib_batches', 'action': '_StoreAction', 'default': 4, 'type': 'int'},
        '--out': {'dest': 'out', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'output folder'},
    }),
    'distill': ('distil a (pruned) student from a teacher', 'qlora_course.distill.distill_main', {
        '--teacher': {'dest': 'teacher', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct'},
        '--student': {'dest': 'student', 'action': '_StoreAction', 'default': None, 'required': True, 'help': 'student model: a folder (e.g. from `qlora-course prune`) or a name'},
        '--data': {'dest': 'data', 'action': '_StoreAction', 'default': None, 'help': 'text file to distil on (default data/prose/domain.txt)'},
        '--kind': {'dest': 'kind', 'action': '_StoreAction', 'default': 'forward_kl', 'help': 'forward_kl, reverse_kl or jsd'},
        '--temperature': {'dest': 'temperature', 'action': '_StoreAction', 'default': 2.0, 'type': 'float'},
        '--alpha': {'dest': 'alpha', 'action': '_StoreAction', 'default': 0.5, 'type': 'float', 'help': 'weight of the KD term (rest: hard-label CE)'},
        '--beta': {'dest': 'beta', 'action': '_StoreAction', 'default': 0.5, 'type': 'float', 'help': 'JSD mixture weight'},
        '--steps': {'dest': 'steps', 'action': '_StoreAction', 'default': 100, 'type': 'int'},
        '--lr': {'dest': 'lr', 'action': '_StoreAction', 'default': 5e-05, 'type': 'float'},
        '--batch-size': {'dest': 'batch_size', 'action': '_StoreAction', 'default': 2, 'type': 'int'},
        '--seq-len': {'dest': 'seq_len', 'action': '_StoreAction', 'default': 128, 'type': 'int'},
        '--cpu': {'dest': 'cpu', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'force the CPU'},
        '--out': {'dest': 'out', 'action': '_StoreAction', 'default': None, 'required': True},
    }),
    'zip': ('compress a file losslessly with a language model', 'qlora_course.llmzip.zip_main', {
        'input': {'dest': 'input', 'action': '_StoreAction', 'default': None, 'required': True},
        'output': {'dest': 'output', 'action': '_StoreAction', 'default': None, 'required': True},
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct', 'help': 'model name, folder or .gguf (must match at unzip)'},
        '--adapter': {'dest': 'adapter', 'action': '_StoreAction', 'default': None, 'help': 'LoRA adapter folder (must match at unzip)'},
        '--device': {'dest': 'device', 'action': '_StoreAction', 'default': None, 'help': 'cpu, cuda or mps (must be the same kind at unzip)'},
        '--force': {'dest': 'force', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'overwrite OUTPUT if it exists'},
        '--mode': {'dest': 'mode', 'action': '_StoreAction', 'default': 'arith', 'choices': ['rank', 'arith']},
        '--context': {'dest': 'context', 'action': '_StoreAction', 'default': None, 'type': 'int', 'help': "tokens of context: the portable step's window (default 512), the lean and transformers steps' chunk length (default 256)"},   # issues 31 and 34: format 4 (portable step, long streams) is the default
        '--batch': {'dest': 'batch', 'action': '_StoreAction', 'default': 64, 'type': 'int', 'help': 'streams run side by side at most (default 64)'},   # issues 31 and 34: format 4 (portable step, long streams) is the default
        '--stream-len': {'dest': 'stream_len', 'action': '_StoreAction', 'default': None, 'type': 'int', 'help': 'portable step: tokens per stream at least, when the text allows (default 256); longer streams give fewer bits but fewer rows side by side, so zip and unzip run slower'},   # issue 34: the streams' length, traded against speed
        '--threads': {'dest': 'threads', 'action': '_StoreAction', 'default': None, 'type': 'int', 'help': "CPU threads to code with (default: torch's, at most 8; the lean and transformers steps write it in the file, and unzip uses the same)"},   # issues 31 and 34: format 4 (portable step, long streams) is the default
        '--dtype': {'dest': 'dtype', 'action': '_StoreAction', 'default': 'auto', 'choices': ['auto', 'float32', 'bfloat16'], 'help': 'model dtype; auto: bfloat16 on a CPU with AVX-512 BF16 or AMX, else float32 (the portable step gives the same file in either)'},   # issues 31 and 34: format 4 (portable step, long streams) is the default
        '--engine': {'dest': 'engine', 'action': '_StoreAction', 'default': 'auto', 'choices': ['auto', 'portable', 'lean', 'transformers'], 'help': 'the step that computes the logits; portable: the same bits on every machine; lean and transformers: faster on short texts, but the file decodes only on this kind of machine; auto: portable where it runs the model'},   # issues 31 and 34: format 4 (portable step, long streams) is the default
        '--no-verify': {'dest': 'no_verify', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'skip decoding before writing'},
    }),
    'unzip': ('decompress a file made by `qlora-course zip`', 'qlora_course.llmzip.unzip_main', {
        'input': {'dest': 'input', 'action': '_StoreAction', 'default': None, 'required': True},
        'output': {'dest': 'output', 'action': '_StoreAction', 'default': None, 'required': True},
        '--model': {'dest': 'model', 'action': '_StoreAction', 'default': 'smollm2-135m-instruct', 'help': 'model name, folder or .gguf (must match at unzip)'},
        '--adapter': {'dest': 'adapter', 'action': '_StoreAction', 'default': None, 'help': 'LoRA adapter folder (must match at unzip)'},
        '--device': {'dest': 'device', 'action': '_StoreAction', 'default': None, 'help': 'cpu, cuda or mps (must be the same kind at unzip)'},
        '--force': {'dest': 'force', 'action': '_StoreTrueAction', 'default': False, 'nargs': 0, 'help': 'overwrite OUTPUT if it exists'},
    }),
    'pipeline': ('run every stage on one model and write runs/<name>/report.md', 'qlora_course.pipeline.pipeline_main', {
        '--config': {'dest': 'config', 'action': '_StoreAction', 'default': None, 'help': 'pipeline YAML (see course.yaml); default: the built-in course config'},
        '--name': {'dest': 'name', 'action': '_StoreAction', 'default': None, 'help': "run name (overrides the config's)"},
        '--force': {'dest': 'force', 'action': '_StoreAction', 'default': None, 'nargs': '*', 'help': "redo these finished steps ('all' for every step)", 'metavar': 'STEP'},
        '--only': {'dest': 'only', 'action': '_StoreAction', 'default': None, 'nargs': '*', 'help': 'run only these steps', 'metavar': 'STEP'},
    }),
}

def spec(p) -> dict:
    "Each option of parser `p` (by its option strings) with its attributes, in the form of `OLD`."
    out = {}
    for a in p._actions:
        if isinstance(a, argparse._HelpAction): continue
        d = dict(dest=a.dest, action=type(a).__name__, default=a.default, type=getattr(a.type, "__name__", a.type),
                 choices=list(a.choices) if a.choices is not None else None, nargs=a.nargs, required=a.required, help=a.help,
                 metavar=list(a.metavar) if isinstance(a.metavar, tuple) else a.metavar)
        out[" ".join(a.option_strings) or a.dest] = {k: v for k, v in d.items() if not (k in DEFAULTS and v == DEFAULTS[k])}
    return out

DEFAULTS = dict(required=False, nargs=None, metavar=None, choices=None, type=None, help=None)

def sub_parser(cmd): return build_parser(cmd)._subparsers._group_actions[0].choices[cmd]

def test_same_subcommands():
    assert list(COMMANDS) == list(OLD)
    listed = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0]._choices_actions}
    assert listed == {c: h for c, (h, _, _) in OLD.items()}
    assert {c: f"qlora_course.{m}.{f}" for c, (_, m, f) in COMMANDS.items()} == {c: fn for c, (_, fn, _) in OLD.items()}

# Issue 16 added --force to the commands that write a folder (they now refuse a non-empty --out), and --out's help says so.
ADDED = {c: "--force" for c in ("data", "prune", "distill")}

@pytest.mark.parametrize("cmd", [c for c in OLD if c != "train"])
def test_options_unchanged(cmd):
    new, old = spec(sub_parser(cmd)), {k: dict(v) for k, v in OLD[cmd][2].items()}
    if cmd in ADDED:
        assert new.pop(ADDED[cmd])["action"] == "_StoreTrueAction"
        assert "new or empty" in new["--out"].pop("help"); old["--out"].pop("help", None)
    if cmd == "eval":   # added since: --harness DIR, the score from lm-evaluation-harness too
        h = new.pop("--harness"); assert h["action"] == "_StoreAction" and h["default"] is None and "lm-evaluation-harness" in h["help"]
    assert new == old

def test_train_options_kept():
    "`train`'s options are now generated from TrainConfig: a superset of the old ones, with the same names, destinations and types."
    new, old = spec(sub_parser("train")), OLD["train"][2]
    by_string = {s: a for k, a in new.items() for s in k.split()}
    for k, a in old.items():
        assert k in by_string, k
        assert by_string[k]["dest"] == a["dest"] and by_string[k].get("type") == a.get("type"), k
    assert new["--config"] == old["--config"]
    # --preset kept its old choices and gained the per-model presets (issue 14: train.MODEL_PRESETS); its default is no
    # longer 'cpu' but this machine's preset (issue 33: fp32 'cpu' training on a GPU unless the user named one), said in its help
    from qlora_course.train import MODEL_PRESETS
    preset = dict(new["--preset"]); assert preset.pop("choices") == old["--preset"]["choices"] + list(MODEL_PRESETS)
    assert "this machine's" in preset.pop("help") and preset.pop("default") is None and old["--preset"]["default"] == "cpu"
    assert preset == {k: v for k, v in old["--preset"].items() if k not in ("choices", "default")}
    from dataclasses import fields
    from qlora_course.train import TrainConfig
    assert {a["dest"] for a in new.values()} == {f.name for f in fields(TrainConfig)} | {"config", "preset", "force"}   # --force: issue 33

def test_top_level_help_imports_no_stage():
    code = ("import sys, qlora_course.cli as c\n"
            "try: c.main(['--help'])\n"
            "except SystemExit as e: assert e.code == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate'))\n"
            "stages = sorted(m for m in sys.modules if m.startswith('qlora_course.') and m != 'qlora_course.cli')\n"
            "print('IMPORTED', heavy + stages)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "COMMAND" in r.stdout and "IMPORTED []" in r.stdout, r.stdout[-2000:]
    r = subprocess.run([str(BIN/"qlora-course"), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)

def test_stage_that_fails_to_import_is_an_error(monkeypatch, capsys):
    "A stage that can't be imported is not skipped: the command says which package is missing and how to install it."
    monkeypatch.setitem(COMMANDS, "models", (COMMANDS["models"][0], "no_such_stage", "models_main"))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qlora-course models: error: qlora_course.no_such_stage is missing") and err.count("\n") == 1

def test_missing_extra_names_it(monkeypatch, capsys):
    def needs_llama(args): raise ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")
    monkeypatch.setattr(cli, "entry", lambda cmd: needs_llama)
    assert main(["models"]) == 2
    assert "pip install 'qlora-course[llama]'" in capsys.readouterr().err

@pytest.mark.parametrize("exc,code,words", [
    (KeyboardInterrupt(), 130, "interrupted"), (FileExistsError("o.csv exists; pass --force"), 2, "error: o.csv exists"),
    (IsADirectoryError("adir is a directory"), 2, "error: adir"), (MemoryError("Out of memory on the GPU"), 3, "error: Out of memory"),
    ("step", 1, "error: pipeline step 'train' failed")])
def test_error_table(monkeypatch, capsys, exc, code, words):
    if exc == "step":
        from qlora_course.pipeline import StepFailed
        exc = StepFailed("pipeline step 'train' failed: boom")
    def boom(args): raise exc
    monkeypatch.setattr(cli, "entry", lambda cmd: boom)
    assert main(["models"]) == code
    out = capsys.readouterr()
    assert words in out.err and out.out == ""

def test_bug_keeps_its_traceback(monkeypatch):
    def bug(args): raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, "entry", lambda cmd: bug)
    with pytest.raises(ZeroDivisionError): main(["models"])
