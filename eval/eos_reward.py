#!/usr/bin/env python3
"""How PAD's rule treats end-of-sequence, along VANILLA's answers of an evaluation run.

For each prompt set, the VANILLA answers that eval/evaluate.py wrote (--raw_dir's main.jsonl) are replayed
through the rule as tests/python/pad_reference.py writes it (transformers + peft), with that set's PAD
request (its principles, k and beta) and the given PRM. At every step where end-of-sequence is among the
policy's top k: its reward r(EOS) against the mean reward of the other candidates, and whether it ranks
first by the policy's logit and by PAD's score. A PRM that rewards stopping as such makes PAD's answers short
whatever the principle.

Usage: eval/eos_reward.py --prm DIR --raw DIR/main.jsonl [--steps 100]
"""
import argparse
import collections
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import pad_reference as ref  # noqa: E402

SETS = ["positive", "concise", "humorous", "benign", "harmful_advbench"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prm", type=pathlib.Path, required=True)
    parser.add_argument("--raw", type=pathlib.Path, required=True, help="evaluate.py's main.jsonl")
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=100, help="steps replayed per answer")
    args = parser.parse_args()
    formatter, policy = ref.Formatter(args.model), ref.Policy(args.model)
    prm = ref.RewardModel(args.model, args.prm, args.prm / "value_head.safetensors")
    eos = ref.eos_ids(policy.model)
    records = [json.loads(line) for line in args.raw.open()]
    pad_request = {r["set"]: r["request"] for r in records if r["label"] == "PAD"}

    print(f"PRM {args.prm}, VANILLA's answers of {args.raw}, first {args.steps} steps each\n")
    print("| prompt set | principles | steps | EOS in top k | mean r(EOS) | mean r(others) | "
          "EOS first by the policy | EOS first by PAD |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for prompt_set in SETS:
        if prompt_set not in pad_request:
            continue
        c = collections.Counter()
        eos_reward = others_reward = 0.0
        for r in records:
            if r["set"] != prompt_set or r["label"] != "VANILLA":
                continue
            request = {**pad_request[prompt_set], "prompt": r["prompt"]}  # evaluate.py's request
            tokens = formatter.tokenizer.encode(r["text"], add_special_tokens=False).ids[:args.steps]
            for step in ref.replay(policy, prm, formatter, request, tokens):
                c["steps"] += 1
                at = next((i for i, a in enumerate(step.candidates) if a in eos), None)
                if at is None:
                    continue
                c["in_top_k"] += 1
                eos_reward += step.rewards[at]
                others_reward += (sum(step.rewards) - step.rewards[at]) / (len(step.rewards) - 1)
                c["first_policy"] += at == 0
                c["first_pad"] += max(range(len(step.scores)), key=step.scores.__getitem__) == at
        n = max(c["in_top_k"], 1)
        print(f"| {prompt_set} | {', '.join(pad_request[prompt_set]['principles'])} | {c['steps']} | "
              f"{c['in_top_k']} | {eos_reward / n:+.2f} | {others_reward / n:+.2f} | {c['first_policy']} | "
              f"{c['first_pad']} |", flush=True)


if __name__ == "__main__":
    main()
