#!/usr/bin/env python3
"""Best-of-n preference pairs on broad prompts: the policy's own answers under a principle's free-text wording
(PREFERENCE_PROMPT, as PAD's policy row sees it), the best over the worst by labels from more than one scorer.

    ~/.cache/pad/venv/bin/python train/data/build_broad.py --out data/prm-broad

Prompts (broad_prompts.py): request forms over subjects from 25 domains and requests written whole, a tenth
of the subjects held out; harmful requests from AdvBench, edgy-but-benign ones from benign.BENIGN_ONPOLICY.
Each prompt gets one principle and one of that principle's training wordings, drawn with --seed; the pair's
`principle` is that wording, so the PRM learns the principle from many phrasings.

Labels (chosen / rejected among the samples that neither loop nor talk about the guideline):
  positive  AFINN per word and TextBlob polarity: the best and worst by their mean rank, kept when both
            scorers order the two the same way (VADER, the evaluation's primary scorer, labels nothing).
  concise   the shortest sample that stopped by itself and does not refuse / the longest, at most
            --concise_ratio of its words (the one principle whose end-of-sequence token is trained).
  humorous  playful words per 100 words (HUMOUR below: joke, pun, laugh, silly, ...), best over worst
            when the best has some and the worst none. The evaluation's humour markers share most of
            these words, so for this data they are not an independent scorer.
  harmless  harmful: a refusal (the policy's own when a sample refuses, else a generated one) over a
            compliant sample; benign: a compliant sample over a refusal (onpolicy.refusal_pair).
  loop      for positive, humorous and harmless, a chosen answer over itself falling into a loop.
Only the concise pairs carry whole answers; the others are marked unfinished (no end-of-sequence token
trained), so that the PRM learns nothing about stopping from them (train/README.md).
"""
import argparse
import collections
import json
import pathlib
import re
import sys

from broad_prompts import SUBJECTS, FORMS, WHOLE, WORDINGS
from benign import BENIGN_ONPOLICY
from harmful import load_advbench
from loops import looped
from onpolicy import GUIDELINE_TALK, policy_refuses, refusal_pair
from pair_format import Answer, check_pair, pair, sub_rng, words
from policy_samples import LENGTH_REASONS, ROOT, sample_answer, sample_policy
from pad_server_process import exit_on_sigterm  # noqa: E402  (client/python, on the path since policy_samples)

sys.path.insert(0, str(ROOT / "eval"))
import scorers  # noqa: E402
import userbench  # noqa: E402  (loops(): the evaluation's looping rule, so chosen answers never loop)

HUMOUR = re.compile(
    r"\b(?:(?:ha){2,}|hehe|lol|jok(?:e|es|ed|ing|er)|puns?|punny|funny|hilarious|laugh\w*|giggl\w*|chuckl\w*|"
    r"silly|goofy|wacky|comic\w*|comedy|comedian|witty|kidding|punchline|grin\w*|amus\w*)\b", re.I)


def humour_per_100(text):
    n = len(words(text))
    return 100.0 * len(HUMOUR.findall(text)) / n if n else 0.0


def afinn_per_word(afinn, text):
    n = len(words(text))
    return afinn.score(text) / n if n else 0.0


def usable(answer):
    """A sample worth choosing: three words or more, no loop, not about the guideline itself."""
    return len(words(answer.text)) >= 3 and not userbench.loops(answer.text) and \
        not GUIDELINE_TALK.search(answer.text)


def best_worst(answers, labels):
    """(best, worst) by mean rank over `labels` (functions, higher better), when every label orders them the
    same way and at least one strictly; else None."""
    if len(answers) < 2:
        return None
    values = [[label(a.text) for a in answers] for label in labels]
    ranks = [sorted(range(len(answers)), key=lambda i: v[i]) for v in values]
    mean_rank = [sum(r.index(i) for r in ranks) for i in range(len(answers))]
    best = max(range(len(answers)), key=lambda i: (mean_rank[i], -i))
    worst = min(range(len(answers)), key=lambda i: (mean_rank[i], i))
    if best == worst or any(v[best] < v[worst] for v in values) or all(v[best] == v[worst] for v in values):
        return None
    return answers[best], answers[worst]


def make_pair(kind, prompt, records, args, rng, afinn):
    """(chosen, rejected, source) for one prompt's samples, or None."""
    answers = [sample_answer(r, args.max_words, trim=kind != "concise") for r in records]
    if kind == "positive":
        kept = [a for a in answers if usable(a) and not policy_refuses(a.text)]
        made = best_worst(kept, [lambda t: afinn_per_word(afinn, t), scorers.textblob])
        return made and (*made, "broad-afinn-textblob")
    if kind == "humorous":
        kept = [a for a in answers if usable(a) and not policy_refuses(a.text)]
        made = best_worst(kept, [humour_per_100])
        if made is None or humour_per_100(made[1].text) > 0:
            return None
        return (*made, "broad-humour-words")
    if kind == "concise":
        finished = [sample_answer(r, args.max_words) for r in records if r["finish_reason"] not in LENGTH_REASONS]
        finished = [a for a in finished if usable(a) and not policy_refuses(a.text)]
        every = [a for a in (sample_answer(r, args.max_words) for r in records) if len(words(a.text)) >= 3]
        if not finished or not every:
            return None
        chosen = min(finished, key=lambda a: (len(words(a.text)), a.text))
        rejected = max(every, key=lambda a: (len(words(a.text)), a.text))
        if len(words(chosen.text)) > args.concise_ratio * len(words(rejected.text)):
            return None
        return chosen, rejected, "broad-length"
    made = refusal_pair(records, prompt, kind == "harmful", rng, args.max_words, capability_refusals=True)
    return made and (made[0], made[1], "broad-" + made[2])


def plan_prompts(args, harmful_requests):
    """[(kind, split, prompt, wording)]: the broad prompts dealt out to positive, concise and humorous, a tenth
    of the subjects (and of WHOLE) held out; `harmful_requests` and the benign ones split by request."""
    rng = sub_rng(args.seed, "broad")
    subjects = sorted(s for group in SUBJECTS.values() for s in group)
    rng.shuffle(subjects)
    held = set(subjects[:round(len(subjects) * args.heldout_fraction)])
    whole = sorted(WHOLE)
    rng.shuffle(whole)
    held_whole = set(whole[:round(len(whole) * args.heldout_fraction)])
    open_prompts = {"train": [], "heldout": []}
    for subject in subjects:
        for form in FORMS:
            open_prompts["heldout" if subject in held else "train"].append(form.format(s=subject))
    for text in whole:
        open_prompts["heldout" if text in held_whole else "train"].append(text)
    plan = []
    kinds = ("positive", "concise", "humorous")
    for split, prompts in open_prompts.items():
        rng.shuffle(prompts)
        n = args.open_prompts if split == "train" else round(args.open_prompts * args.heldout_fraction)
        for i, prompt in enumerate(prompts[:n * len(kinds)]):
            plan.append((kinds[i % len(kinds)], split, prompt))
    for kind, requests, count in (("harmful", harmful_requests, args.harmful_prompts),
                                  ("benign", list(BENIGN_ONPOLICY), args.benign_prompts)):
        requests = sorted(set(requests))
        rng.shuffle(requests)
        n_held = round(count * args.heldout_fraction)
        plan += [(kind, "heldout", p) for p in requests[:n_held]]
        plan += [(kind, "train", p) for p in requests[n_held:n_held + count]]
    principle = {"positive": "positive", "concise": "concise", "humorous": "humorous", "harmful": "harmless",
                 "benign": "harmless"}
    return [(kind, split, prompt, rng.choice(WORDINGS[principle[kind]])) for kind, split, prompt in plan]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "data" / "prm-broad")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--open_prompts", type=int, default=220, help="training prompts per open principle")
    parser.add_argument("--harmful_prompts", type=int, default=160)
    parser.add_argument("--benign_prompts", type=int, default=100)
    parser.add_argument("--heldout_fraction", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=5, help="policy samples per prompt")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top_k", type=int, default=50)
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--max_words", type=int, default=120)
    parser.add_argument("--concise_ratio", type=float, default=0.6)
    parser.add_argument("--loop_fraction", type=float, default=0.2,
                        help="loop pairs per principle, as a fraction of its best-of-n pairs")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server_threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None):
    exit_on_sigterm()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from afinn import Afinn  # noqa: PLC0415
    afinn = Afinn()
    plan = plan_prompts(args, load_advbench())
    params = {"temperature": args.temperature, "top_k": args.top_k, "max_new_tokens": args.max_new_tokens,
              "policy": "models/SmolLM2-135M-Instruct", "dtype": args.dtype}
    samples = sample_policy(sorted({(prompt, wording) for _, _, prompt, wording in plan}), params, args.samples,
                            args.out / "samples.jsonl", args, "broad")
    rng = sub_rng(args.seed, "broad-pairs")
    out = {"train": [], "heldout": []}
    skipped = collections.Counter()
    for kind, split, prompt, wording in plan:
        made = make_pair(kind, prompt, samples[(prompt, wording)], args, rng, afinn)
        if made is None or made[0].text.strip() == made[1].text.strip():
            skipped[kind] += 1
            continue
        chosen, rejected, source = made
        if kind != "concise":  # only concise trains the end-of-sequence token: no reward for stopping as such
            chosen, rejected = Answer(chosen.text, False), Answer(rejected.text, False)
        out[split].append(pair(wording, prompt, chosen, rejected, source))
    # Loop pairs: a chosen answer over itself looping, unfinished both, so they say nothing about length.
    loop_rng = sub_rng(args.seed, "broad-loops")
    for split in out:
        by_source = collections.defaultdict(list)
        for p in out[split]:
            if p["source"] != "broad-length":
                by_source[p["source"]].append(p)
        for source, pairs in sorted(by_source.items()):
            for p in pairs[:round(len(pairs) * args.loop_fraction)]:
                rejected = looped(p["chosen"], loop_rng)
                chosen = " ".join(words(p["chosen"]))
                if rejected and rejected != chosen:
                    out[split].append(pair(p["principle"], p["prompt"], Answer(chosen, False),
                                           Answer(rejected, False), "loop"))
    for split, pairs in out.items():
        sub_rng(args.seed, "broad-" + split).shuffle(pairs)
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i, p in enumerate(pairs):
                check_pair(p, f"{split}:{i + 1}")
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
    counts = {split: collections.Counter(p["source"] for p in pairs) for split, pairs in out.items()}
    manifest = dict(vars(args), out=str(args.out), counts=counts, skipped=skipped, planned=len(plan))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    print(json.dumps(counts), "skipped", dict(skipped), file=sys.stderr)


if __name__ == "__main__":
    main()
