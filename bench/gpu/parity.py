#!/usr/bin/env python3
"""Parity on the GPU (bench/gpu/run.sh step 2): our CUDA path against transformers and peft.

Models are made here with random weights (no weight file travels to the GPU machine): SmolLM2-135M's
architecture with its tokenizer, and a small Llama-3-shaped model (GQA, llama3 rope scaling, untied head,
Llama-3's 128,256-token vocabulary and tokenizer). Checks:
  1. logits: model_probe on --device against transformers on the same device, float32 and bfloat16, over
     a prefill and decode steps; the error is relative to the largest logit, and bfloat16 is judged against
     transformers' own bfloat16 error (both against float32).
  2. PAD: pad_probe's greedy tokens on --device (float32) equal pad_probe's on the CPU, pad_probe's with
     decode steps as CUDA graphs (cuda_graphs), and the rule as tests/python/pad_reference.py writes it with
     transformers + peft, replayed at every step; bfloat16's steps equal to float32's are reported.
Prints one JSON object per check and writes them to OUT/parity.jsonl; exits 1 if a check fails.
Usage: parity.py --build DIR --smollm2 DIR --llama3_tokenizer DIR --device cuda --out DIR [--small]
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import pad_reference as ref  # noqa: E402

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def save_random_model(config, tokenizer_dir, path, scale):
    """A random LlamaForCausalLM saved with `tokenizer_dir`'s tokenizer; matrices scaled by `scale` so that
    logits spread out (no near-ties between candidates)."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    model.save_pretrained(str(path))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, path / name)
    return path


def save_random_adapter(model_dir, path):
    """A peft LoRA adapter on all seven projections with B drawn at random, and a value head."""
    torch.manual_seed(1)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    model.save_pretrained(str(path))
    hidden = base.config.hidden_size
    save_file({"v_head.summary.weight": torch.eye(hidden) + 0.01 * torch.randn(hidden, hidden),
               "v_head.summary.bias": 0.01 * torch.randn(hidden)}, str(path / "value_head.safetensors"))
    return path


def run_probe(build, name, request):
    result = subprocess.run([str(build / "tests" / name)], input=json.dumps(request), capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{name}: {result.stderr}")
    return json.loads(result.stdout)


def our_logits(build, model_dir, sequences, dtype, device, prefill, out):
    answer = run_probe(build, "model_probe", {"command": "logits", "model": str(model_dir), "dtype": dtype,
                                              "device": device, "sequences": sequences, "prefill": prefill,
                                              "output": str(out)})
    flat = np.fromfile(out, dtype=np.float32).reshape(-1, answer["vocab"])
    return np.split(flat, np.cumsum(answer["rows"])[:-1])


@torch.no_grad()
def their_logits(model_dir, sequences, dtype, device):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=getattr(torch, dtype)).to(device).eval()
    out = [model(torch.tensor([s], device=device)).logits[0].float().cpu().numpy() for s in sequences]
    del model
    return out


def relative_error(ours, theirs):
    return max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs))


def check_logits(args, name, model_dir, work):
    rng = np.random.default_rng(0)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    sequences = [rng.integers(0, vocab, n).tolist() for n in (48, 29, 64)]
    prefill = 16  # a 16-token prefill, then one token per step: both paths of the forward
    reference32 = their_logits(model_dir, sequences, "float32", args.device)
    rows = []
    for dtype in ("float32", "bfloat16"):
        ours = our_logits(args.build, model_dir, sequences, dtype, args.device, prefill, work / f"{name}.bin")
        error = relative_error(ours, reference32)
        if dtype == "float32":
            budget = 1e-4
        else:  # transformers' own bfloat16 error against float32 sets the scale
            budget = 1.5 * relative_error(their_logits(model_dir, sequences, dtype, args.device), reference32) + 1e-3
        agree = float(np.mean([(a.argmax(-1) == b.argmax(-1)).mean() for a, b in zip(ours, reference32)]))
        rows.append({"check": f"logits {name} {dtype}", "device": args.device, "error": error,
                     "budget": budget, "argmax_agreement": agree, "ok": error <= budget})
    return rows


def pad_requests(n_tokens):
    instruction = {"messages": [{"role": "user", "content": "Write a short note about the sea and the moon."}]}
    common = {"max_new_tokens": n_tokens, "ignore_eos": True, "top_k": 10}
    return [
        ("pad", {**instruction, **common, "mode": "pad", "principles": ["concise", "humorous"], "beta": 1.5}),
        ("pad_weighted", {**instruction, **common, "mode": "pad", "composition": "weighted",
                          "principles": ["concise", "humorous"], "weights": [0.7, 0.3]}),
        ("vanilla", {**instruction, **common, "mode": "vanilla"}),
    ]


def check_pad(args, name, model_dir, adapter_dir, n_tokens):
    requests = pad_requests(n_tokens)
    prms = [{"name": "default", "backbone": str(model_dir), "adapter": str(adapter_dir),
             "value_head": str(adapter_dir / "value_head.safetensors")}]

    def generate(device, dtype, cuda_graphs=False):
        answer = run_probe(args.build, "pad_probe", {
            "command": "generate", "policy": str(model_dir), "dtype": dtype, "device": device,
            "reward_models": prms, "requests": [r for _, r in requests], "batched": True, "kv_slots": 16,
            "max_seq_len": 512, "cuda_graphs": cuda_graphs})
        for result in answer["results"]:
            if "error" in result:
                raise RuntimeError(f"pad_probe on {device}: {result['error']}")
        return [result["tokens"] for result in answer["results"]]

    on_device, on_cpu, on_device16 = (generate(args.device, "float32"), generate("cpu", "float32"),
                                      generate(args.device, "bfloat16"))
    graphs = generate(args.device, "float32", cuda_graphs=True)
    formatter, policy = ref.Formatter(model_dir), ref.Policy(model_dir)
    prm = ref.RewardModel(model_dir, adapter_dir, adapter_dir / "value_head.safetensors")
    rows = []
    for (label, request), tokens, cpu_tokens, tokens16, graph_tokens in zip(requests, on_device, on_cpu,
                                                                           on_device16, graphs):
        choices = [step.token for step in ref.replay(policy, prm, formatter, request, tokens)]
        first = next((t for t in range(len(tokens)) if choices[t] != tokens[t]), None)
        same16 = next((t for t in range(len(tokens)) if tokens16[t] != tokens[t]), len(tokens))
        rows.append({"check": f"pad {name} {label}", "device": args.device, "steps": len(tokens),
                     "equals_cpu": tokens == cpu_tokens, "equals_graphs": tokens == graph_tokens,
                     "first_reference_mismatch": first, "bf16_same_steps": same16,
                     "ok": tokens == cpu_tokens and tokens == graph_tokens and first is None})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=pathlib.Path, required=True)
    parser.add_argument("--smollm2", type=pathlib.Path, required=True, help="SmolLM2 config and tokenizer")
    parser.add_argument("--llama3_tokenizer", type=pathlib.Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--small", action="store_true", help="two SmolLM2 layers and 8 PAD steps (dry run)")
    args = parser.parse_args()
    transformers.logging.disable_progress_bar()
    work = args.out / "parity_models"
    work.mkdir(parents=True, exist_ok=True)

    smollm2 = transformers.AutoConfig.from_pretrained(str(args.smollm2))
    if args.small:
        smollm2.num_hidden_layers = 2
    llama3 = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=128, intermediate_size=448, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
        bos_token_id=128000, eos_token_id=128009)
    models = {"smollm2-135m": save_random_model(smollm2, args.smollm2, work / "smollm2", 1.0),
              "llama3-small": save_random_model(llama3, args.llama3_tokenizer, work / "llama3", 4.0)}
    rows = []
    for name, model_dir in models.items():
        rows += check_logits(args, name, model_dir, work)
    # PAD on models whose logits spread out (scaled weights), so that float rounding decides no step.
    tiny_smollm2 = smollm2.to_dict() | {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3,
                                        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}
    pad_models = {"smollm2-vocab": save_random_model(transformers.LlamaConfig(**tiny_smollm2), args.smollm2,
                                                     work / "smollm2_pad", 4.0),
                  "llama3-small": models["llama3-small"]}
    for name, model_dir in pad_models.items():
        adapter_dir = save_random_adapter(model_dir, work / f"{name}_prm")
        rows += check_pad(args, name, model_dir, adapter_dir, 8 if args.small else 32)
    with open(args.out / "parity.jsonl", "w") as out:
        for row in rows:
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")
    shutil.rmtree(work)
    sys.exit(0 if all(row["ok"] for row in rows) else 1)


if __name__ == "__main__":
    main()
