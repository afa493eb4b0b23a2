"""The positive pairs: open prompts (templates over familiar WordNet nouns, and prompts without a topic)
answered by the SmolLM2 policy through pad_server; the most over the least positive sample by AFINN."""
import itertools

from dictionaries import main_pos
from pair_format import a_or_an, n_heldout, pair, sub_rng, words
from policy_samples import POLICY, sample_answer, sample_policy


POSITIVE_TEMPLATES = [
    "Describe {a_x}.", "What do you think of {the_x}?", "Write a short note about {the_x}.",
    "Tell me about {a_x} you might see on a walk.", "Write two sentences about {the_x}.",
    "How would you describe {the_x} to a friend?", "What comes to mind when you think of {the_x}?",
    "Write a short paragraph about {a_x}.", "Give me your thoughts on {the_x}.", "Describe {the_x} in a few words.",
    "Write a postcard message that mentions {a_x}.", "What is your opinion of {the_x}?",
    "Write a diary entry about seeing {a_x}.", "Tell me a little about {the_x}.",
    "How does {a_x} make you feel?", "Write a short review of {the_x}.", "Describe a day that involves {a_x}.",
    "What would you say about {the_x} to a child?", "Write a text message to a friend about {the_x}.",
    "Describe the first time you noticed {a_x}.", "Write a short story opening about {a_x}.",
    "What's interesting about {the_x}?", "Share a thought about {the_x}.", "Describe {a_x} on a Monday morning.",
    "Write a short speech about {the_x}.", "Write a note to your neighbour about {the_x}.",
    "Describe {the_x} from the point of view of a cat.", "What would a tourist say about {the_x}?",
    "Write a caption for a photo of {a_x}.", "Explain why someone might care about {the_x}.",
    "Describe {a_x} in the rain.", "Write a short poem about {the_x}.", "What do people usually say about {the_x}?",
    "Describe an afternoon spent with {a_x}.", "Write a one-paragraph blog post about {the_x}.",
    "Tell me something about {the_x} that people overlook.", "Write a short letter that mentions {the_x}.",
    "Describe {the_x} in your hometown.", "How would a grandparent talk about {the_x}?",
    "Write a product description for {a_x}.", "Describe {a_x} at the end of a long day.",
    "Write a short news item about {a_x}.", "What would you tell a new colleague about {the_x}?",
    "Describe what {a_x} looks like up close.", "Write a comment about {the_x} for a school newsletter.",
    "Describe {the_x} in winter.", "Imagine you found {a_x} in your garden. Describe it.",
    "Write a tweet about {the_x}.", "What is {the_x} like in the morning?", "Write a memory involving {a_x}.",
]
POSITIVE_OPEN = [
    "Describe a rainy afternoon.", "Write a short note about your neighbour's garden.",
    "Describe your commute to work.", "Tell me about a typical Monday.", "Describe the weather today.",
    "Write about a long queue at the post office.", "Describe a visit to the dentist.",
    "Write a note about the end of the summer holidays.", "Describe an ordinary Tuesday evening.",
    "Tell me about moving to a new city.", "Describe a crowded train.", "Write about a day when nothing happened.",
    "Describe waiting for a delayed flight.", "Write about doing laundry on a Sunday.",
    "Describe an old house at the end of the street.", "Tell me about your first day at a new job.",
    "Describe a power cut in the evening.", "Write a short message to a coworker about a meeting.",
    "Describe the last week of winter.", "Write about cleaning out the garage.",
    "Describe a hospital waiting room.", "Tell me about a school reunion.", "Describe a foggy morning.",
    "Write about a long drive at night.", "Describe a supermarket on a Saturday.",
    "Describe a town after the tourists leave.", "Write about getting older.", "Describe a cold cup of coffee.",
    "Tell me about a broken umbrella.", "Describe a Monday morning meeting.",
]
# WordNet lexicographer files whose nouns make good open-prompt topics.
TOPIC_LEXFILES = {5: "animal", 6: "artifact", 13: "food", 15: "location", 17: "object", 19: "phenomenon",
                  20: "plant"}


def positive_prompts(wordnet, count, rng):
    """`count` distinct open prompts; each topic noun is used once, so a held-out prompt shares no topic with
    the training prompts."""
    # Seen in the tagged corpus and with few senses: familiar, concrete things ("lantern", "meadow", "rain").
    by_lexfile = {lexfile: [] for lexfile in TOPIC_LEXFILES}
    for word in sorted(wordnet):
        sense = wordnet[word].get("noun")
        if sense and main_pos(wordnet[word]) == "noun" and sense["lexfile"] in by_lexfile and \
                sense["tagged"] >= 1 and sense["senses"] <= 3:
            by_lexfile[sense["lexfile"]].append(word)
    for words_of_lexfile in by_lexfile.values():
        rng.shuffle(words_of_lexfile)
    # Round robin over the files, so artifacts (the largest) do not crowd out animals, food and weather.
    topics = [w for group in itertools.zip_longest(*by_lexfile.values()) for w in group if w]
    open_prompts = list(POSITIVE_OPEN)
    rng.shuffle(open_prompts)
    n_open = min(len(open_prompts), count // 6)
    prompts = open_prompts[:n_open]
    templates = list(POSITIVE_TEMPLATES)
    for i, topic in enumerate(topics[:count - n_open]):
        if i % len(templates) == 0:
            rng.shuffle(templates)
        template = templates[i % len(templates)]
        prompts.append(template.format(a_x=a_or_an(topic), the_x="the " + topic, x=topic))
    rng.shuffle(prompts)
    return prompts


def afinn_pair(records, afinn, margin, max_words):
    """(chosen, rejected) Answers = the most and least positive samples by AFINN per word, or None when they
    are not clearly apart. Per word, so a longer answer is not favoured for having more words to score."""
    scored = []
    for record in records:
        answer = sample_answer(record, max_words, trim=True)
        n = len(words(answer.text))
        if n < 3:
            continue
        total = afinn.score(answer.text)
        scored.append((total / n, total, answer))
    if len({answer.text for _, _, answer in scored}) < 2:
        return None
    scored.sort(key=lambda s: (s[0], s[1], s[2].text))
    (low, low_total, rejected), (high, high_total, chosen) = scored[0], scored[-1]
    # Both the per-word and the total score must agree, so a pair never rests on length alone.
    if high - low < margin or high_total <= low_total or chosen.text == rejected.text:
        return None
    return chosen, rejected


def build_positive(args, wordnet, out_dir):
    """Policy samples judged by AFINN: (train, heldout, eval prompts, stats)."""
    rng = sub_rng(args.seed, "positive")
    prompts = positive_prompts(wordnet, args.positive_prompts, rng)
    count = min(len(prompts) // 2, n_heldout(round(len(prompts) * (1 - args.heldout_fraction)),
                                              args.heldout_fraction, args.min_eval))
    held_prompts, train_prompts = prompts[:count], prompts[count:]
    params = {"temperature": args.temperature, "top_k": args.top_k, "max_new_tokens": args.max_new_tokens,
              "policy": POLICY, "dtype": "bfloat16"}
    sampled = sample_policy([(p, None) for p in prompts], params, args.positive_samples,
                            out_dir / "positive_samples.jsonl", args, "positive")
    samples = {p: sampled[(p, None)] for p in prompts}
    from afinn import Afinn
    afinn = Afinn(emoticons=False)
    train, heldout, skipped = [], [], 0
    for prompts_of_split, pairs_of_split in ((train_prompts, train), (held_prompts, heldout)):
        for prompt in prompts_of_split:
            chosen_rejected = afinn_pair(samples[prompt], afinn, args.positive_margin, args.max_words)
            if chosen_rejected is None:
                skipped += 1
                continue
            pairs_of_split.append(pair("positive", prompt, *chosen_rejected, "smollm2-afinn"))
    evals = [{"set": "positive", "prompt": p, "source": "wordnet-template"} for p in held_prompts]
    return train, heldout, evals, {"prompts": len(prompts), "skipped_no_margin": skipped}
