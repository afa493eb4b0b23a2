"""On-policy pairs: the policy's own answers under the guideline, ranked by a rule. PAD only ever chooses among
the policy's top-k tokens, so a PRM that ranks the policy's own answers is what it needs; pairs whose texts
the policy would never write (a GCIDE entry, a templated "Sure, here is") teach it little."""
import re

from benign import BENIGN_ONPOLICY
from definitions import DEFINE_PROMPTS
from pair_format import Answer, pair, sub_rng, words
from policy_samples import LENGTH_REASONS, POLICY, sample_answer, sample_policy
from refusals import capability_refusal, refusal


# Training's refusal rule, on the opening only. The evaluation counts refusals with the GCG list instead.
TRAIN_REFUSAL = re.compile(
    r"\b(i can ?not|i can't|i won't|i will not|i'm sorry|i am sorry|i apologi[sz]e|i'm (?:not able|unable)|"
    r"i am (?:not able|unable)|i must (?:decline|refuse)|i (?:do not|don't) (?:feel comfortable|support|condone)|"
    r"not (?:able|going) to (?:help|assist|provide))", re.I)


def policy_refuses(text):
    """Whether a refusal phrase opens the answer (its first 40 words)."""
    return bool(TRAIN_REFUSAL.search(" ".join(words(text.replace("\u2019", "'"))[:40])))


DEFINE_PATTERNS = [re.compile(re.escape(t).replace(re.escape("{a_w}"), r"an? (?P<w>.+?)")
                              .replace(re.escape("{w}"), "(?P<w>.+?)").replace(re.escape("{W}"), "(?P<w>.+?)") + "$")
                   for templates in DEFINE_PROMPTS.values() for t in templates]
# A 135M policy told a guideline often talks about the guideline instead of answering.
GUIDELINE_TALK = re.compile(r"guideline|instruction|\bconcise|\bprinciple", re.I)


def headword(prompt):
    """The word a define prompt asks about (lower case), or None for any other prompt."""
    found = [m.group("w").strip('"').lower() for m in (pattern.match(prompt) for pattern in DEFINE_PATTERNS) if m]
    return min(found, key=len) if found else None  # "to be {w}" over "to {w}"


def answers_prompt(text, prompt):
    """A cheap relevance rule for a chosen answer: it does not talk about the guideline, and a define prompt's
    answer names the word (its first letters, so "running" counts for "run")."""
    if GUIDELINE_TALK.search(text):
        return False
    word = headword(prompt)
    return word is None or word[:max(4, len(word) - 2)] in text.lower()


def length_pair(records, prompt, ratio, max_words):
    """(chosen, rejected) = the shortest finished sample that answers the prompt and the longest sample, when
    the shorter has at most `ratio` of the longer's words; else None. The longest may be cut by the token
    limit: it did not stop."""
    finished = [sample_answer(r, max_words) for r in records if r["finish_reason"] not in LENGTH_REASONS]
    finished = [a for a in finished if len(words(a.text)) >= 3 and answers_prompt(a.text, prompt)]
    every = [sample_answer(r, max_words) for r in records]
    if not finished:
        return None
    chosen = min(finished, key=lambda a: (len(words(a.text)), a.text))
    rejected = max(every, key=lambda a: (len(words(a.text)), a.text))
    if len(words(chosen.text)) > ratio * len(words(rejected.text)):
        return None
    return chosen, rejected


def refusal_pair(records, prompt, harmful, rng, max_words, capability_refusals=False):
    """(chosen, rejected, source) for a harmful prompt (a refusal over a compliant answer) or a benign one (a
    compliant answer over a refusal). The compliant side is always the policy's own; the refusal is the
    policy's when one of its samples refuses, else the generator's. None when the policy only refused."""
    answers = [sample_answer(r, max_words) for r in records]
    answers = [a for a in answers if len(words(a.text)) >= 3]
    refusals = [a for a in answers if policy_refuses(a.text)]
    complied = [a for a in answers if not policy_refuses(a.text)]
    if not harmful:
        complied = [a for a in complied if answers_prompt(a.text, prompt)]
    if not complied:
        return None
    if refusals:
        refused, source = refusals[0], "smollm2-refusal"
    elif harmful or not capability_refusals:
        refused = Answer(refusal(prompt, rng), True)
        source = "refusal-smollm2" if harmful else "smollm2-refusal-generated"
    else:  # half in the policy's own way of declining, half the generator's topical refusal
        refused = Answer(capability_refusal(rng) if rng.random() < 0.5 else refusal(prompt, rng), True)
        source = "smollm2-refusal-generated"
    if harmful:
        return refused, complied[0], source
    return complied[0], refused, source


def build_onpolicy(args, train, heldout, out_dir):
    """On-policy concise and harmless pairs for prompts of the off-policy ones, in the same split: (train,
    heldout, stats)."""
    rng = sub_rng(args.seed, "onpolicy")
    groups = {"concise": ("concise", ("wordnet-gcide",)),
              "harmful": ("harmless", ("advbench-template", "pyrit-manyshot")),
              "benign": ("harmless", ("wordnet-benign", "handwritten-benign"))}
    counts = {"concise": args.onpolicy_concise, "harmful": args.onpolicy_harmful, "benign": args.onpolicy_benign}
    # With --benign_howto N, N of the answerless benign requests (drawn at random) come first, split like the
    # rest: a tenth held out.
    howto = list(BENIGN_ONPOLICY)
    sub_rng(args.seed, "benign-onpolicy").shuffle(howto)
    howto = howto[:args.benign_howto]
    n_held = round(len(howto) * args.heldout_fraction)
    extra = {("benign", "train"): howto[n_held:], ("benign", "heldout"): howto[:n_held]}
    plan = []  # (group, split, principle, prompt)
    for group, (principle, sources) in groups.items():
        for split, pairs in (("train", train), ("heldout", heldout)):
            prompts = extra.get((group, split), []) + [p["prompt"] for p in pairs if p["source"] in sources]
            n = counts[group] if split == "train" else round(counts[group] * args.heldout_fraction)
            plan += [(group, split, principle, prompt) for prompt in prompts[:n]]
    if not plan:
        return [], [], None
    params = {"temperature": args.onpolicy_temperature, "top_k": args.top_k,
              "max_new_tokens": args.onpolicy_max_new_tokens, "policy": POLICY, "dtype": "float32"}
    samples = sample_policy(sorted({(prompt, principle) for _, _, principle, prompt in plan}), params,
                            args.onpolicy_samples, out_dir / "onpolicy_samples.jsonl", args, "on-policy")
    out = {"train": [], "heldout": []}
    skipped = {group: 0 for group in groups}
    for group, split, principle, prompt in plan:
        records = samples[(prompt, principle)]
        if group == "concise":
            made = length_pair(records, prompt, args.concise_ratio, args.max_words)
            made = made and (*made, "smollm2-length")
        else:
            made = refusal_pair(records, prompt, group == "harmful", rng, args.max_words,
                                args.capability_refusals)
        if made is None or made[0].text.strip() == made[1].text.strip():
            skipped[group] += 1
            continue
        out[split].append(pair(principle, prompt, *made))
    stats = dict(params, samples_per_prompt=args.onpolicy_samples, mode="PREFERENCE_PROMPT",
                 prompts={g: sum(1 for x in plan if x[0] == g) for g in groups}, skipped=skipped,
                 refusal_rule="TRAIN_REFUSAL on the first 40 words", concise_ratio=args.concise_ratio)
    return out["train"], out["heldout"], stats
