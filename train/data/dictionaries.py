"""Debian's dictionaries, read whole: WordNet (wordnet-base) for the most frequent sense of each single-word
lemma per part of speech, and the dictd databases of GCIDE (dict-gcide) and the Devil's Dictionary
(dict-devil)."""
import gzip
import pathlib
import re

from pair_format import cap_words, words


WORDNET = pathlib.Path("/usr/share/wordnet")
DICTD = pathlib.Path("/usr/share/dictd")


WN_POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
WN_FILES = {"noun": "noun", "verb": "verb", "adj": "adj", "adv": "adv"}


def parse_gloss(gloss):
    """(definition, examples) of a WordNet gloss: 'def; def; "example"; "example"'."""
    definition, _, rest = gloss.partition('; "')
    examples = re.findall(r'"([^"]+)"', '"' + rest) if rest else []
    definition = definition.strip().rstrip(";").strip()
    return definition, [e.strip() for e in examples if e.strip()]


def load_wordnet():
    """{lemma: {pos: sense}}; sense = {definition, examples, tagged, senses, lexfile}. Only [a-z]{3,} lemmas.

    `tagged` is WordNet's count of the lemma's senses seen in its tagged corpus: our measure of how familiar a
    word is; `senses` its number of senses in that part of speech.
    """
    wanted = {}  # (pos, offset) -> (lemma, tagged)
    for pos in WN_FILES:
        with open(WORDNET / f"index.{pos}", encoding="utf-8") as f:
            for line in f:
                if line.startswith(" "):
                    continue  # licence header
                fields = line.split()
                lemma = fields[0]
                if not re.fullmatch(r"[a-z]{3,}", lemma):
                    continue
                n_pointers = int(fields[3])
                tagged = int(fields[5 + n_pointers])
                first_offset = fields[6 + n_pointers]
                wanted[(pos, first_offset)] = wanted.get((pos, first_offset), []) + [(lemma, tagged, int(fields[2]))]
    senses = {}
    for pos, name in WN_FILES.items():
        with open(WORDNET / f"data.{name}", encoding="utf-8") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                offset, lexfile = line[:8], int(line[9:11])
                if (pos, offset) not in wanted:
                    continue
                fields = line.split()
                # The index lowercases everything; the synset keeps "Iceland" capitalised: skip proper nouns.
                written = {w.split("(")[0] for w in fields[4:4 + 2 * int(fields[3], 16):2]}
                definition, examples = parse_gloss(line.split(" | ", 1)[1])
                for lemma, tagged, n_senses in wanted[(pos, offset)]:
                    if lemma not in written:
                        continue
                    senses.setdefault(lemma, {})[pos] = {"definition": definition, "examples": examples,
                                                         "tagged": tagged, "senses": n_senses, "lexfile": lexfile}
    return senses


def main_pos(entry):
    """The part of speech whose first sense is most used in WordNet's tagged corpus (noun first on ties)."""
    order = list(WN_FILES)
    return max(entry, key=lambda pos: (entry[pos]["tagged"], -order.index(pos)))


DICTD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(text):
    # dictd writes offsets as base-64 numbers, most significant digit first, without padding.
    value = 0
    for char in text:
        value = value * 64 + DICTD_B64.index(char)
    return value


class Dictd:
    """A dictd database read whole: the .dz is gzip-compatible, so no random access is needed."""

    def __init__(self, name):
        self.index_path = DICTD / f"{name}.index"
        self.data_path = DICTD / f"{name}.dict.dz"
        self.data = gzip.open(self.data_path).read()
        self.index = {}  # lowercase headword -> [(offset, length)] in index order, without repeats
        with open(self.index_path, encoding="utf-8") as f:
            for line in f:
                head, offset, length = line.rstrip("\n").split("\t")
                span = (dictd_number(offset), dictd_number(length))
                spans = self.index.setdefault(head.lower(), [])
                if span not in spans:
                    spans.append(span)

    def entries(self, word):
        return [self.data[o:o + n].decode("utf-8") for o, n in self.index.get(word, [])]


# GCIDE's ASCII accents: [a^] breve, [=a] macron, ['e] acute, ["o] umlaut, [ae] ligature, ...
GCIDE_ACCENT = re.compile(r"\[(?:[\"'`~=.^]([A-Za-z])|([A-Za-z])[\"'`~=.^]|(ae|oe|AE|OE))\]")
GCIDE_POS = [(re.compile(r"^[,\s]*n\."), "noun"), (re.compile(r"^[,\s]*v\."), "verb"),
             (re.compile(r"^[,\s]*a\."), "adj"), (re.compile(r"^[,\s]*adv\."), "adv")]
# Quotation sources: "--Boyle.", "--Luke xi. 16.", "--Sir W. Scott."
GCIDE_CITATION = re.compile(
    r"\s--(?=[A-Z])\S+(?:\s+(?:[ivxlcdmIVXLCDM]+\.|\d[\d,;:.]*|[A-Z][a-z]*\.|[a-z]{1,4}\.|&))*")
GCIDE_POS_ABBREV = re.compile(
    r"^[\s,;&]*(?:(?:n|a|adj|adv|v|t|i|prep|conj|interj|pron|imp|p|pl|sing|pr|vb|superl|compar)\.[\s,;&]*)+")


def gcide_headword(entry):
    """The headword of an entry's first line, without GCIDE's stress and syllable marks."""
    first = entry.split("\\", 1)[0].split("\n", 1)[0]
    return re.sub(r"[*\"`']", "", first).strip().lower()


def clean_gcide(entry):
    """(part of speech or None, plain text) of one GCIDE entry: no headword, pronunciation, etymology,
    source tags, braces or accent codes."""
    text = re.sub(r"\\[^\\]*\\", " ", entry, count=0)  # pronunciations sit between backslashes
    text = GCIDE_ACCENT.sub(lambda m: m.group(1) or m.group(2) or m.group(3), text)
    previous = None
    while previous != text:  # innermost brackets first: etymologies nest accent codes and cross-references
        previous, text = text, re.sub(r"\[[^\[\]]*\]", " ", text)
    text = text.replace("{", "").replace("}", "")
    text = re.sub(r"\([^()\s]*\*[^()\s]*\)", " ", text)  # inflections' pronunciations: (e`lek*tris"i*tiz)
    text = " ".join(text.split())
    text = GCIDE_CITATION.sub("", text)
    head = entry.split("\\", 1)[0].strip()
    head_plain = re.sub(r"[*\"`']", "", head)
    if text.lower().startswith(head_plain.lower()):
        text = text[len(head_plain):]
    text = re.sub(r"^\s*\([^)]*\)", "", text).strip()  # (k[a^]t)-style pronunciation after the headword
    pos = next((name for pattern, name in GCIDE_POS if pattern.match(text)), None)
    text = GCIDE_POS_ABBREV.sub("", text).strip(" ,;")
    return pos, text


def gcide_text(gcide, word, pos):
    """The word's GCIDE entries as one text, the entry for WordNet's part of speech first; "" if none."""
    cleaned = [clean_gcide(e) for e in gcide.entries(word) if gcide_headword(e) == word]
    cleaned = [(p, t) for p, t in cleaned if t]
    cleaned.sort(key=lambda pt: pt[0] != pos)  # stable: keeps GCIDE's order otherwise
    return " ".join(t for _, t in cleaned)


DEVIL_HEADER = re.compile(
    r"^[A-Z][A-Z' ,\-]*?,\s*(n|adj|v\.t|v\.i|v|adv|n\.pl|pp|p\.p|pro|pron|x|adj\. and n)\.\s+", re.S)
DEVIL_POS = {"n": "noun", "n.pl": "noun", "adj": "adj", "v": "verb", "v.t": "verb", "v.i": "verb", "adv": "adv",
             "adj. and n": "adj"}
# Bierce's jokes about races, religions and women have aged badly; a humour PRM should not learn them.
# Matched against the headword and the definition.
DEVIL_EXCLUDE = re.compile(
    r"\b(negro\w*|nigger\w*|jew\w*|hebrew\w*|chinaman|chinese|japanese|indian\w*|savage\w*|heathen\w*|"
    r"turk\w*|irish\w*|caucasian\w*|mongolian\w*|malay\w*|ethiop\w*|african\w*|asiatic|oriental\w*|"
    r"arab\w*|gyps(y|ies)|gipsy|hindu\w*|mormon\w*|moslem\w*|mahometan\w*|pagan\w*|christian\w*|"
    r"church\w*|squaw|wom[ae]n\w*|wife|wives|female\w*|lad(y|ies)|maiden\w*|spinster\w*|hag|sex|rape\w*|"
    r"lynch\w*|slave\w*|suicide\w*|hang\w*|murder\w*|kill\w*)\b", re.I)


def devil_definitions(devil, max_words):
    """{headword: (pos, definition)}: the prose of each single-word entry, without its verse and quotations."""
    definitions = {}
    for word in sorted(devil.index):
        if not re.fullmatch(r"[a-z]{3,}", word):
            continue
        for entry in devil.entries(word):
            match = DEVIL_HEADER.match(entry)
            if not match:
                continue  # verse-only entries ("ABRACADABRA.") and run-together headers
            prose = entry[match.end():].split("\n\n", 1)[0]
            prose = " ".join(prose.replace("_", "").split())
            if len(words(prose)) < 5 or DEVIL_EXCLUDE.search(f"{word} {prose}"):
                continue
            definitions[word] = (DEVIL_POS.get(match.group(1)), cap_words(prose, max_words))
            break
    return definitions
