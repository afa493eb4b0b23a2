"""What int8 weights (`--quantization=int8`, Q8_0's layout) cost in accuracy, against float32, beside what
bfloat16 costs: logit error and top-1 agreement at every position of the parity prompts, greedy tokens of
the parity chat prompts, and PAD's chosen tokens with the demo PRM. Prints a table.

    ~/.cache/pad/venv/bin/python bench/bench_int8_accuracy.py [--new_tokens 64]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("PAD_BUILD", ROOT / "build"))
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"
PRM = ROOT / "prm" / "SmolLM2-135M-PAD-demo"
sys.path.insert(0, str(ROOT / "tests" / "python"))
from test_model_parity import PROMPTS  # noqa: E402  (the parity tests' prompts)

QUESTIONS = ["What is the capital of France?", "Write a short poem about the sea.", "List three prime numbers.",
             "How do I reverse a list in Python?", "Explain photosynthesis to a child.",
             "Give me a recipe for pancakes.", "What causes the seasons?", "How do I pick a lock?"]
PRINCIPLES = [["concise"], ["harmless"], ["positive"], ["concise"], ["positive"], ["concise"], ["positive"],
              ["harmless"]]
# (dtype, quantization) of each configuration; the first is the reference.
CONFIGS = [("float32", "none"), ("bfloat16", "none"), ("float32", "int8")]


def probe(name, request):
    result = subprocess.run([str(BUILD / "tests" / name)], input=json.dumps(request), capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(result.stderr)
    return json.loads(result.stdout)


def logits(dtype, quantization, sequences, directory):
    output = pathlib.Path(directory) / "logits.bin"
    answer = probe("model_probe", {"command": "logits", "model": str(MODEL), "dtype": dtype,
                                   "quantization": quantization, "sequences": sequences, "prefill": 3,
                                   "output": str(output)})
    return np.fromfile(output, dtype=np.float32).reshape(-1, answer["vocab"])


def generate(dtype, quantization, mode, new_tokens):
    requests = [{"mode": mode, "messages": [{"role": "user", "content": q}], "principles": p,
                 "max_new_tokens": new_tokens, "temperature": 0.0, "ignore_eos": True}
                for q, p in zip(QUESTIONS, PRINCIPLES)]
    if mode == "vanilla":
        for request in requests:
            del request["principles"]
    answer = probe("pad_probe", {"command": "generate", "policy": str(MODEL), "dtype": dtype,
                                 "quantization": quantization, "batched": True, "requests": requests,
                                 "reward_models": [{"name": "default", "backbone": str(MODEL),
                                                    "adapter": str(PRM)}]})
    return [result["tokens"] for result in answer["results"]]


def agreement(ours, reference):
    """(sequences identical, mean share of each sequence before the first difference)."""
    same = sum(a == b for a, b in zip(ours, reference))
    prefixes = []
    for a, b in zip(ours, reference):
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefixes.append(n / max(len(b), 1))
    return f"{same}/{len(reference)}", float(np.mean(prefixes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new_tokens", type=int, default=64)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    sequences = [tokenizer(p)["input_ids"] for p in PROMPTS]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        results = {}
        for dtype, quantization in CONFIGS:
            results[(dtype, quantization)] = (logits(dtype, quantization, sequences, directory),
                                              generate(dtype, quantization, "vanilla", args.new_tokens),
                                              generate(dtype, quantization, "pad", args.new_tokens))
    reference = results[CONFIGS[0]]
    for config in CONFIGS[1:]:
        got = results[config]
        error = np.abs(got[0] - reference[0])
        top1 = float((got[0].argmax(-1) == reference[0].argmax(-1)).mean())
        greedy, greedy_prefix = agreement(got[1], reference[1])
        pad, pad_prefix = agreement(got[2], reference[2])
        rows.append(f"| {config[0]}{' + int8 weights' if config[1] == 'int8' else ''} | "
                    f"{error.max() / np.abs(reference[0]).max():.4f} | {error.mean():.4f} | {top1:.3f} | "
                    f"{greedy} | {greedy_prefix:.2f} | {pad} | {pad_prefix:.2f} |")
    print(f"Against float32; {len(sequences)} parity prompts ({sum(map(len, sequences))} positions); "
          f"{len(QUESTIONS)} chat prompts, {args.new_tokens} greedy tokens, VANILLA and PAD (demo PRM).\n")
    print("| weights | max logit error / max logit | mean abs logit error | top-1 agreement | "
          "greedy sequences identical | greedy share before first difference | PAD sequences identical | "
          "PAD share before first difference |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
