#!/usr/bin/env python3
"""The GPU run's one table (bench/gpu/run.sh step 4): parity, throughput and the issue's goals, as Markdown
for bench/RESULTS.md, from OUT/parity.jsonl and OUT/throughput_{shared,separate,graphs,long}.jsonl."""
import argparse
import datetime
import json
import pathlib

import torch

MODE_NAMES = {"vanilla": "VANILLA", "pad_prompt": "PAD (PROMPT)", "pad_weighted": "PAD (WEIGHTED, 3 principles)"}


def read_jsonl(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def parity_table(rows):
    lines = ["| check | error (budget) | argmax agreement | equals CPU | equals CUDA graphs | "
             "first step unlike the reference | bf16 steps equal to fp32 | ok |", "|---|---|---|---|---|---|---|---|"]
    yes = {True: "yes", False: "**no**"}
    for r in rows:
        if r["check"].startswith("logits"):
            lines.append(f"| {r['check']} | {r['error']:.2e} ({r['budget']:.1e}) | {r['argmax_agreement']:.3f} "
                         f"| | | | | {yes[r['ok']]} |")
        else:
            mismatch = "none" if r["first_reference_mismatch"] is None else r["first_reference_mismatch"]
            lines.append(f"| {r['check']} ({r['steps']} steps) | | | {yes[r['equals_cpu']]} | "
                         f"{yes[r['equals_graphs']]} | {mismatch} | {r['bf16_same_steps']} | {yes[r['ok']]} |")
    return lines


def throughput_table(shared, separate, graphs, long=()):
    lines = ["| mode | PRM backbone | decode steps | batch | TTFT ms | decode tokens/s | ms / step | floor ms / step | "
             "floor / step | cost per token vs VANILLA | peak GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rows, backbone, steps in ((shared, "shared", "eager"), (separate, "separate", "eager"),
                                  (graphs, "shared", "CUDA graphs"), (long, "shared", "eager, long prompts")):
        for r in rows:
            if backbone == "separate" and r["mode"] == "vanilla":
                continue  # the same as the shared run's
            lines.append(f"| {MODE_NAMES.get(r['mode'], r['mode'])} | {backbone if r['mode'] != 'vanilla' else ''}"
                         f" | {steps}"
                         f" | {r['batch']} | {r['ttft_ms']:.0f} | {r['decode_tokens_per_s']:.1f} | "
                         f"{r['step_ms']:.2f} | {r['floor_ms']:.2f} | {r['floor_ms'] / r['step_ms']:.2f} | "
                         f"{r['cost_vs_vanilla']:.2f}x | {r['peak_device_gb']:.1f} |")
    return lines


def goals(shared, steps):
    def find(mode, batch):
        return next((r for r in shared if r["mode"] == mode and r["batch"] == batch), None)

    lines = []
    single = find("pad_prompt", 1)
    if single:
        fraction = single["floor_ms"] / single["step_ms"]
        lines.append(f"- {steps}: PAD single stream at {fraction:.2f} of its bandwidth floor (goal >= 0.9): "
                     f"{'met' if fraction >= 0.9 else 'not met'}")
    at32 = find("pad_prompt", 32)
    if at32:
        rate = at32["decode_tokens_per_s"]
        lines.append(f"- {steps}: PAD aggregate at 32 streams {rate:.0f} tokens/s (goal >= 1,500): "
                     f"{'met' if rate >= 1500 else 'not met'}")
    ratios = [r["cost_vs_vanilla"] for r in shared if r["mode"] == "pad_prompt"]
    if ratios:
        worst = max(ratios)
        lines.append(f"- {steps}: PAD (shared backbone) costs at most {worst:.2f}x VANILLA per token (goal <= 1.3x): "
                     f"{'met' if worst <= 1.3 else 'not met'}")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shapes", default="Llama-3-8B", help="what bench_pad's config is")
    args = parser.parse_args()
    card_file = args.out / "card.txt"
    card = card_file.read_text().strip() if card_file.exists() else args.device
    shared = read_jsonl(args.out / "throughput_shared.jsonl")
    separate = read_jsonl(args.out / "throughput_separate.jsonl")
    graphs = read_jsonl(args.out / "throughput_graphs.jsonl")
    long = read_jsonl(args.out / "throughput_long.jsonl") if (args.out / "throughput_long.jsonl").exists() else []
    copy = f", device copy {shared[0]['copy_gb_per_s']:.0f} GB/s" if shared else ""
    print(f"## GPU run: {card}; torch {torch.__version__}; {datetime.date.today().isoformat()}{copy}\n")
    print("Parity (random weights made by transformers; bench/gpu/parity.py):\n")
    print("\n".join(parity_table(read_jsonl(args.out / "parity.jsonl"))))
    prm = shared[0]["prm"] if shared else ""
    prompt = shared[0]["prompt_tokens"] if shared else 0
    print(f"\nThroughput, {args.shapes} shapes, random bfloat16 weights made on the device, PRM {prm}; "
          f"policy prompt {prompt} tokens (bench_pad):\n")
    print("\n".join(throughput_table(shared, separate, graphs, long)))
    if long:
        print(f"\nLong prompts: {long[0]['prompt_tokens']}-token prompts, {long[0]['batch']} PAD streams at once "
              "(the paged cache and FlashAttention's paged kernel; it must not run out of memory)")
    for name in ("shared", "separate", "graphs", "long"):
        samples = args.out / f"memory_{name}.csv"
        if samples.exists() and samples.read_text().split():
            peak = max(int(v) for v in samples.read_text().split()) / 1024
            print(f"\nDevice memory in use at most (nvidia-smi), the {name} run: {peak:.1f} GiB")
    print("\n" + "\n".join(goals(shared, "eager") + goals(graphs, "CUDA graphs")))


if __name__ == "__main__":
    main()
