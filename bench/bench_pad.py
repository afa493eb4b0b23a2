#!/usr/bin/env python3
"""PAD on SmolLM2 on this CPU: tokens/s by mode and batch size (build/bench/bench_pad), and our PAD
against the official-style loop (transformers + peft, both models recomputed on the whole sequence each
step, as the authors' code runs) in the same run. Prints markdown tables.

The PRM is a random rank-8 LoRA on all seven projections of the policy's own backbone (shared in memory)
plus a value head: its numbers cost what a trained PRM of that shape costs.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time

import peft
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
SENTENCE = "Describe how tides work and why there are two of them each day. "
GUIDELINE = ("[Guidelines] Your task is to generate response by considering the following principle. "
             "[Principles] {p} [Instruction] {x}")


def make_prm(model_dir, out):
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = peft.LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    prm = peft.get_peft_model(base, config)
    prm.save_pretrained(out)
    hidden = base.config.hidden_size
    torch.manual_seed(0)
    save_file({"v_head.summary.weight": torch.eye(hidden) + 0.01 * torch.randn(hidden, hidden),
               "v_head.summary.bias": 0.01 * torch.randn(hidden)}, os.path.join(out, "value_head.safetensors"))
    return prm


def official_loop_ms_per_token(model_dir, prm, prompt_tokens, steps):
    """ms per generated token of the authors' loop: both models on the whole sequence at every step."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    v_head = torch.nn.Linear(prm.config.hidden_size, prm.config.hidden_size)
    instruction = SENTENCE * -(-prompt_tokens // len(tokenizer(SENTENCE)["input_ids"]))
    text = GUIDELINE.format(p="helpfulness and harmlessness and humor", x=instruction)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        return_dict=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(steps):
            z_b = policy(ids).logits[0, -1].float()
            top = torch.topk(z_b, 10)
            h = prm.base_model.model.model(ids).last_hidden_state[0, -1]
            z_r = prm.base_model.model.lm_head(v_head(h)).float()
            reward = torch.log_softmax(z_r[top.indices], -1) - torch.log_softmax(top.values, -1)
            token = top.indices[torch.argmax(top.values + reward)]
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
        return 1e3 * (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", type=pathlib.Path, default=pathlib.Path(os.environ.get("PAD_BUILD", ROOT / "build")))
    parser.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"))
    parser.add_argument("--prompt_tokens", type=int, default=200)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--official_steps", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as adapter:
        prm = make_prm(args.model, adapter)
        command = [str(args.build / "bench" / "bench_pad"), f"--model={args.model}", f"--prm_adapter={adapter}",
                   f"--batches={args.batches}", f"--prompt_tokens={args.prompt_tokens}",
                   f"--new_tokens={args.new_tokens}", "--json"]
        rows = [json.loads(line) for line in subprocess.run(command, check=True, capture_output=True,
                                                            text=True).stdout.splitlines()]
        official_ms = official_loop_ms_per_token(args.model, prm, args.prompt_tokens, args.official_steps)

    print(f"CPU: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; SmolLM2-135M float32, PRM = shared backbone + rank-8 LoRA + value head; "
          f"instruction ~{args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, end-of-sequence ignored\n")
    print("| mode | batch | prompt tokens | TTFT ms | decode tok/s | ms / step | cost per token vs vanilla |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['batch']} | {r['prompt_tokens']} | {r['ttft_ms']:.0f} | "
              f"{r['decode_tokens_per_s']:.2f} | {r['step_ms']:.1f} | {r['cost_vs_vanilla']:.2f}x |")
    ours = next(r for r in rows if r["mode"] == "pad_prompt" and r["batch"] == 1)
    print(f"\nPAD (PROMPT, batch 1): ours {ours['step_ms']:.1f} ms/token; official-style loop (transformers + "
          f"peft, no KV cache, {args.official_steps} steps) {official_ms:.1f} ms/token: "
          f"ours is {official_ms / ours['step_ms']:.1f}x faster")


if __name__ == "__main__":
    main()
