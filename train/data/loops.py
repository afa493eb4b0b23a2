"""Loop pairs: the answer against itself falling into a loop. PAD's answers loop where the policy's own greedy
continuation does (EXPERIMENTS.md, "Whose loops"), and no preference pair says a loop is worse; these do.
Chosen and rejected share the answer's opening, so DPO's signal is only where they part: going on with new
text (chosen) or repeating what was just said (rejected). Both are cut to the same number of words and marked
unfinished, so the pair says nothing about length or ending."""
import collections
import re

from pair_format import Answer, pair, sub_rng, words


LOOP_SOURCES = ("smollm2-afinn", "smollm2-refusal", "refusal-smollm2", "smollm2-refusal-generated",
                "devil-wordnet")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def looped(text, rng):
    """`text` cut after a sentence (or inside one) and that sentence (or its last few words) repeated to the
    text's length, the way a greedy decoder loops; None when the text is too short to loop."""
    tokens = words(text)
    sentences = [words(s) for s in SENTENCE_END.split(text.strip()) if s.strip()]
    if len(sentences) >= 2 and rng.random() < 0.5:
        k = rng.randrange(1, len(sentences))  # keep sentences[:k], then loop instead of sentences[k]
        kept = [w for s in sentences[:k] for w in s]
        unit = sentences[k - 1] if k < 2 or rng.random() < 0.7 else sentences[k - 2] + sentences[k - 1]
    else:
        if len(tokens) < 12:
            return None
        cut = rng.randrange(len(tokens) // 3, 2 * len(tokens) // 3)
        kept = tokens[:cut]
        unit = kept[-rng.randint(3, 8):]
    rejected = kept + unit * (1 + (len(tokens) - len(kept)) // len(unit))
    return " ".join(rejected[:len(tokens)])


def build_loops(args, train, heldout):
    """At most `args.loop_pairs` loop pairs per principle, from the chosen answers of LOOP_SOURCES' pairs
    (policy samples, and Bierce for humorous), each in its pair's split: (train, heldout)."""
    rng = sub_rng(args.seed, "loops")
    out = []
    for pairs, limit in ((train, args.loop_pairs), (heldout, round(args.loop_pairs * args.heldout_fraction))):
        by_principle = collections.defaultdict(list)
        for p in pairs:
            if p["source"] in LOOP_SOURCES:
                by_principle[p["principle"]].append(p)
        made = []
        for principle in sorted(by_principle):
            group = by_principle[principle]
            rng.shuffle(group)
            count = 0
            for p in group:
                if count == limit:
                    break
                chosen = " ".join(words(p["chosen"]))
                rejected = looped(p["chosen"], rng)
                if rejected is None or rejected == chosen:
                    continue
                made.append(pair(principle, p["prompt"], Answer(chosen, False), Answer(rejected, False),
                                 "loop"))
                count += 1
        out.append(made)
    return out
