"""The preference pair every source of train/data/build_data.py writes, and the text rules they share."""
import collections
import random
import re


PAIR_KEYS = ("principle", "prompt", "chosen", "rejected", "source")
# Written only when false (--open_cut_answers): the answer is the start of a longer one, cut by a limit.
FINISHED_KEYS = ("chosen_finished", "rejected_finished")


def words(text):
    return text.split()


def cap_words(text, limit):
    """At most `limit` words; ends at the last sentence end when that keeps most of the text."""
    tokens = words(text)
    if len(tokens) <= limit:
        return " ".join(tokens)
    cut = " ".join(tokens[:limit])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end >= len(cut) * 0.6:
        return cut[:end + 1]
    return cut.rstrip(",;:") + " ..."


def trim_to_sentence(text):
    """Drops an unfinished last sentence (a sample cut by max_new_tokens) when a full one precedes it."""
    end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
    if end >= len(text) * 0.3:
        return text[:end + 1]
    return text


def a_or_an(noun):
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def upper_first(text):
    return text[:1].upper() + text[1:]


def lower_first(text):
    # Keeps acronyms and the pronoun ("US", "I", "I'm") as they are.
    if len(text) > 1 and (text[1].isupper() or re.match(r"I\b", text)):
        return text
    return text[:1].lower() + text[1:]


def norm_prompt(text):
    """The key two prompts are compared by: case, whitespace and end punctuation do not matter."""
    return " ".join(text.lower().strip(" .?!").split())


def sub_rng(seed, name):
    """One independent, reproducible stream per component, so adding a source does not shift the others."""
    return random.Random(f"{seed}:{name}")


def cap_words_keep_lines(text, limit):
    """cap_words for text whose line breaks carry structure (lists, verses)."""
    out, count = [], 0
    for line in text.split("\n"):
        tokens = words(line)
        if count + len(tokens) > limit:
            out.append(" ".join(tokens[:limit - count]).rstrip(",;:") + " ...")
            break
        out.append(" ".join(tokens))
        count += len(tokens)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def n_heldout(n_train, fraction, minimum):
    """How many prompts to hold out so they are `fraction` of all, and at least `minimum`."""
    return max(minimum, round(n_train * fraction / (1 - fraction)))


def pair(principle, prompt, chosen, rejected, source):
    """A pair; `chosen` and `rejected` are text (a whole answer) or Answers, whose `finished` is kept."""
    chosen, rejected = (a if isinstance(a, Answer) else Answer(a, True) for a in (chosen, rejected))
    out = {"principle": principle, "prompt": prompt, "chosen": chosen.text, "rejected": rejected.text,
           "source": source}
    for key, answer in zip(FINISHED_KEYS, (chosen, rejected)):
        if not answer.finished:
            out[key] = False
    return out


def check_pair(p, where):
    if list(p)[:len(PAIR_KEYS)] != list(PAIR_KEYS) or not set(p) - set(PAIR_KEYS) <= set(FINISHED_KEYS):
        raise ValueError(f"{where}: keys {list(p)} are not {list(PAIR_KEYS)} (+ {list(FINISHED_KEYS)})")
    for key in PAIR_KEYS:
        if not isinstance(p[key], str) or not p[key].strip():
            raise ValueError(f"{where}: {key}: must be a non-empty string")
    if p["chosen"].strip() == p["rejected"].strip():
        raise ValueError(f"{where}: rejected: equals chosen")


class Answer(collections.namedtuple("Answer", "text finished")):
    """An answer to train on; `finished` False when it is the start of a longer one that a limit cut (the
    sampler's max_new_tokens, or max_words), so that training does not teach the answer to end there."""
