#!/usr/bin/env python3
"""Greedy decoding on SmolLM2 on this CPU: our runtime (build/bench/bench_generate) against transformers'
generate() in the same run, with the same prompts, lengths and thread count. Prints a markdown table.

Decode tokens/s is batch * (new_tokens - 1) / (time after the first token), for both; TTFT is the prefill.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[1]


def ours(args, dtype, batch):
    command = [str(args.build / "bench" / "bench_generate"), f"--model={args.model}", f"--dtypes={dtype}",
               f"--batches={batch}", f"--prompt_tokens={args.prompt_tokens}", f"--new_tokens={args.new_tokens}",
               "--json"]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def transformers_reference(model, batch, args):
    prompt = torch.tensor([[100 + (t * 7 + b) % 1000 for t in range(args.prompt_tokens)] for b in range(batch)])
    mask = torch.ones_like(prompt)

    def timed(new_tokens):
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=0)
        return time.perf_counter() - start

    timed(2)  # warm-up
    first = timed(1)
    total = timed(args.new_tokens)
    return {"ttft_ms": 1e3 * first, "decode_tokens_per_s": batch * (args.new_tokens - 1) / (total - first)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", type=pathlib.Path, default=pathlib.Path(os.environ.get("PAD_BUILD", ROOT / "build")))
    parser.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"))
    parser.add_argument("--prompt_tokens", type=int, default=64)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, "
          "greedy, no early stop\n")
    print("| dtype | batch | ours TTFT ms | ours decode tok/s | transformers TTFT ms | transformers decode tok/s "
          "| ours / transformers |")
    print("|---|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, dtype)).eval()
        for batch in map(int, args.batches.split(",")):
            mine = ours(args, dtype, batch)
            theirs = transformers_reference(model, batch, args)
            print(f"| {dtype} | {batch} | {mine['ttft_ms']:.0f} | {mine['decode_tokens_per_s']:.1f} "
                  f"| {theirs['ttft_ms']:.0f} | {theirs['decode_tokens_per_s']:.1f} "
                  f"| {mine['decode_tokens_per_s'] / theirs['decode_tokens_per_s']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
