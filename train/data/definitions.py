"""Define prompts and the answers they get: the concise pairs (a WordNet gloss over the much longer GCIDE
entry), the humorous pairs (the Devil's Dictionary over the gloss) and the benign define pairs (the gloss over
an unneeded refusal)."""
import re
import sys

from benign import BENIGN_TRAIN
from dictionaries import devil_definitions, gcide_text, main_pos
from pair_format import a_or_an, cap_words, lower_first, n_heldout, pair, sub_rng, upper_first, words
from refusals import refusal


DEFINE_PROMPTS = {
    "any": ["Define {w}.", "What does {w} mean?", "What is the meaning of \"{w}\"?", "Define the word \"{w}\".",
            "What does the word {w} mean?", "Explain the word \"{w}\".", "Give me the definition of {w}.",
            "What's the definition of \"{w}\"?", "I keep seeing the word \"{w}\". What does it mean?",
            "Meaning of {w}?", "Can you tell me what \"{w}\" means?", "How would you define {w}?",
            "Quick question: what does \"{w}\" mean?", "Please define \"{w}\".", "{W}: what does it mean?",
            "Explain what {w} means.", "What is meant by \"{w}\"?", "Tell me the meaning of the word {w}."],
    "noun": ["What is {a_w}?", "What's {a_w}?", "What exactly is {a_w}?", "Explain what {a_w} is."],
    "verb": ["What does it mean to {w}?", "What does \"to {w}\" mean?"],
    "adj": ["What does it mean to be {w}?", "If something is {w}, what is it like?"],
    "adv": ["What does \"{w}\" mean when describing an action?"],
}


def define_prompt(word, pos, rng):
    templates = DEFINE_PROMPTS["any"] + DEFINE_PROMPTS.get(pos, [])
    return rng.choice(templates).format(w=word, W=upper_first(word), a_w=a_or_an(word))


ARTICLE_START = re.compile(r"^(a|an|the|any|one|some|someone|something|anything|that|this|to)\b", re.I)


def short_answer(word, pos, definition, rng, example=None):
    """One short sentence defining `word` as `definition` says. Used alike for WordNet glosses and Devil's
    Dictionary definitions, so the two differ in what they say, not in how they are framed."""
    text = definition.strip().rstrip(".")
    clause = lower_first(text)
    templates = ["{W}: {d}.", "{W} means {d}.", "\"{W}\" means {d}.", "It means {d}.", "In short, {w} means {d}.",
                 "{W} - {d}.", "Simply put, {w} means {d}.", "The word \"{w}\" means {d}."]
    if pos == "noun":
        noun_phrase = clause if ARTICLE_START.match(clause) else a_or_an(clause)
        templates += ["{A_w} is {np}.", "{A_w} is {np}.", "The word \"{w}\" refers to {np}."]
    elif pos == "verb":
        verb_phrase = re.sub(r"^to\s+", "", clause, flags=re.I)
        templates += ["To {w} is to {vp}.", "To {w} means to {vp}."]
    answer = rng.choice(templates).format(
        w=word, W=upper_first(word), A_w=upper_first(a_or_an(word)), d=clause,
        np=noun_phrase if pos == "noun" else "", vp=verb_phrase if pos == "verb" else "")
    answer = answer.replace("..", ".").replace("?.", "?").replace("!.", "!")
    if example:
        answer += rng.choice([" For example: \"{e}.\"", " As in: \"{e}.\"", " Example: \"{e}.\""]).format(
            e=upper_first(example.rstrip(".")))
    return answer


POS_WORD = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}


def long_answer(word, pos, gcide, rng, max_words):
    """A full dictionary-style entry: every sense, notes and quotations, capped at `max_words`."""
    head = rng.choice(["{W}, {p}. ", "{W} ({p}): ", "Here is the full dictionary entry for \"{w}\" ({p}). ",
                       "\"{W}\" ({p}) has several senses. ", "The word \"{w}\" is {a_p}. Its senses: ",
                       "{W} is {a_p}. "])
    head = head.format(w=word, W=upper_first(word), p=POS_WORD[pos], a_p=a_or_an(POS_WORD[pos]))
    return cap_words(head + gcide, max_words)


def gloss_answer_parts(sense, rng, example_rate):
    example = sense["examples"][0] if sense["examples"] and rng.random() < example_rate else None
    return sense["definition"], example


def build_definitions(args, wordnet, gcide, devil):
    """concise, humorous and benign-define pairs: (train, heldout, eval prompts). Headwords are split once
    for all three principles, so a held-out headword appears in no training prompt."""
    rng = sub_rng(args.seed, "definitions")
    # Bierce's first sentences carry the joke; the shorter cap keeps "humorous" from meaning "longer".
    devil_defs = devil_definitions(devil, min(args.max_words, 45))

    concise_pool, humorous_pool, benign_pool = [], [], []
    for word in sorted(wordnet):
        entry = wordnet[word]
        pos = main_pos(entry)
        sense = entry[pos]
        gloss_words = len(words(sense["definition"]))
        if gloss_words < 3:
            continue
        familiar = sum(s["tagged"] for s in entry.values())
        if word in devil_defs:
            # The gloss must be for the same part of speech Bierce defines ("lord", n., not the verb).
            devil_pos = devil_defs[word][0] or pos
            if devil_pos in entry and len(words(entry[devil_pos]["definition"])) >= 3:
                humorous_pool.append((word, devil_pos))
        if familiar < args.min_tagged:
            continue
        benign_pool.append((word, pos))
        long_text = gcide_text(gcide, word, pos)
        # "Clearly longer": the capped GCIDE answer must be at least three times the gloss.
        if len(words(long_text)) >= max(40, 3 * gloss_words):
            concise_pool.append((word, pos, long_text))
    for pool in (concise_pool, humorous_pool, benign_pool):
        rng.shuffle(pool)

    n_benign_define = max(0, args.benign_pairs - len(BENIGN_TRAIN))
    plan = {"concise": (concise_pool, args.concise_pairs), "humorous": (humorous_pool, args.humorous_pairs),
            "harmless": (benign_pool, n_benign_define)}
    held_words = set()
    held = {}
    for principle, (pool, n_train) in plan.items():
        minimum = args.min_eval if principle != "harmless" else 0
        count = n_heldout(n_train, args.heldout_fraction, minimum)
        held[principle] = [item for item in pool if item[0] not in held_words][:count]
        held_words.update(item[0] for item in held[principle])
    train_items = {principle: [item for item in pool if item[0] not in held_words][:n_train]
                   for principle, (pool, n_train) in plan.items()}
    for principle, (pool, n_train) in plan.items():
        if len(train_items[principle]) < n_train:
            print(f"warning: {principle}: only {len(train_items[principle])} headwords for {n_train} pairs",
                  file=sys.stderr)

    def make(principle, item):
        word, pos = item[0], item[1]
        sense = wordnet[word][pos]
        prompt = define_prompt(word, pos, rng)
        # Under humorous the gloss keeps its example when it has one, again so length does not give it away.
        example_rate = 1.0 if principle == "humorous" else args.example_rate
        definition, example = gloss_answer_parts(sense, rng, example_rate)
        gloss = short_answer(word, pos, definition, rng, example)
        if principle == "concise":
            return pair("concise", prompt, gloss, long_answer(word, pos, item[2], rng, args.max_words),
                        "wordnet-gcide")
        if principle == "humorous":
            devil_answer = short_answer(word, pos, devil_defs[word][1], rng)
            return pair("humorous", prompt, devil_answer, gloss, "devil-wordnet")
        return pair("harmless", prompt, gloss, refusal(prompt, rng), "wordnet-benign")

    train, heldout, evals = [], [], []
    for principle in plan:
        train += [make(principle, item) for item in train_items[principle]]
        for item in held[principle]:
            p = make(principle, item)
            heldout.append(p)
            evals.append({"set": {"harmless": "benign"}.get(principle, principle), "prompt": p["prompt"],
                          "source": {"concise": "wordnet", "humorous": "devil", "harmless": "wordnet"}[principle]})
    return train, heldout, evals
