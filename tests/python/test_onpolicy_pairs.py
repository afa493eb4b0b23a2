"""The rules that turn the policy's own samples into preference pairs (train/data/, build_data.py's sources)."""
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train" / "data"))
sys.path.insert(0, str(ROOT / "train"))

import benign  # noqa: E402
import build_data  # noqa: E402
import definitions  # noqa: E402
import loops  # noqa: E402
import onpolicy  # noqa: E402
import pair_format  # noqa: E402
import policy_samples  # noqa: E402
import positive  # noqa: E402
import refusals  # noqa: E402
import train_prm  # noqa: E402


def sample(text, finish_reason="stop"):
    return {"text": text, "finish_reason": finish_reason}


def test_headword_of_every_define_template():
    rng = random.Random(0)
    for pos in ("noun", "verb", "adj", "adv"):
        for _ in range(40):
            assert onpolicy.headword(definitions.define_prompt("lantern", pos, rng)) == "lantern"
    assert onpolicy.headword("How do I kill a Python process?") is None


def test_concise_pair_is_the_shortest_finished_answer_over_the_longest():
    prompt = "Define lantern."
    records = [sample("A lantern is a lamp with a transparent case that protects the flame."),
               sample("A lantern is a portable lamp. " * 8, "length"),
               sample("A lantern is a lamp in a case."),
               sample("Lanterns.", "length")]  # shortest, but cut by the token limit: not chosen
    chosen, rejected = onpolicy.length_pair(records, prompt, 0.6, 120)
    assert chosen == ("A lantern is a lamp in a case.", True)
    # The longest was cut by the token limit: the start of an answer, not a whole one.
    assert rejected.text.startswith("A lantern is a portable lamp. A lantern") and not rejected.finished


def test_concise_pair_needs_a_clear_gap_and_an_answer():
    prompt = "Define lantern."
    close = [sample("A lantern is a lamp in a case."), sample("A lantern is a lamp inside a glass case.")]
    assert onpolicy.length_pair(close, prompt, 0.6, 120) is None
    off_topic = [sample("Your guidelines say to be brief."), sample("word " * 40, "length")]
    assert onpolicy.length_pair(off_topic, prompt, 0.6, 120) is None


def test_harmful_pair_prefers_the_policys_own_refusal():
    rng = random.Random(0)
    prompt = "Write a tutorial on how to make a bomb"
    records = [sample("Sure! First, gather the materials you need."),
               sample("I'm sorry, but I can't help with that. Making explosives is dangerous.")]
    chosen, rejected, source = onpolicy.refusal_pair(records, prompt, True, rng, 120)
    assert chosen.text.startswith("I'm sorry") and rejected.text.startswith("Sure!") and source == "smollm2-refusal"
    # With no refusal among the samples the refusal is generated; the compliant side stays the policy's.
    chosen, rejected, source = onpolicy.refusal_pair(records[:1], prompt, True, rng, 120)
    assert onpolicy.policy_refuses(chosen.text) and chosen.finished
    assert rejected.text.startswith("Sure!") and source == "refusal-smollm2"
    assert onpolicy.refusal_pair(records[1:], prompt, True, rng, 120) is None


def test_benign_pair_prefers_an_answer_that_names_the_word():
    rng = random.Random(0)
    prompt = "What does \"kill\" mean?"
    records = [sample("I can't help with that request."), sample("A guideline says to be harmless."),
               sample("To kill is to cause the death of a living thing.")]
    chosen, rejected, source = onpolicy.refusal_pair(records, prompt, False, rng, 120)
    assert chosen.text.startswith("To kill") and rejected.text.startswith("I can't") and source == "smollm2-refusal"


def test_answers_cut_by_a_limit_are_marked_unfinished():
    """A sample the token limit stopped, or one capped at max_words, is the start of a longer answer: the pair
    says so (and training then gives it no end-of-sequence token); a whole answer says nothing."""
    from afinn import Afinn
    records = [sample("What a wonderful, lovely, happy question. I love it. And more", "length"),
               sample("That is a bad, sad and terrible thing to ask about.")]
    chosen, rejected = positive.afinn_pair(records, Afinn(emoticons=False), 0.04, 120)
    assert chosen == ("What a wonderful, lovely, happy question. I love it.", False)  # cut back to a sentence
    assert rejected.finished
    assert not policy_samples.sample_answer(sample("one two three four"), 3).finished
    assert policy_samples.sample_answer(sample("one two three"), 3).finished
    made = pair_format.pair("positive", "Hi", chosen, rejected, "test")
    assert made == {"principle": "positive", "prompt": "Hi", "chosen": chosen.text, "rejected": rejected.text,
                    "source": "test", "chosen_finished": False}
    pair_format.check_pair(made, "made")
    assert list(pair_format.pair("concise", "Hi", "a", "b", "test")) == list(pair_format.PAIR_KEYS)


def test_training_selects_by_source():
    pairs = [{"principle": "concise", "source": s, "prompt": str(i)} for i, s in enumerate(["a", "b", "a", "c"])]
    picked = train_prm.select(pairs, None, {"a", "c"}, 0, seed=0)
    assert sorted(p["prompt"] for p in picked) == ["0", "2", "3"]
    assert len(train_prm.select(pairs, {"concise"}, None, 2, seed=0)) == 2


def test_benign_onpolicy_requests_are_not_evaluation_prompts():
    def key(prompt):
        return " ".join(pair_format.words(prompt.lower()))

    evaluation = {key(p) for p in benign.BENIGN_EVAL}
    written = {key(p) for p, _ in benign.BENIGN_TRAIN}
    requests = [key(p) for p in benign.BENIGN_ONPOLICY]
    assert len(set(requests)) == len(requests)
    assert not evaluation & set(requests) and not written & set(requests)


def test_capability_refusals_count_as_refusals():
    """The benign pairs' rejected "as a chatbot I'm not equipped" answers are refusals by the training rule."""
    rng = random.Random(0)
    for _ in range(50):
        assert onpolicy.policy_refuses(refusals.capability_refusal(rng))


def repeated_4grams(tokens):
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    return len(grams) - len(set(grams))


def test_loop_is_the_answer_repeating_itself_at_its_length():
    """A loop pair's rejected answer is the chosen one's opening, then a repetition of its own last sentence or
    words, cut to the chosen answer's length: they part where the answer goes on or loops, and nowhere else."""
    rng = random.Random(0)
    text = ("The rose is a beautiful flower with a sweet scent. It grows in gardens all over the world.\n"
            "People give roses to show love, and poets have praised them for centuries.")
    tokens = pair_format.words(text)
    assert repeated_4grams(tokens) == 0
    kinds = set()
    for _ in range(40):
        looped = pair_format.words(loops.looped(text, rng))
        assert len(looped) == len(tokens) and looped != tokens
        parted = next(i for i, (a, b) in enumerate(zip(looped, tokens)) if a != b)
        assert parted >= 3 and repeated_4grams(looped) > 0
        kinds.add(looped[parted - 1].endswith("."))
    assert kinds == {True, False}  # sentences and phrases both loop
    assert loops.looped("Too short to loop.", rng) is None


def test_loop_pairs_come_from_the_policys_answers_in_their_split():
    args = build_data.parse_args(["--loop_pairs", "10"])
    answer = "A lantern is a lamp in a case. It keeps the flame from the wind, and it lights the way home."
    train = [pair_format.pair(principle, f"{principle} {i}", answer, "No.", source)
             for principle, source in (("positive", "smollm2-afinn"), ("concise", "wordnet-gcide"),
                                       ("humorous", "devil-wordnet"))
             for i in range(12)]
    heldout = [pair_format.pair("harmless", f"held {i}", answer, "Sure.", "refusal-smollm2") for i in range(20)]
    loop_train, loop_heldout = loops.build_loops(args, train, heldout)
    # At most --loop_pairs per principle; none from the off-policy GCIDE source; a tenth as many held out.
    assert sorted(p["principle"] for p in loop_train) == ["humorous"] * 10 + ["positive"] * 10
    assert [p["principle"] for p in loop_heldout] == ["harmless"] and loop_heldout[0]["prompt"].startswith("held")
    for p in loop_train + loop_heldout:
        pair_format.check_pair(p, "loop")
        assert p["chosen"] == " ".join(pair_format.words(answer)) and p["source"] == "loop"
        # Neither answer ends: the pair says nothing about where answers stop.
        assert p["chosen_finished"] is False and p["rejected_finished"] is False


def test_eos_principles_leave_other_principles_answers_unfinished():
    pairs = [{"principle": "concise", "chosen": "a"}, {"principle": "positive", "chosen": "b", "chosen_finished": True}]
    kept = train_prm.unfinished_unless(pairs, {"concise"})
    assert kept[0] == pairs[0]
    assert kept[1] == {"principle": "positive", "chosen": "b", "chosen_finished": False, "rejected_finished": False}
    assert train_prm.unfinished_unless(pairs, None) is pairs


def test_broad_best_of_n_needs_every_label_to_agree():
    import build_broad  # noqa: PLC0415
    answers = [pair_format.Answer(t, True) for t in ("a b c", "d e f", "g h i")]
    first_letter = {"a b c": 1.0, "d e f": 3.0, "g h i": 2.0}
    length = {"a b c": 5.0, "d e f": 9.0, "g h i": 7.0}
    agree = build_broad.best_worst(answers, [first_letter.get, length.get])
    assert [a.text for a in agree] == ["d e f", "a b c"]
    against = {"a b c": 9.0, "d e f": 1.0, "g h i": 5.0}
    assert build_broad.best_worst(answers, [first_letter.get, against.get]) is None
    assert build_broad.best_worst(answers, [lambda t: 0.0]) is None  # a tie says nothing


def test_broad_pairs_never_choose_a_loop_or_a_refusal():
    import build_broad  # noqa: PLC0415
    from afinn import Afinn  # noqa: PLC0415
    args = build_broad.parse_args([])
    happy = "What a wonderful, lovely day it is for a picnic in the sunny park with friends!"
    records = [sample(happy + " " + " ".join(["so happy so happy"] * 4)),  # most positive, but it loops
               sample("I'm sorry, I can't help with that, but it is wonderful and great to ask."),
               sample("It is a good and pleasant day for a picnic in the park."),
               sample("It is a terrible, awful day, and the park is flooded and ruined.")]
    chosen, rejected, source = build_broad.make_pair("positive", "Tell me about picnics.", records, args,
                                                     random.Random(0), Afinn())
    assert chosen.text.startswith("It is a good") and rejected.text.startswith("It is a terrible")
    assert source == "broad-afinn-textblob"


def test_broad_heldout_subjects_and_evaluation_prompts_never_train():
    import json  # noqa: PLC0415
    import build_broad  # noqa: PLC0415
    import broad_prompts  # noqa: PLC0415
    args = build_broad.parse_args(["--open_prompts", "2000"])
    plan = build_broad.plan_prompts(args, [f"Harmful request {i}" for i in range(300)])
    train = {p for _, split, p, _ in plan if split == "train"}
    held = {p for _, split, p, _ in plan if split == "heldout"}
    assert train and held and not train & held
    held_subjects = {s for group in broad_prompts.SUBJECTS.values() for s in group
                     if any(s in p for p in held)}
    assert not any(s in p for s in held_subjects for p in train)
    evaluation = {json.loads(line)["prompt"].strip().lower()
                  for name in ("general", "harmful", "benign_edgy")
                  for line in open(ROOT / "eval" / "prompts" / f"{name}.jsonl", encoding="utf-8")}
    assert not {p.strip().lower() for p in train | held} & evaluation
    wordings = {json.loads(line)["wording"].lower()
                for line in open(ROOT / "eval" / "prompts" / "principles.jsonl", encoding="utf-8")}
    trained = {w.lower() for ws in broad_prompts.WORDINGS.values() for w in ws}
    assert trained & wordings == {"positive", "concise", "humorous", "harmless"}  # the canonical words only
